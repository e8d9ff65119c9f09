-- Reading the gateway's Prometheus metrics in specs.
local h = require("spec.helpers")

local M = {}

-- The sum over the workers of a per-worker gauge (name{worker="…"} N),
-- from the admin API's /metrics.
function M.sum(gw, name)
    local res = h.request(gw.admin_port, { path = "/metrics" })
    local sum = 0
    for v in res.body:gmatch(name .. "{[^}]*} (%-?%d+)") do sum = sum + tonumber(v) end
    return sum
end

return M
