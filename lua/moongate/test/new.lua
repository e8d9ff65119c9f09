-- `moongate new KIND NAME [DIR]`: a plugin skeleton and its spec that pass
-- `moongate test` in DIR at once (core/cmd_new.c calls main). The layout is
-- the gateway's: DIR/plugins/NAME.lua (plugins_dir defaults to plugins/
-- next to the config) and DIR/spec/NAME_spec.lua (busted's default root).
local _M = {}

local USAGE = [[
usage: moongate new KIND NAME [DIR]
  KIND  balancer, middleware or discovery
  NAME  the plugin's name: letters, digits and _, not starting with a digit
  DIR   the folder to write into (default: the current one)
writes DIR/plugins/NAME.lua and DIR/spec/NAME_spec.lua; never overwrites.
]]

local T = {}

T.balancer = {}
T.balancer.plugin = [==[
-- {{name}}: a balancer. Use it on a service in your moongate.lua:
--   services = { api = { balancer = "{{name}}", balancer_opts = { prefer = { zone = "a" } },
--                        targets = { { address = "127.0.0.1:9001", labels = { zone = "a" } },
--                                    "127.0.0.1:9002" } } }
-- As written it is a smooth weighted round robin (weights 5,1,1 give
-- a a b a c a a, per worker) over the targets whose labels match
-- balancer_opts.prefer, and over the others once those were tried (or
-- when none match, or without prefer). Change pick() to decide
-- differently. The contract is in moongate's docs/plugins.md;
-- `moongate test` runs spec/{{name}}_spec.lua.
local mg = require("moongate")

local _M = { type = "balancer" }

local function matches(labels, want)
    for k, v in pairs(want) do
        if labels[k] ~= v then return false end
    end
    return true
end

-- At load, on every reload and membership change, in every worker.
-- targets: list of { host, port, weight, id, address, labels, uid };
-- opts: the service's balancer_opts; service: { name }. Returns the state
-- pick() gets.
function _M.new(targets, opts, service)
    local preferred, any = {}, false
    if type(opts.prefer) == "table" then
        for i, t in ipairs(targets) do
            preferred[i] = matches(t.labels, opts.prefer)
            any = any or preferred[i]
        end
    end
    mg.log.debug("service ", service and service.name or "?", ": ", #targets, " targets")
    return { targets = targets, current = {}, preferred = any and preferred or nil }
end

-- For every try of every request: one of state.targets (the same table)
-- that is not in req.tried, or nil when none is left. The core retries.
-- mg.inflight(t) is t's requests in flight across the whole gateway.
function _M.pick(state, req)
    local targets, current, tried = state.targets, state.current, req.tried
    local best = state.preferred and mg.smooth_pick(targets, current, tried, state.preferred)
    best = best or mg.smooth_pick(targets, current, tried)
    return best and targets[best]
end

-- Optional: after each try. outcome: { status (nil on failure), latency
-- (seconds), error ("connect", "reset", "timeout" or nil) }.
-- function _M.report(state, target, outcome) end

return _M
]==]
T.balancer.spec = [==[
-- Specs for plugins/{{name}}.lua: `moongate test` in this folder runs them.
local kit = require("moongate.test.balancer_kit")
local h = require("moongate.test")

local plugin = kit.load("plugins/{{name}}.lua")

-- What every balancer must do, and picks in proportion to weights
-- (also after re-weighting). Drop fair = true if yours does not promise it.
kit.conformance("{{name}}", plugin, { fair = true })

describe("{{name}}", function()
    it("interleaves weights 2,1 as t1 t2 t1", function()
        local ts = kit.targets({ 2, 1 })
        local st = plugin.new(ts, {}, { name = "spec" })
        local seq = {}
        for i = 1, 6 do seq[i] = plugin.pick(st, kit.request()).id end
        assert.equal("t1 t2 t1 t1 t2 t1", table.concat(seq, " "))
    end)

    it("prefers the targets labelled as balancer_opts.prefer says, the others once they were tried", function()
        local ts = kit.targets({ { labels = { zone = "b" } }, { labels = { zone = "a" } }, { labels = { zone = "a" } } })
        local st = plugin.new(ts, { prefer = { zone = "a" } }, { name = "spec" })
        for _ = 1, 10 do assert.are_not.equal(ts[1], plugin.pick(st, kit.request())) end
        assert.equal(ts[1], plugin.pick(st, kit.request({ tried = { ts[2], ts[3] } })))
        assert.is_nil(plugin.pick(st, kit.request({ tried = ts })))
    end)

    it("sees the in-flight counts kit.targets sets, and as a round robin ignores them", function()
        -- kit.targets{ { inflight = N } } sets what mg.inflight(t) returns;
        -- a load-aware pick() would now avoid t1
        local ts = kit.targets({ { inflight = 7 }, { inflight = 0 } })
        local st = plugin.new(ts, {}, { name = "spec" })
        assert.equal(7, require("moongate").inflight(ts[1]))
        local seen = {}
        for _ = 1, 4 do seen[plugin.pick(st, kit.request())] = true end
        assert.truthy(seen[ts[1]] and seen[ts[2]])
    end)

    it("balances real requests through the gateway", function()
        finally(h.cleanup)
        local a = h.start_backend({ name = "a" })
        local b = h.start_backend({ name = "b" })
        local gw = h.start_gateway({
            config = {
                services = { api = { balancer = "{{name}}", targets = { a.address, b.address } } },
                routes = { { rule = "PathPrefix(`/`)", service = "api" } },
            },
            plugins = { {{name}} = h.read_file("plugins/{{name}}.lua") },
        })
        local seen = {}
        for i = 1, 4 do seen[i] = h.request(gw.port, { path = "/" }).headers["x-backend"] end
        assert.same({ "a", "b", "a", "b" }, seen)
    end)
end)
]==]

T.middleware = {}
T.middleware.plugin = [==[
-- {{name}}: a middleware. Enable it on a route or a service in moongate.lua:
--   routes = { { rule = "PathPrefix(`/`)", service = "api",
--                middlewares = { { plugin = "{{name}}", header = "X-{{name}}" } } } }
-- As written it blocks requests that carry X-{{name}}-Block, tells the
-- backend which middleware passed the request, and stamps the answer with
-- the time the request took. The contract is in moongate's docs/plugins.md;
-- `moongate test` runs spec/{{name}}_spec.lua.
local mg = require("moongate")

local _M = {
    type = "middleware",
    priority = 0, -- higher runs first
    -- the options, checked when the config loads (a mistake is FILE:LINE)
    schema = {
        header = { type = "string", default = "X-{{name}}" },
    },
}

-- Before the request goes upstream: answer it, rewrite it or reroute it.
function _M.on_request(conf, req)
    if req:header(conf.header .. "-Block") then
        return req:respond(403, "blocked by {{name}}\n")
    end
    req:set_header(conf.header, "passed")
    req.ctx.{{name}}_started = mg.now()
end

-- When the response head arrives, before it goes to the client.
function _M.on_response(conf, req, res)
    local started = req.ctx.{{name}}_started
    if started then res:set_header(conf.header .. "-Time", string.format("%.6f", mg.now() - started)) end
end

return _M
]==]
T.middleware.spec = [==[
-- Specs for plugins/{{name}}.lua: `moongate test` in this folder runs them,
-- through the real gateway in front of a real backend.
local h = require("moongate.test")

local HEADER = ("X-{{name}}"):lower() -- the default of the header option

local function gateway(backend, opts)
    local m = { plugin = "{{name}}" }
    for k, v in pairs(opts or {}) do m[k] = v end
    return h.start_gateway({
        config = {
            services = { api = { targets = { backend.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { m } } },
        },
        plugins = { {{name}} = h.read_file("plugins/{{name}}.lua") },
    })
end

describe("{{name}}", function()
    after_each(h.cleanup)

    it("tells the backend and stamps the answer", function()
        local b = h.start_backend({ name = "api" })
        local gw = gateway(b)
        local res = h.request(gw.port, { path = "/hello" })
        assert.equal(200, res.status)
        assert.equal("passed", h.json(res).headers[HEADER]) -- what the backend saw
        assert.truthy(tonumber(res.headers[HEADER .. "-time"]))
    end)

    it("answers blocked requests itself, and the backend never sees them", function()
        local b = h.start_backend({ name = "api" })
        local gw = gateway(b, { header = "X-Guard" })
        local res = h.request(gw.port, { headers = { ["X-Guard-Block"] = "1" } })
        assert.equal(403, res.status)
        assert.equal("blocked by {{name}}\n", res.body)
        assert.equal(1, h.json(h.request(b.port, { path = "/stats" })).requests) -- only this one
    end)

    it("is refused at load with a wrong option type", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/moongate.lua", [[
return {
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api",
               middlewares = { { plugin = "{{name}}", header = 42 } } } },
}
]])
        require("posix.sys.stat").mkdir(dir .. "/plugins")
        h.write_file(dir .. "/plugins/{{name}}.lua", h.read_file("plugins/{{name}}.lua"))
        local f = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1; echo rc=$?")
        local out = f:read("*a")
        f:close()
        assert.truthy(out:find("header: expected string", 1, true), out)
        assert.truthy(out:find("rc=[1-9]"), out)
    end)
end)
]==]

