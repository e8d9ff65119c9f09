-- Refuses request bodies larger than max_request_body_bytes with 413
-- before anything goes upstream (Traefik's buffering, request side):
--   { plugin = "buffering", max_request_body_bytes = 1048576 }
-- Judged by Content-Length. A chunked request body has no length up front
-- and middlewares do not see body bytes, so it passes; the response side
-- (max_response_body_bytes) needs the body hook docs/middlewares.md
-- proposes and is not offered yet.
local _M = {
    type = "middleware",
    priority = 1020,
    schema = {
        max_request_body_bytes = { type = "integer", default = 0, min = 0 },
    },
}

function _M.on_request(conf, req)
    local max = conf.max_request_body_bytes
    if max == 0 then return end
    local len = tonumber(req:header("Content-Length") or "")
    if len and len > max then
        return req:respond(413, "Request Entity Too Large\n", { ["Content-Type"] = "text/plain", Connection = "close" })
    end
end

return _M
