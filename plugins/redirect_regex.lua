-- Redirects when the request's URL (scheme://host[:port]/path?query, as the
-- client asked for it) matches regex; Location is the replacement with the
-- groups filled in ($1 or ${1}). Traefik's redirectRegex:
--   { plugin = "redirect_regex", regex = [[^http://old\.test/(.*)]],
--     replacement = "https://new.test/${1}", permanent = true }
-- permanent: 301 (308 for methods other than GET and HEAD); otherwise 302
-- (307). A URL that does not match passes through. Regexes are Go syntax
-- in the subset moongate.regex takes.
local regex = require("moongate.regex")

local _M = {
    type = "middleware",
    priority = 1000,
    schema = {
        regex = { type = "string", required = true, check = regex.check },
        replacement = { type = "string", required = true },
        permanent = { type = "boolean", default = false },
    },
}

function _M.init(conf)
    return { re = assert(regex.new(conf.regex)), replacement = conf.replacement, permanent = conf.permanent }
end

function _M.url(req)
    local host = req:header("Host") or req.host or ""
    return (req.scheme or "http") .. "://" .. host .. (req.target or req.path or "/")
end

function _M.on_request(conf, req)
    local url = _M.url(req)
    if not conf.re:match(url) then return end
    local location = conf.re:replace(url, conf.replacement)
    local same_method = req.method == "GET" or req.method == "HEAD"
    local status = conf.permanent and (same_method and 301 or 308) or (same_method and 302 or 307)
    return req:respond(status, "", { Location = location })
end

return _M
