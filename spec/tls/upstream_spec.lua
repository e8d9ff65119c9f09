-- TLS to backends: https:// targets verified by default, against a private
-- CA with ca_file, and refused when the certificate is not trusted.
local h = require("spec.helpers")
local t = require("spec.tls.support")

-- openssl s_server answering any GET with its status page (HTTP/1.0).
local function tls_backend(dir)
    local cert, key = t.make_cert(dir, "backend", { names = { "backend.test" }, ip = "127.0.0.1" })
    local port = h.free_port()
    local p = h.spawn({ "openssl", "s_server", "-accept", "127.0.0.1:" .. port, "-cert", cert,
                        "-key", key, "-www", "-quiet" })
    h.wait_until(function() return h.port_open(port) end, 5, "openssl s_server")
    return { port = port, cert = cert, proc = p }
end

describe("upstream TLS", function()
    after_each(h.cleanup)

    it("proxies to an https:// target whose certificate ca_file trusts", function()
        local dir = h.tmpdir()
        local b = tls_backend(dir)
        local gw = h.start_gateway({ config = {
            services = { secure = { targets = { "https://127.0.0.1:" .. b.port },
                                    tls = { ca_file = b.cert, server_name = "backend.test" } } },
            routes = { { rule = "PathPrefix(`/`)", service = "secure" } },
        } })
        local r = h.request(gw.port, { path = "/" })
        assert.equal(200, r.status, r.body)
        assert.truthy(r.body:find("s_server", 1, true), r.body)
    end)

    it("answers 502 when the target's certificate is not trusted (verified by default)", function()
        local dir = h.tmpdir()
        local b = tls_backend(dir)
        local gw = h.start_gateway({ config = {
            timeouts = { queue = 0 },
            services = { secure = { targets = { "https://127.0.0.1:" .. b.port } } },
            routes = { { rule = "PathPrefix(`/`)", service = "secure" } },
        } })
        local r = h.request(gw.port, { path = "/" })
        assert.equal(502, r.status)
        gw:wait_log("TLS handshake failed")
    end)
end)
