-- The plugin runtime through the real gateway: middleware hooks, the
-- request API, isolation of failing plugins.
local h = require("spec.helpers")

local function config(b, route_mw, extra)
    local cfg = {
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = route_mw } },
    }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return cfg
end

-- A backend and a gateway whose one route runs the plugin name (Lua source
-- src) as its middleware. Returns the gateway and the backend.
local function with_plugin(name, src)
    local b = h.start_backend()
    return h.start_gateway({ config = config(b, { { plugin = name } }), plugins = { [name] = src } }), b
end

-- A gateway balancing over the backends with a balancer plugin whose pick
-- always fails (the gateway must fall back to round robin).
local function broken_balancer(backends)
    local targets = {}
    for i, b in ipairs(backends) do targets[i] = b.address end
    return h.start_gateway({
        config = {
            services = { api = { balancer = "broken", targets = targets } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        },
        plugins = { broken = [[
            return {
                type = "balancer",
                new = function(targets) return targets end,
                pick = function(state, req) error("no idea") end,
            }
        ]] },
    })
end

describe("plugins", function()
    after_each(h.cleanup)

    it("headers sets request and response headers", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = config(b, { { plugin = "headers",
            request = { set = { ["X-Added"] = "yes" }, remove = { "X-Drop" } },
            response = { set = { ["Cache-Control"] = "no-store" } } } }) })
        local r = h.request(gw.port, { headers = { ["X-Drop"] = "1" } })
        local info = h.json(r)
        assert.equal("yes", info.headers["x-added"])
        assert.is_nil(info.headers["x-drop"])
        assert.equal("no-store", r.headers["cache-control"])
    end)

    it("strip_prefix removes the prefix and keeps the query", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = config(b, { { plugin = "strip_prefix", prefixes = { "/api" } } }) })
        local info = h.json(h.request(gw.port, { path = "/api/users?x=1" }))
        assert.equal("/users", info.path)
        assert.equal("x=1", info.query)
        assert.equal("/api", info.headers["x-forwarded-prefix"])
    end)

    it("redirect answers without contacting the backend", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = config(b, { { plugin = "redirect", to = "https://example.test", status = 301 } }) })
        local r = h.request(gw.port, { path = "/a?b=1" })
        assert.equal(301, r.status)
        assert.equal("https://example.test/a?b=1", r.headers["location"])
        assert.equal(1, h.json(h.request(b.port, { path = "/stats" })).requests)
    end)

    it("basic_auth refuses without credentials and passes the user on", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = config(b, { "auth" }, {
            middlewares = { auth = { plugin = "basic_auth", users = { alice = "s3cret" } } } }) })
        local denied = h.request(gw.port, {})
        assert.equal(401, denied.status)
        assert.truthy(denied.headers["www-authenticate"]:find("Basic", 1, true))
        assert.equal(401, h.request(gw.port, { headers = { Authorization = "Basic YWxpY2U6d3Jvbmc=" } }).status)
        local ok = h.request(gw.port, { headers = { Authorization = "Basic YWxpY2U6czNjcmV0" } })
        assert.equal(200, ok.status)
        local info = h.json(ok)
        assert.equal("alice", info.headers["x-authenticated-user"])
        assert.is_nil(info.headers["authorization"])
    end)

    it("rate_limit answers 429 past the burst", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = config(b, { { plugin = "rate_limit", rate = 0.5, burst = 2 } }) })
        assert.equal(200, h.request(gw.port, {}).status)
        assert.equal(200, h.request(gw.port, {}).status)
        local r = h.request(gw.port, {})
        assert.equal(429, r.status)
        assert.truthy(tonumber(r.headers["retry-after"]))
    end)

    it("shares ctx between hooks of one request and can pick a service", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local gw = h.start_gateway({
            config = {
                services = { a = { targets = { b1.address } }, b = { targets = { b2.address } } },
                routes = { { rule = "PathPrefix(`/`)", service = "a", middlewares = { { plugin = "pickservice" } } } },
            },
            plugins = { pickservice = [[
                local mg = require("moongate")
                return {
                    type = "middleware",
                    on_request = function(conf, req)
                        req.ctx.started = req.method .. " " .. req.path
                        if req:header("X-Service") then req:set_service(req:header("X-Service")) end
                    end,
                    on_response = function(conf, req, res)
                        res:set_header("X-Seen", req.ctx.started)
                    end,
                }
            ]] },
        })
        local r = h.request(gw.port, { path = "/p", headers = { ["X-Service"] = "b" } })
        assert.equal("two", r.headers["x-backend"])
        assert.equal("GET /p", r.headers["x-seen"])
        assert.equal("one", h.request(gw.port, {}).headers["x-backend"])
    end)

    it("answers 500 to the one request whose plugin fails, with a traceback", function()
        local gw = with_plugin("flaky", [[
                return {
                    type = "middleware",
                    on_request = function(conf, req)
                        if req.path == "/boom" then error("kaboom") end
                    end,
                }
            ]])
        assert.equal(500, h.request(gw.port, { path = "/boom" }).status)
        assert.equal(200, h.request(gw.port, { path = "/fine" }).status)
        gw:wait_log("flaky%.lua:4: kaboom")
        gw:wait_log("stack traceback")
    end)

    it("refuses header values with CR or LF", function()
        local gw, b = with_plugin("inject", [[
                return {
                    type = "middleware",
                    on_request = function(conf, req) req:set_header("X-Evil", "a\r\nX-Injected: 1") end,
                }
            ]])
        assert.equal(500, h.request(gw.port, {}).status)
        gw:wait_log("values must not contain CR, LF or NUL")
        assert.equal(0, h.json(h.request(b.port, { path = "/stats" })).requests - 1)
    end)

    it("falls back to round robin when a balancer errors", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local gw = broken_balancer({ b1, b2 })
        local seen = {}
        for _ = 1, 4 do
            local r = h.request(gw.port, {})
            assert.equal(200, r.status)
            seen[r.headers["x-backend"]] = true
        end
        assert.truthy(seen.one and seen.two)
        gw:wait_log("balancer error, using round robin")
    end)

    it("logs a failing balancer once, then a count, not a traceback per request", function()
        local b1 = h.start_backend({ name = "one" })
        local gw = broken_balancer({ b1 })
        local c = assert(h.connect(gw.port))
        local t0 = require("socket").gettime()
        for _ = 1, 300 do
            c:send_request({})
            assert.equal(200, assert(c:read_response()).status)
        end
        c:close()
        -- one full message, then at most one more per 5 s interval
        local windows = math.ceil((require("socket").gettime() - t0) / 5)
        local _, full = gw:error_log():gsub("balancer error, using round robin", "")
        assert.is_true(full <= 1 + windows, full .. " full messages for " .. windows .. " intervals")
        gw:wait_log("balancer pick: %d+ more errors in the last %d+ s %(last: .*no idea", 8)
    end)

    it("filters the response body through on_body, piece by piece, chunked to the client", function()
        local gw = with_plugin("upper", [[
                return {
                    type = "middleware",
                    on_response = function(conf, req, res)
                        if req.path ~= "/plain" then res:filter_body() end
                        req.ctx.pieces = 0
                    end,
                    on_body = function(conf, req, res, chunk, last)
                        req.ctx.pieces = req.ctx.pieces + 1
                        if req.path == "/boom" then error("no") end
                        return chunk:upper() .. (last and ("|" .. req.ctx.pieces) or "")
                    end,
                }
            ]])
        local r = h.request(gw.port, { path = "/chunked?n=3&size=4" })
        assert.equal(200, r.status)
        assert.equal("chunked", r.headers["transfer-encoding"])
        assert.truthy(r.body:match("^AAAABBBBCCCC|%d+$"), r.body)
        local plain = h.request(gw.port, { path = "/plain" })
        assert.truthy(plain.headers["content-length"])
        -- a failing hook before anything went out: an honest 502
        local boom = h.request(gw.port, { path = "/boom" })
        assert.equal(502, boom.status)
        gw:wait_log("upper%.lua:%d+: no")
        -- HEAD has no body: on_body never runs
        assert.equal(200, h.request(gw.port, { method = "HEAD", path = "/chunked" }).status)
    end)

    it("refuses filter_body outside on_response and without on_body", function()
        local gw = with_plugin("nobody", [[
                return { type = "middleware",
                         on_response = function(conf, req, res) res:filter_body() end }
            ]])
        assert.equal(200, h.request(gw.port, {}).status)
        gw:wait_log("needs the plugin to have on_body")
    end)

    it("checks middleware options against the plugin's schema at load", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/moongate.lua", [[
return {
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = {
    { rule = "PathPrefix(`/`)", service = "api",
      middlewares = { { plugin = "rate_limit", rate = "fast" } } },
  },
}]])
        local f = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1")
        local out = f:read("*a")
        f:close()
        assert.truthy(out:find(dir .. "/moongate.lua:5: routes[1].middlewares[1]: rate: expected number", 1, true), out)
    end)
end)

describe("the watchdog", function()
    after_each(h.cleanup)

    it("reports a plugin that does not return, interrupts it, and the worker recovers", function()
        local gw = with_plugin("spin", [[
                -- LuaJIT cannot interrupt a loop it compiled (see
                -- docs/plugins.md); this one runs interpreted
                local function spin() while true do end end
                jit.off(spin)
                return {
                    type = "middleware",
                    on_request = function(conf, req)
                        if req.path == "/spin" then spin() end
                    end,
                }
            ]])
        local r = h.request(gw.port, { path = "/spin" })
        assert.equal(500, r.status)
        gw:wait_log("watchdog: plugin spin %(on_request%) has not returned")
        gw:wait_log("interrupted by the watchdog")
        assert.equal(200, h.request(gw.port, { path = "/fine" }).status)
    end)
end)
