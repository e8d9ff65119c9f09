-- Builds each route's middleware chain from the config (control side) and
-- checks it: the plugin exists, is a middleware, and its options pass its
-- schema. The result is handed to the workers as a Lua literal.
--
-- Config:
--   middlewares = { auth = { plugin = "basic_auth", users = { ... } } },   -- named
--   routes = { { rule = ..., service = ..., middlewares = { "auth", { plugin = "headers", ... } } } },
--   services = { api = { ..., middlewares = { "auth" } } },
-- A route runs its service's middlewares and its own. A chain
--   middlewares = { secure = { plugin = "chain", middlewares = { "auth", "hdrs" } } }
-- stands for its members, in order (Traefik's chain).
local plugins = require("moongate.plugins")
local schema = require("moongate.schema")
local lines_of = require("moongate.config_lines")

local _M = {}

local function fail(cfg, path, fmt, ...)
    local line = cfg._lines and lines_of.lookup(cfg._lines, path) or 0
    error(string.format("%s:%d: %s: " .. fmt, cfg.source or "?", line, path, ...), 0)
end

-- Appends to `out` what entry stands for: one middleware, or, for a
-- chain (plugin = "chain", middlewares = { names or tables }), its members
-- in order. `seen` holds the named chains being expanded (a cycle fails).
local function resolve(cfg, entry, path, out, seen)
    local def, name
    if type(entry) == "string" then
        def = cfg.middlewares and cfg.middlewares[entry]
        if type(def) ~= "table" then fail(cfg, path, "unknown middleware '%s'", entry) end
        name = entry
        path = "middlewares." .. entry
    elseif type(entry) == "table" then
        def = entry
    else
        fail(cfg, path, "expected a middleware name or table, got %s", type(entry))
    end
    if type(def.plugin) ~= "string" then fail(cfg, path, "a middleware needs plugin = \"name\"") end
    if def.plugin == "chain" then
        for k in pairs(def) do
            if k ~= "plugin" and k ~= "middlewares" then
                fail(cfg, path, "unknown option '%s' (known: middlewares)", tostring(k))
            end
        end
        if type(def.middlewares) ~= "table" or #def.middlewares == 0 then
            fail(cfg, path, "a chain needs middlewares = { names or tables }")
        end
        seen = seen or {}
        if name and seen[name] then fail(cfg, path, "chain '%s' contains itself", name) end
        if name then seen[name] = true end
        for i, member in ipairs(def.middlewares) do
            resolve(cfg, member, path .. ".middlewares[" .. i .. "]", out, seen)
        end
        if name then seen[name] = nil end
        return
    end
    local mod, err = plugins.load(def.plugin, cfg.plugins_dir, "middleware")
    if not mod then fail(cfg, path, "%s", err) end
    local opts = {}
    for k, v in pairs(def) do if k ~= "plugin" then opts[k] = v end end
    local conf = opts
    if mod.schema then
        local verr
        conf, verr = schema.validate(mod.schema, opts)
        if not conf then fail(cfg, path, "%s", verr) end
    end
    out[#out + 1] = { plugin = def.plugin, conf = conf, name = name or def.plugin }
end

-- Returns the literal for the workers and sets route._hooks; raises
-- "FILE:LINE: path: reason" on a mistake.
function _M.build(cfg)
    local by_service = {}
    for _, svc in ipairs(cfg.services) do by_service[svc.name] = svc end
    local chains = {}
    for i, route in ipairs(cfg.routes) do
        local list = {}
        local svc = by_service[route.service]
        for source, entries in pairs({ service = svc and svc.middlewares, route = route.middlewares }) do
            if entries ~= nil then
                local base = source == "route" and ("routes[" .. i .. "].middlewares")
                    or ("services." .. route.service .. ".middlewares")
                if type(entries) ~= "table" then fail(cfg, base, "expected a list") end
                for k, entry in ipairs(entries) do
                    resolve(cfg, entry, base .. "[" .. k .. "]", list)
                end
            end
        end
        route._hooks = #list > 0 and 1 or 0
        if #list > 0 then chains[i - 1] = list end
    end
    for name, def in pairs(cfg.middlewares or {}) do
        resolve(cfg, name, "middlewares." .. tostring(name), {}) -- unused ones are checked too
        local _ = def
    end
    return plugins.serialize(chains)
end

return _M
