-- Declarative option schemas for plugins:
--   schema = {
--     header = { type = "string", required = true },
--     burst  = { type = "integer", default = 10, min = 1 },
--     mode   = { type = "string", one_of = { "a", "b" }, default = "a" },
--     users  = { type = "map" },     -- string keys, any values
--     paths  = { type = "array" },   -- list
--     ranges = { type = "array", check = function(v) return ok or nil, why end },
--   }
-- validate returns a copy with defaults filled in, or nil and "field: reason".
local _M = {}

local function describe(v)
    if type(v) == "string" then return string.format("string %q", v) end
    return type(v) == "table" and "table" or (type(v) .. " " .. tostring(v))
end

local checks = {
    string = function(v) return type(v) == "string" end,
    number = function(v) return type(v) == "number" and v == v end,
    integer = function(v) return type(v) == "number" and v == math.floor(v) end,
    boolean = function(v) return type(v) == "boolean" end,
    table = function(v) return type(v) == "table" end,
    map = function(v) return type(v) == "table" end,
    array = function(v)
        if type(v) ~= "table" then return false end
        local n = 0
        for _ in pairs(v) do n = n + 1 end
        return n == #v
    end,
    ["function"] = function(v) return type(v) == "function" end,
}

function _M.validate(schema, conf)
    conf = conf or {}
    if type(conf) ~= "table" then return nil, "options must be a table" end
    local out = {}
    -- options in name order, so that a config with several mistakes is
    -- always told of the same one first
    local given = {}
    for k in pairs(conf) do given[#given + 1] = k end
    table.sort(given, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(given) do
        local v = conf[k]
        if not schema[k] then
            local known = {}
            for name in pairs(schema) do known[#known + 1] = name end
            table.sort(known)
            return nil, string.format("unknown option '%s' (known: %s)", tostring(k),
                #known > 0 and table.concat(known, ", ") or "none")
        end
        out[k] = v
    end
    local names = {}
    for name in pairs(schema) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
        local f = schema[name]
        local v = out[name]
        if v == nil then
            if f.required then return nil, name .. ": required" end
            if type(f.default) == "table" then
                local copy = {}
                for k, x in pairs(f.default) do copy[k] = x end
                v = copy
            else
                v = f.default
            end
            out[name] = v
        end
        if v ~= nil then
            local check = checks[f.type or "string"]
            if not check then return nil, name .. ": schema has unknown type " .. tostring(f.type) end
            if not check(v) then
                return nil, string.format("%s: expected %s, got %s", name, f.type or "string", describe(v))
            end
            if f.one_of then
                local ok = false
                for _, c in ipairs(f.one_of) do if c == v then ok = true end end
                if not ok then
                    return nil, string.format("%s: expected one of %s, got %s", name,
                        table.concat(f.one_of, ", "), describe(v))
                end
            end
            if f.min and type(v) == "number" and v < f.min then
                return nil, string.format("%s: must be at least %s", name, tostring(f.min))
            end
            if f.max and type(v) == "number" and v > f.max then
                return nil, string.format("%s: must be at most %s", name, tostring(f.max))
            end
            if f.check then
                local ok, why = f.check(v)
                if not ok then return nil, name .. ": " .. tostring(why or "invalid") end
            end
        end
    end
    return out
end

return _M
