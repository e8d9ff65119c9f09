-- The upstream connection pool: upstream.keepalive idle connections per
-- target stay for keepalive_timeout; the extra ones a burst needed stay for
-- keepalive_surplus_timeout, so the next burst reuses them instead of
-- opening (and the backend accepting) a new connection per request.
local h = require("spec.helpers")

local OK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

-- n requests at once, each on its own client connection, all answered.
local function burst(port, n)
    local cs = {}
    for i = 1, n do
        cs[i] = assert(h.connect(port))
        cs[i]:send_request({ path = "/burst" .. i })
    end
    for i = 1, n do
        assert.equal("ok", cs[i]:read_response().body, "request " .. i)
        cs[i]:close()
    end
end

-- Connections the backend accepted during fn (its own stats call excluded).
local function accepted(b, fn)
    local before = b.stats().connections
    fn()
    return b.stats().connections - before - 1
end

-- Stall probes off: a backend silent for a second while requests wait
-- would be probed on a connection of its own (and the count be off by one).
local function gateway(b, upstream)
    return h.start_gateway({ config = {
        workers = 1,
        timeouts = { upstream_stall = 0 },
        upstream = upstream,
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api" } },
    } })
end

describe("upstream pool", function()
    after_each(h.cleanup)

    it("keeps a burst's connections beyond upstream.keepalive for the next burst", function()
        -- each request holds its connection for 0.5 s, so 8 at once need 8
        -- (not longer: past a second the gateway would go again on a new
        -- connection, taking the silence for a full listen backlog)
        local b = h.start_raw_backend({ response = OK, delay = 0.5 })
        local gw = gateway(b, { keepalive = 2, keepalive_surplus_timeout = 30 })
        assert.equal(8, accepted(b, function() burst(gw.port, 8) end))
        assert.equal(0, accepted(b, function() burst(gw.port, 8) end))
        assert.equal(8, b.stats().open - 1)
    end)

    -- after the surplus timeout (0: at once) only upstream.keepalive stay
    for _, case in ipairs({ { 0.5, "after keepalive_surplus_timeout" }, { 0, "at once with a timeout of 0" } }) do
        it("closes the surplus " .. case[2] .. ", down to upstream.keepalive", function()
            local b = h.start_raw_backend({ response = OK, delay = 0.5 })
            local gw = gateway(b, { keepalive = 2, keepalive_surplus_timeout = case[1] })
            burst(gw.port, 8)
            h.wait_until(function() return b.stats().open - 1 == 2 end, 5, "the pool back to 2 connections")
            assert.equal(6, accepted(b, function() burst(gw.port, 8) end))
        end)
    end
end)
