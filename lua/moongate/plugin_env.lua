-- The globals a plugin sees. Each plugin file runs in a table of its own
-- that does not fall through to _G: it holds the standard names listed
-- below, copies of the standard libraries (a plugin that adds to `string`
-- changes only its own copy), and whatever globals the plugin itself
-- sets. Reading any other name raises an error naming it, so a typo fails
-- where it is made instead of reading nil. Modules the plugin requires run
-- in their own environment, as usual.
local _M = {}

local BASE = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
    "rawset", "require", "select", "setmetatable", "tonumber", "tostring", "type", "unpack",
    "xpcall", "_VERSION",
}

-- Copied whole: pure functions, nothing that reaches outside the process.
local LIBS = { "string", "table", "math", "coroutine", "bit" }

-- Only these of the others: no os.exit or os.execute, no loading code
-- from files behind the loader's back.
local SOME = {
    os = { "time", "clock", "date", "difftime", "getenv" },
    io = { "open", "lines", "type" }, -- discovery and certificate plugins read files
    debug = { "traceback" },
    jit = { "flush", "on", "off", "status", "version", "version_num", "os", "arch" },
}

local function copy(lib, names)
    local out = {}
    if names then
        for _, k in ipairs(names) do out[k] = lib[k] end
    else
        for k, v in pairs(lib) do out[k] = v end
    end
    return out
end

local function unknown(env, k)
    error("unknown global '" .. tostring(k) .. "' (plugins see only the names listed in docs/plugins.md)", 2)
end

-- A fresh environment for one plugin file.
function _M.new()
    local env = {}
    for _, k in ipairs(BASE) do env[k] = _G[k] end
    for _, k in ipairs(LIBS) do env[k] = copy(_G[k]) end
    for lib, names in pairs(SOME) do
        if _G[lib] then env[lib] = copy(_G[lib], names) end
    end
    -- print goes to the error log, tagged like mg.log.info
    env.print = function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        require("moongate").log.info(table.concat(parts, "\t"))
    end
    env._G = env
    return setmetatable(env, { __index = unknown })
end

return _M
