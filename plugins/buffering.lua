-- Caps body sizes (Traefik's buffering):
--   { plugin = "buffering", max_request_body_bytes = 1048576, max_response_body_bytes = 10485760 }
-- A request whose Content-Length is over max_request_body_bytes is answered
-- 413 before anything goes upstream. A chunked request body has no length
-- up front and middlewares do not see request body bytes, so it passes.
-- A response whose Content-Length is over max_response_body_bytes becomes
-- a 500 (its body is dropped); one of unknown length is counted as it
-- streams and cut (the connection closed) once past the limit, since its
-- head is already on its way. 0: no limit. Bodies are not held in memory.
local _M = {
    type = "middleware",
    priority = 1020,
    schema = {
        max_request_body_bytes = { type = "integer", default = 0, min = 0 },
        max_response_body_bytes = { type = "integer", default = 0, min = 0 },
    },
}

local ERROR_PAGE = "Internal Server Error\n"

function _M.on_request(conf, req)
    local max = conf.max_request_body_bytes
    if max == 0 then return end
    local len = tonumber(req:header("Content-Length") or "")
    if len and len > max then
        return req:respond(413, "Request Entity Too Large\n", { ["Content-Type"] = "text/plain", Connection = "close" })
    end
end

function _M.on_response(conf, req, res)
    local max = conf.max_response_body_bytes
    if max == 0 then return end
    local len = tonumber(res:header("Content-Length") or "")
    if len and len <= max then return end
    if len then
        res:set_status(500)
        res:set_header("Content-Type", "text/plain")
        req.ctx.buffering = "replace"
    else
        req.ctx.buffering = 0
    end
    res:filter_body()
end

function _M.on_body(conf, req, res, chunk, last)
    local state = req.ctx.buffering
    if state == "replace" then return last and ERROR_PAGE or "" end
    state = state + #chunk
    if state > conf.max_response_body_bytes then
        error("response body over max_response_body_bytes (" .. conf.max_response_body_bytes .. ")", 0)
    end
    req.ctx.buffering = state
    return chunk
end

return _M
