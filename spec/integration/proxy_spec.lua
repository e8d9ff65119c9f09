-- The core's proxying behaviour, against real backends over real sockets.
local h = require("spec.helpers")
local cjson = require("cjson")

local function two_backends()
    return h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
end

local function gateway(b1, b2, extra)
    local cfg = {
        services = { api = { targets = { b1.address, b2 and b2.address or nil } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api" } },
    }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return h.start_gateway({ config = cfg })
end

describe("proxying", function()
    after_each(h.cleanup)

    it("alternates between two backends (round robin)", function()
        local b1, b2 = two_backends()
        local gw = gateway(b1, b2)
        local seen = {}
        for i = 1, 6 do seen[i] = h.request(gw.port, { path = "/" }).headers["x-backend"] end
        assert.same({ "one", "two", "one", "two", "one", "two" }, seen)
    end)

    it("alternates across the whole gateway, not per worker", function()
        local b1, b2 = two_backends()
        local gw = gateway(b1, b2, { workers = 2 })
        local seen = {}
        -- a new connection per request, so the kernel spreads them over workers
        for i = 1, 8 do seen[i] = h.request(gw.port, {}).headers["x-backend"] end
        for i = 2, 8 do assert.are_not.equal(seen[i - 1], seen[i], table.concat(seen, " ")) end
    end)

    it("honours weights (3:1 over 8 requests gives 6:2)", function()
        local b1, b2 = two_backends()
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { { address = b1.address, weight = 3 }, b2.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local count = { one = 0, two = 0 }
        for _ = 1, 8 do
            local name = h.request(gw.port, {}).headers["x-backend"]
            count[name] = count[name] + 1
        end
        assert.same({ one = 6, two = 2 }, count)
    end)

    it("keeps a client connection alive across many requests", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local c = h.connect(gw.port)
        for i = 1, 20 do
            c:send_request({ path = "/n" .. i })
            local res = c:read_response()
            assert.equal(200, res.status)
            assert.equal("/n" .. i, cjson.decode(res.body).path)
        end
        c:close()
    end)

    it("answers pipelined requests in order", function()
        local b1, b2 = two_backends()
        local gw = gateway(b1, b2)
        local c = h.connect(gw.port)
        c:send_raw(h.format_request({ path = "/a" }) .. h.format_request({ path = "/b" })
            .. h.format_request({ path = "/c" }))
        for _, p in ipairs({ "/a", "/b", "/c" }) do
            assert.equal(p, cjson.decode(c:read_response().body).path)
        end
        c:close()
    end)

    it("streams a 1 MiB request body with Content-Length and chunked", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local body = string.rep("0123456789abcdef", 65536)
        local sha = h.json(h.request(b1.port, { method = "POST", body = body })).body_sha1
        local r1 = h.json(h.request(gw.port, { method = "POST", body = body }))
        assert.equal(#body, r1.body_len)
        assert.equal(sha, r1.body_sha1)
        local chunks = {}
        for i = 1, 16 do chunks[i] = body:sub((i - 1) * 65536 + 1, i * 65536) end
        local r2 = h.json(h.request(gw.port, { method = "POST", body = chunks }))
        assert.equal(sha, r2.body_sha1)
    end)

    it("relays Content-Length, chunked with trailers, and read-until-close bodies", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local big = h.request(gw.port, { path = "/big?bytes=3000000" })
        assert.equal(3000000, #big.body)
        local ch = h.request(gw.port, { path = "/chunked?n=4&size=1000&trailer=1" })
        assert.equal(4000, #ch.body)
        assert.truthy(ch.trailers["x-checksum"])
        local c = h.connect(gw.port)
        c:send_request({ path = "/close?bytes=5000" })
        local res = c:read_response()
        assert.equal(5000, #res.body)
        assert.equal("chunked", res.headers["transfer-encoding"]) -- re-framed for an HTTP/1.1 client
        c:close()
    end)

    it("sends no body for HEAD, 204 and 304", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local c = h.connect(gw.port)
        c:send_request({ method = "HEAD", path = "/big?bytes=100" })
        local r = c:read_response({ method = "HEAD" })
        assert.equal("100", r.headers["content-length"])
        c:send_request({ path = "/nocontent" })
        assert.equal(204, c:read_response().status)
        c:send_request({ path = "/notmodified" })
        assert.equal(304, c:read_response().status)
        -- the connection is still in sync: nothing stray arrived
        c:send_request({ path = "/after" })
        assert.equal("/after", cjson.decode(c:read_response().body).path)
        c:close()
    end)

    it("relays 100 Continue for Expect: 100-continue", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local c = h.connect(gw.port)
        c:send_raw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert.equal("HTTP/1.1 100 Continue", c:read_line())
        repeat local line = c:read_line() until line == ""
        c:send_raw("hello")
        local r = c:read_response()
        assert.equal(200, r.status)
        assert.equal("hello", r.body)
        c:close()
    end)

    it("relays a 103 interim response", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local c = h.connect(gw.port)
        c:send_request({ path = "/interim" })
        local r = c:read_response()
        assert.equal(200, r.status)
        assert.equal(103, r.interim[1].status)
        c:close()
    end)

    it("serves HTTP/1.0 clients and closes unless they ask for keep-alive", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local c = h.connect(gw.port)
        c:send_request({ version = "1.0", path = "/chunked?n=2&size=3" })
        local r = c:read_response()
        assert.equal("1.0", r.version)
        assert.equal("aaabbb", r.body)
        assert.is_true(c:closed())
        local k = h.connect(gw.port)
        k:send_request({ version = "1.0", path = "/one", headers = { Connection = "keep-alive" } })
        assert.equal(200, k:read_response().status)
        k:send_request({ version = "1.0", path = "/two", headers = { Connection = "keep-alive" } })
        assert.equal("/two", cjson.decode(k:read_response().body).path)
        k:close()
    end)

    it("tunnels a WebSocket both ways", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local c = h.connect(gw.port)
        c:send_request({ path = "/ws", headers = {
            { "Upgrade", "websocket" }, { "Connection", "Upgrade" },
            { "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==" }, { "Sec-WebSocket-Version", "13" } } })
        local r = c:read_response()
        assert.equal(101, r.status)
        assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", r.headers["sec-websocket-accept"])
        -- a masked text frame "hi"
        local mask = { 1, 2, 3, 4 }
        local bit = require("bit")
        local data = "hi"
        local masked = {}
        for i = 1, #data do masked[i] = string.char(bit.bxor(data:byte(i), mask[(i - 1) % 4 + 1])) end
        c:send_raw(string.char(0x81, 0x80 + #data) .. string.char(unpack(mask)) .. table.concat(masked))
        assert.equal(string.char(0x81, 2) .. "hi", c:read_raw(2))
        c:close()
    end)

    it("sets X-Forwarded-* and replaces spoofed ones from untrusted clients", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local info = h.json(h.request(gw.port, { host = "example.test", headers = {
            ["X-Forwarded-For"] = "6.6.6.6", ["X-Forwarded-Proto"] = "https" } }))
        assert.equal("127.0.0.1", info.headers["x-forwarded-for"])
        assert.equal("http", info.headers["x-forwarded-proto"])
        assert.equal("example.test", info.headers["x-forwarded-host"])
    end)

    it("appends to X-Forwarded-For from trusted proxies", function()
        local b1 = h.start_backend()
        local gw = gateway(b1, nil, { trusted_proxies = { "127.0.0.0/8" } })
        local info = h.json(h.request(gw.port, { headers = {
            ["X-Forwarded-For"] = "203.0.113.9", ["X-Forwarded-Proto"] = "https" } }))
        assert.equal("203.0.113.9, 127.0.0.1", info.headers["x-forwarded-for"])
        assert.equal("https", info.headers["x-forwarded-proto"])
    end)

    it("trusts a proxy given as an IPv4-mapped IPv6 range like the IPv4 one", function()
        local b1 = h.start_backend()
        local gw = gateway(b1, nil, { trusted_proxies = { "::ffff:127.0.0.0/104" } })
        local info = h.json(h.request(gw.port, { headers = { ["X-Forwarded-For"] = "203.0.113.9" } }))
        assert.equal("203.0.113.9, 127.0.0.1", info.headers["x-forwarded-for"])
    end)

    it("removes hop-by-hop headers and those named in Connection", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        local info = h.json(h.request(gw.port, { headers = {
            { "Connection", "keep-alive, X-Secret" }, { "Keep-Alive", "timeout=5" },
            { "TE", "trailers" }, { "Proxy-Connection", "keep-alive" }, { "Upgrade", "h2c" },
            { "X-Secret", "s" }, { "X-Kept", "k" } } }))
        for _, name in ipairs({ "connection", "keep-alive", "te", "proxy-connection", "upgrade", "x-secret" }) do
            assert.is_nil(info.headers[name], name)
        end
        assert.equal("k", info.headers["x-kept"])
    end)

    it("routes by Host and path to different services, 404 without a route", function()
        local b1, b2 = two_backends()
        local gw = h.start_gateway({ config = {
            services = { a = { targets = { b1.address } }, b = { targets = { b2.address } } },
            routes = {
                { rule = "Host(`a.test`)", service = "a" },
                { rule = "Host(`b.test`) && PathPrefix(`/v1`)", service = "b" },
            },
        } })
        assert.equal("one", h.request(gw.port, { host = "a.test" }).headers["x-backend"])
        assert.equal("two", h.request(gw.port, { host = "b.test", path = "/v1/x" }).headers["x-backend"])
        assert.equal(404, h.request(gw.port, { host = "b.test", path = "/v2" }).status)
        assert.equal(404, h.request(gw.port, { host = "c.test" }).status)
    end)

    it("writes one combined access log line per request", function()
        local b1 = h.start_backend()
        local gw = gateway(b1)
        h.request(gw.port, { path = "/logged?x=1", headers = { ["User-Agent"] = "spec-agent", Referer = "http://r/" } })
        gw:wait_access(1)
        local line = gw:access_log()[1]
        local pattern = '^127%.0%.0%.1 %- %- %[[^%]]+%] "GET /logged%?x=1 HTTP/1%.1" 200 %d+ '
            .. '"http://r/" "spec%-agent" "api" 127%.0%.0%.1:' .. b1.port .. ' %d+%.%d%d%d$'
        assert.truthy(line:match(pattern), line)
    end)

    it("writes JSON access log lines with access_log = \"json\"", function()
        local b1 = h.start_backend()
        local gw = gateway(b1, nil, { access_log = "json" })
        h.request(gw.port, { path = "/j?q=2" })
        gw:wait_access(1)
        local e = cjson.decode(gw:access_log()[1])
        assert.equal("GET", e.method)
        assert.equal("/j", e.path)
        assert.equal("q=2", e.query)
        assert.equal(200, e.status)
        assert.equal("api", e.service)
        assert.equal(b1.address, e.upstream)
        assert.equal(1, e.tries)
        assert.equal("HTTP/1.1", e.protocol)
        assert.is_number(e.duration)
        assert.equal("127.0.0.1", e.client)
        assert.is_string(e.time)
        assert.is_string(e.host)
        assert.is_number(e.bytes)
    end)
end)
