-- The contract of hooks that wait (docs/plugins.md "Hooks that wait"),
-- with plugins written here, through the real gateway.
local h = require("spec.helpers")

local WAITER = [[
local mg = require("moongate")
return { type = "middleware", async = true,
  on_request = function(conf, req)
    req.ctx.before = req.path
    mg.sleep(0.05)
    if req.path == "/deny" then return req:respond(418, "after a wait\n", { ["X-Waited"] = "yes" }) end
    if req.path == "/boom" then error("broke after a wait") end
    req:set_header("X-Ctx", req.ctx.before)
  end,
  on_response = function(conf, req, res)
    mg.sleep(req.path == "/slowres" and 0.6 or 0.05)
    res:set_header("X-Response-Waited", tostring(res.status))
  end,
  on_log = function(conf, req, res) mg.counter("waiter:logged"):add(1) end,
}
]]

local PLAIN_HTTP = [[
local mg = require("moongate")
return { type = "middleware",
  on_request = function(conf, req) mg.http.request({ url = "http://127.0.0.1:9/" }) end }
]]

local BARE_YIELD = [[
return { type = "middleware", async = true,
  on_request = function(conf, req) coroutine.yield() end }
]]

local gauge = require("spec.support.metrics").sum

describe("hooks that wait", function()
    after_each(h.cleanup)

    local function gateway(plugin)
        local b = h.start_backend({ name = "api" })
        return h.start_gateway({
            config = {
                services = { api = { targets = { b.address } } },
                routes = {
                    { rule = "PathPrefix(`/`)", service = "api", middlewares = { { plugin = plugin },
                        { plugin = "headers", request = { set = { ["X-After"] = "ran" } } } } },
                },
            },
            plugins = { waiter = WAITER, plain_http = PLAIN_HTTP, bare_yield = BARE_YIELD },
        }), b
    end

    it("go on where they waited: headers, ctx, answers, the later middlewares", function()
        local gw = gateway("waiter")
        local res = h.request(gw.port, { path = "/ok" })
        assert.equal(200, res.status)
        local seen = h.json(res).headers
        assert.equal("/ok", seen["x-ctx"])  -- ctx kept across the wait
        assert.equal("ran", seen["x-after"]) -- the middleware after the waiting one ran
        assert.equal("200", res.headers["x-response-waited"])
        local denied = h.request(gw.port, { path = "/deny" })
        assert.equal(418, denied.status)
        assert.equal("after a wait\n", denied.body)
        assert.equal("yes", denied.headers["x-waited"])
        local boom = h.request(gw.port, { path = "/boom" })
        assert.equal(500, boom.status)
        gw:wait_log("on_request: .*broke after a wait")
        h.wait_until(function()
            return gauge(gw, "moongate_hook_waits") == 0 and gauge(gw, "moongate_lua_requests_pending") == 0
        end, 5, "nothing left waiting")
    end)

    it("forget a response whose client went away while its hooks waited", function()
        local gw = gateway("waiter")
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/slowres" })
        h.wait_until(function() return gauge(gw, "moongate_hook_waits") == 1 end, 3, "the response waiting")
        c.sock:setoption("linger", { on = true, timeout = 0 })
        c:close()
        h.wait_until(function()
            return gauge(gw, "moongate_hook_waits") == 0 and gauge(gw, "moongate_lua_io_waits") == 0
                and gauge(gw, "moongate_lua_requests_pending") == 0
        end, 5, "nothing left waiting")
        assert.equal(200, h.request(gw.port, { path = "/after" }).status)
        gw:wait_access(2)
        local log = table.concat(gw:access_log(), "\n")
        assert.truthy(log:find('"GET /slowres HTTP/1.1" 499', 1, true), log)
    end)

    it("refuse mg.http in a middleware that is not async", function()
        local gw = gateway("plain_http")
        assert.equal(500, h.request(gw.port, {}).status)
        gw:wait_log("needs a middleware that may wait %(async = true in its plugin%)")
    end)

    it("refuse a bare yield, which nothing would resume", function()
        local gw = gateway("bare_yield")
        assert.equal(500, h.request(gw.port, {}).status)
        gw:wait_log("yielded outside mg.http/mg.sleep")
        assert.equal(0, gauge(gw, "moongate_hook_waits"))
    end)
end)
