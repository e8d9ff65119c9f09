-- Failures of backends and clients: retries, 502/504, panic mode, hang-ups.
local h = require("spec.helpers")
local socket = require("socket")
local cjson = require("cjson")

local function route_all(targets, extra)
    local cfg = {
        services = { api = { targets = targets } },
        routes = { { rule = "PathPrefix(`/`)", service = "api" } },
    }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return cfg
end

describe("faults", function()
    after_each(h.cleanup)

    it("retries another target when one refuses connections", function()
        local live = h.start_backend({ name = "live" })
        local dead = "127.0.0.1:" .. h.free_port()
        local gw = h.start_gateway({ config = route_all({ dead, live.address }) })
        for _ = 1, 6 do
            local r = h.request(gw.port, {})
            assert.equal(200, r.status)
            assert.equal("live", r.headers["x-backend"])
        end
        gw:wait_log("connect failed.*trying another target")
    end)

    it("sends to a target within a second of it listening after it refused (a replica starting)", function()
        local live = h.start_backend({ name = "live" })
        local port = h.free_port()
        local gw = h.start_gateway({ config = route_all({ "127.0.0.1:" .. port, live.address }) })
        -- the new replica refuses while its app starts: the gateway moves on
        for _ = 1, 4 do assert.equal("live", h.request(gw.port, {}).headers["x-backend"]) end
        local late = h.start_backend({ name = "late", port = port })
        local t0 = socket.gettime()
        h.wait_until(function()
            return h.request(gw.port, {}).headers["x-backend"] == "late"
        end, 5, "the late replica to get traffic")
        -- a 10 s rest (the old passive mark) fails this by far
        local took = socket.gettime() - t0
        assert.is_true(took < 1.5 * h.slow, "took " .. took .. " s")
        assert.is_not_nil(late)
    end)

    it("answers 502 when every target is down (and requests are not held: timeouts.queue = 0)", function()
        local gw = h.start_gateway({ config = route_all({ "127.0.0.1:" .. h.free_port(), "127.0.0.1:" .. h.free_port() },
            { timeouts = { queue = 0 } }) })
        assert.equal(502, h.request(gw.port, {}).status)
    end)

    it("answers 502 when every target stays down past timeouts.queue", function()
        local gw = h.start_gateway({ config = route_all({ "127.0.0.1:" .. h.free_port() },
            { timeouts = { queue = 0.5 } }) })
        local t0 = socket.gettime()
        local r = h.request(gw.port, {})
        assert.equal(502, r.status)
        assert.is_true(socket.gettime() - t0 >= 0.4)
    end)

    it("answers 504 after upstream_response, without multiplying it by retries", function()
        local slow1, slow2 = h.start_backend(), h.start_backend()
        local gw = h.start_gateway({ config = route_all({ slow1.address, slow2.address },
            { timeouts = { upstream_response = 1 } }) })
        local t0 = socket.gettime()
        local r = h.request(gw.port, { path = "/delay/3000" })
        local elapsed = socket.gettime() - t0
        assert.equal(504, r.status)
        assert.is_true(elapsed >= 0.9 and elapsed < 2.5, "took " .. elapsed)
    end)

    local broken = {
        { "garbage", "this is not http\r\n\r\n" },
        { "Content-Length with Transfer-Encoding",
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" },
        { "a bad status line", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n" },
        { "two different Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" },
        { "a header with whitespace before the colon", "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n" },
    }
    for _, case in ipairs(broken) do
        it("answers 502 to a backend that sends " .. case[1], function()
            local b = h.start_raw_backend({ response = case[2], close = true })
            local gw = h.start_gateway({ config = route_all({ b.address }) })
            assert.equal(502, h.request(gw.port, {}).status)
            gw:wait_log("invalid response")
        end)
    end

    it("answers 502 when a backend's chunk framing breaks in the first body bytes", function()
        -- the head is held back until body bytes arrive, so nothing has been
        -- sent to the client yet when the framing error shows
        local b = h.start_raw_backend({ close = true,
            response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n" })
        local gw = h.start_gateway({ config = route_all({ b.address }) })
        assert.equal(502, h.request(gw.port, {}).status)
        gw:wait_log("invalid response")
    end)

    it("frees the upstream connection when the client hangs up mid-response", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = route_all({ b.address }) })
        local base = cjson.decode(h.request(b.port, { path = "/stats" }).body).open_connections
        local c = h.connect(gw.port)
        c:send_request({ path = "/slowbody?n=40&ms=50" })
        c:read_raw(1)
        c:close()
        -- the backend's connection from the gateway closes once a write fails
        h.wait_until(function()
            return cjson.decode(h.request(b.port, { path = "/stats" }).body).open_connections <= base
        end, 5, "the backend connection to close")
        assert.equal(200, h.request(gw.port, {}).status)
    end)

    it("retries transparently when a pooled connection went stale", function()
        -- keeps connections open, then closes them silently after 0.3 s idle
        local b = h.start_raw_backend({ response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", idle_close = 0.3 })
        local gw = h.start_gateway({ config = route_all({ b.address }) })
        for _ = 1, 3 do
            assert.equal("ok", h.request(gw.port, {}).body)
            h.sleep(0.5)
        end
    end)

    -- A backend that shuts an idle connection just as the gateway reuses it
    -- (a replica draining on SIGTERM does exactly that): nothing came back,
    -- so the request goes again on a new connection, body included.
    it("replays a POST and its body when a reused connection closes unanswered", function()
        local b = h.start_raw_backend({ response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", answers = 1 })
        local gw = h.start_gateway({ config = route_all({ b.address }) })
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/first" })
        assert.equal("ok", c:read_response().body) -- pools the upstream connection
        local body = string.rep("p", 20000)
        c:send_request({ method = "POST", path = "/post", body = body })
        local r = c:read_response()
        assert.equal(200, r.status)
        assert.equal("ok", r.body)
        local st = b.stats()
        assert.equal(1, st.dropped)
        assert.equal(20000, st.last_body)
        c:close()
    end)

    -- Every replica of a scaled-down service closes its idle connections:
    -- each stale pooled connection costs a try, but none of the retries.
    it("does not charge a stale pooled connection to upstream.retries", function()
        local resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        local bs = {}
        for i = 1, 3 do bs[i] = h.start_raw_backend({ response = resp, answers = 1 }) end
        local gw = h.start_gateway({ config = route_all({ bs[1].address, bs[2].address, bs[3].address },
                                                       { upstream = { retries = 1 } }) })
        local c = assert(h.connect(gw.port))
        for _ = 1, 3 do
            c:send_request({ path = "/prime" })
            assert.equal("ok", c:read_response().body)
        end
        for i = 1, 3 do assert.equal(1, bs[i].stats().requests) end -- one pooled connection each
        c:send_request({ method = "POST", path = "/post", body = "payload" })
        local r = c:read_response()
        assert.equal(200, r.status)
        local dropped, answered = 0, 0
        for i = 1, 3 do
            local st = bs[i].stats()
            dropped, answered = dropped + st.dropped, answered + st.requests
        end
        assert.equal(4, answered)
        assert.is_true(dropped >= 2)
        c:close()
    end)

    it("answers 502 rather than replay a body too big to keep", function()
        local b = h.start_raw_backend({ response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", answers = 1 })
        local gw = h.start_gateway({ config = route_all({ b.address }) })
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/first" })
        assert.equal("ok", c:read_response().body)
        c:send_request({ method = "POST", path = "/big", body = string.rep("p", 200000) })
        assert.equal(502, c:read_response().status)
        c:close()
        assert.equal(200, h.request(gw.port, {}).status)
    end)

    it("keeps trying resting targets when all failed (panic mode)", function()
        local port = h.free_port()
        local gw = h.start_gateway({ config = route_all({ "127.0.0.1:" .. port }, { timeouts = { queue = 0 } }) })
        -- each refused connect makes the target rest longer (250 ms doubling):
        -- after six it rests for seconds, longer than a backend takes to start
        for _ = 1, 6 do assert.equal(502, h.request(gw.port, {}).status) end
        local b = h.start_backend({ port = port, name = "back" })
        local r = h.request(gw.port, {})
        assert.equal(200, r.status)
        assert.equal("back", r.headers["x-backend"])
        gw:wait_log("trying them anyway")
    end)

    it("holds 2000 idle client connections and still answers on them", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = route_all({ b.address }) })
        local conns = {}
        for i = 1, 2000 do conns[i] = assert(h.connect(gw.port)) end
        for i = 1, 2000, 20 do
            conns[i]:send_request({ path = "/idle" .. i })
            assert.equal(200, conns[i]:read_response().status)
        end
        for _, c in ipairs(conns) do c:close() end
    end)
end)
