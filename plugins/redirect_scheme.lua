-- Redirects requests that did not arrive over `scheme` to it, keeping the
-- host, path and query (Traefik's redirectScheme):
--   { plugin = "redirect_scheme", scheme = "https", port = 8443, permanent = true }
-- permanent: 301 (308 for methods other than GET and HEAD, so a POST stays
-- a POST); otherwise 302 (307). The port is left out of the Location when
-- it is the scheme's default or not set. Requests already on `scheme`
-- (req.scheme, "http" or "https") pass through. ACME HTTP-01 challenges
-- are answered by the core before any middleware, so they never redirect.
local _M = {
    type = "middleware",
    priority = 1100, -- before redirect (1000) and the rest: nothing else should run
    schema = {
        scheme = { type = "string", default = "https", one_of = { "https", "http" } },
        port = { type = "integer", min = 1, max = 65535 },
        permanent = { type = "boolean", default = true },
    },
}

local DEFAULT_PORT = { http = 80, https = 443 }

function _M.location(conf, req)
    local host = req.host or ""
    if host:find(":", 1, true) and not host:find("^%[") then host = "[" .. host .. "]" end
    local port = conf.port
    local authority = (port and port ~= DEFAULT_PORT[conf.scheme]) and (host .. ":" .. port) or host
    return conf.scheme .. "://" .. authority .. (req.target or req.path or "/")
end

function _M.on_request(conf, req)
    if (req.scheme or "http") == conf.scheme then return end
    local same_method = req.method == "GET" or req.method == "HEAD"
    local status = conf.permanent and (same_method and 301 or 308) or (same_method and 302 or 307)
    return req:respond(status, "", { Location = _M.location(conf, req) })
end

return _M
