-- mg.http over HTTPS: verified against ca_file or the system store, with
-- SNI and the name checked, against openssl s_server.
local h = require("spec.helpers")
local t = require("spec.tls.support")
local mg = require("moongate")

-- runs fn in a coroutine, turning the loop until it finished
local async = require("spec.support.async")

local function start_s_server(dir)
    local cert, key = t.make_cert(dir, "server", { names = { "localhost", "api.test" }, ip = "127.0.0.1" })
    local port = h.free_port()
    local p = h.spawn({ "openssl", "s_server", "-accept", "127.0.0.1:" .. port, "-cert", cert, "-key", key,
                        "-www", "-quiet" })
    h.wait_until(function() return h.port_open(port) end, 5, "openssl s_server")
    return port, cert, p
end

describe("mg.http over HTTPS", function()
    after_each(h.cleanup)

    it("verifies the server against ca_file and reads the response", function()
        local port, cert = start_s_server(h.tmpdir())
        local res, err = async(function()
            return mg.http.request({ url = "https://localhost:" .. port .. "/", ca_file = cert })
        end)
        assert.is_nil(err)
        assert.equal(200, res.status)
        assert.truthy(res.body:find("TLSv1.3", 1, true)) -- s_server -www describes the session
    end)

    it("refuses a certificate the system store does not trust", function()
        local port = start_s_server(h.tmpdir())
        local res, err = async(function() return mg.http.request({ url = "https://localhost:" .. port .. "/" }) end)
        assert.is_nil(res)
        assert.truthy(err:find("certificate verify failed", 1, true), err)
    end)

    it("checks the name: server_name must be one the certificate holds", function()
        local port, cert = start_s_server(h.tmpdir())
        local ok = async(function()
            return mg.http.request({ url = "https://127.0.0.1:" .. port .. "/", ca_file = cert, server_name = "api.test" })
        end)
        assert.equal(200, ok.status)
        local res, err = async(function()
            return mg.http.request({ url = "https://127.0.0.1:" .. port .. "/", ca_file = cert, server_name = "other.test" })
        end)
        assert.is_nil(res)
        assert.truthy(err:find("verify failed", 1, true), err)
    end)

    it("skips verification only when told to", function()
        local port = start_s_server(h.tmpdir())
        local res = async(function()
            return mg.http.request({ url = "https://localhost:" .. port .. "/", verify = false })
        end)
        assert.equal(200, res.status)
    end)

    it("names a missing ca_file", function()
        local res, err = async(function()
            return mg.http.request({ url = "https://localhost:1/", ca_file = "/nonexistent/ca.pem" })
        end)
        assert.is_nil(res)
        assert.truthy(err:find("/nonexistent/ca.pem", 1, true), err)
    end)
end)
