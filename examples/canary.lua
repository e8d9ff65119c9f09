-- Canary releases: requests with "X-Canary: 1" go to targets labelled
-- canary = "yes", and so does opts.percent % of the rest; everything else
-- goes round robin to the stable targets.
--   services.api = { balancer = "canary", balancer_opts = { percent = 5 }, targets = { ... } }
local _M = { type = "balancer" }

function _M.new(targets, opts)
    local st = { canary = {}, stable = {}, percent = (opts and opts.percent) or 0, n = 0 }
    for _, t in ipairs(targets) do
        local pool = t.labels.canary == "yes" and st.canary or st.stable
        pool[#pool + 1] = t
    end
    return st
end

local function first_untried(pool, tried, start)
    for k = 0, #pool - 1 do
        local t = pool[(start + k) % #pool + 1]
        if not tried[t] then return t end
    end
end

function _M.pick(st, req)
    st.n = st.n + 1
    local want_canary = req:header("X-Canary") == "1" or (st.n % 100) < st.percent
    local first, second = st.stable, st.canary
    if want_canary then first, second = st.canary, st.stable end
    return first_untried(first, req.tried, st.n) or first_untried(second, req.tried, st.n)
end

return _M
