-- Rewrites the path with a regex before proxying; the query is kept and the
-- original path is passed on in X-Replaced-Path (Traefik's
-- replacePathRegex). A path that does not match is left alone.
--   { plugin = "replace_path_regex", regex = "^/api/v1/(.*)", replacement = "/v2/$1" }
local regex = require("moongate.regex")

local _M = {
    type = "middleware",
    priority = 900,
    schema = {
        regex = { type = "string", required = true, check = regex.check },
        replacement = { type = "string", required = true },
    },
}

function _M.init(conf)
    return { re = assert(regex.new(conf.regex)), replacement = conf.replacement }
end

function _M.on_request(conf, req)
    local path = req.path
    if not conf.re:match(path) then return end
    local new = conf.re:replace(path, conf.replacement)
    if new:sub(1, 1) ~= "/" then new = "/" .. new end
    req:set_header("X-Replaced-Path", path)
    req:set_path(new)
end

return _M
