-- The plugin author's API: local mg = require("moongate")
-- Hot paths go through LuaJIT's FFI into the gateway binary. Outside the
-- binary (plain luajit) the same functions work on local fallbacks, so a
-- plugin's unit specs also run there.
local core = require("moongate.ffi")
local internal = require("moongate.internal")

local _M = { version = "0.1.0" }

local C = core.C
local in_gateway = core.in_gateway
_M.in_gateway = in_gateway

-- ---- time and timers -------------------------------------------------------
-- (lua/moongate/internal.lua keeps the clock and the timer queue.)

-- Seconds, monotonic, as a float.
_M.now = internal.now

-- Timers run on the worker's loop (checked on its 100 ms tick). A timer
-- belongs to the plugin that started it and is cancelled when that plugin
-- is reloaded or unloaded.
local add_timer = internal.add_timer
-- (no tail calls: a bad argument's error names the caller's line)
_M.timer = {
    after = function(delay, fn)
        local t = add_timer(delay, fn, nil, 2)
        return t
    end,
    every = function(interval, fn)
        if type(interval) ~= "number" or interval <= 0 then error("interval must be > 0", 2) end
        local t = add_timer(interval, fn, interval, 2)
        return t
    end,
}

-- Specs: freeze time at `seconds`; mg.now() then only moves with advance().
_M.set_test_clock = internal.set_test_clock

-- Specs: moves the test clock forward and runs the timers that came due,
-- in order, as the worker's tick would.
function _M.advance(seconds)
    internal.advance(seconds)
end

-- ---- logging --------------------------------------------------------------

