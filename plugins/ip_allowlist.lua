-- Lets through only clients whose address is in source_range; everyone
-- else gets 403 here (the request does not fall through to another route).
--   { plugin = "ip_allowlist", source_range = { "10.0.0.0/8", "2001:db8::/32" },
--     depth = 0, excluded_ips = { "10.0.0.1" }, reject_status = 403 }
-- depth > 0 judges the Nth X-Forwarded-For address from the right instead of
-- the peer (a request with fewer is refused); excluded_ips skips those
-- proxies from the right. Traefik's ipAllowList (ipWhiteList).
local ipnet = require("moongate.ipnet")

local function cidrs(v)
    local set, err = ipnet.set(v)
    if not set then return nil, err end
    return true
end

local _M = {
    type = "middleware",
    priority = 1300, -- before authentication and everything else
    schema = {
        source_range = { type = "array", required = true, check = cidrs },
        depth = { type = "integer", default = 0, min = 0 },
        excluded_ips = { type = "array", check = cidrs },
        reject_status = { type = "integer", default = 403, min = 400, max = 599 },
    },
}

function _M.init(conf)
    return {
        set = assert(ipnet.set(conf.source_range)),
        depth = conf.depth,
        excluded = conf.excluded_ips and assert(ipnet.set(conf.excluded_ips)),
        status = conf.reject_status,
    }
end

function _M.on_request(conf, req)
    local ip = ipnet.source(req, conf.depth, conf.excluded)
    if ip and ipnet.contains(conf.set, ip) then return end
    return req:respond(conf.status, "Forbidden\n", { ["Content-Type"] = "text/plain" })
end

return _M
