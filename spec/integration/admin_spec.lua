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
        assert.same({ rule = "PathPrefix(`/`)", service = "api", priority = 15, middlewares = false, chain = {} }, routes[1])
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

    -- Old JIT traces held every earlier plugin generation alive: memory
    -- grew with every reload under traffic, without bound.
    it("reports each Lua heap, which stays bounded across reloads under traffic", function()
        local b1 = h.start_backend({ name = "one" })
        local gw = h.start_gateway({ config = {
            workers = 1,
            services = { api = { targets = { b1.address } } },
            middlewares = { tag = { plugin = "headers", response = { set = { ["X-Tag"] = "t" } } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { "tag" } } },
        } })
        local function heap(state)
            local _, samples = parse_metrics(admin(gw, "/metrics").body)
            return find(samples, "moongate_lua_memory_bytes", { state = state })
        end
        local function traffic(n)
            local c = assert(h.connect(gw.port))
            for _ = 1, n do c:send_request({ path = "/x" }) end
            for _ = 1, n do assert.equal("t", c:read_response().headers["x-tag"]) end
            c:close()
        end
        local function reloads(n)
            for _ = 1, n do
                traffic(120)
                assert.equal(200, admin(gw, "/api/reload", { method = "POST" }).status)
            end
            traffic(120)
        end
        local function rss()
            local f = assert(io.open("/proc/" .. gw:pid() .. "/status"))
            local kb = f:read("*a"):match("VmRSS:%s*(%d+)")
            f:close()
            return tonumber(kb) * 1024
        end
        reloads(10)
        h.wait_until(function() return heap("worker-1") and heap("control") end, 3, "both heaps reported")
        local before, rss_before = heap("worker-1"), rss()
        reloads(100)
        h.wait_until(function() return heap("worker-1") < before + 1024 * 1024 end, 5,
                     "worker heap back under 1 MiB above " .. before)
        -- compiled code is not on the Lua heap: RSS shows what traces pin
        -- (about 18 KB a reload before the fix, 4 KB after)
        -- (ASan's allocator keeps freed memory in quarantine: no RSS there)
        local grown = rss() - rss_before
        assert(h.sanitized or grown < 1024 * 1024, "RSS grew " .. grown .. " bytes over 100 reloads")
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

    it("answers JSON without indentation with ?compact=1", function()
        local gw = start()
        local pretty = admin(gw, "/api/services").body
        local compact = admin(gw, "/api/services?compact=1").body
        assert.truthy(pretty:find("\n  ", 1, true))
        assert.is_nil(compact:find("\n", 1, true))
        assert.same(cjson.decode(pretty)[1].name, cjson.decode(compact)[1].name)
    end)

    it("lists each route's middleware chain by name and plugin", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = {
            middlewares = { tagged = { plugin = "headers", response = { ["X-Tag"] = "1" } } },
            services = { api = { targets = { b.address } } },
            routes = {
                { rule = "PathPrefix(`/a`)", service = "api", middlewares = { "tagged", { plugin = "strip_prefix", prefixes = { "/a" } } } },
                { rule = "PathPrefix(`/`)", service = "api" },
            },
        } })
        local routes = cjson.decode(admin(gw, "/api/routes").body)
        local by_rule = {}
        for _, r in ipairs(routes) do by_rule[r.rule] = r end
        assert.is_true(by_rule["PathPrefix(`/a`)"].middlewares)
        assert.same({ { name = "tagged", plugin = "headers" }, { name = "strip_prefix", plugin = "strip_prefix" } },
            by_rule["PathPrefix(`/a`)"].chain)
        assert.same({}, by_rule["PathPrefix(`/`)"].chain)
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

-- Target states: one combined state per target, with a reason and a time,
-- the same in /api/services and /metrics.
describe("admin API target states", function()
    after_each(h.cleanup)

    local function target(gw, address, path)
        for _, s in ipairs(cjson.decode(admin(gw, path or "/api/services").body)) do
            for _, t in ipairs(s.targets) do
                if t.address == address then return t, s end
            end
        end
    end

    local function removed_target(gw, address)
        for _, s in ipairs(cjson.decode(admin(gw, "/api/services?removed=1").body)) do
            for _, t in ipairs(s.removed_targets) do
                if t.address == address then return t, s end
            end
        end
    end

    it("shows a target ejected by passive checks as ejected, with the reason and since when", function()
        local bad = h.start_raw_backend({ response = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nfail" })
        local good = h.start_backend({ name = "good" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { bad.address, good.address },
                                 health = { active = false, passive_failures = 2, passive_cooldown = 30 } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local before = os.time()
        for _ = 1, 4 do h.request(gw.port, {}) end
        local t = h.wait_until(function()
            local t = target(gw, bad.address)
            return t.state == "ejected" and t
        end, 3, "the 503 backend to be ejected")
        assert.equal("ejected", t.health) -- the field that predates state keeps its meaning
        assert.is_false(t.serving)
        assert.truthy(t.reason:find("2 consecutive failures", 1, true), t.reason)
        assert.truthy(t.reason:find("status 503", 1, true), t.reason) -- the core reports the kind
        assert.is_true(t.since >= before - 1 and t.since <= os.time() + 1)
        assert.is_true(t.checks.passive.ejected)
        assert.equal(1, t.checks.passive.ejections)
        assert.is_true(t.checks.passive["until"] > t.since + 25)
        assert.equal(cjson.null, t.checks.active)
        assert.equal("up", target(gw, good.address).state)
        local _, samples = parse_metrics(admin(gw, "/metrics").body)
        assert.equal(1, find(samples, "moongate_target_state", { target = bad.address, state = "ejected" }))
        assert.equal(0, find(samples, "moongate_target_state", { target = bad.address, state = "up" }))
        assert.equal(0, find(samples, "moongate_target_up", { target = bad.address }))
        assert.equal(1, find(samples, "moongate_passive_ejections_total", { target = bad.address }))
        assert.near(t.since, find(samples, "moongate_target_state_since_seconds", { target = bad.address }), 0.01)
        local events = cjson.decode(admin(gw, "/api/events").body).events
        local ev = events[#events]
        assert.equal("ejected", ev.kind)
        assert.equal(bad.address, ev.address)
        assert.equal(t.reason, ev.reason)
    end)

    it("shows a target whose probe fails as down, with the probe's reason", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b1.address, b2.address },
                                 health = { path = "/", interval = 0.2, timeout = 0.5, healthy = 1, unhealthy = 1 } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        h.wait_until(function() return target(gw, b2.address).checks.active.state == "up" end, 3, "the first probe")
        b2.stop()
        local t = h.wait_until(function()
            local t = target(gw, b2.address)
            return t.state == "down" and t
        end, 3, "the stopped backend to be down")
        assert.equal("down", t.health)
        assert.truthy(t.reason:find("^probe failed: "), t.reason)
        assert.equal("down", t.checks.active.state)
        assert.truthy(#t.checks.active.reason > 0)
        assert.is_true(t.since > 0)
        assert.equal("up", target(gw, b1.address).state)
        local _, samples = parse_metrics(admin(gw, "/metrics").body)
        assert.equal(1, find(samples, "moongate_target_state", { target = b2.address, state = "down" }))
        local kinds = {}
        for _, e in ipairs(cjson.decode(admin(gw, "/api/events").body).events) do kinds[e.kind] = e end
        assert.equal(b2.address, kinds.down.address)
    end)

    it("shows a target whose connects fail as down, without any health check", function()
        local b = h.start_backend()
        local dead = "127.0.0.1:" .. h.free_port()
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { dead, b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        -- every failed connect makes it rest longer (from 250 ms), then it is tried again
        local t = h.wait_until(function()
            assert.equal(200, h.request(gw.port, {}).status)
            local t = target(gw, dead)
            return t.state == "down" and t
        end, 3, "the dead target to be down")
        assert.truthy(t.reason:find("^connect failed; the next try in"), t.reason)
        assert.is_false(t.serving)
        assert.is_true(t.since > 0)
        assert.equal("up", target(gw, b.address).state)
    end)

    it("keeps a removed target listed with its final counts, and records the scale event", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local config = {
            services = { api = { targets = { { address = b1.address, id = "api-1" }, { address = b2.address, id = "api-2" } } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        }
        local gw = h.start_gateway({ config = config })
        for _ = 1, 6 do assert.equal(200, h.request(gw.port, {}).status) end
        h.wait_until(function() return target(gw, b2.address).requests == 3 end, 2, "3 requests on two")
        config.services.api.targets = { { address = b1.address, id = "api-1" } }
        h.write_file(gw.config_path, "return " .. h.serialize(config))
        assert.equal(200, admin(gw, "/api/reload", { method = "POST" }).status)
        local t, s = removed_target(gw, b2.address)
        assert.equal("api", s.name)
        assert.is_false(s.removed)
        assert.equal(1, #s.targets)
        assert.equal("api-2", t.id)
        assert.equal("removed", t.state)
        assert.equal(3, t.requests)
        assert.equal(3, t.status["2xx"])
        assert.is_true(t.removed_at > 0)
        assert.equal(t.removed_at, t.since)
        assert.is_false(t.serving)
        local scale
        for _, e in ipairs(cjson.decode(admin(gw, "/api/events").body).events) do
            if e.kind == "scale" then scale = e end
        end
        assert.same({ service = "api", from = 2, to = 1, added = {}, removed = { "api-2" } },
            { service = scale.service, from = scale.from, to = scale.to, added = scale.added, removed = scale.removed })
        local _, samples = parse_metrics(admin(gw, "/metrics").body)
        assert.equal(1, find(samples, "moongate_target_state", { target = b2.address, state = "removed" }))
        assert.is_nil(find(samples, "moongate_requests_total", { target = b2.address }))
        -- coming back within the retention, it is one target again with its counts
        config.services.api.targets = { { address = b1.address, id = "api-1" }, { address = b2.address, id = "api-2" } }
        h.write_file(gw.config_path, "return " .. h.serialize(config))
        assert.equal(200, admin(gw, "/api/reload", { method = "POST" }).status)
        assert.is_nil(removed_target(gw, b2.address))
        local back = target(gw, b2.address)
        assert.equal("up", back.state)
        assert.equal(3, back.requests)
    end)

    it("keeps a service that is gone listed with ?removed=1 only", function()
        local b = h.start_backend()
        local config = {
            services = { api = { targets = { b.address } }, old = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        }
        local gw = h.start_gateway({ config = config })
        config.services.old = nil
        h.write_file(gw.config_path, "return " .. h.serialize(config))
        assert.equal(200, admin(gw, "/api/reload", { method = "POST" }).status)
        local body = admin(gw, "/api/services").body
        local plain = cjson.decode(body)
        assert.equal(1, #plain, body)
        local all = cjson.decode(admin(gw, "/api/services?removed=1").body)
        assert.equal(2, #all)
        assert.equal("old", all[2].name)
        assert.is_true(all[2].removed)
        assert.same({}, all[2].targets)
        assert.equal("removed", all[2].removed_targets[1].state)
    end)

    it("shows a removed target with requests in flight as draining until they finish", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local config = {
            services = { api = { targets = { b1.address, b2.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        }
        local gw = h.start_gateway({ config = config })
        assert.equal("one", h.request(gw.port, {}).headers["x-backend"]) -- the next goes to two
        local c = h.connect(gw.port)
        c:send_request({ path = "/delay/1500" })
        h.wait_until(function() return target(gw, b2.address).inflight == 1 end, 2, "the slow request in flight")
        config.services.api.targets = { b1.address }
        h.write_file(gw.config_path, "return " .. h.serialize(config))
        assert.equal(200, admin(gw, "/api/reload", { method = "POST" }).status)
        local t = removed_target(gw, b2.address)
        assert.equal("draining", t.state)
        assert.is_true(t.draining)
        assert.truthy(t.reason:find("1 request in flight", 1, true), t.reason)
        local r = c:read_response()
        assert.equal(200, r.status)
        assert.equal("two", r.headers["x-backend"])
        h.wait_until(function() return removed_target(gw, b2.address).state == "removed" end, 2, "the drain to end")
        assert.equal(1, removed_target(gw, b2.address).requests)
    end)

    it("records reloads that work and reloads that fail, with the error", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local first = cjson.decode(admin(gw, "/api/events").body)
        assert.equal("start", first.events[1].kind)
        assert.is_number(first.now)
        assert.equal(200, admin(gw, "/api/reload", { method = "POST" }).status)
        h.write_file(gw.config_path, "return { listen = 5 }")
        assert.equal(500, admin(gw, "/api/reload", { method = "POST" }).status)
        local later = cjson.decode(admin(gw, "/api/events?since=" .. first.next).body)
        -- the file watcher may see the broken file too and try it once more
        assert.is_true(#later.events == 2 or #later.events == 3, "events: " .. #later.events)
        assert.equal("reload", later.events[1].kind)
        assert.is_true(later.events[1].ok)
        assert.equal(2, later.events[1].version)
        for i = 2, #later.events do
            assert.equal("reload", later.events[i].kind)
            assert.is_false(later.events[i].ok)
            assert.truthy(later.events[i].error:find("listen", 1, true))
        end
        assert.equal(first.next + #later.events, later.next)
        assert.same({}, cjson.decode(admin(gw, "/api/events?since=" .. later.next).body).events)
        local errors = cjson.decode(admin(gw, "/api/errors").body).errors
        assert.equal("reload", errors[#errors].kind)
        assert.truthy(errors[#errors].message:find("listen", 1, true))
    end)

    it("records upstream errors per target in /api/errors", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { { address = b.address, id = "api-1" } } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        for _ = 1, 3 do assert.equal(502, h.request(gw.port, { path = "/status/502" }).status) end
        local e = h.wait_until(function()
            local errors = cjson.decode(admin(gw, "/api/errors").body).errors
            local n = 0
            for _, x in ipairs(errors) do n = n + x["5xx"] end
            return n == 3 and errors[#errors]
        end, 3, "three 5xx in the error ring")
        assert.equal("upstream", e.kind)
        assert.equal("api", e.service)
        assert.equal("api-1", e.target)
        assert.equal(b.address, e.address)
        assert.truthy(e.message:find("× 5xx", 1, true))
    end)

    it("gives each target's requests per second, one sample a second", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local sent = 0
        local t = h.wait_until(function()
            for _ = 1, 5 do h.request(gw.port, {}); sent = sent + 1 end
            local t = target(gw, b.address, "/api/services?history=60")
            return #t.history.requests >= 3 and t.rate > 0 and t
        end, 10, "three samples with traffic")
        local sum = 0
        for _, v in ipairs(t.history.requests) do sum = sum + v end
        assert.is_true(sum > 0)
        assert.equal(#t.history.requests, #t.history.errors)
        assert.equal(1, t.history.step)
        assert.is_true(sent >= t.requests - 0 and t.requests > 0)
        assert.is_nil(target(gw, b.address).history) -- only when asked for
    end)
end)
