-- Replicas coming and going under load: nothing lost while targets die,
-- drain, freeze or are all missing for a moment, and bursts that a small
-- backend cannot accept at once.
local h = require("spec.helpers")
local socket = require("socket")
local cjson = require("cjson")

-- A backend's own counters, asked on its own address.
local function stats(b)
    local s = assert(socket.connect(b.address:match("^(.*):"), b.port))
    s:settimeout(5)
    s:send("GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local data = s:receive("*a")
    s:close()
    return cjson.decode(data:match("\r\n\r\n(.*)$"))
end

-- A dns provider reading a hosts file, so a spec changes membership by
-- rewriting the file; returns the gateway and a function to set the names.
local function discovered(port, extra)
    local dir = h.tmpdir()
    local hosts = dir .. "/hosts"
    h.write_file(hosts, "")
    local cfg = {
        workers = 2,
        providers = { dns = { interval = 0.05, hosts_file = hosts,
                              services = { api = { host = "api.test", port = port } } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api" } },
    }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    local gw = h.start_gateway({ config = cfg })
    return gw, function(addrs)
        local lines = {}
        for _, a in ipairs(addrs) do lines[#lines + 1] = a .. " api.test\n" end
        h.write_file(hosts .. ".tmp", table.concat(lines))
        os.rename(hosts .. ".tmp", hosts)
    end
end

describe("churn", function()
    after_each(h.cleanup)

    it("loses no request while most targets die (scale from 4 to 1)", function()
        local live = h.start_backend({ name = "live" })
        local dead = {}
        for i = 1, 3 do dead[i] = "127.0.0.1:" .. h.free_port() end
        local gw = h.start_gateway({ config = {
            workers = 2,
            services = { api = { targets = { dead[1], dead[2], dead[3], live.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        -- every request, from its first, must end on the live one: refused
        -- connects cost nothing from the retry budget
        for i = 1, 40 do
            local r = h.request(gw.port, { path = "/n" .. i })
            assert.equal(200, r.status, "request " .. i)
            assert.equal("live", r.headers["x-backend"])
        end
    end)

    it("opens no new connection to a removed target, from any worker", function()
        local port = h.free_port()
        local a = h.start_backend({ name = "a", port = port })
        local b = h.start_backend({ name = "b", port = port, host = "127.0.0.2" })
        local gw, set = discovered(port)
        set({ "127.0.0.1", "127.0.0.2" })
        h.wait_until(function()
            local seen = {}
            for _ = 1, 6 do seen[h.request(gw.port, {}).headers["x-backend"] or "?"] = true end
            return seen.a and seen.b
        end, 5, "both targets")
        set({ "127.0.0.1" })
        gw:wait_log("api%.test %-> 127%.0%.0%.1:" .. port .. "\n", 5)
        -- kept-alive connections pooled in either worker close too (the one
        -- left open is our own /stats request)
        h.wait_until(function() return stats(b).open_connections == 1 end, 3, "pooled connections closed")
        local before = stats(b).requests
        for _ = 1, 60 do assert.equal("a", h.request(gw.port, {}).headers["x-backend"]) end
        assert.equal(before + 1, stats(b).requests) -- only our own /stats call
        assert.is_not_nil(a)
    end)

    it("holds requests while a service has no target, then sends them to the first one", function()
        local port = h.free_port()
        local gw, set = discovered(port)
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/waiting" })
        gw:wait_log("holding", 3)
        local b = h.start_backend({ name = "first", port = port })
        set({ "127.0.0.1" })
        local r = assert(c:read_response())
        c:close()
        assert.equal(200, r.status)
        assert.equal("first", r.headers["x-backend"])
        assert.is_not_nil(b)
    end)

    it("holds requests while every target refuses (all stopped before new ones start)", function()
        local port = h.free_port()
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { "127.0.0.1:" .. port } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/held" })
        gw:wait_log("holding", 3)
        local b = h.start_backend({ name = "back", port = port })
        local r = assert(c:read_response())
        c:close()
        assert.equal(200, r.status)
        assert.equal("back", r.headers["x-backend"])
        assert.is_not_nil(b)
    end)

    it("answers 503 once timeouts.queue passed, and at once past upstream.queue_max", function()
        local gw = h.start_gateway({ config = {
            timeouts = { queue = 1 },
            upstream = { queue_max = 1 },
            services = { api = { targets = {} } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/one" })
        gw:wait_log("holding", 3)
        local t0 = socket.gettime()
        local full = h.request(gw.port, { path = "/two" })
        assert.equal(503, full.status)
        assert.truthy(full.body:find("queue is full", 1, true), full.body)
        assert.is_true(socket.gettime() - t0 < 0.5)
        local r = assert(c:read_response())
        c:close()
        assert.equal(503, r.status)
        assert.truthy(r.body:find("no target", 1, true), r.body)
    end)

    it("stops waiting on a frozen target and retries idempotent requests elsewhere", function()
        local a, b = h.start_backend({ name = "a" }), h.start_backend({ name = "b" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { a.address, b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        for _ = 1, 20 do assert.equal(200, h.request(gw.port, {}).status) end
        local signal = require("posix.signal")
        signal.kill(b.proc.pid, signal.SIGSTOP) -- as `docker pause` freezes a container
        local t0 = socket.gettime()
        local ok, worst = 0, 0
        for i = 1, 20 do
            local s = socket.gettime()
            local r = h.request(gw.port, { path = "/f" .. i })
            worst = math.max(worst, socket.gettime() - s)
            if r.status == 200 and r.headers["x-backend"] == "a" then ok = ok + 1 end
        end
        signal.kill(b.proc.pid, signal.SIGCONT)
        assert.equal(20, ok)
        -- the default response timeout is 60 s: nobody waited for the freeze
        assert.is_true(worst < 6 * h.slow, "a request waited " .. worst .. " s")
        assert.is_true(socket.gettime() - t0 < 15 * h.slow)
        gw:wait_log("stalled")
    end)

    it("answers a burst of clients that a small backlog cannot take at once", function()
        local b = h.start_backend({ name = "small", backlog = 5 })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local f = io.popen("python3 spec/support/burst.py 127.0.0.1 " .. gw.port .. " 1500 30")
        local out = f:read("*a")
        f:close()
        local counts = cjson.decode(out)
        assert.equal(1500, counts["200"] or 0, out)
    end)
end)
