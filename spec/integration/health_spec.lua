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
        -- and it came within 100 ms of the gateway starting (log timestamps)
        local log = gw:error_log()
        local function at(pattern)
            local hh, mm, ss = log:match("T(%d%d):(%d%d):(%d%d%.%d%d%d)Z [^\n]*" .. pattern)
            return tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
        end
        local started, up = at("listening on"), at("target " .. b1.address:gsub("%.", "%%.") .. " is up")
        assert.is_true(up - started < 0.1 * h.slow, "first probe after " .. (up - started) .. " s")
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

describe("passive health", function()
    after_each(h.cleanup)

    it("ejects a backend answering 500s without any active probe, then tries it again", function()
        local bad = h.start_raw_backend({ response = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail" })
        local good = h.start_backend({ name = "good" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { bad.address, good.address },
                                 health = { active = false, passive_failures = 2, passive_cooldown = 0.5 } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local fails = 0
        for _ = 1, 4 do
            if h.request(gw.port, {}).status == 500 then fails = fails + 1 end
        end
        assert.equal(2, fails) -- round robin sent two to the bad one, then it was ejected
        gw:wait_log("ejected after 2 consecutive failures")
        for _ = 1, 8 do assert.equal("good", h.request(gw.port, {}).headers["x-backend"]) end
        assert.equal(0, bad.stats().requests - 2)
        assert.equal("ejected", (function()
            for _, t in ipairs(cjson.decode(h.request(gw.admin_port, { path = "/api/services" }).body)[1].targets) do
                if t.address == bad.address then return t.health end
            end
        end)())
        -- after the cool-down it gets traffic again (and is ejected again, for longer)
        h.sleep(0.7)
        local saw500 = false
        for _ = 1, 4 do if h.request(gw.port, {}).status == 500 then saw500 = true end end
        assert.is_true(saw500)
    end)
end)

describe("losing a backend under load", function()
    after_each(h.cleanup)

    it("fails no GET when one of three backends stops", function()
        local bs = { h.start_backend({ name = "a" }), h.start_backend({ name = "b" }), h.start_backend({ name = "c" }) }
        local gw = h.start_gateway({ config = {
            workers = 2,
            services = { api = { targets = { bs[1].address, bs[2].address, bs[3].address },
                                 health = { interval = 0.3, timeout = 0.2, healthy = 1, unhealthy = 2 } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local conns = {}
        for i = 1, 6 do conns[i] = h.connect(gw.port) end
        local total, failed, stopped_at = 0, 0, nil
        local t0 = socket.gettime()
        while socket.gettime() - t0 < 3 * h.slow and total < 30000 do
            for i, c in ipairs(conns) do
                c:send_request({ path = "/load" })
                local r = c:read_response()
                total = total + 1
                if not r or r.status ~= 200 then
                    failed = failed + 1
                    c:close()
                    conns[i] = h.connect(gw.port)
                end
            end
            if not stopped_at and socket.gettime() - t0 > 0.8 then
                bs[2].stop()
                stopped_at = socket.gettime()
            end
        end
        for _, c in ipairs(conns) do c:close() end
        assert.equal(0, failed, "failed GETs out of " .. total)
        assert.truthy(stopped_at)
        gw:wait_log("target " .. bs[2].address:gsub("%.", "%%.") .. " is down", 1)
    end)
end)
