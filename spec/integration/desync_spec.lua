-- Request smuggling and framing tricks from independent desync suites,
-- with their neighbours. Each malformed message is refused (400 and close,
-- or 502 for a backend) and nothing after it reaches a backend as a request.
local h = require("spec.helpers")
local cjson = require("cjson")

describe("desync and framing strictness", function()
    local b, gw

    setup(function()
        b = h.start_backend({ name = "only" })
        gw = h.start_gateway({ config = {
            timeouts = { client_header = 2 },
            services = { api = { targets = { b.address } } },
            routes = {
                { rule = "PathPrefix(`/trace-ok`)", service = "api", allow_trace = true },
                { rule = "PathPrefix(`/`)", service = "api" },
            },
        } })
    end)
    teardown(h.cleanup)

    local function backend_requests()
        return cjson.decode(h.request(b.port, { path = "/stats" }).body).requests
    end

    local function send(raw, timeout)
        local c = assert(h.connect(gw.port))
        c:send_raw(raw)
        local data, closed = c:read_all(timeout or 3)
        c:close()
        return tonumber(data:match("^HTTP/1%.1 (%d%d%d)")), closed, data
    end

    local function count(data, pat)
        local n = 0
        for _ in data:gmatch(pat) do n = n + 1 end
        return n
    end

    local smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    local chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

    describe("in request bodies", function()
        local cases = {
            { "a last-chunk line ending in a bare LF", chunked .. "0\n\r\n" .. smuggled },
            { "a trailer section ending in a bare LF", chunked .. "0\r\n\n" .. smuggled },
            { "a trailer field ending in a bare LF", chunked .. "0\r\nX-T: 1\n\r\n" .. smuggled },
            { "a chunk-size line ending in CR CR", chunked .. "2\r\rhi\r\n0\r\n\r\n" .. smuggled },
            { "a chunk-size line ending in a bare CR", chunked .. "2\rhi\r\n0\r\n\r\n" .. smuggled },
            { "a chunk extension ending in a bare LF", chunked .. "2;a=b\nhi\r\n0\r\n\r\n" .. smuggled },
            { "a chunk extension with a control byte", chunked .. "2;a=\1\r\nhi\r\n0\r\n\r\n" .. smuggled },
            { "a bare CR inside a trailer", chunked .. "0\r\nX-T: 1\rY\r\n\r\n" .. smuggled },
        }
        for _, case in ipairs(cases) do
            it("answers 400 to " .. case[1] .. " and smuggles nothing", function()
                local before = backend_requests()
                local status, closed, data = send(case[2])
                assert.equal(400, status, data)
                assert.is_true(closed)
                assert.equal(1, count(data, "HTTP/1%.1 %d%d%d"), data)
                -- the head of the broken request may have gone upstream, the
                -- smuggled one never does
                assert.is_true(backend_requests() <= before + 2)
                assert.equal(200, h.request(gw.port, { path = "/still-up" }).status)
            end)
        end
    end)

    -- found by fuzz/fuzz_request.c: llhttp takes a Content-Length up to
    -- 2^64-1, and one above 2^63-1 read as a negative length, which
    -- forwarded the head with no framing at all and the body after it as
    -- the backend's next request
    it("answers 400 to a Content-Length above 2^63-1 and smuggles nothing", function()
        for _, cl in ipairs({ "9223372036854775808", "15555555555555555553", "18446744073709551615" }) do
            local before = backend_requests()
            local status, closed, data = send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " .. cl
                .. "\r\n\r\n" .. smuggled)
            assert.equal(400, status, data)
            assert.is_true(closed)
            assert.equal(before + 1, backend_requests()) -- only the /stats request itself
        end
    end)

    describe("in request heads", function()
        local cases = {
            { "a bare CR ending the header block", "GET / HTTP/1.1\r\nHost: x\r\n\rZ: y\r\n\r\n" },
            { "a bare CR before the header block ends", "GET / HTTP/1.1\r\nHost: x\r\n\r" .. smuggled },
            { "a bare CR in the request line", "GET /\rX HTTP/1.1\r\nHost: x\r\n\r\n" },
            { "raw UTF-8 in the request target", "GET /caf\195\169 HTTP/1.1\r\nHost: x\r\n\r\n" },
            { "a control byte in the request target", "GET /a\1b HTTP/1.1\r\nHost: x\r\n\r\n" },
            { "a DEL in the request target", "GET /a\127b HTTP/1.1\r\nHost: x\r\n\r\n" },
            { "a fragment in the request target", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n" },
            { "a backslash in the request target", "GET /a\\b HTTP/1.1\r\nHost: x\r\n\r\n" },
            { "a bad percent-escape in the request target", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n" },
            { "a Host with a path", "GET / HTTP/1.1\r\nHost: foo/bar\r\n\r\n" },
            { "a Host with userinfo", "GET / HTTP/1.1\r\nHost: user@h\r\n\r\n" },
            { "a Host with a list", "GET / HTTP/1.1\r\nHost: h, other\r\n\r\n" },
            { "a Host with a space", "GET / HTTP/1.1\r\nHost: h other\r\n\r\n" },
            { "a fold hiding a second Host", "GET / HTTP/1.1\r\nHost: a\r\n Host: b\r\n\r\n" },
            { "a Host with a bad port", "GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n" },
            { "an absolute-form target with userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n" },
            { "an absolute-form target of another scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n" },
            { "an asterisk target for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n" },
        }
        for _, case in ipairs(cases) do
            it("answers 400 to " .. case[1], function()
                local before = backend_requests()
                local status, closed, data = send(case[2])
                assert.equal(400, status, data)
                assert.is_true(closed)
                assert.equal(before + 1, backend_requests())
            end)
        end

        it("accepts a Host with a port, an IPv6 literal and a trailing dot", function()
            for _, host in ipairs({ "example.com:8080", "[::1]:80", "example.com.", "a-b.c_d" }) do
                local r = h.request(gw.port, { path = "/", host = host })
                assert.equal(200, r.status, host)
            end
        end)

        it("answers 431 to more headers than limits.max_headers", function()
            local hs = {}
            for i = 1, 101 do hs[#hs + 1] = "X-H" .. i .. ": v\r\n" end
            local status, closed = send("GET / HTTP/1.1\r\nHost: x\r\n" .. table.concat(hs) .. "\r\n")
            assert.equal(431, status)
            assert.is_true(closed)
        end)
    end)

    describe("request targets", function()
        it("forwards an absolute-form target without a path as /", function()
            local c = assert(h.connect(gw.port))
            c:send_raw("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
            local res = assert(c:read_response())
            c:close()
            assert.equal(200, res.status)
            local info = cjson.decode(res.body)
            assert.equal("/", info.path)
            assert.equal("example.com", info.headers.host)
        end)

        it("forwards an absolute-form OPTIONS without a path as *", function()
            local c = assert(h.connect(gw.port))
            c:send_raw("OPTIONS http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
            local res = assert(c:read_response())
            c:close()
            assert.equal(200, res.status)
            assert.equal("*", cjson.decode(res.body).path)
        end)

        it("forwards OPTIONS * as *", function()
            local c = assert(h.connect(gw.port))
            c:send_raw("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n")
            local res = assert(c:read_response())
            c:close()
            assert.equal(200, res.status)
            assert.equal("*", cjson.decode(res.body).path)
        end)
    end)

    describe("methods and credentials", function()
        it("answers 405 to TRACE unless the route allows it", function()
            local before = backend_requests()
            local r = h.request(gw.port, { method = "TRACE", path = "/x" })
            assert.equal(405, r.status)
            assert.equal(before + 1, backend_requests())
            local ok = h.request(gw.port, { method = "TRACE", path = "/trace-ok" })
            assert.equal(200, ok.status)
        end)

        it("consumes Proxy-Authorization instead of forwarding it", function()
            local r = h.request(gw.port, { path = "/", headers = {
                ["Proxy-Authorization"] = "Basic dXNlcjpwYXNz", ["Authorization"] = "Bearer t" } })
            assert.equal(200, r.status)
            local hs = cjson.decode(r.body).headers
            assert.is_nil(hs["proxy-authorization"])
            assert.equal("Bearer t", hs.authorization)
        end)
    end)
end)

describe("backend framing", function()
    teardown(h.cleanup)

    -- Starts a raw backend answering response, and a gateway in front.
    local function through(response)
        local rb = h.start_raw_backend({ response = response, close = true })
        local gw = h.start_gateway({ config = {
            services = { raw = { targets = { rb.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "raw" } },
        } })
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/" })
        local res, err = c:read_response()
        c:close()
        gw:stop()
        rb.stop()
        return res, err
    end

    -- found by fuzz/fuzz_request.c's neighbour in responses
    it("answers 502 to a Content-Length above 2^63-1", function()
        local res = assert(through("HTTP/1.1 200 OK\r\nContent-Length: 15555555555555555553\r\n\r\nhello"))
        assert.equal(502, res.status)
    end)

    it("answers 502 to a 1xx response carrying a Content-Length body", function()
        local res = assert(through("HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\nhello"
            .. "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        assert.equal(502, res.status)
    end)

    it("answers 502 to a 1xx response carrying a chunked body", function()
        local res = assert(through("HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n"
            .. "5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        assert.equal(502, res.status)
    end)

    it("answers 502 to a 101 without Upgrade and Connection: upgrade", function()
        local rb = h.start_raw_backend({ close = true, response =
            "HTTP/1.1 101 Switching Protocols\r\nContent-Length: 2\r\n\r\nok"
            .. "HTTP/1.1 200 OK\nX: smuggled\nContent-Length: 0\n\n" })
        local gw = h.start_gateway({ config = {
            services = { raw = { targets = { rb.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "raw" } },
        } })
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/ws", headers = { { "Upgrade", "websocket" }, { "Connection", "Upgrade" } } })
        local res = assert(c:read_response())
        c:close()
        assert.equal(502, res.status)
    end)

    it("answers 502 to a status code below 100", function()
        local res = assert(through("HTTP/1.1 042 Odd\r\nContent-Length: 0\r\n\r\n"))
        assert.equal(502, res.status)
    end)

    it("answers 502 to a bare CR in a response head", function()
        local res = assert(through("HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok"))
        assert.equal(502, res.status)
    end)

    it("answers 502 to a response chunk-size line ending in CR CR", function()
        local res = assert(through("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\rok\r\n0\r\n\r\n"))
        assert.equal(502, res.status)
    end)

    it("accepts a response with bare LF line ends and re-serialises it with CRLF", function()
        local res = assert(through("HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 2\n\nok"))
        assert.equal(200, res.status)
        assert.equal("1", res.headers["x-a"])
        assert.equal("ok", res.body)
    end)

    it("accepts a chunked response with bare LF line ends", function()
        local res = assert(through("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n"))
        assert.equal(200, res.status)
        assert.equal("ok", res.body)
    end)

    it("relays the backend's reason phrase", function()
        local res = assert(through("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
        assert.equal("HTTP/1.1 201 Created", res.status_line)
        res = assert(through("HTTP/1.1 299 Quite Fine\r\nContent-Length: 0\r\n\r\n"))
        assert.equal("HTTP/1.1 299 Quite Fine", res.status_line)
    end)

    it("uses the standard reason when the backend's is empty", function()
        local res = assert(through("HTTP/1.1 409 \r\nContent-Length: 0\r\n\r\n"))
        assert.equal("HTTP/1.1 409 Conflict", res.status_line)
        res = assert(through("HTTP/1.1 429\r\nContent-Length: 0\r\n\r\n"))
        assert.equal("HTTP/1.1 429 Too Many Requests", res.status_line)
    end)
end)

describe("reason phrases of the gateway's own answers", function()
    teardown(h.cleanup)

    it("names 308 Permanent Redirect, 401, 403 and 429 correctly", function()
        local b = h.start_backend({ name = "a" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = {
                { rule = "PathPrefix(`/r`)", service = "api",
                  middlewares = { { plugin = "redirect", to = "https://example.com", status = 308 } } },
                { rule = "PathPrefix(`/auth`)", service = "api",
                  middlewares = { { plugin = "basic_auth", users = { u = "p" } } } },
                { rule = "PathPrefix(`/`)", service = "api" },
            },
        } })
        local function line(path)
            local c = assert(h.connect(gw.port))
            c:send_request({ path = path })
            local res = assert(c:read_response())
            c:close()
            return res.status_line
        end
        assert.equal("HTTP/1.1 308 Permanent Redirect", line("/r"))
        assert.equal("HTTP/1.1 401 Unauthorized", line("/auth"))
        assert.equal("HTTP/1.1 403 Forbidden", line("/status/403"))
        assert.equal("HTTP/1.1 429 Too Many Requests", line("/status/429"))
        assert.equal("HTTP/1.1 301 Moved Permanently", line("/status/301"))
    end)
end)
