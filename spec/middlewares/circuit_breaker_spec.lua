-- circuit_breaker through the real gateway, and its expression language.
local h = require("spec.helpers")
local expr = require("moongate.breaker_expr")

local function stats(b) return h.json(h.request(b.port, { path = "/stats" })).requests end

local function gateway(target, mw)
    mw.plugin = "circuit_breaker"
    return h.start_gateway({ config = {
        upstream = { retries = 0 },
        timeouts = { queue = 0 }, -- a refused connect fails at once instead of waiting for a target
        services = { api = { targets = { target } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { mw } } },
    } })
end

describe("circuit breaker expressions", function()
    local m = {
        network_error_ratio = function() return 0.4 end,
        response_code_ratio = function(_, a, b, c, d) return (a == 500 and b == 600 and c == 0 and d == 600) and 0.3 or 0 end,
        latency_at_quantile_ms = function(_, q) return q == 50 and 120 or 0 end,
    }

    it("evaluates Traefik's functions, comparisons, && || ! and parentheses", function()
        local function eval(s) return assert(expr.compile(s))(m) end
        assert.is_true(eval("NetworkErrorRatio() > 0.30"))
        assert.is_false(eval("NetworkErrorRatio() > 0.5"))
        assert.is_true(eval("ResponseCodeRatio(500, 600, 0, 600) >= 0.3"))
        assert.is_true(eval("LatencyAtQuantileMS(50.0) > 100 && NetworkErrorRatio() < 0.5"))
        assert.is_true(eval("NetworkErrorRatio() > 0.9 || LatencyAtQuantileMS(50) == 120"))
        assert.is_false(eval("!(NetworkErrorRatio() > 0.3) || (NetworkErrorRatio() > 0.9 && LatencyAtQuantileMS(50) > 1)"))
    end)

    it("refuses what it cannot read", function()
        assert.is_nil(expr.compile("Nope() > 1"))
        assert.is_nil(expr.compile("ResponseCodeRatio(500, 600) > 0.1"))
        assert.is_nil(expr.compile("NetworkErrorRatio() >"))
        assert.is_nil(expr.compile("NetworkErrorRatio() > 0.1 &&"))
    end)
end)

describe("circuit_breaker", function()
    after_each(h.cleanup)

    it("opens on a response-code ratio, answers 503 itself, then recovers", function()
        local b = h.start_backend({ name = "api" })
        local gw = gateway(b.address, { expression = "ResponseCodeRatio(500, 600, 0, 600) > 0.5",
                                        check_period = 0, fallback_duration = 1, recovery_duration = 0.5 })
        assert.equal(200, h.request(gw.port, {}).status)
        assert.equal(500, h.request(gw.port, { path = "/status/500" }).status)
        assert.equal(500, h.request(gw.port, { path = "/status/500" }).status)
        local before = stats(b)
        local r = h.request(gw.port, {})
        assert.equal(503, r.status)
        assert.is_nil(r.headers["x-backend"])
        assert.equal(before + 1, stats(b)) -- only the /stats call itself
        gw:wait_log("circuit breaker open")
        -- after fallback_duration, probes go through and good answers close it
        h.wait_until(function() return h.request(gw.port, {}).status == 200 end, 3, "a probe")
        h.wait_until(function()
            for _ = 1, 5 do if h.request(gw.port, {}).status ~= 200 then return false end end
            return true
        end, 3, "closed again")
    end)

    it("opens on network errors", function()
        local dead = h.free_port()
        local gw = gateway("127.0.0.1:" .. dead, { expression = "NetworkErrorRatio() > 0.5", check_period = 0,
                                                    fallback_duration = 30, response_code = 503 })
        assert.equal(502, h.request(gw.port, {}).status)
        h.wait_until(function() return h.request(gw.port, {}).body == "Service Unavailable\n" end, 3, "open")
        gw:wait_log("circuit breaker open: NetworkErrorRatio")
    end)

    it("opens on latency at a quantile", function()
        local b = h.start_backend({ name = "api" })
        local gw = gateway(b.address, { expression = "LatencyAtQuantileMS(50.0) > 150", check_period = 0,
                                        fallback_duration = 30, response_code = 504 })
        assert.equal(200, h.request(gw.port, { path = "/delay/300" }).status)
        local r = h.request(gw.port, {})
        assert.equal(504, r.status)
        assert.is_nil(r.headers["x-backend"])
    end)

    it("stays closed while the expression does not hold", function()
        local b = h.start_backend({ name = "api" })
        local gw = gateway(b.address, { expression = "ResponseCodeRatio(500, 600, 0, 600) > 0.5", check_period = 0 })
        for _ = 1, 3 do assert.equal(200, h.request(gw.port, {}).status) end
        assert.equal(500, h.request(gw.port, { path = "/status/500" }).status)
        for _ = 1, 3 do assert.equal(200, h.request(gw.port, {}).status) end
        assert.equal(500, h.request(gw.port, { path = "/status/500" }).status)
        assert.equal(200, h.request(gw.port, {}).status)
    end)
end)
