-- HTTP/2 to backends (services.NAME.protocol "h2c" and "h2") through the
-- real gateway: a real HTTP/2 server (nghttpd, Debian's nghttp2-server) in
-- cleartext and over TLS, requests of many clients multiplexed over few
-- backend connections, and gRPC passthrough against a real gRPC server
-- (Debian's python3-grpcio): unary, bidirectional streaming, an error
-- status, a deadline.
local h = require("spec.helpers")
local t = require("spec.tls.support")
local cjson = require("cjson")

local GRPC = "spec/support/grpc_echo.py"
local PY = "/usr/bin/python3" -- Debian's, where python3-grpcio is

-- Backend connections the gateway holds to port (ESTABLISHED, from
-- /proc/net/tcp: the local side is the gateway's).
local function conns_to(port)
    local hex = string.format(":%04X", port)
    local n = 0
    for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
        for line in (h.read_file(f) or ""):gmatch("[^\n]+") do
            local _, rem, st = line:match("^%s*%d+: (%S+) (%S+) (%S+)")
            if rem and rem:sub(-5) == hex and st == "01" then n = n + 1 end
        end
    end
    return n
end

local function nghttpd(dir, port, tls, cert, key)
    require("posix.sys.stat").mkdir(dir .. "/www")
    h.write_file(dir .. "/www/index.html", "hello over h2\n")
    t.sh("head -c 3000000 /dev/urandom > " .. dir .. "/www/big.bin")
    local argv = { "nghttpd", "--echo-upload", "-d", dir .. "/www", "--trailer=x-tr: yes" }
    if not tls then argv[#argv + 1] = "--no-tls" end
    argv[#argv + 1] = tostring(port)
    if tls then argv[#argv + 1] = key; argv[#argv + 1] = cert end
    local p = h.spawn(argv)
    h.wait_until(function() return h.port_open(port) end, 5, "nghttpd on " .. port)
    return p
end

describe("HTTP/2 to backends", function()
    after_each(h.cleanup)

    it("speaks h2c and h2 to a real HTTP/2 server, bodies and trailers included", function()
        local dir = h.tmpdir()
        local cert, key = t.make_cert(dir, "up", { names = { "localhost" } })
        local p1, p2 = h.free_port(), h.free_port()
        nghttpd(dir, p1, false)
        nghttpd(dir, p2, true, cert, key)
        local gw = h.start_gateway({ config = {
            services = { c = { protocol = "h2c", targets = { "127.0.0.1:" .. p1 } },
                         s = { protocol = "h2", tls = { ca_file = cert, server_name = "localhost" },
                               targets = { "127.0.0.1:" .. p2 } } },
            routes = { { rule = "PathPrefix(`/tls/`)", service = "s", middlewares = { { plugin = "strip_prefix", prefixes = { "/tls" } } } },
                       { rule = "PathPrefix(`/`)", service = "c" } },
        } })
        local base = "http://127.0.0.1:" .. gw.port
        local sum = t.sh("sha1sum " .. dir .. "/www/big.bin"):match("^(%x+)")
        for _, prefix in ipairs({ "", "/tls" }) do
            -- an HTTP/1.1 client and an HTTP/2 one
            assert.equal("hello over h2\n", (t.sh("curl -sS " .. base .. prefix .. "/index.html")))
            assert.equal("hello over h2\n", (t.sh("curl -sS --http2-prior-knowledge " .. base .. prefix .. "/index.html")))
            assert.equal(sum, t.sh("curl -sS " .. base .. prefix .. "/big.bin | sha1sum"):match("^(%x+)"))
            -- a POST echoed back, larger than every window
            assert.equal(sum, t.sh("curl -sS --data-binary @" .. dir .. "/www/big.bin " .. base .. prefix ..
                                   "/echo | sha1sum"):match("^(%x+)"))
        end
        local out = t.sh("timeout 10 nghttp -v " .. base .. "/index.html")
        assert.truthy(out:find("recv HEADERS frame.-x%-tr: yes"), out) -- the trailer, after the DATA
    end)

    it("multiplexes the requests of many clients over few backend connections", function()
        local dir = h.tmpdir()
        local port = h.free_port()
        nghttpd(dir, port, false)
        local gw = h.start_gateway({ config = {
            services = { c = { protocol = "h2c", targets = { "127.0.0.1:" .. port } } },
            routes = { { rule = "PathPrefix(`/`)", service = "c" } },
        } })
        local out = t.sh("timeout 60 h2load -n 2000 -c 20 -m 10 --h1 http://127.0.0.1:" .. gw.port .. "/index.html")
        assert.truthy(out:find("2000 succeeded", 1, true), out)
        out = t.sh("timeout 60 h2load -n 2000 -c 4 -m 50 http://127.0.0.1:" .. gw.port .. "/index.html")
        assert.truthy(out:find("2000 succeeded", 1, true), out)
        -- 20 clients at once, 10 requests each in flight: a few connections (100 streams each)
        local n = conns_to(port)
        assert.is_true(n >= 1 and n <= 4, n .. " backend connections")
    end)

    it("passes gRPC through: unary, bidirectional streaming, status and deadline", function()
        local gport = h.free_port()
        h.spawn({ PY, GRPC, "serve", tostring(gport), "G1" })
        h.wait_until(function() return h.port_open(gport) end, 10, "the gRPC server")
        local gw = h.start_gateway({ config = {
            services = { g = { protocol = "h2c", targets = { "127.0.0.1:" .. gport } } },
            routes = { { rule = "PathPrefix(`/echo.Echo/`)", service = "g" } },
            access_log = "json",
        } })
        local out = t.sh("timeout 30 " .. PY .. " " .. GRPC .. " call " .. gw.port)
        local r = cjson.decode(out:match("{.*}") or error(out))
        assert.equal("OK", r.unary_code)
        assert.equal(100003, r.unary_len)
        assert.equal("G1", r.unary_prefix)
        assert.equal("G1", r.unary_backend)   -- initial metadata
        assert.equal("done", r.unary_trailer) -- trailing metadata
        assert.same({ "G1:a", "G1:b", "G1:ccc" }, r.stream)
        assert.equal(70003, r.stream_last_len)
        assert.equal("NOT_FOUND", r.fail) -- grpc-status in a trailers-only answer
        assert.equal("no such thing", r.fail_details)
        assert.equal("DEADLINE_EXCEEDED", r.deadline)
        gw:wait_access(4)
        local first = cjson.decode(gw:access_log()[1])
        assert.equal("HTTP/2.0", first.protocol)
        assert.equal("/echo.Echo/Unary", first.path)
    end)
end)
