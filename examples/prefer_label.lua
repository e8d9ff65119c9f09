-- Prefer targets with a label (say zone = "eu-west-1", the gateway's own
-- zone) and use the others only when every preferred one was tried:
--   balancer_opts = { label = "zone", value = "eu-west-1" }
local _M = { type = "balancer" }

function _M.new(targets, opts)
    local preferred, others = {}, {}
    for _, t in ipairs(targets) do
        local pool = (opts and t.labels[opts.label] == opts.value) and preferred or others
        pool[#pool + 1] = t
    end
    return { preferred = preferred, others = others, n = 0 }
end

local function rotate(pool, tried, n)
    for k = 0, #pool - 1 do
        local t = pool[(n + k) % #pool + 1]
        if not tried[t] then return t end
    end
end

function _M.pick(st, req)
    st.n = st.n + 1
    return rotate(st.preferred, req.tried, st.n) or rotate(st.others, req.tried, st.n)
end

return _M
