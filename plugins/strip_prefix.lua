-- Removes the first matching prefix from the path before proxying:
--   { plugin = "strip_prefix", prefixes = { "/api" } }   -- /api/users -> /users
-- The removed prefix is passed on in X-Forwarded-Prefix, as Traefik does.
local _M = {
    type = "middleware",
    priority = 900,
    schema = { prefixes = { type = "array", required = true } },
}

function _M.on_request(conf, req)
    local path = req.path
    for _, prefix in ipairs(conf.prefixes) do
        if path:sub(1, #prefix) == prefix then
            local rest = path:sub(#prefix + 1)
            if rest == "" or rest:sub(1, 1) ~= "/" then rest = "/" .. rest end
            req:set_path(rest)
            req:set_header("X-Forwarded-Prefix", prefix)
            return
        end
    end
end

return _M
