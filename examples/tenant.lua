-- Route by tenant: a request with "X-Tenant: acme" goes to the targets
-- labelled tenant = "acme" (round robin among them); unknown or missing
-- tenants, or tenants whose targets all failed, go to any target.
local _M = { type = "balancer" }

function _M.new(targets)
    local by_tenant = {}
    for _, t in ipairs(targets) do
        local name = t.labels.tenant
        if name then
            by_tenant[name] = by_tenant[name] or {}
            table.insert(by_tenant[name], t)
        end
    end
    return { all = targets, by_tenant = by_tenant, n = 0 }
end

local function rotate(pool, tried, n)
    for k = 0, #pool - 1 do
        local t = pool[(n + k) % #pool + 1]
        if not tried[t] then return t end
    end
end

function _M.pick(st, req)
    st.n = st.n + 1
    local pool = st.by_tenant[req:header("X-Tenant") or ""]
    return (pool and rotate(pool, req.tried, st.n)) or rotate(st.all, req.tried, st.n)
end

return _M
