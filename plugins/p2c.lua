-- Power of two choices: sample two untried targets at random (in
-- proportion to their weights) and take the one with fewer gateway-wide
-- in-flight requests per unit of weight; on a tie, the first sampled. Nearly
-- as good as least_conn under load, and it avoids herding on one target
-- when many workers decide at once.
local mg = require("moongate")

local _M = { type = "balancer" }

function _M.new(targets, opts)
    return { targets = targets, random = opts and opts.random or math.random }
end

local function sample(candidates, total, random, skip)
    local r = random() * total
    for _, t in ipairs(candidates) do
        if t ~= skip then
            r = r - t.weight
            if r < 0 then return t end
        end
    end
    for i = #candidates, 1, -1 do
        if candidates[i] ~= skip then return candidates[i] end
    end
end

function _M.pick(state, req)
    local tried, candidates, total = req.tried, {}, 0
    for _, t in ipairs(state.targets) do
        if not tried[t] then
            candidates[#candidates + 1] = t
            total = total + t.weight
        end
    end
    local n = #candidates
    if n == 0 then return nil end
    if n == 1 then return candidates[1] end
    local a = sample(candidates, total, state.random)
    local b = sample(candidates, total - a.weight, state.random, a)
    if mg.inflight(b) / b.weight < mg.inflight(a) / a.weight then return b end
    return a
end

return _M
