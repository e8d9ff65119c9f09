-- Least connections, weighted, gateway-wide: picks the target with the
-- fewest in-flight requests per unit of weight, counting the requests of
-- every worker (mg.inflight reads the core's shared counters), not just
-- this worker's slice. Ties go by smooth weighted round robin, so an idle
-- pool is used in proportion to the weights, as nginx does.
local mg = require("moongate")

local inflight, smooth_pick = mg.inflight, mg.smooth_pick

local _M = { type = "balancer" }

function _M.new(targets, opts, service)
    return { targets = targets, current = {}, load = {}, eligible = {} }
end

function _M.pick(state, req)
    local targets, tried, load, eligible = state.targets, req.tried, state.load, state.eligible
    -- Other workers change the shared counts at any time: read each once,
    -- then decide on those readings.
    local min_load
    for i = 1, #targets do
        local t = targets[i]
        local l = not tried[t] and inflight(t) / t.weight or false
        load[i] = l
        if l and (not min_load or l < min_load) then min_load = l end
    end
    if not min_load then return nil end
    for i = 1, #targets do eligible[i] = load[i] == min_load end
    local best = smooth_pick(targets, state.current, tried, eligible)
    return best and targets[best]
end

return _M
