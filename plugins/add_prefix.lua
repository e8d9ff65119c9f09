-- Puts a prefix in front of the path before proxying (Traefik's addPrefix):
--   { plugin = "add_prefix", prefix = "/api" }   -- /users?x=1 -> /api/users?x=1
local _M = {
    type = "middleware",
    priority = 900,
    schema = {
        prefix = { type = "string", required = true,
                   check = function(v) return v:sub(1, 1) == "/" or nil, "must start with /" end },
    },
}

function _M.on_request(conf, req)
    local prefix = conf.prefix:gsub("/$", "")
    req:set_path(prefix .. req.path)
end

return _M