T.discovery = {}
T.discovery.plugin = [==[
-- {{name}}: a discovery plugin. It reads a file of "SERVICE ADDRESS [WEIGHT]"
-- lines and re-reads it every `interval` seconds; change list() to ask your
-- registry instead. Turn it on in moongate.lua:
--   providers = { {{name}} = { file = "/etc/moongate/targets.txt", interval = 5 } },
--   routes = { { rule = "PathPrefix(`/`)", service = "api" } },
-- start() runs on the control plane as a coroutine, for as long as the
-- provider is configured: mg.sleep, mg.http.request and mg.resolve wait
-- without blocking the gateway. The contract is in moongate's
-- docs/plugins.md; `moongate test` runs spec/{{name}}_spec.lua.
local mg = require("moongate")

local _M = { type = "discovery" }

-- Returns { service = { { address = "host:port", weight = n }, ... } }, or
-- nil and the reason.
local function list(path)
    local f, err = io.open(path)
    if not f then return nil, err end
    local services = {}
    for line in f:lines() do
        local service, address, weight = line:match("^%s*([%w_.-]+)%s+(%S+)%s*(%d*)")
        if service then
            services[service] = services[service] or {}
            table.insert(services[service], { address = address, weight = tonumber(weight) or 1 })
        end
    end
    f:close()
    return services
end

local function key_of(targets)
    local parts = {}
    for i, t in ipairs(targets) do parts[i] = t.address .. "*" .. t.weight end
    table.sort(parts)
    return table.concat(parts, ",")
end

function _M.start(ctx)
    local interval = ctx.opts.interval or 5
    local last = {} -- service -> key of the targets last sent
    while ctx.alive() do
        local services, err = list(ctx.opts.file or "")
        if services then
            for name, targets in pairs(services) do
                local key = key_of(targets)
                if key ~= last[name] then
                    last[name] = key
                    ctx.set_targets(name, targets)
                end
            end
            for name in pairs(last) do
                if not services[name] then
                    last[name] = nil
                    ctx.remove_service(name)
                end
            end
        else
            -- keep the last good list: a missing file is not an outage
            mg.log.warn("cannot read ", tostring(ctx.opts.file), ": ", tostring(err))
        end
        mg.sleep(interval)
    end
end

return _M
]==]
T.discovery.spec = [==[
-- Specs for plugins/{{name}}.lua: `moongate test` in this folder runs them,
-- through the real gateway in front of real backends.
local h = require("moongate.test")

local function answered_by(gw, name)
    local res = h.request(gw.port, { path = "/" })
    return res and res.headers["x-backend"] == name
end

describe("{{name}}", function()
    after_each(h.cleanup)

    it("routes to the targets in the file, follows changes, and keeps them when it goes", function()
        local a = h.start_backend({ name = "a" })
        local b = h.start_backend({ name = "b" })
        local file = h.tmpdir() .. "/targets.txt"
        h.write_file(file, "api " .. a.address .. "\n")
        local gw = h.start_gateway({
            config = {
                providers = { {{name}} = { file = file, interval = 0.1 } },
                routes = { { rule = "PathPrefix(`/`)", service = "api" } },
            },
            plugins = { {{name}} = h.read_file("plugins/{{name}}.lua") },
        })
        h.wait_until(function() return answered_by(gw, "a") end, 5, "a to answer")
        h.write_file(file, "api " .. b.address .. "\n")
        h.wait_until(function() return answered_by(gw, "b") end, 5, "b to replace a")
        os.remove(file)
        gw:wait_log("cannot read")
        assert.is_true(answered_by(gw, "b"))
    end)
end)
]==]

