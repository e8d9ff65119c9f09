-- Smooth weighted round robin, as nginx does it: every pick adds each
-- target's weight to its running score, takes the highest, and subtracts
-- the total from the winner. Weights 5,1,1 give a a b a c a a, not a a a a a b c.
local _M = { type = "balancer" }

function _M.new(targets, opts)
    local current = {}
    for i = 1, #targets do current[i] = 0 end
    return { targets = targets, current = current }
end

function _M.pick(state, req)
    local targets, current, tried = state.targets, state.current, req.tried
    local best, total = nil, 0
    for i = 1, #targets do
        local t = targets[i]
        if not tried[t] then
            local c = current[i] + t.weight
            current[i] = c
            total = total + t.weight
            if not best or c > current[best] then best = i end
        end
    end
    if not best then return nil end
    current[best] = current[best] - total
    return targets[best]
end

return _M
