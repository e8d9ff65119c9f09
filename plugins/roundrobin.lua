-- Smooth weighted round robin, as nginx does it (weights 5,1,1 give
-- a a b a c a a, not a a a a a b c) — but gateway-wide: the smooth sequence
-- is computed once, and every worker walks it with one shared atomic
-- counter, so requests alternate across the whole gateway, not per worker.
local mg = require("moongate")

local smooth_pick = mg.smooth_pick

local _M = { type = "balancer" }

local MAX_SEQUENCE = 65536

local function gcd(a, b)
    while b ~= 0 do a, b = b, a % b end
    return a
end

-- The smooth weighted sequence of target indexes for one full cycle:
-- mg.smooth_pick run over the weights divided by their gcd.
local NONE = {}
local function sequence(targets)
    local g, total = 0, 0
    for _, t in ipairs(targets) do
        g = gcd(t.weight, g)
        total = total + t.weight
    end
    if total == 0 then return {} end
    local len = total / g
    if len > MAX_SEQUENCE then return nil end
    local reduced, current, seq = {}, {}, {}
    for i, t in ipairs(targets) do reduced[i] = { weight = t.weight / g } end
    for k = 1, len do seq[k] = smooth_pick(reduced, current, NONE) end
    return seq
end

function _M.new(targets, opts, service)
    local key = "roundrobin:" .. ((service and service.name) or tostring(targets))
    return { targets = targets, seq = sequence(targets), counter = mg.counter(key), current = {} }
end

function _M.pick(state, req)
    local seq, tried = state.seq, req.tried
    if not seq then
        -- the sequence would be too long: per-worker smooth WRR instead
        local best = smooth_pick(state.targets, state.current, tried)
        return best and state.targets[best]
    end
    local n = #seq
    if n == 0 then return nil end
    local start = state.counter:next()
    for k = 0, n - 1 do
        local t = state.targets[seq[(start + k) % n + 1]]
        if not tried[t] then return t end
    end
    return nil
end

return _M
