-- The request and response objects plugins see. One object of each per
-- worker: every field is read through the FFI from the request the core is
-- handling right now, so nothing is copied unless a plugin asks for it.
-- Valid only during a hook or pick call.
local ffi = require("ffi")
local core = require("moongate.ffi")

local _M = {}

local C = core.C
local OK, DECLINED, INVALID, WRONG_PHASE, NO_REQUEST =
    core.OK, core.DECLINED, core.INVALID, core.WRONG_PHASE, core.NO_REQUEST
local no_request = core.no_request
local ffi_string = ffi.string
local pp = ffi.new("const char *[2]")
local lp = ffi.new("size_t[2]")

local FIELDS = core.FIELDS
local TLS_RESUMED = FIELDS.tls_resumed

local function field(which, name)
    local rc = C.mg_ffi_req_field(which, pp, lp)
    if rc == OK then return ffi_string(pp[0], lp[0]) end
    if rc == NO_REQUEST then no_request("req." .. name, 3) end
    return nil
end

-- rc of a call that has no other failure than "no request".
local function check_request(rc, what)
    if rc == NO_REQUEST then no_request(what, 3) end
    return rc
end

-- Type check only: the C side refuses CR, LF and NUL (one check, in one
-- place, and no Lua pattern matching on the hot path).
local function check_value(v, what, level)
    if type(v) ~= "string" then
        if type(v) == "number" then return tostring(v) end
        error(what .. " must be a string, got " .. type(v), level or 3)
    end
    return v
end

local BAD_VALUE = "invalid header: names are tokens, values must not contain CR, LF or NUL"

-- Per-request ctx tables live in the runtime, keyed by request id.
_M.ctx_of = function() return nil end

local Req = {}

local req = setmetatable({}, {
    __index = function(t, k)
        -- no tail calls: a missing request's error names the plugin's line
        if k == "tls_resumed" then return field(TLS_RESUMED, k) == "1" end
        local f = FIELDS[k]
        if f then
            local v = field(f, k)
            return v
        end
        if k == "ctx" then return _M.ctx_of() end
        return Req[k]
    end,
})
_M.req = req

