-- retry through the real gateway: a backend that drops every connection
-- before answering (a network error), next to one that answers.
local h = require("spec.helpers")
local socket = require("socket")

local function gateway(targets, mws, extra)
    local cfg = {
        upstream = { retries = 0 }, -- the gateway's own retries off: only the middleware's
        services = { api = { targets = targets } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = mws } },
    }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return h.start_gateway({ config = cfg })
end

describe("retry", function()
    after_each(h.cleanup)

    it("tries another target after a network error", function()
        local drop = h.start_raw_backend({ response = "", close = true })
        local good = h.start_backend({ name = "good" })
        local bare = gateway({ drop.address, good.address }, nil)
        local failed = 0
        for _ = 1, 4 do
            if h.request(bare.port, {}).status == 502 then failed = failed + 1 end
        end
        assert.truthy(failed >= 1, "without retry some requests should fail")
        local before = drop.stats().connections
        local gw = gateway({ drop.address, good.address }, { { plugin = "retry", attempts = 2, initial_interval = 0 } })
        for _ = 1, 6 do
            local r = h.request(gw.port, {})
            assert.equal(200, r.status)
            assert.equal("good", r.headers["x-backend"])
        end
        assert.truthy(drop.stats().connections - before - 1 >= 1, "the dropping backend was never tried")
    end)

    it("makes `attempts` tries with a doubling backoff, then answers 502", function()
        local drop = h.start_raw_backend({ response = "", close = true })
        local gw = gateway({ drop.address }, { { plugin = "retry", attempts = 3, initial_interval = 0.3 } })
        local before = drop.stats().connections -- its own, and the start-up probe's
        local t0 = socket.gettime()
        local r = h.request(gw.port, {})
        local took = socket.gettime() - t0
        assert.equal(502, r.status)
        assert.equal(3, drop.stats().connections - before - 1) -- less the stats call's
        assert.truthy(took >= 0.85, "took " .. took .. " s, expected 0.3 + 0.6")
        assert.truthy(took < 5, "took " .. took .. " s")
    end)

    it("does not retry an answer, even a 500", function()
        local b = h.start_backend({ name = "api" })
        local gw = gateway({ b.address }, { { plugin = "retry", attempts = 3 } })
        assert.equal(500, h.request(gw.port, { path = "/status/500" }).status)
        assert.equal(2, h.json(h.request(b.port, { path = "/stats" })).requests)
    end)
end)
