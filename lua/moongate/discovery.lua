-- Runs discovery plugins on the control plane and merges what they find.
-- A discovery plugin returns { type = "discovery", start = function(ctx) }
-- and start runs as a coroutine for as long as the provider is configured:
--   ctx.opts                       the provider's settings
--   ctx.set_targets(service, targets, extra)
--       targets: { "10.0.0.5:8080", { address = "...", weight = 2, labels = {...} }, ... }
--       extra: service settings (balancer, balancer_opts, middlewares, health)
--   ctx.remove_service(service)
--   ctx.set_routes(routes)         routes this provider contributes
--   ctx.alive()                    false once the provider was stopped or replaced
-- Changes are coalesced: a burst of calls becomes one new snapshot, 50 ms
-- after the first.
local plugins = require("moongate.plugins")
local mg = require("moongate")
local internal = require("moongate.internal")

local _M = {}

local COALESCE = 0.05

local found = {}          -- provider -> { services = {}, routes = {} }
local excluded = {}       -- target id -> true: left out while it drains (moongate.autoscale)
local generation = 0
local running_literal
local scheduled = false
_M.publish = function() end -- set by the control plane (C)

local plugins_dir
local schema = require("moongate.schema")

-- A middleware a provider asked for (say from a container label) that does
-- not load or whose options fail its schema is dropped with a warning: one
-- bad label must not stop every membership update.
local function valid_middlewares(service, list)
    local ok = {}
    for _, m in ipairs(list) do
        local mod, err = type(m) == "table" and type(m.plugin) == "string"
            and plugins.load(m.plugin, plugins_dir, "middleware")
        if not mod then
            mg.log.warn("service ", service, ": dropping middleware ", tostring(type(m) == "table" and m.plugin),
                ": ", tostring(err or "expected { plugin = ... }"))
        else
            local opts = {}
            for k, v in pairs(m) do if k ~= "plugin" then opts[k] = v end end
            local verr
            if mod.schema then _, verr = schema.validate(mod.schema, opts) end
            if verr then
                mg.log.warn("service ", service, ": dropping middleware ", m.plugin, ": ", verr)
            else
                ok[#ok + 1] = m
            end
        end
    end
    return #ok > 0 and ok or nil
end

local function merged()
    local out = { services = {}, routes = {} }
    local names = {}
    for name in pairs(found) do names[#names + 1] = name end
    table.sort(names)
    for _, pname in ipairs(names) do
        local f = found[pname]
        for sname, s in pairs(f.services) do
            local m = out.services[sname]
            if not m then
                m = { targets = {} }
                for k, v in pairs(s) do if k ~= "targets" then m[k] = v end end
                if m.middlewares then m.middlewares = valid_middlewares(sname, m.middlewares) end
                if m.autoscale then
                    local ok, aerr = require("moongate.autoscale").settings(m.autoscale, plugins_dir)
                    if not ok then
                        mg.log.warn("service ", sname, ": not autoscaling it: ", aerr)
                        m.autoscale = nil
                    end
                end
                out.services[sname] = m
            end
            for _, t in ipairs(s.targets) do
                if not (type(t) == "table" and t.id and excluded[t.id]) then m.targets[#m.targets + 1] = t end
            end
        end
        for _, r in ipairs(f.routes) do out.routes[#out.routes + 1] = r end
    end
    return out
end

local function schedule()
    if scheduled then return end
    scheduled = true
    mg.spawn(function()
        mg.sleep(COALESCE)
        scheduled = false
        _M.publish(plugins.serialize(merged()))
    end)
end
_M.merged = merged

-- Leaves the target with this id out of what is published (on = true) or
-- puts it back (nil): the autoscaler drains a replica before it stops it.
function _M.exclude(id, on)
    if excluded[id] == on then return end
    excluded[id] = on
    schedule()
end

local published_any = false

function _M.start(providers_literal, dir)
    plugins_dir = dir
    if providers_literal == running_literal then return end
    running_literal = providers_literal
    generation = generation + 1
    local gen = generation
    local had = next(found) ~= nil or published_any
    found = {}
    local providers = plugins.deserialize(providers_literal)
    for name, conf in pairs(providers) do
        local plugin, err = plugins.load(conf.plugin or name, dir, "discovery")
        if not plugin then
            mg.log.err("provider ", name, ": ", err)
        else
            local mine = { services = {}, routes = {} }
            found[name] = mine
            local function check()
                if gen ~= generation then error("provider " .. name .. " was stopped", 3) end
            end
            local ctx = { name = name, opts = conf }
            function ctx.alive() return gen == generation end
            function ctx.set_targets(service, targets, extra)
                check()
                local svc = {}
                for k, v in pairs(extra or {}) do svc[k] = v end
                svc.targets = targets or {}
                mine.services[service] = svc
                schedule()
            end
            function ctx.remove_service(service)
                check()
                mine.services[service] = nil
                schedule()
            end
            function ctx.set_routes(routes)
                check()
                mine.routes = routes or {}
                schedule()
            end
            published_any = true
            mg.spawn(function()
                internal.plugin = plugin.name
                local ok, perr = pcall(plugin.start, ctx)
                if not ok and gen == generation then
                    mg.log.err("provider ", name, " stopped: ", tostring(perr))
                end
            end)
        end
    end
    -- providers went away: publish once without what they had found
    if had and next(found) == nil then schedule() end
end

function _M.stop()
    generation = generation + 1
    running_literal = nil
end

return _M
