-- Active HTTP health check: a request to the target's address; healthy when
-- it answers in time with an expected status (200-399 unless `statuses`
-- lists them).
--   services.api.health = { path = "/healthz", interval = 2, timeout = 1,
--                           healthy = 2, unhealthy = 2, statuses = { 200 } }
local mg = require("moongate")

local _M = { type = "health" }

function _M.check(target, conf)
    local res, err = mg.http.request({
        method = conf.method,
        url = "http://" .. (target.ip:find(":", 1, true) and ("[" .. target.ip .. "]") or target.ip)
            .. ":" .. target.port .. conf.path,
        headers = { Host = conf.host or target.host },
        timeout = conf.timeout,
    })
    if not res then return false, err end
    local expected = conf.statuses
    if #expected > 0 then
        for _, s in ipairs(expected) do
            if s == res.status then return true end
        end
        return false, "status " .. res.status
    end
    if res.status >= 200 and res.status < 400 then return true end
    return false, "status " .. res.status
end

return _M