function Req:header(name)
    local rc = C.mg_ffi_req_header(name, #name, 0, pp, lp)
    if rc == OK then return ffi_string(pp[0], lp[0]) end
    check_request(rc, "req:header")
    return nil
end

-- All values of a header, in order.
function Req:header_values(name)
    local out, i = {}, 0
    while true do
        local rc = C.mg_ffi_req_header(name, #name, i, pp, lp)
        if rc ~= OK then
            check_request(rc, "req:header_values")
            return out
        end
        i = i + 1
        out[i] = ffi_string(pp[0], lp[0])
    end
end

-- { {name, value}, ... } in arrival order.
function Req:headers()
    local out = {}
    for i = 0, check_request(C.mg_ffi_req_header_count(), "req:headers") - 1 do
        if C.mg_ffi_req_header_at(i, pp, lp, pp + 1, lp + 1) == OK then
            out[#out + 1] = { ffi_string(pp[0], lp[0]), ffi_string(pp[1], lp[1]) }
        end
    end
    return out
end

local HOW = { [0] = "req:set_header", "req:add_header", "req:remove_header" }

-- Raises for every code but OK; level as for error(), from the caller.
local function header_error(rc, name, what, phase_msg, level)
    level = level + 1
    if rc == INVALID then error(BAD_VALUE .. " ('" .. name .. "')", level) end
    if rc == WRONG_PHASE then error(phase_msg, level) end
    if rc == NO_REQUEST then no_request(what, level) end
    error(what .. " failed (out of memory)", level)
end

local function set_header(name, value, mode)
    name = check_value(name, "header name")
    if value ~= nil then value = check_value(value, "header value") end
    local rc = C.mg_ffi_req_set_header(name, #name, value, value and #value or 0, mode)
    if rc ~= OK then header_error(rc, name, HOW[mode], "request headers can only change in on_request", 3) end
end

function Req:set_header(name, value) set_header(name, value, 0) end
function Req:add_header(name, value) set_header(name, value, 1) end
function Req:remove_header(name) set_header(name, nil, 2) end

function Req:cookie(name)
    local all = self:header_values("cookie")
    for _, line in ipairs(all) do
        for k, v in line:gmatch("([^=;%s]+)=([^;]*)") do
            if k == name then return v end
        end
    end
    return nil
end

function Req:set_path(p)
    if type(p) ~= "string" then error("path must be a string", 2) end
    local rc = C.mg_ffi_req_set_path(p, #p)
    if rc == OK then return end
    if rc == INVALID then error("invalid path '" .. p .. "' (must start with / and have no spaces)", 2) end
    if rc == WRONG_PHASE then error("the path can only change in on_request", 2) end
    if rc == NO_REQUEST then no_request("req:set_path", 2) end
    error("req:set_path failed (out of memory)", 2)
end

function Req:set_service(name)
    local rc = C.mg_ffi_req_set_service(tostring(name))
    if rc == DECLINED then error("unknown service '" .. tostring(name) .. "'", 2) end
    if rc == WRONG_PHASE then error("the service can only change in on_request", 2) end
    if rc == NO_REQUEST then no_request("req:set_service", 2) end
end

-- Up to `retries` extra tries after failures that sent nothing usable,
-- waiting initial_interval seconds before the first and twice as long
-- before each next one (replaces upstream.retries for this request).
function Req:set_retries(retries, initial_interval)
    if type(retries) ~= "number" or retries % 1 ~= 0 then error("retries must be an integer", 2) end
    local rc = C.mg_ffi_req_set_retries(retries, tonumber(initial_interval) or 0)
    if rc == NO_REQUEST then no_request("req:set_retries", 2) end
    if rc == INVALID then error("retries must be 0..10 and initial_interval 0..60 seconds", 2) end
    if rc == WRONG_PHASE then error("retries can only change in on_request", 2) end
end

-- headers (a table name -> value) as "Name: value\r\n" lines, each
-- checked as the core checks a header; raises at the caller's caller.
local function header_block(headers)
    local lines = {}
    for k, v in pairs(headers or {}) do
        k = check_value(k, "header name", 4)
        v = check_value(v, "header value", 4)
        if C.mg_ffi_header_valid(k, #k, v, #v) ~= OK then error(BAD_VALUE .. " ('" .. k .. "')", 3) end
        lines[#lines + 1] = k .. ": " .. v .. "\r\n"
    end
    return table.concat(lines)
end

-- Answers the request here; no upstream is contacted.
function Req:respond(status, body, headers)
    if type(status) ~= "number" or status < 200 or status > 999 then
        error("status must be a number from 200 to 999", 2)
    end
    body = body == nil and "" or tostring(body)
    local h = header_block(headers)
    local rc = C.mg_ffi_req_respond(status, body, #body, h, #h)
    if rc ~= OK then
        if rc == NO_REQUEST then no_request("req:respond", 2) end
        if rc == WRONG_PHASE then error("cannot respond: a response is already on its way", 2) end
        error("req:respond failed (out of memory)", 2)
    end
    _M.responded = true
end

function Req:add_response_header(name, value)
    name = check_value(name, "header name")
    value = check_value(value, "header value")
    local rc = C.mg_ffi_resp_add_header(name, #name, value, #value)
    if rc ~= OK then header_error(rc, name, "req:add_response_header", "", 2) end
end

-- The response, in on_response (read and change) and on_log (read).
local Res = {}
local res = setmetatable({}, {
    __index = function(t, k)
        if k == "status" then
            local v = check_request(C.mg_ffi_resp_status(), "res.status") -- not a tail call
            return v
        end
        return Res[k]
    end,
})
_M.res = res

function Res:header(name)
    local rc = C.mg_ffi_resp_header(name, #name, 0, pp, lp)
    if rc == OK then return ffi_string(pp[0], lp[0]) end
    check_request(rc, "res:header")
    return nil
end

local RES_HOW = { [0] = "res:set_header", "res:add_header", "res:remove_header" }

local function set_resp_header(name, value, mode)
    name = check_value(name, "header name")
    if value ~= nil then value = check_value(value, "header value") end
    local rc = C.mg_ffi_resp_set_header(name, #name, value, value and #value or 0, mode)
    if rc ~= OK then
        header_error(rc, name, RES_HOW[mode], "response headers can only change in on_response", 3)
    end
end

function Res:set_header(name, value) set_resp_header(name, value, 0) end
function Res:add_header(name, value) set_resp_header(name, value, 1) end
function Res:remove_header(name) set_resp_header(name, nil, 2) end

-- The runtime notes which middleware asked (set by moongate.runtime).
_M.wants_body = function() end

-- In on_response: this middleware's on_body(conf, req, res, chunk, last)
-- gets the response body piece by piece and returns what to send instead;
-- the client then gets it chunked (its length is not known up front).
function Res:filter_body()
    local rc = C.mg_ffi_resp_filter_body()
    if rc == NO_REQUEST then no_request("res:filter_body", 2) end
    if rc ~= OK then error("the body can only be filtered from on_response", 2) end
    _M.wants_body()
end

-- In on_response: the client gets body and headers (a table name ->
-- value) instead of the backend's answer, with the backend's status (or
-- the one res:set_status gives); the backend's body is read and dropped,
-- its connection kept. HTTP/1 upstreams only (the errors middleware).
function Res:replace(body, headers)
    body = body == nil and "" or tostring(body)
    local h = header_block(headers)
    local rc = C.mg_ffi_resp_replace(body, #body, h, #h)
    if rc == NO_REQUEST then no_request("res:replace", 2) end
    if rc == WRONG_PHASE then error("res:replace works in on_response of an HTTP/1 upstream's answer", 2) end
    if rc == INVALID then error("res:replace: a 204 or 304 answer has no body", 2) end
    if rc ~= OK then error("res:replace failed (out of memory)", 2) end
end

function Res:set_status(status)
    local rc = C.mg_ffi_resp_set_status(tonumber(status) or 0)
    if rc == NO_REQUEST then no_request("res:set_status", 2) end
    if rc ~= OK then error("the status can only change in on_response, to 200..999", 2) end
end

return _M
