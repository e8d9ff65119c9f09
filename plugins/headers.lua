-- Sets, adds and removes request and response headers, answers CORS
-- preflights and adds security headers (Traefik's headers middleware; the
-- options are Traefik's in snake_case, see docs/middlewares.md).
--   { plugin = "headers",
--     request = { set = { ["X-A"] = "1" }, remove = { "X-B" } },
--     response = { set = { ["Cache-Control"] = "no-store" }, add = {...} },
--     custom_request_headers = { ["X-C"] = "3", ["X-Drop"] = "" },   -- "" removes
--     access_control_allow_origin_list = { "https://app.test" },
--     access_control_allow_methods = { "GET", "POST" },
--     sts_seconds = 31536000, frame_deny = true, content_type_nosniff = true }
local regex = require("moongate.regex")

local function regexes(list)
    for i, s in ipairs(list) do
        local ok, err = regex.check(s)
        if not ok then return nil, "[" .. i .. "]: " .. err end
    end
    return true
end

local S = { type = "string" }
local B = { type = "boolean", default = false }
local L = { type = "array" }

local _M = {
    type = "middleware",
    priority = 500,
    schema = {
        request = { type = "table", default = {} },
        response = { type = "table", default = {} },
        custom_request_headers = { type = "map" },
        custom_response_headers = { type = "map" },
        -- CORS
        access_control_allow_credentials = B,
        access_control_allow_headers = L,
        access_control_allow_methods = L,
        access_control_allow_origin_list = L,
        access_control_allow_origin_list_regex = { type = "array", check = regexes },
        access_control_expose_headers = L,
        access_control_max_age = { type = "integer", min = 0 },
        add_vary_header = B,
        -- security
        sts_seconds = { type = "integer", default = 0, min = 0 },
        sts_include_subdomains = B,
        sts_preload = B,
        force_sts_header = B,
        frame_deny = B,
        custom_frame_options_value = S,
        content_type_nosniff = B,
        browser_xss_filter = B,
        custom_browser_xss_value = S,
        content_security_policy = S,
        content_security_policy_report_only = S,
        public_key = S,
        referrer_policy = S,
        permissions_policy = S,
        allowed_hosts = L,
        is_development = B,
    },
}

local function set_of(list)
    local s = {}
    for _, v in ipairs(list or {}) do s[v] = true end
    return s
end

function _M.init(conf)
    local c = {}
    for k, v in pairs(conf) do c[k] = v end
    c.origins = set_of(conf.access_control_allow_origin_list)
    c.any_origin = c.origins["*"] or false
    c.origin_res = {}
    for _, s in ipairs(conf.access_control_allow_origin_list_regex or {}) do
        c.origin_res[#c.origin_res + 1] = assert(regex.new(s))
    end
    c.cors = conf.access_control_allow_origin_list ~= nil or #c.origin_res > 0
    c.hosts = conf.allowed_hosts and set_of(conf.allowed_hosts)
    -- the security headers every response gets, as one list
    local sec = {}
    local function add(name, v) if v and v ~= "" then sec[#sec + 1] = { name, v } end end
    add("X-Frame-Options", conf.custom_frame_options_value or (conf.frame_deny and "DENY"))
    add("X-Content-Type-Options", conf.content_type_nosniff and "nosniff")
    add("X-XSS-Protection", conf.custom_browser_xss_value or (conf.browser_xss_filter and "1; mode=block"))
    add("Content-Security-Policy", conf.content_security_policy)
    add("Content-Security-Policy-Report-Only", conf.content_security_policy_report_only)
    add("Public-Key-Pins", conf.public_key)
    add("Referrer-Policy", conf.referrer_policy)
    add("Permissions-Policy", conf.permissions_policy)
    c.security = sec
    if conf.sts_seconds > 0 then
        c.sts = "max-age=" .. conf.sts_seconds .. (conf.sts_include_subdomains and "; includeSubDomains" or "")
            .. (conf.sts_preload and "; preload" or "")
    end
    return c
end

local function apply(obj, spec)
    for _, name in ipairs(spec.remove or {}) do obj:remove_header(name) end
    for name, value in pairs(spec.set or {}) do obj:set_header(name, value) end
    for name, value in pairs(spec.add or {}) do obj:add_header(name, value) end
end

local function custom(obj, map)
    if not map then return end
    for name, value in pairs(map) do
        if value == "" then obj:remove_header(name) else obj:set_header(name, value) end
    end
end

-- The Access-Control-Allow-Origin value for this Origin, or nil.
local function allowed_origin(conf, origin)
    if not origin then return nil end
    if conf.any_origin then return "*" end
    if conf.origins[origin] then return origin end
    for i = 1, #conf.origin_res do
        if conf.origin_res[i]:match(origin) then return origin end
    end
    return nil
end

local function preflight(conf, req, origin)
    local h = {}
    local allow = allowed_origin(conf, origin)
    if allow then h["Access-Control-Allow-Origin"] = allow end
    if conf.access_control_allow_credentials then h["Access-Control-Allow-Credentials"] = "true" end
    if conf.access_control_allow_headers then
        h["Access-Control-Allow-Headers"] = table.concat(conf.access_control_allow_headers, ",")
    end
    if conf.access_control_allow_methods then
        h["Access-Control-Allow-Methods"] = table.concat(conf.access_control_allow_methods, ",")
    end
    if conf.access_control_max_age then h["Access-Control-Max-Age"] = tostring(conf.access_control_max_age) end
    if conf.add_vary_header and allow ~= "*" then h["Vary"] = "Origin" end
    return req:respond(200, "", h)
end

function _M.on_request(conf, req)
    if conf.hosts and not conf.is_development and not conf.hosts[req.host or ""] then
        return req:respond(500, "Bad Host\n", { ["Content-Type"] = "text/plain" })
    end
    local origin = req:header("Origin")
    if conf.cors and req.method == "OPTIONS" and origin and req:header("Access-Control-Request-Method") then
        return preflight(conf, req, origin)
    end
    if conf.cors then req.ctx.cors_origin = allowed_origin(conf, origin) end
    apply(req, conf.request)
    custom(req, conf.custom_request_headers)
end

function _M.on_response(conf, req, res)
    apply(res, conf.response)
    custom(res, conf.custom_response_headers)
    local sec = conf.security
    for i = 1, #sec do res:set_header(sec[i][1], sec[i][2]) end
    if conf.sts and (req.scheme == "https" or conf.force_sts_header) and not conf.is_development then
        res:set_header("Strict-Transport-Security", conf.sts)
    end
    if conf.cors then
        local allow = req.ctx.cors_origin
        if allow then
            res:set_header("Access-Control-Allow-Origin", allow)
            if conf.access_control_allow_credentials then res:set_header("Access-Control-Allow-Credentials", "true") end
            if conf.access_control_expose_headers then
                res:set_header("Access-Control-Expose-Headers", table.concat(conf.access_control_expose_headers, ","))
            end
        end
        if conf.add_vary_header and allow ~= "*" then res:add_header("Vary", "Origin") end
    end
end

return _M