-- Makes path and the folders above it, as mkdir -p.
local function mkdir_p(fs, path)
    local sofar = path:sub(1, 1) == "/" and "/" or ""
    for part in path:gmatch("[^/]+") do
        sofar = sofar .. part
        local ok, err = fs.mkdir(sofar)
        if not ok then return nil, err end
        sofar = sofar .. "/"
    end
    return true
end

local function render(template, name)
    return (template:gsub("{{name}}", function() return name end))
end

-- main(fs, args) -> exit status; fs: mkdir, exists, create (core/cmd_new.c).
function _M.main(fs, args)
    local kind, name, dir = args[1], args[2], args[3] or "."
    if kind == "-h" or kind == "--help" or kind == "help" then
        io.stdout:write(USAGE)
        return 0
    end
    if kind == nil then
        io.stderr:write(USAGE)
        return 2
    end
    local t = T[kind]
    if not t then
        io.stderr:write("moongate new: unknown kind '", kind, "' (balancer, middleware or discovery)\n\n", USAGE)
        return 2
    end
    if not name then
        io.stderr:write("moongate new: missing NAME\n\n", USAGE)
        return 2
    end
    if not name:match("^[%a_][%w_]*$") or #name > 64 then
        io.stderr:write("moongate new: bad NAME '", name, "': letters, digits and _, not starting",
            " with a digit, at most 64 (it names the file and the plugin in the config)\n")
        return 2
    end
    if args[4] then
        io.stderr:write("moongate new: unexpected argument '", args[4], "'\n\n", USAGE)
        return 2
    end
    local prefix = dir == "." and "" or (dir:gsub("/+$", "") .. "/")
    local files = {
        { prefix .. "plugins", prefix .. "plugins/" .. name .. ".lua", render(t.plugin, name) },
        { prefix .. "spec", prefix .. "spec/" .. name .. "_spec.lua", render(t.spec, name) },
    }
    -- check both before writing either: all or nothing
    for _, f in ipairs(files) do
        if fs.exists(f[2]) then
            io.stderr:write("moongate new: ", f[2], " exists; not overwriting it\n")
            return 1
        end
    end
    for _, f in ipairs(files) do
        local ok, err = mkdir_p(fs, f[1])
        if ok then ok, err = fs.create(f[2], f[3]) end
        if not ok then
            io.stderr:write("moongate new: ", err, "\n")
            return 1
        end
        io.stdout:write("wrote ", f[2], "\n")
    end
    local embedded = package.loaded["moongate.c.embedded"]
    if embedded and embedded("plugins/" .. name .. ".lua") then
        io.stdout:write("note: your ", name, " replaces the built-in plugin of that name\n")
    end
    local cd = dir ~= "." and ("cd " .. dir .. " && ") or ""
    io.stdout:write("next: ", cd, "moongate test    (runs spec/", name, "_spec.lua; see docs/testing.md)\n")
    return 0
end

return _M
