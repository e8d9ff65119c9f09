-- rate_limit and inflight_req through the real gateway.
local h = require("spec.helpers")

-- runs before everything else and names the worker on every answer
local WORKER = [[
local mg = require("moongate")
return { type = "middleware", priority = 5000,
         on_request = function(conf, req) req:add_response_header("X-Worker", tostring(mg.worker_id)) end }
]]

local function gateway(mws, workers)
    local b = h.start_backend({ name = "api" })
    table.insert(mws, 1, { plugin = "worker" })
    local gw = h.start_gateway({ config = {
        workers = workers or 1,
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = mws } },
    }, plugins = { worker = WORKER } })
    return gw, b
end

local function count(list)
    local n = 0
    for _ in pairs(list) do n = n + 1 end
    return n
end

describe("rate_limit", function()
    after_each(h.cleanup)

    it("keeps a bucket per header value", function()
        local gw = gateway({ { plugin = "rate_limit", rate = 0.01, burst = 1, key = "header", header = "X-Key" } })
        assert.equal(200, h.request(gw.port, { headers = { ["X-Key"] = "a" } }).status)
        assert.equal(429, h.request(gw.port, { headers = { ["X-Key"] = "a" } }).status)
        assert.equal(200, h.request(gw.port, { headers = { ["X-Key"] = "b" } }).status)
    end)

    it("shares one gateway-wide bucket across the workers", function()
        local gw, b = gateway({ { plugin = "rate_limit", rate = 0.01, burst = 5,
                                  bucket = "spec-" .. h.free_port() } }, 2)
        local ok, limited, workers = 0, 0, {}
        -- fresh connections until both workers answered (bounded)
        for i = 1, 200 do
            local r = h.request(gw.port, {})
            workers[r.headers["x-worker"]] = true
            if r.status == 200 then ok = ok + 1 else
                assert.equal(429, r.status)
                assert.truthy(tonumber(r.headers["retry-after"]) >= 1)
                limited = limited + 1
            end
            if i >= 12 and count(workers) == 2 then break end
        end
        assert.equal(2, count(workers), "every connection landed on one worker")
        assert.equal(5, ok)
        assert.equal(5, h.json(h.request(b.port, { path = "/stats" })).requests - 1)
        assert.truthy(limited >= 7)
    end)

    it("refills the shared bucket with time", function()
        local gw = gateway({ { plugin = "rate_limit", rate = 20, burst = 1, bucket = "spec-" .. h.free_port() } })
        assert.equal(200, h.request(gw.port, {}).status)
        h.wait_until(function() return h.request(gw.port, {}).status == 200 end, 2, "a new token")
    end)
end)

describe("inflight_req", function()
    after_each(h.cleanup)

    local function slow_batch(port, n, headers)
        local conns = {}
        for i = 1, n do
            conns[i] = assert(h.connect(port))
            conns[i]:send_request({ path = "/delay/800", headers = headers and headers(i) })
        end
        local statuses = {}
        for i, c in ipairs(conns) do
            statuses[i] = assert(c:read_response()).status
            c:close()
        end
        return statuses
    end

    local function tally(statuses)
        local t = {}
        for _, s in ipairs(statuses) do t[s] = (t[s] or 0) + 1 end
        return t
    end

    it("answers 429 past `amount` requests in flight from one client, and frees them when done", function()
        local gw = gateway({ { plugin = "inflight_req", amount = 2 } })
        local t = tally(slow_batch(gw.port, 5))
        assert.equal(2, t[200])
        assert.equal(3, t[429])
        assert.equal(200, h.request(gw.port, {}).status)
    end)

    it("counts each header value as its own source", function()
        local gw = gateway({ { plugin = "inflight_req", amount = 1, key = "header", header = "X-Tenant" } })
        local t = tally(slow_batch(gw.port, 4, function(i) return { ["X-Tenant"] = "t" .. (i % 2) } end))
        assert.equal(2, t[200])
        assert.equal(2, t[429])
    end)

    it("caps the whole gateway across workers with gateway = true", function()
        local gw = gateway({ { plugin = "inflight_req", amount = 3, gateway = true } }, 2)
        local t = tally(slow_batch(gw.port, 10))
        assert.equal(3, t[200])
        assert.equal(7, t[429])
        assert.equal(200, h.request(gw.port, {}).status)
    end)
end)
