-- Finds, loads and validates plugins. A plugin is plugins_dir/NAME.lua or
-- plugins_dir/NAME/init.lua; built-in plugins are embedded in the binary and
-- used when plugins_dir has no file of that name.
local plugin_env = require("moongate.plugin_env")

local _M = {}

local embedded = package.loaded["moongate.c.embedded"] -- core/lua_env.c

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local data = f:read("*a")
    f:close()
    return data
end

-- While a config loads, the plugin files it locates are recorded, so a
-- membership change can rebuild the config from those same sources
-- (plugins.capture) instead of files that may be broken on disk meanwhile.
local given, seen = nil, nil

-- Starts recording; sources (name -> { src, chunk }, or nil) are used
-- instead of reading files.
function _M.capture(sources)
    given, seen = sources, {}
end

function _M.captured()
    return seen or {}
end

-- Returns the plugin's source and the chunk name used in its error messages
-- (the file path, so a traceback reads "plugins/x.lua:12: ...").
function _M.locate(name, dir)
    if type(name) ~= "string" or not name:match("^[%w_%-][%w_%.%-]*$") or name:find("..", 1, true) then
        return nil, "invalid plugin name '" .. tostring(name) .. "'"
    end
    local g = given and given[name]
    if g then
        if seen then seen[name] = g end
        return g.src, g.chunk
    end
    local rel = name:gsub("%.", "/")
    if dir then
        for _, cand in ipairs({ dir .. "/" .. rel .. ".lua", dir .. "/" .. rel .. "/init.lua" }) do
            local src = read_file(cand)
            if src then
                if seen then seen[name] = { src = src, chunk = cand } end
                return src, cand
            end
        end
    end
    if embedded then
        local path = "plugins/" .. rel .. ".lua"
        local src = embedded(path)
        if src then return src, path end
    end
    return nil, "no plugin '" .. name .. "' in " .. (dir or "?") .. " or among the built-ins"
end

local required = {
    balancer = { "new", "pick" },
    middleware = {},
    discovery = { "start" },
    health = { "check" },
    autoscaler = { "decide" },
}

-- Loads a plugin into this Lua state. Returns the plugin table, or nil and
-- an error that names file:line.
function _M.load(name, dir, kind)
    local src, chunk = _M.locate(name, dir)
    if not src then return nil, chunk end
    local fn, err = loadstring(src, "@" .. chunk)
    if not fn then return nil, err end
    -- Each plugin gets its own globals, which do not fall through to _G:
    -- one plugin's stray global cannot leak into another (plugin_env.lua).
    setfenv(fn, plugin_env.new())
    local ok, mod = pcall(fn)
    if not ok then return nil, tostring(mod) end
    if type(mod) ~= "table" then
        return nil, chunk .. ": a plugin must return a table, got " .. type(mod)
    end
    if kind and mod.type ~= kind then
        return nil, string.format("%s: plugin type is %s, expected %s", chunk,
            tostring(mod.type), kind)
    end
    for _, fname in ipairs(required[mod.type] or {}) do
        if type(mod[fname]) ~= "function" then
            return nil, string.format("%s: %s plugin has no function '%s'", chunk, mod.type, fname)
        end
    end
    mod.name = mod.name or name
    mod._source = chunk
    return mod
end

function _M.check(name, dir, kind)
    local mod, err = _M.load(name, dir, kind)
    if not mod then return nil, err end
    return true
end

-- Keys in a stable order: LuaJIT seeds its string hash per state, so pairs()
-- walks the same table differently in two states, and a literal compared
-- across reloads (the providers' settings) must not change with it.
local function key_less(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
end

-- Serializes plain data (tables, strings, numbers, booleans) as a Lua
-- literal, to hand options from one Lua state to another. The same data
-- always gives the same text.
local function ser(v, out, depth)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = string.format("%q", v)
    elseif t == "number" or t == "boolean" then
        out[#out + 1] = tostring(v)
    elseif t == "table" then
        if depth > 32 then error("options nest too deeply", 0) end
        out[#out + 1] = "{"
        local keys = {}
        for k in pairs(v) do keys[#keys + 1] = k end
        table.sort(keys, key_less)
        for _, k in ipairs(keys) do
            out[#out + 1] = "["
            ser(k, out, depth + 1)
            out[#out + 1] = "]="
            ser(v[k], out, depth + 1)
            out[#out + 1] = ","
        end
        out[#out + 1] = "}"
    else
        out[#out + 1] = "nil"
    end
end

function _M.serialize(v)
    local out = {}
    ser(v, out, 0)
    return table.concat(out)
end

function _M.deserialize(s)
    local fn = assert(loadstring("return " .. s, "=options"))
    setfenv(fn, {})
    return fn()
end

return _M