local LEVELS = { debug = 0, info = 1, warn = 2, err = 3 }
_M.log = {}
for name, level in pairs(LEVELS) do
    _M.log[name] = function(...)
        local parts = { ... }
        for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
        local msg = "[" .. (internal.plugin or "lua") .. "] " .. table.concat(parts)
        if in_gateway then
            C.mg_ffi_log(level, msg, #msg)
        else
            io.stderr:write(name, " ", msg, "\n")
        end
    end
end

-- ---- JSON (jansson in the gateway) ----------------------------------------

local json_c = package.loaded["moongate.c.json"] -- core/lua_json.c
_M.json = {
    encode = function(v)
        if not json_c then error("mg.json needs the moongate binary", 2) end
        return json_c.encode(v)
    end,
    decode = function(s)
        if not json_c then error("mg.json needs the moongate binary", 2) end
        return json_c.decode(s)
    end,
    -- JSON text edited as text: everything but the member named by path
    -- (a list of object keys) stays as it was, [] and {} and null included
    -- (a round trip through Lua tables would lose them)
    member = function(s, path)
        if not json_c then error("mg.json needs the moongate binary", 2) end
        return json_c.member(s, path)
    end,
    edit = function(s, path, value)
        if not json_c then error("mg.json needs the moongate binary", 2) end
        return json_c.edit(s, path, value)
    end,
    null = json_c and json_c.null or setmetatable({}, { __tostring = function() return "null" end }),
}

-- ---- hashing ---------------------------------------------------------------

local bit = require("bit")
local bxor, lshift, rshift, band, tobit = bit.bxor, bit.lshift, bit.rshift, bit.band, bit.tobit

-- (a * b) mod 2^32 for 32-bit values, exact in doubles: split b in halves.
local function mul32(a, b)
    local lo = band(b, 0xffff)
    local hi = rshift(b, 16)
    return tobit(tobit(a * lo) + lshift(tobit(a * hi), 16))
end

-- FNV-1a over the bytes, then murmur3's finalizer so that similar keys
-- ("t1#1", "t1#2") spread over the whole range; a number in [0, 2^32),
-- stable across workers and restarts (consistent hashing, sticky cookies).
function _M.hash(s)
    local h = tobit(2166136261)
    for i = 1, #s do
        h = bxor(h, s:byte(i))
        h = tobit(lshift(h, 24) + h * 403) -- * 16777619 (2^24 + 403)
    end
    h = bxor(h, rshift(h, 16))
    h = mul32(h, tobit(0x85ebca6b))
    h = bxor(h, rshift(h, 13))
    h = mul32(h, tobit(0xc2b2ae35))
    h = bxor(h, rshift(h, 16))
    return h % 4294967296
end

-- ---- shared state ---------------------------------------------------------

-- Gateway-wide counters: every worker sees the same value, so a policy can
-- alternate or cap across the whole gateway, not per worker. Each call is
-- one atomic operation (lock-free); only mg.counter(name), which finds the
-- slot, takes a lock: call it in new()/init(), not per request. Outside the
-- binary (plain luajit) a counter is a local number with the same methods.
local Counter = {}
Counter.__index = Counter

local TWO32, TWO53 = 4294967296, 9007199254740992

-- The value before the increment, mod 2^32; adds one.
function Counter:next()
    if self.slot then return C.mg_ffi_counter_next(self.slot) end
    local v = self.value
    self.value = v + 1
    return v % TWO32
end

-- Adds n (default 1; may be negative) and returns the new value.
function Counter:add(n)
    if n == nil then
        n = 1
    elseif type(n) ~= "number" or n % 1 ~= 0 or n >= TWO53 or n <= -TWO53 then
        error("counter:add expects an integer, got " .. tostring(n), 2)
    end
    if self.slot then return C.mg_ffi_counter_add(self.slot, n) end
    self.value = self.value + n
    return self.value
end

function Counter:get()
    if self.slot then return C.mg_ffi_counter_get(self.slot) end
    return self.value
end

local local_counters = {}
local warned_full

function _M.counter(name)
    if type(name) ~= "string" then error("counter name must be a string", 2) end
    if in_gateway then
        local slot = C.mg_ffi_counter_slot(name)
        if slot >= 0 then return setmetatable({ slot = slot }, Counter) end
        if not warned_full then
            warned_full = true
            _M.log.warn("no free gateway-wide counter slot for ", name, ": counting in this worker only")
        end
    end
    local c = local_counters[name]
    if not c then
        c = setmetatable({ value = 0 }, Counter)
        local_counters[name] = c
    end
    return c
end

-- In-flight requests to a target across all workers.
function _M.inflight(target)
    if in_gateway and target.uid then return C.mg_ffi_inflight(target.uid) end
    return target.inflight or 0
end

-- Smooth weighted round robin, as nginx does it (weights 5,1,1 give
-- a a b a c a a): picks among the targets not in tried (and, when eligible
-- is given, only where eligible[i] is true), updating current (one number
-- per target that the caller keeps between picks). Returns the index of the
-- pick, or nil when no target is left.
function _M.smooth_pick(targets, current, tried, eligible)
    local best, total, bestc = nil, 0, 0
    for i = 1, #targets do
        local t = targets[i]
        if not tried[t] and (not eligible or eligible[i]) then
            local c = (current[i] or 0) + t.weight
            current[i] = c
            total = total + t.weight
            if not best or c > bestc then best, bestc = i, c end
        end
    end
    if best then current[best] = bestc - total end
    return best
end

-- ---- async I/O (control plane and specs) ---------------------------------

if package.loaded["moongate.c.io"] then
    local aio = require("moongate.io")
    _M.http = { request = aio.request, stream = aio.stream, parse_url = aio.parse_url }
    _M.sleep = aio.sleep
    _M.resolve = aio.resolve
    _M.tcp_probe = aio.tcp_probe
    _M.spawn = aio.spawn
    _M.run = aio.run
end
if package.loaded["moongate.c.crypto"] then
    _M.crypto = require("moongate.crypto")
    _M.tls = require("moongate.tls")
end

-- ---- shared discovery parts (plugins/docker.lua, plugins/swarm.lua) -------
-- Registered before they load: they require("moongate") themselves.
package.loaded.moongate = _M
_M.labels = require("moongate.labels")
if _M.http then _M.docker = require("moongate.docker") end

return _M
