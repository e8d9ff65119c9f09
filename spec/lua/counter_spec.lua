-- mg.counter: gateway-wide counters (atomics in core/shared.c) with next,
-- add and get, and the same methods on a local number outside the binary.
local h = require("moongate.test")
local mg = require("moongate")

local n = 0
local function fresh_name()
    n = n + 1
    return "counter-spec:" .. require("posix.unistd").getpid() .. ":" .. n .. ":" .. tostring(mg.now())
end

describe("mg.counter", function()
    after_each(h.cleanup)

    describe("in the binary", function()
        it("adds, subtracts and reads one shared value", function()
            local c = mg.counter(fresh_name())
            assert.equal(0, c:get())
            assert.equal(5, c:add(5))
            assert.equal(3, c:add(-2))
            assert.equal(4, c:add())
            assert.equal(4, c:get())
            assert.equal(4, c:next()) -- the value before, then one more
            assert.equal(5, c:get())
        end)

        it("is the same counter for the same name, another for another name", function()
            local name = fresh_name()
            local a, b, other = mg.counter(name), mg.counter(name), mg.counter(fresh_name())
            a:add(7)
            assert.equal(7, b:get())
            b:add(1)
            assert.equal(8, a:get())
            assert.equal(0, other:get())
        end)

        it("keeps exact integers past 2^32", function()
            local c = mg.counter(fresh_name())
            assert.equal(2 ^ 40 + 3, c:add(2 ^ 40 + 3))
            assert.equal(-5, c:add(-(2 ^ 40) - 8))
        end)

        it("rejects a delta that is not an integer", function()
            local c = mg.counter(fresh_name())
            assert.has_error(function() c:add(1.5) end, "counter:add expects an integer, got 1.5")
            assert.has_error(function() c:add("1") end, "counter:add expects an integer, got 1")
            assert.has_error(function() c:add(2 ^ 60) end)
            assert.has_error(function() mg.counter(42) end, "counter name must be a string")
            assert.equal(0, c:get())
        end)
    end)

    it("works on a local number under plain luajit", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/t.lua", [[
local mg = require("moongate")
assert(not mg.in_gateway)
local c = mg.counter("x")
assert(c:add(5) == 5 and c:add(-2) == 3 and c:next() == 3 and c:get() == 4)
assert(mg.counter("x"):get() == 4 and mg.counter("y"):get() == 0)
assert(not pcall(c.add, c, 0.5))
io.write("ok")
]])
        local cwd = require("posix.unistd").getcwd()
        local f = io.popen("cd " .. dir .. " && LUA_PATH='" .. cwd .. "/lua/?.lua;" .. cwd
            .. "/lua/?/init.lua;;' luajit t.lua 2>&1")
        local out = f:read("*a")
        f:close()
        assert.equal("ok", out)
    end)

    describe("in a gateway with two workers", function()
        -- answers with the counter's value after add(1) and the worker's id
        local COUNT = [[
local mg = require("moongate")
local _M = { type = "middleware" }
function _M.init(conf) return { c = mg.counter(conf.name) } end
function _M.on_request(conf, req)
    if req.path == "/get" then return req:respond(200, tostring(conf.c:get())) end
    return req:respond(200, tostring(conf.c:add(1)), { ["X-Worker"] = tostring(mg.worker_id) })
end
return _M
]]
        -- lets at most `max` requests be in flight across the whole gateway
        local CAP = [[
local mg = require("moongate")
local _M = { type = "middleware", schema = { max = { type = "integer", required = true },
                                              name = { type = "string", required = true } } }
function _M.init(conf) return { max = conf.max, c = mg.counter(conf.name) } end
function _M.on_request(conf, req)
    req:add_response_header("X-Worker", tostring(mg.worker_id))
    if conf.c:add(1) > conf.max then
        conf.c:add(-1)
        return req:respond(503, "busy\n")
    end
    req.ctx.counted = true
end
function _M.on_log(conf, req)
    if req.ctx.counted then conf.c:add(-1) end
end
return _M
]]

        it("counts every request once across the workers", function()
            local b = h.start_backend()
            local name = fresh_name()
            local gw = h.start_gateway({
                config = {
                    workers = 2,
                    services = { api = { targets = { b.address } } },
                    routes = { { rule = "PathPrefix(`/`)", service = "api",
                                 middlewares = { { plugin = "count", name = name } } } },
                },
                plugins = { count = COUNT },
            })
            local values, workers, total = {}, {}, 0
            -- new connections until both workers answered a few (bounded)
            for _ = 1, 400 do
                local res = assert(h.request(gw.port, { path = "/" }))
                total = total + 1
                values[#values + 1] = tonumber(res.body)
                workers[res.headers["x-worker"]] = (workers[res.headers["x-worker"]] or 0) + 1
                local nw, min = 0, math.huge
                for _, k in pairs(workers) do nw, min = nw + 1, math.min(min, k) end
                if nw == 2 and min >= 5 then break end
            end
            local nw = 0
            for _ in pairs(workers) do nw = nw + 1 end
            assert.equal(2, nw, "every connection landed on one worker")
            table.sort(values)
            for i = 1, total do assert.equal(i, values[i], "values seen: " .. table.concat(values, ",")) end
            assert.equal(tostring(total), h.request(gw.port, { path = "/get" }).body)
        end)

        it("lets a middleware cap requests in flight across the workers", function()
            local b = h.start_backend()
            local gw = h.start_gateway({
                config = {
                    workers = 2,
                    services = { api = { targets = { b.address } } },
                    routes = { { rule = "PathPrefix(`/`)", service = "api",
                                 middlewares = { { plugin = "cap", max = 4, name = fresh_name() } } } },
                },
                plugins = { cap = CAP },
            })
            -- 16 slow requests at once on 16 connections: 4 get through
            local conns = {}
            for i = 1, 16 do
                conns[i] = assert(h.connect(gw.port))
                conns[i]:send_request({ path = "/delay/1500" })
            end
            local ok, busy, workers = 0, 0, {}
            for _, c in ipairs(conns) do
                local res = assert(c:read_response())
                c:close()
                if res.status == 200 then ok = ok + 1 elseif res.status == 503 then busy = busy + 1 end
                workers[res.headers["x-worker"] or "?"] = true
            end
            local nw = 0
            for _ in pairs(workers) do nw = nw + 1 end
            assert.equal(2, nw, "all 16 connections landed on one worker")
            assert.equal(4, ok)
            assert.equal(12, busy)
            -- and the cap is released when they finish
            assert.equal(200, h.request(gw.port, { path = "/" }).status)
        end)
    end)
end)
