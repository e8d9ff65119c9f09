-- The plugin author's API: local mg = require("moongate")
-- Hot paths go through LuaJIT's FFI into the gateway binary; outside the
-- binary (plain luajit), the same functions work on local fallbacks so a
-- plugin's unit specs still run.
local ffi = require("ffi")

local _M = { version = "0.1.0" }

ffi.cdef([[
int mg_shared_counter_slot(const char *name);
uint32_t mg_shared_counter_next(int slot);
int mg_shared_inflight(uint32_t uid);
]])

local C = ffi.C
local in_gateway = pcall(function() return C.mg_shared_counter_slot end)
_M.in_gateway = in_gateway

-- Gateway-wide counters: every worker sees the same sequence.
local Counter = {}
Counter.__index = Counter

function Counter:next()
    if self.slot then return C.mg_shared_counter_next(self.slot) end
    local v = self.value
    self.value = v + 1
    return v
end

local local_counters = {}

function _M.counter(name)
    if type(name) ~= "string" then error("counter name must be a string", 2) end
    if in_gateway then
        local slot = C.mg_shared_counter_slot(name)
        if slot >= 0 then return setmetatable({ slot = slot }, Counter) end
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
    if in_gateway and target.uid then return C.mg_shared_inflight(target.uid) end
    return target.inflight or 0
end

return _M
