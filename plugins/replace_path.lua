-- Replaces the whole path before proxying; the query is kept and the
-- original path is passed on in X-Replaced-Path (Traefik's replacePath):
--   { plugin = "replace_path", path = "/health" }
local _M = {
    type = "middleware",
    priority = 900,
    schema = {
        path = { type = "string", required = true,
                 check = function(v) return v:sub(1, 1) == "/" or nil, "must start with /" end },
    },
}

function _M.on_request(conf, req)
    req:set_header("X-Replaced-Path", req.path)
    req:set_path(conf.path)
end

return _M
