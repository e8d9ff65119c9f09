-- The default autoscaler: target tracking on in-flight requests per
-- replica, as Kubernetes' HPA computes it,
--   desired = ceil(current * observed / target)
-- with a 10 % tolerance around the target (no change for a ratio within
-- it), min and max, an immediate scale-up and a stabilised scale-down: the
-- replicas never go below the highest recommendation of the last
-- scale_down_window seconds, so a dip in the load does not flap them.
-- A service at zero replicas has no per-replica figure: one replica per
-- target's worth of queued requests, at least one if any is waiting.
local _M = { type = "autoscaler" }

local TOLERANCE = 0.1

-- What the load alone asks for, before min/max and stabilisation.
function _M.recommend(service, m)
    local load = (m.inflight or 0) + (m.queued or 0)
    local current = m.replicas or 0
    if current == 0 then
        if load <= 0 then return 0 end
        return math.max(1, math.ceil(load / service.target))
    end
    local ratio = (load / current) / service.target
    if math.abs(ratio - 1) <= TOLERANCE then return current end
    return math.ceil(current * ratio)
end

function _M.decide(service, m, state)
    local want = _M.recommend(service, m)
    want = math.max(service.min, math.min(service.max, want))
    -- recommendations of the window, oldest first
    local recs = state.recommendations or {}
    state.recommendations = recs
    recs[#recs + 1] = { at = m.now, replicas = want }
    local window = service.scale_down_window
    while #recs > 1 and recs[1].at <= m.now - window do table.remove(recs, 1) end
    local current = m.desired or m.replicas or 0
    if want >= current then return want, "load " .. string.format("%.1f", (m.inflight or 0) + (m.queued or 0)) end
    local highest = want
    for _, r in ipairs(recs) do highest = math.max(highest, r.replicas) end
    if highest < current then
        return highest, string.format("lower for %.0f s", window)
    end
    return current, "stabilising"
end

return _M
