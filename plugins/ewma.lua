-- Peak-EWMA: prefers the target with the lowest expected latency, an
-- exponentially weighted moving average of observed latencies that jumps up
-- at once on a slow answer (the peak) and decays over `decay` seconds
-- (default 10), times the target's in-flight requests + 1. Failed tries
-- count as a slow answer (opts.penalty seconds, default 1). Targets not yet
-- measured start at the best known latency, so new ones are tried soon.
local mg = require("moongate")

local _M = { type = "balancer" }

function _M.new(targets, opts)
    opts = opts or {}
    return {
        targets = targets,
        decay = opts.decay or 10,
        penalty = opts.penalty or 1,
        cost = {},   -- target -> ewma latency (seconds)
        stamp = {},  -- target -> time of the last update
    }
end

local function current(state, t, now)
    local c = state.cost[t]
    if not c then return nil end
    local age = now - state.stamp[t]
    if age > 0 then c = c * math.exp(-age / state.decay) end
    return c
end

function _M.pick(state, req)
    local now, tried = mg.now(), req.tried
    local best_known
    for _, t in ipairs(state.targets) do
        local c = current(state, t, now)
        if c and (not best_known or c < best_known) then best_known = c end
    end
    local best, best_score
    for _, t in ipairs(state.targets) do
        if not tried[t] then
            local c = current(state, t, now) or best_known or 0
            local score = (c + 1e-6) * (mg.inflight(t) + 1) / t.weight
            if not best or score < best_score then best, best_score = t, score end
        end
    end
    return best
end

function _M.report(state, target, outcome)
    local now = mg.now()
    local sample = outcome.error and state.penalty or outcome.latency or 0
    local c = current(state, target, now)
    if not c or sample > c then
        c = sample -- peak: a slow answer counts at once
    else
        local w = math.exp(-(now - state.stamp[target]) / state.decay)
        c = c * w + sample * (1 - w)
    end
    state.cost[target] = c
    state.stamp[target] = now
end

return _M
