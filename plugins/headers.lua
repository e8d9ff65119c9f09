-- Sets, adds and removes request and response headers.
--   { plugin = "headers", request = { set = { ["X-A"] = "1" }, remove = { "X-B" } },
--                         response = { set = { ["Cache-Control"] = "no-store" }, add = {...} } }
local _M = {
    type = "middleware",
    priority = 500,
    schema = {
        request = { type = "table", default = {} },
        response = { type = "table", default = {} },
    },
}

local function apply(obj, spec)
    for _, name in ipairs(spec.remove or {}) do obj:remove_header(name) end
    for name, value in pairs(spec.set or {}) do obj:set_header(name, value) end
    for name, value in pairs(spec.add or {}) do obj:add_header(name, value) end
end

function _M.on_request(conf, req) apply(req, conf.request) end

function _M.on_response(conf, req, res) apply(res, conf.response) end

return _M
