-- Least connections, weighted, gateway-wide: picks the target with the
-- fewest in-flight requests per unit of weight, counting the requests of
-- every worker (mg.inflight reads the core's shared counters), not just
-- this worker's slice. Ties go by smooth weighted round robin, so an idle
-- pool is used in proportion to the weights, as nginx does.
local mg = require("moongate")

local _M = { type = "balancer" }

function _M.new(targets, opts, service)
    local current = {}
    for i = 1, #targets do current[i] = 0 end
    return { targets = targets, current = current }
end

function _M.pick(state, req)
    local targets, tried, current = state.targets, req.tried, state.current
    local min_load
    for i = 1, #targets do
        local t = targets[i]
        if not tried[t] then
            local load = mg.inflight(t) / t.weight
            if not min_load or load < min_load then min_load = load end
        end
    end
    if not min_load then return nil end
    local best, total = nil, 0
    for i = 1, #targets do
        local t = targets[i]
        if not tried[t] and mg.inflight(t) / t.weight == min_load then
            current[i] = current[i] + t.weight
            total = total + t.weight
            if not best or current[i] > current[best] then best = i end
        end
    end
    current[best] = current[best] - total
    return targets[best]
end

return _M
