-- mg.http: the control plane's async HTTP client, against real servers on
-- TCP and on a unix socket.
local h = require("spec.helpers")
local mg = require("moongate")
local cjson = require("cjson")

-- runs fn in a coroutine, turning the loop until it finished
local async = require("spec.support.async")

describe("mg.http", function()
    after_each(h.cleanup)

    it("requests over TCP and returns status, headers and body", function()
        local b = h.start_backend({ name = "tcp" })
        local res = async(function()
            return mg.http.request({ url = "http://127.0.0.1:" .. b.port .. "/x?y=1",
                                     headers = { ["X-Probe"] = "1" } })
        end)
        assert.equal(200, res.status)
        assert.equal("tcp", res.headers["x-backend"])
        local info = cjson.decode(res.body)
        assert.equal("/x", info.path)
        assert.equal("1", info.headers["x-probe"])
    end)

    it("posts a body", function()
        local b = h.start_backend()
        local res = async(function()
            return mg.http.request({ method = "POST", url = "http://127.0.0.1:" .. b.port .. "/echo", body = "ping" })
        end)
        assert.equal("ping", res.body)
    end)

    it("returns an error value when nothing listens, and on a timeout", function()
        local port = h.free_port()
        local res, err = async(function() return mg.http.request("http://127.0.0.1:" .. port .. "/") end)
        assert.is_nil(res)
        assert.truthy(err:find("connect failed"))
        local b = h.start_backend()
        res, err = async(function()
            return mg.http.request({ url = "http://127.0.0.1:" .. b.port .. "/delay/2000", timeout = 0.3 })
        end)
        assert.is_nil(res)
        assert.equal("timed out", err)
    end)

    it("reads a chunked newline-delimited stream from a unix socket, line by line", function()
        local dir = h.tmpdir()
        local sock = dir .. "/api.sock"
        h.spawn({ "python3", "spec/support/unix_stream.py", "--socket", sock, "--count", "6" })
        h.wait_until(function() return require("posix.sys.stat").stat(sock) ~= nil end, 5, "the unix socket")
        local lines, status = async(function()
            local s, err = mg.http.stream({ url = "unix://" .. sock .. ":/events" })
            assert(s, err)
            local got = {}
            for line in s:lines() do got[#got + 1] = cjson.decode(line) end
            s:close()
            return got, s.status
        end)
        assert.equal(200, status)
        assert.equal(6, #lines)
        for i, e in ipairs(lines) do assert.equal(i - 1, e.seq) end
        local ping = async(function() return mg.http.request("unix://" .. sock .. ":/_ping") end)
        assert.equal("OK", ping.body)
        assert.equal("1.41", ping.headers["api-version"])
    end)

    it("sleeps without blocking other coroutines", function()
        local order = {}
        mg.spawn(function() mg.sleep(0.2); order[#order + 1] = "slow" end)
        mg.spawn(function() mg.sleep(0.05); order[#order + 1] = "fast" end)
        mg.run(1)
        assert.same({ "fast", "slow" }, order)
    end)
end)

describe("mg.tcp_probe", function()
    after_each(h.cleanup)

    it("says whether a TCP connect succeeds, without sending anything", function()
        local port = h.free_port()
        local ok, err = async(function() return mg.tcp_probe("127.0.0.1", port, 1) end)
        assert.is_nil(ok)
        assert.equal("connection refused", err)
        local srv = assert(require("socket").bind("127.0.0.1", port))
        ok = async(function() return mg.tcp_probe("127.0.0.1", port, 1) end)
        srv:close()
        assert.is_true(ok)
    end)

    it("refuses what is not an address and a port", function()
        local ok, err = async(function() return mg.tcp_probe("127.0.0.1", 0) end)
        assert.is_nil(ok)
        assert.equal("expected an IP address and a port", err)
        assert.has_error(function() mg.tcp_probe(42, 80) end)
    end)
end)
