-- An autoscaler on p95 latency: one more replica while p95 is above the
-- goal (opts.p95, seconds), one fewer once it stayed under half the goal
-- for a whole scale_down_window. Wakes a service at zero on a queued request.
local _M = { type = "autoscaler" }

function _M.decide(service, m, state)
    local goal = (service.opts or {}).p95 or 0.5
    if m.desired == 0 then return m.queued > 0 and 1 or 0, "wake on demand" end
    if m.p95 > goal and m.since_change >= 3 then return m.desired + 1, "p95 above goal" end
    state.calm_since = m.p95 < goal / 2 and (state.calm_since or m.now) or nil
    if state.calm_since and m.now - state.calm_since >= service.scale_down_window then
        state.calm_since = nil
        return m.desired - 1, "p95 under half the goal"
    end
    return m.desired
end

return _M
