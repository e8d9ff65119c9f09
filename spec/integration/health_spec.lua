-- Active health checks (plugins/health_http.lua run by the control plane).
local h = require("spec.helpers")
local cjson = require("cjson")
local socket = require("socket")

local function health_of(gw, address)
    local services = cjson.decode(h.request(gw.admin_port, { path = "/api/services" }).body)
    for _, t in ipairs(services[1].targets) do
        if t.address == address then return t.health end
    end
end

describe("health checks", function()
    after_each(h.cleanup)

    local function start(b1, b2, health)
        return h.start_gateway({ config = {
            workers = 2,
            services = { api = { targets = { b1.address, b2.address },
                                 health = health or { path = "/", interval = 0.3, timeout = 0.2, healthy = 1, unhealthy = 2 } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
    end

    it("probes new targets at once and marks them up", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local t0 = socket.gettime()
        local gw = start(b1, b2, { path = "/", interval = 30, timeout = 1, healthy = 1, unhealthy = 1 })
        h.wait_until(function() return health_of(gw, b1.address) == "up" end, 2, "the first probe")
        -- the interval is 30 s: only a probe at start explains this
        assert.is_true(socket.gettime() - t0 < 3)
    end)

    it("ejects a target whose backend stops within two intervals, and takes it back", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local gw = start(b1, b2)
        h.wait_until(function() return health_of(gw, b2.address) == "up" end, 2, "two up")
        local port2 = b2.port
        b2.stop()
        local t0 = socket.gettime()
        h.wait_until(function() return health_of(gw, b2.address) == "down" end, 3, "two down")
        assert.is_true(socket.gettime() - t0 < 2 * 0.3 + 0.6, "took " .. (socket.gettime() - t0))
        gw:wait_log("target " .. b2.address:gsub("%.", "%%.") .. " is down")
        -- while it is down, every request goes to the live one, none is retried
        for _ = 1, 6 do assert.equal("one", h.request(gw.port, {}).headers["x-backend"]) end
        local back = h.start_backend({ name = "two", port = port2 })
        h.wait_until(function() return health_of(gw, back.address) == "up" end, 3, "two back up")
        local seen = {}
        for _ = 1, 6 do seen[h.request(gw.port, {}).headers["x-backend"]] = true end
        assert.truthy(seen.two)
    end)

    it("sends traffic to all targets when all are down (panic mode)", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local gw = start(b1, b2, { path = "/status/500", interval = 0.2, timeout = 0.2, healthy = 1, unhealthy = 1 })
        h.wait_until(function() return health_of(gw, b1.address) == "down" and health_of(gw, b2.address) == "down" end, 3)
        gw:wait_log("every target is down; sending traffic to all of them")
        assert.equal(200, h.request(gw.port, {}).status)
    end)

    it("keeps health state across a config reload", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local gw = start(b1, b2, { path = "/", interval = 0.3, timeout = 0.2, healthy = 3, unhealthy = 1 })
        h.wait_until(function() return health_of(gw, b2.address) == "up" end, 2)
        b2.stop()
        h.wait_until(function() return health_of(gw, b2.address) == "down" end, 3)
        assert.equal(200, h.request(gw.admin_port, { method = "POST", path = "/api/reload" }).status)
        -- still down right after the reload: no fresh "unchecked" state
        assert.equal("down", health_of(gw, b2.address))
    end)
end)
