-- Answers with a redirect instead of proxying.
--   { plugin = "redirect", to = "https://example.com", status = 301, keep_path = true }
local _M = {
    type = "middleware",
    priority = 1000,
    schema = {
        to = { type = "string", required = true },
        status = { type = "integer", default = 302, one_of = { 301, 302, 303, 307, 308 } },
        keep_path = { type = "boolean", default = true },
    },
}

function _M.on_request(conf, req)
    local location = conf.to
    if conf.keep_path then location = location:gsub("/$", "") .. req.target end
    req:respond(conf.status, "", { Location = location })
end

return _M
