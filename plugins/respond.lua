-- Answers every request itself with a fixed status and body, without a
-- backend (Kong's request-termination). Docker discovery uses it for the
-- page that says the Docker socket cannot be read.
--   { plugin = "respond", status = 503, body = "down for maintenance\n",
--     content_type = "text/plain; charset=utf-8" }
local _M = {
    type = "middleware",
    priority = 1000,
    schema = {
        status = { type = "integer", default = 503 },
        body = { type = "string", default = "" },
        content_type = { type = "string", default = "text/plain; charset=utf-8" },
    },
}

function _M.on_request(conf, req)
    req:respond(conf.status, conf.body, { ["Content-Type"] = conf.content_type })
end

return _M
