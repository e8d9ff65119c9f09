-- Malformed and hostile requests: each gets a clear 4xx and a closed
-- connection, never reaches the backend, and the gateway keeps serving.
local h = require("spec.helpers")
local cjson = require("cjson")

describe("bad input", function()
    local b, gw

    setup(function()
        b = h.start_backend({ name = "only" })
        gw = h.start_gateway({ config = {
            timeouts = { client_header = 1 },
            limits = { max_header_size = 4096 },
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
    end)
    teardown(h.cleanup)

    local function backend_requests()
        return cjson.decode(h.request(b.port, { path = "/stats" }).body).requests
    end

    -- Sends raw bytes; returns the status line's code and whether the
    -- gateway closed the connection.
    local function send(raw)
        local c = assert(h.connect(gw.port))
        c:send_raw(raw)
        local data, closed = c:read_all(3)
        c:close()
        return tonumber(data:match("^HTTP/1%.1 (%d%d%d)")), closed, data
    end

    local cases = {
        { "a malformed request line", "HELLO\r\n\r\n", 400 },
        { "a space in the target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        { "an invalid header name", "GET / HTTP/1.1\r\nHost: x\r\nX(y): z\r\n\r\n", 400 },
        { "whitespace before the colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : y\r\n\r\n", 400 },
        { "Content-Length with Transfer-Encoding",
          "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
        { "two different Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400 },
        { "Content-Length with a sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400 },
        { "Transfer-Encoding: gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400 },
        { "Transfer-Encoding: chunked, gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400 },
        { "Transfer-Encoding: gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400 },
        { "an unknown coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400 },
        { "Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
        { body = true, "a 0x chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n0123456789abcdef\r\n0\r\n\r\n", 400 },
        { body = true, "a negative chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n", 400 },
        { body = true, "an overflowing chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n\r\n", 400 },
        { body = true, "chunk data without CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400 },
        { body = true, "a bare LF after a chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400 },
        { "bare LF line ends", "GET / HTTP/1.1\nHost: x\n\n", 400 },
        { "one bare LF", "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400 },
        { "a bare CR", "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400 },
        { "a NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 400 },
        { "a DEL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\127b\r\n\r\n", 400 },
        { "no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400 },
        { "two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
        { "HTTP/2.0 on an HTTP/1 connection", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
        { "an unknown HTTP version", "GET / HTTP/1.7\r\nHost: x\r\n\r\n", 400 },
    }

    for _, case in ipairs(cases) do
        it("answers " .. case[3] .. " to " .. case[1] .. " and closes", function()
            local before = backend_requests()
            local status, closed = send(case[2])
            assert.equal(case[3], status)
            assert.is_true(closed)
            if case.body then
                -- Bad framing inside a streamed body: the head already went
                -- upstream, so the backend may see it, but the half request
                -- dies with its connection; nothing after it is smuggled.
                assert.is_true(backend_requests() <= before + 2)
            else
                assert.equal(before + 1, backend_requests()) -- only the stats request itself
            end
            assert.equal(200, h.request(gw.port, { path = "/still-up" }).status)
        end)
    end

    it("answers 431 to headers over limits.max_header_size", function()
        local status, closed = send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("a", 5000) .. "\r\n\r\n")
        assert.equal(431, status)
        assert.is_true(closed)
    end)

    it("answers 408 and closes when the head is not complete in time (slowloris)", function()
        local c = assert(h.connect(gw.port))
        c:send_raw("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        local t0 = require("socket").gettime()
        local data, closed = c:read_all(4)
        local elapsed = require("socket").gettime() - t0
        c:close()
        assert.truthy(data:match("^HTTP/1%.1 408"), data)
        assert.is_true(closed)
        assert.is_true(elapsed < 3, "took " .. elapsed)
    end)

    it("logs the reason of a bad request", function()
        send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        gw:wait_log("more than one Host header")
    end)
end)

describe("pipelined requests", function()
    after_each(h.cleanup)

    -- Sends every request of reqs in one write; returns the responses read.
    local function pipeline(port, reqs)
        local c = assert(h.connect(port))
        local parts = {}
        for i, p in ipairs(reqs) do
            parts[i] = "GET " .. p .. " HTTP/1.1\r\nHost: x\r\n\r\n"
        end
        c:send_raw(table.concat(parts))
        local out = {}
        for i = 1, #reqs do out[i] = assert(c:read_response()) end
        c:close()
        return out
    end

    it("answers a request after one the gateway answered itself (no route)", function()
        local b = h.start_backend({ name = "b" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/api`)", service = "api" } },
        } })
        local rs = pipeline(gw.port, { "/nope", "/api/x", "/nope2", "/api/y" })
        assert.same({ 404, 200, 404, 200 }, { rs[1].status, rs[2].status, rs[3].status, rs[4].status })
        assert.equal(200, h.request(gw.port, { path = "/api/still" }).status)
    end)

    it("keeps responses in order when a request is retried on another target", function()
        local live = h.start_backend({ name = "live" })
        -- reads each request and hangs up without an answer: the request is
        -- retried after the parser already reached the end of it
        local rude = h.start_raw_backend({ response = "", close = true })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { rude.address, live.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local paths = {}
        for i = 1, 20 do paths[i] = "/p" .. i end
        local rs = pipeline(gw.port, paths)
        for i, r in ipairs(rs) do
            assert.equal(200, r.status)
            assert.equal("/p" .. i, cjson.decode(r.body).path)
        end
    end)
end)
