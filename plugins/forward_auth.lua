-- Delegates authentication to another service (Traefik's forwardAuth).
--   { plugin = "forward_auth", address = "http://auth.internal:9000/check",
--     auth_response_headers = { "X-Auth-User" }, trust_forward_header = false }
-- Each request is first sent, without its body, as a GET to address, with
-- the client's headers (or only auth_request_headers) and X-Forwarded-
-- Method, -Proto, -Host, -Uri and -For. A 2xx answer lets the request go on,
-- with the headers named in auth_response_headers (or matching
-- auth_response_headers_regex) copied from that answer onto it; any other
-- answer goes back to the client as it is: status, headers and body. An
-- auth service that cannot be reached, or does not answer within timeout,
-- gets the client a 502 (504 on the timeout), and the reason is logged.
-- The request waits without blocking the worker: this middleware is async.
local mg = require("moongate")
local regex = require("moongate.regex")

local function names(v)
    for i, n in ipairs(v) do
        if type(n) ~= "string" or not n:find("^[%w!#$%%&'*+.^_`|~-]+$") then
            return nil, "[" .. i .. "]: expected a header name"
        end
    end
    return true
end

local function check_tls(t)
    for k, v in pairs(t) do
        if k == "ca" or k == "ca_file" then
            if type(v) ~= "string" then return nil, k .. ": expected a path" end
        elseif k == "insecure_skip_verify" then
            if type(v) ~= "boolean" then return nil, k .. ": expected a boolean" end
        elseif k == "cert" or k == "key" then
            return nil, k .. ": client certificates towards the auth service are not supported yet"
        else
            return nil, "unknown option '" .. tostring(k) .. "' (known: ca, insecure_skip_verify)"
        end
    end
    return true
end

local _M = {
    type = "middleware",
    priority = 1200, -- with the other authentications, after ip_allowlist
    async = true,    -- on_request waits for the auth service
    schema = {
        address = { type = "string", required = true, check = function(v)
            return v:find("^https?://[^/]") ~= nil or nil, "must be an http:// or https:// URL"
        end },
        trust_forward_header = { type = "boolean", default = false },
        auth_response_headers = { type = "array", default = {}, check = names },
        auth_response_headers_regex = { type = "string", check = regex.check },
        auth_request_headers = { type = "array", check = names },
        add_auth_cookies_to_response = { type = "array", default = {} },
        tls = { type = "table", check = check_tls },
        timeout = { type = "number", default = 10, min = 0.001 },
    },
}

-- Not sent to the auth service, nor copied from its answer.
local HOP = {
    connection = true, ["keep-alive"] = true, ["proxy-authenticate"] = true,
    ["proxy-authorization"] = true, te = true, trailer = true, ["transfer-encoding"] = true,
    upgrade = true, ["content-length"] = true, host = true,
}
-- The gateway writes these itself on an answer.
local OWN = { server = true, date = true }

function _M.init(conf)
    local c = {
        address = conf.address, trust = conf.trust_forward_header, timeout = conf.timeout,
        copy = {}, cookies = {}, only = nil,
        re = conf.auth_response_headers_regex and assert(regex.new("(?i)" .. conf.auth_response_headers_regex)),
    }
    for _, n in ipairs(conf.auth_response_headers) do c.copy[#c.copy + 1] = n:lower() end
    for _, n in ipairs(conf.add_auth_cookies_to_response) do c.cookies[n] = true end
    if conf.auth_request_headers then
        c.only = {}
        for _, n in ipairs(conf.auth_request_headers) do c.only[n:lower()] = true end
    end
    local tls = conf.tls or {}
    c.ca_file = tls.ca or tls.ca_file
    c.verify = not tls.insecure_skip_verify
    return c
end

local FORWARDED = {
    ["x-forwarded-method"] = true, ["x-forwarded-proto"] = true, ["x-forwarded-host"] = true,
    ["x-forwarded-uri"] = true, ["x-forwarded-for"] = true,
}

-- The auth request's headers: the client's (repeated ones joined), then
-- the X-Forwarded-* set; trust_forward_header keeps what the client sent.
local function auth_headers(conf, req)
    local out, sent = {}, {}
    for _, h in ipairs(req:headers()) do
        local name, value = h[1], h[2]
        local lname = name:lower()
        local wanted
        if FORWARDED[lname] then
            wanted = conf.trust -- from the original request, whatever auth_request_headers says
        else
            wanted = not HOP[lname] and (not conf.only or conf.only[lname])
        end
        if wanted then
            local have = sent[lname]
            if have then
                out[have] = out[have] .. (lname == "cookie" and "; " or ", ") .. value
            else
                sent[lname] = name
                out[name] = value
            end
        end
    end
    local function set(name, value)
        local lname = name:lower()
        if conf.trust and sent[lname] then return end
        out[name] = value
    end
    set("X-Forwarded-Method", req.method)
    set("X-Forwarded-Proto", req.scheme or "http")
    set("X-Forwarded-Host", req:header("Host") or req.host or "")
    set("X-Forwarded-Uri", req.target or req.path or "/")
    local client = req.client_ip or ""
    if conf.trust and sent["x-forwarded-for"] then
        out[sent["x-forwarded-for"]] = out[sent["x-forwarded-for"]] .. ", " .. client
    else
        out["X-Forwarded-For"] = client
    end
    return out
end

-- The set-cookie's cookie name.
local function cookie_name(v)
    return v:match("^%s*([^=;%s]+)")
end

-- The auth service said no (or redirects to a login): its answer goes
-- back to the client as it came.
local function deny(req, res)
    local headers = {}
    for _, h in ipairs(res.header_list or {}) do
        local name, value = h[1], h[2]
        if name == "content-type" then
            headers["Content-Type"] = value
        elseif not HOP[name] and not OWN[name] then
            req:add_response_header(name, value)
        end
    end
    if not headers["Content-Type"] and res.body == "" then headers["Content-Type"] = "text/plain; charset=utf-8" end
    return req:respond(res.status, res.body, headers)
end

function _M.on_request(conf, req)
    local res, err = mg.http.request({
        url = conf.address, method = "GET", headers = auth_headers(conf, req),
        timeout = conf.timeout, ca_file = conf.ca_file, verify = conf.verify,
    })
    if not res then
        local timed_out = tostring(err):find("timed out", 1, true) ~= nil
        mg.log.err("authentication service ", conf.address, ": ", tostring(err), "; answering ",
            timed_out and 504 or 502, " to ", req.method, " ", req.target or "")
        if timed_out then
            return req:respond(504, "Gateway Timeout: the authentication service did not answer in time\n")
        end
        return req:respond(502, "Bad Gateway: the authentication service cannot be reached\n")
    end
    if res.status < 200 or res.status >= 300 then return deny(req, res) end
    local list = res.header_list or {}
    for _, want in ipairs(conf.copy) do
        req:remove_header(want)
        for _, h in ipairs(list) do
            if h[1] == want then req:add_header(want, h[2]) end
        end
    end
    if conf.re then
        local done = {}
        for _, h in ipairs(list) do
            local name = h[1]
            if not HOP[name] and conf.re:match(name) then
                if not done[name] then
                    done[name] = true
                    req:remove_header(name)
                end
                req:add_header(name, h[2])
            end
        end
    end
    if next(conf.cookies) then
        for _, h in ipairs(list) do
            if h[1] == "set-cookie" and conf.cookies[cookie_name(h[2]) or ""] then
                req:add_response_header("Set-Cookie", h[2])
            end
        end
    end
end

return _M
