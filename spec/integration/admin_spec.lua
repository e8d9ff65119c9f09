-- The admin API: what it reports must match what the gateway did.
local h = require("spec.helpers")
local cjson = require("cjson")

local function admin(gw, path, opts)
    opts = opts or {}
    return h.request(gw.admin_port, { method = opts.method, path = path, headers = opts.headers })
end

-- A strict reader of the Prometheus text format (0.0.4): every sample
-- belongs to a declared metric, names and labels are well-formed, values
-- are numbers, histogram buckets are cumulative and end at +Inf = _count.
local function parse_metrics(text)
    local types, samples = {}, {}
    for line in text:gmatch("[^\n]+") do
        if line:sub(1, 1) == "#" then
            local kind, name, rest = line:match("^# (%u+) ([%a_:][%w_:]*) (.+)$")
            assert(kind == "HELP" or kind == "TYPE", "bad comment line: " .. line)
            if kind == "TYPE" then
                assert(({ counter = 1, gauge = 1, histogram = 1, summary = 1, untyped = 1 })[rest], line)
                types[name] = rest
            end
        else
            local name, labels, value = line:match("^([%a_:][%w_:]*)(%b{}) (%S+)$")
            if not name then
                name, value = line:match("^([%a_:][%w_:]*) (%S+)$")
                labels = "{}"
            end
            assert(name, "bad sample line: " .. line)
            local v = tonumber(value) or (value == "+Inf" and math.huge)
            assert(v, "bad value: " .. line)
            local base = name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
            assert(types[name] or types[base], "sample before its TYPE: " .. line)
            local l = {}
            for k, val in labels:sub(2, -2):gmatch('([%a_][%w_]*)="([^"]*)"') do l[k] = val end
            samples[#samples + 1] = { name = name, labels = l, value = v }
        end
    end
    return types, samples
end

local function find(samples, name, labels)
    for _, s in ipairs(samples) do
        if s.name == name then
            local ok = true
            for k, v in pairs(labels or {}) do if s.labels[k] ~= v then ok = false end end
            if ok then return s.value end
        end
    end
end

describe("admin API", function()
    after_each(h.cleanup)

    local function start()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b1.address, b2.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        return gw, b1, b2
    end

    it("answers /ping", function()
        local gw = start()
        local r = admin(gw, "/ping")
        assert.equal(200, r.status)
        assert.equal("ok\n", r.body)
    end)

    it("reports per-target requests that match the requests sent", function()
        local gw, b1, b2 = start()
        for _ = 1, 6 do h.request(gw.port, {}) end
        h.request(gw.port, { path = "/status/503" })
        -- a worker counts a request right after its last byte went out
        local services
        h.wait_until(function()
            services = cjson.decode(admin(gw, "/api/services").body)
            return services[1].requests == 7
        end, 2, "7 requests counted")
        assert.equal(1, #services)
        local s = services[1]
        assert.equal("api", s.name)
        assert.equal("roundrobin", s.balancer)
        assert.equal(7, s.requests)
        assert.equal(1, s.errors)
        local by_addr = {}
        for _, t in ipairs(s.targets) do by_addr[t.address] = t end
        assert.equal(7, by_addr[b1.address].requests + by_addr[b2.address].requests)
        assert.equal(6, by_addr[b1.address].status["2xx"] + by_addr[b2.address].status["2xx"])
        assert.equal(0, by_addr[b1.address].inflight)
    end)

    it("lists routes with their priority", function()
        local gw = start()
        local routes = cjson.decode(admin(gw, "/api/routes").body)
        assert.same({ rule = "PathPrefix(`/`)", service = "api", priority = 15, middlewares = false }, routes[1])
    end)

    it("reloads on POST /api/reload and shows it in /api/plugins", function()
        local gw = start()
        assert.equal(405, admin(gw, "/api/reload").status)
        local r = admin(gw, "/api/reload", { method = "POST" })
        assert.equal(200, r.status)
        assert.equal(2, cjson.decode(r.body).snapshot_version)
        local p = cjson.decode(admin(gw, "/api/plugins").body)
        assert.equal(1, p.reloads)
        assert.is_true(p.last_reload_ok)
        h.write_file(gw.config_path, "return { listen = 5 }")
        r = admin(gw, "/api/reload", { method = "POST" })
        assert.equal(500, r.status)
        assert.truthy(cjson.decode(r.body).error:find("listen"))
        assert.equal(200, h.request(gw.port, {}).status)
    end)

    it("serves Prometheus metrics that parse and count what happened", function()
        local gw, b1 = start()
        for _ = 1, 4 do h.request(gw.port, {}) end
        h.wait_until(function()
            return cjson.decode(admin(gw, "/api/services").body)[1].requests == 4
        end, 2, "4 requests counted")
        local r = admin(gw, "/metrics")
        assert.equal(200, r.status)
        assert.truthy(r.headers["content-type"]:find("text/plain", 1, true))
        local types, samples = parse_metrics(r.body)
        assert.equal("counter", types.moongate_requests_total)
        assert.equal("histogram", types.moongate_request_duration_seconds)
        assert.equal(2, find(samples, "moongate_requests_total", { target = b1.address, code = "2xx" }))
        local count = find(samples, "moongate_request_duration_seconds_count", { target = b1.address })
        assert.equal(count, find(samples, "moongate_request_duration_seconds_bucket", { target = b1.address, le = "+Inf" }))
        assert.equal(1, find(samples, "moongate_snapshot_version"))
        assert.equal("gauge", types.moongate_target_up)
        assert.equal(1, find(samples, "moongate_target_up", { target = b1.address }))
        assert.is_number(find(samples, "moongate_open_connections"))
    end)

    it("requires the bearer token when one is configured", function()
        local b = h.start_backend()
        local port = h.free_port()
        local gw = h.start_gateway({ config = {
            admin = { listen = "127.0.0.1:" .. port, token = "s3cret-token" },
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        assert.equal(401, admin(gw, "/api/services").status)
        assert.equal(401, admin(gw, "/api/services", { headers = { Authorization = "Bearer nope" } }).status)
        assert.equal(200, admin(gw, "/api/services", { headers = { Authorization = "Bearer s3cret-token" } }).status)
        assert.equal(200, admin(gw, "/ping").status)
    end)

    it("says 503 on /ping while shutting down", function()
        local gw, b1 = start()
        local c = h.connect(gw.port)
        c:send_request({ path = "/delay/1500" })
        h.sleep(0.2)
        require("posix.signal").kill(gw:pid(), require("posix.signal").SIGTERM)
        h.wait_until(function() return admin(gw, "/ping").status == 503 end, 2, "/ping to say 503")
        assert.equal(200, c:read_response().status)
        assert.equal(0, h.reap(gw.proc, 5))
    end)
end)
