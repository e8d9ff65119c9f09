-- What the runtime shares with require("moongate") but plugins must not
-- touch: the name of the plugin running now (log prefixes, timer owners)
-- and the timer queue. Used by runtime.lua, discovery.lua, health.lua and
-- tls.lua; plugins see only the public functions in init.lua.
local core = require("moongate.ffi")

local _M = {}

-- The plugin whose code runs now (nil: the library's own), set by whoever
-- calls into a plugin.
_M.plugin = nil

-- ---- clock ------------------------------------------------------------------

local C, in_gateway = core.C, core.in_gateway
local test_clock -- set by specs: time then only moves when they advance it

-- Seconds, monotonic, as a float (mg.now).
function _M.now()
    if test_clock then return test_clock end
    if in_gateway then return C.mg_ffi_now() end
    return os.clock()
end

function _M.set_test_clock(seconds)
    test_clock = seconds
end

-- ---- timers -----------------------------------------------------------------
-- Timers run on the worker's loop (checked on its 100 ms tick, or at once
-- when a spec advances the test clock). A timer belongs to the plugin that
-- started it and is cancelled when that plugin is reloaded or unloaded.

local timers = {}
local Timer = {}
Timer.__index = Timer

function Timer:cancel() self.cancelled = true end

-- level: where a bad argument is blamed, as for error().
function _M.add_timer(delay, fn, every, level)
    if type(delay) ~= "number" or delay < 0 then error("timer delay must be a number >= 0", level + 1) end
    if type(fn) ~= "function" then error("timer callback must be a function", level + 1) end
    local t = setmetatable({ at = _M.now() + delay, fn = fn, every = every, owner = _M.plugin }, Timer)
    timers[#timers + 1] = t
    return t
end

-- Runs due timers; called by the runtime's tick and by advance().
function _M.run_timers()
    local now = _M.now()
    local i = 1
    while i <= #timers do
        local t = timers[i]
        if t.cancelled then
            table.remove(timers, i)
        elseif t.at <= now then
            local saved = _M.plugin
            _M.plugin = t.owner
            local ok, err = pcall(t.fn)
            _M.plugin = saved
            if not ok then
                require("moongate").log.err("timer of ", tostring(t.owner), " failed: ", tostring(err))
            end
            if t.every and not t.cancelled then
                t.at = t.at + t.every
                if t.at <= now then t.at = now + t.every end
                i = i + 1
            else
                table.remove(timers, i)
            end
        else
            i = i + 1
        end
    end
end

-- Cancels every timer started by plugin name (nil: all of them).
function _M.cancel_timers(owner)
    for _, t in ipairs(timers) do
        if owner == nil or t.owner == owner then t.cancelled = true end
    end
end

function _M.timer_count()
    local n = 0
    for _, t in ipairs(timers) do if not t.cancelled then n = n + 1 end end
    return n
end

-- Moves the test clock forward and runs the timers that came due, in
-- order, as the worker's tick would (mg.advance).
function _M.advance(seconds)
    if not test_clock then error("call mg.set_test_clock first", 3) end
    local target = test_clock + seconds
    while true do
        local next_at
        for _, t in ipairs(timers) do
            if not t.cancelled and t.at <= target and (not next_at or t.at < next_at) then next_at = t.at end
        end
        if not next_at then break end
        test_clock = next_at
        _M.run_timers()
    end
    test_clock = target
end

return _M
