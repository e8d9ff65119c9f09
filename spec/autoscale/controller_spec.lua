-- The autoscaler's controller in the real gateway: figures from the
-- gateway's own counters, decisions logged with their inputs, shown by
-- /api/services and /metrics. No actuator here (no Docker): the decision
-- alone is checked; e2e/autoscale_test.sh acts on a real engine.
local h = require("spec.helpers")
local cjson = require("cjson")

local function autoscale_of(gw, name)
    local services = cjson.decode(h.request(gw.admin_port, { path = "/api/services" }).body)
    for _, s in ipairs(services) do
        if s.name == name then return s.autoscale end
    end
end

describe("the autoscale controller", function()
    after_each(h.cleanup)

    it("asks for more replicas under load and shows why", function()
        local b = h.start_backend({ name = "one" })
        local gw = h.start_gateway({ config = {
            workers = 2,
            services = { api = { targets = { b.address },
                                 autoscale = { min = 1, max = 4, target = 2, scale_down_window = 1 } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        h.wait_until(function() local a = autoscale_of(gw, "api"); return a and a.desired == 1 end, 5, "a first tick")
        -- 8 slow requests in flight on one replica, target 2: 4 replicas
        local conns = {}
        for i = 1, 8 do
            conns[i] = h.connect(gw.port)
            conns[i]:send_request({ path = "/delay/2500" })
        end
        h.wait_until(function() local a = autoscale_of(gw, "api"); return a and a.desired == 4 end, 5, "desired 4")
        local a = autoscale_of(gw, "api")
        assert.equal(1, a.replicas)
        assert.equal(4, a.max)
        assert.equal(1, a.decisions[1].from)
        assert.equal(4, a.decisions[1].to)
        assert.matches("in%-flight", a.decisions[1].inputs)
        gw:wait_log("service api: 1 %-> 4 replicas")
        local metrics = h.request(gw.admin_port, { path = "/metrics" }).body
        assert.matches('moongate_autoscale_desired_replicas{service="api"} 4', metrics, 1, true)
        assert.matches('moongate_autoscale_replicas{service="api"} 1', metrics, 1, true)
        for _, c in ipairs(conns) do
            assert.equal(200, c:read_response({ timeout = 5 }).status)
            c:close()
        end
        -- the load is gone and the 1 s window passes: back to min
        h.wait_until(function() local x = autoscale_of(gw, "api"); return x and x.desired == 1 end, 6, "desired 1")
    end)

    it("has its actuator act on the decision", function()
        local dir = h.tmpdir()
        local sock = dir .. "/docker.sock"
        h.spawn({ "python3", "spec/support/engine_replay.py", "--socket", sock })
        h.wait_until(function() return require("posix.sys.stat").stat(sock) ~= nil end, 5, "the replay socket")
        local b = h.start_backend({ name = "one" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address },
                                 autoscale = { min = 1, max = 3, target = 2, endpoint = "unix://" .. sock,
                                               compose = { project = "mgasrec", service = "api" } } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local conns = {}
        for i = 1, 6 do
            conns[i] = h.connect(gw.port)
            conns[i]:send_request({ path = "/delay/2000" })
        end
        local function created()
            local p = io.popen("curl -s --unix-socket " .. sock .. " http://engine/__calls")
            local calls = cjson.decode(p:read("*a"))
            p:close()
            local names = {}
            for _, c in ipairs(calls) do
                if c.path == "/v1.41/containers/create" then names[#names + 1] = c.query.name end
            end
            table.sort(names)
            return #names == 2 and names
        end
        assert.same({ "mgasrec_api_2", "mgasrec_api_3" }, h.wait_until(created, 5, "two replicas created"))
        gw:wait_log("service api: started mgasrec_api_3")
        for _, c in ipairs(conns) do c:close() end
    end)

    it("wakes a service at zero on its first held request", function()
        local gw = h.start_gateway({ config = {
            timeouts = { queue = 3 },
            services = { cold = { targets = {}, autoscale = { min = 0, max = 2, target = 4 } } },
            routes = { { rule = "PathPrefix(`/`)", service = "cold" } },
        } })
        h.wait_until(function() local a = autoscale_of(gw, "cold"); return a and a.desired == 0 end, 5, "a first tick")
        local c = h.connect(gw.port)
        c:send_request({ path = "/" })
        h.wait_until(function() local a = autoscale_of(gw, "cold"); return a and a.desired == 1 end, 2, "desired 1")
        gw:wait_log("service cold: 0 %-> 1 replicas .*queued 1")
        -- nothing starts a replica here: the request times out as held ones do
        assert.equal(503, c:read_response({ timeout = 6 }).status)
        c:close()
    end)

    it("runs a policy from plugins_dir", function()
        local b = h.start_backend({ name = "one" })
        local gw = h.start_gateway({
            plugins = { always3 = 'return { type = "autoscaler", decide = function() return 3, "always" end }' },
            config = {
                services = { api = { targets = { b.address }, autoscale = { max = 5, policy = "always3" } } },
                routes = { { rule = "PathPrefix(`/`)", service = "api" } },
            },
        })
        h.wait_until(function() local a = autoscale_of(gw, "api"); return a and a.desired == 3 end, 5, "desired 3")
        gw:wait_log("service api: 1 %-> 3 replicas %(always%)")
    end)

    it("rejects bad settings with the file and the key", function()
        local b = h.start_backend({ name = "one" })
        local dir = h.tmpdir()
        h.write_file(dir .. "/moongate.lua", "return { listen = '127.0.0.1:" .. h.free_port() .. "',\n"
            .. "services = { api = { targets = { '" .. b.address .. "' },\n"
            .. "  autoscale = { min = 3, max = 2 } } } }\n")
        local p = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1")
        local out = p:read("*a")
        p:close()
        assert.matches("services%.api%.autoscale: min %(3%) is above max %(2%)", out)
        h.write_file(dir .. "/moongate.lua", "return { listen = '127.0.0.1:" .. h.free_port() .. "',\n"
            .. "services = { api = { targets = { '" .. b.address .. "' },\n"
            .. "  autoscale = { policy = 'nope' } } } }\n")
        p = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1")
        out = p:read("*a")
        p:close()
        assert.matches("services%.api%.autoscale%.policy: no plugin 'nope'", out)
    end)
end)
