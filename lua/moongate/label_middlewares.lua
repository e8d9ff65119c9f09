-- Container labels -> moongate middleware specs, for the Docker provider.
--
--   traefik.http.middlewares.NAME.TYPE.OPTION=VALUE   Traefik's types (ipAllowList,
--                                                     headers, basicAuth, ...)
--   moongate.middlewares.NAME.plugin=PLUGIN           moongate's own: any middleware
--   moongate.middlewares.NAME.OPTION=VALUE            plugin; a value that reads as
--                                                     JSON is that JSON, else a string
--   traefik.http.routers.R.middlewares=a,b@docker     which ones the container's routes use
--   moongate.middlewares=["a", {...}]                 the same, moongate's form (wins)
--
-- One entry point:
--   label_middlewares.for_container(labels, listed) --> list, or nil and why
-- listed is the decoded moongate.middlewares list, if any. The result is the
-- ordered list of inline specs ({ plugin = ..., options... }) for the
-- container's service; a name not defined on the container stays a name
-- (a middleware of the config file). Label keys are case-insensitive, as
-- Traefik's are. Provider suffixes (@docker, @file, ...) are dropped.
local _M = {}

local function lower(s) return s:lower() end

local function split(v)
    local out = {}
    for part in tostring(v):gmatch("[^,]+") do
        local p = part:match("^%s*(.-)%s*$")
        if p ~= "" then out[#out + 1] = p end
    end
    return out
end

local function strip_provider(name) return (name:gsub("@[%w_%-]+$", "")) end

-- Go durations ("100ms", "10s", "1m30s", "1h") or plain seconds -> seconds.
function _M.duration(v)
    v = tostring(v)
    if tonumber(v) then return tonumber(v) end
    local total, rest = 0, v
    local UNIT = { ns = 1e-9, us = 1e-6, ["µs"] = 1e-6, ms = 1e-3, s = 1, m = 60, h = 3600 }
    while rest ~= "" do
        local n, unit, tail = rest:match("^(%d+%.?%d*)(%a+)(.*)$")
        if not n or not UNIT[unit] then return nil end
        total = total + tonumber(n) * UNIT[unit]
        rest = tail
    end
    return v ~= "" and total or nil
end

local CONVERT = {
    string = function(v) return v end,
    list = function(v) return split(v) end,
    bool = function(v)
        v = lower(v)
        if v == "true" then return true elseif v == "false" then return false end
        return nil, "expected true or false"
    end,
    int = function(v)
        local n = tonumber(v)
        if not n or n % 1 ~= 0 then return nil, "expected an integer" end
        return n
    end,
    number = function(v) return tonumber(v) or nil, "expected a number" end,
    duration = function(v) return _M.duration(v) or nil, "expected a duration like 10s or 100ms" end,
}

-- Traefik's options per type: lowercased option path -> { moongate option, kind }.
-- A kind "map" option takes the rest of the key as a map key (header names
-- keep their case).
local CRITERION = {
    ["sourcecriterion.ipstrategy.depth"] = { "depth", "int" },
    ["sourcecriterion.ipstrategy.excludedips"] = { "excluded_ips", "list" },
    ["sourcecriterion.requestheadername"] = { "header", "string", key = "header" },
    ["sourcecriterion.requesthost"] = { "key", "bool", host = true },
}

local function with(base, extra)
    local t = {}
    for k, v in pairs(base) do t[k] = v end
    for k, v in pairs(extra) do t[k] = v end
    return t
end

local TYPES = {
    ipallowlist = { plugin = "ip_allowlist", opts = {
        sourcerange = { "source_range", "list" },
        ["ipstrategy.depth"] = { "depth", "int" },
        ["ipstrategy.excludedips"] = { "excluded_ips", "list" },
        rejectstatuscode = { "reject_status", "int" },
    } },
    redirectscheme = { plugin = "redirect_scheme", opts = {
        scheme = { "scheme", "string" }, port = { "port", "int" }, permanent = { "permanent", "bool" },
    } },
    redirectregex = { plugin = "redirect_regex", opts = {
        regex = { "regex", "string" }, replacement = { "replacement", "string" }, permanent = { "permanent", "bool" },
    } },
    addprefix = { plugin = "add_prefix", opts = { prefix = { "prefix", "string" } } },
    stripprefix = { plugin = "strip_prefix", opts = { prefixes = { "prefixes", "list" } } },
    replacepath = { plugin = "replace_path", opts = { path = { "path", "string" } } },
    replacepathregex = { plugin = "replace_path_regex", opts = {
        regex = { "regex", "string" }, replacement = { "replacement", "string" },
    } },
    headers = { plugin = "headers", opts = {
        customrequestheaders = { "custom_request_headers", "map" },
        customresponseheaders = { "custom_response_headers", "map" },
        accesscontrolallowcredentials = { "access_control_allow_credentials", "bool" },
        accesscontrolallowheaders = { "access_control_allow_headers", "list" },
        accesscontrolallowmethods = { "access_control_allow_methods", "list" },
        accesscontrolalloworiginlist = { "access_control_allow_origin_list", "list" },
        accesscontrolalloworiginlistregex = { "access_control_allow_origin_list_regex", "list" },
        accesscontrolexposeheaders = { "access_control_expose_headers", "list" },
        accesscontrolmaxage = { "access_control_max_age", "int" },
        addvaryheader = { "add_vary_header", "bool" },
        stsseconds = { "sts_seconds", "int" },
        stsincludesubdomains = { "sts_include_subdomains", "bool" },
        stspreload = { "sts_preload", "bool" },
        forcestsheader = { "force_sts_header", "bool" },
        framedeny = { "frame_deny", "bool" },
        customframeoptionsvalue = { "custom_frame_options_value", "string" },
        contenttypenosniff = { "content_type_nosniff", "bool" },
        browserxssfilter = { "browser_xss_filter", "bool" },
        custombrowserxssvalue = { "custom_browser_xss_value", "string" },
        contentsecuritypolicy = { "content_security_policy", "string" },
        contentsecuritypolicyreportonly = { "content_security_policy_report_only", "string" },
        publickey = { "public_key", "string" },
        referrerpolicy = { "referrer_policy", "string" },
        permissionspolicy = { "permissions_policy", "string" },
        allowedhosts = { "allowed_hosts", "list" },
        isdevelopment = { "is_development", "bool" },
    } },
    basicauth = { plugin = "basic_auth", opts = {
        users = { "users", "list" }, usersfile = { "users_file", "string" }, realm = { "realm", "string" },
        removeheader = { "remove_header", "bool" }, headerfield = { "header_field", "string" },
    } },
    circuitbreaker = { plugin = "circuit_breaker", opts = {
        expression = { "expression", "string" }, checkperiod = { "check_period", "duration" },
        fallbackduration = { "fallback_duration", "duration" },
        recoveryduration = { "recovery_duration", "duration" },
        responsecode = { "response_code", "int" },
    } },
    inflightreq = { plugin = "inflight_req", opts = with(CRITERION, { amount = { "amount", "int" } }) },
    ratelimit = { plugin = "rate_limit", opts = with(CRITERION, {
        average = { "average", "number" }, period = { "period", "duration" }, burst = { "burst", "number" },
    }) },
    buffering = { plugin = "buffering", opts = {
        maxrequestbodybytes = { "max_request_body_bytes", "int" },
        maxresponsebodybytes = { "max_response_body_bytes", "int" },
        memrequestbodybytes = { "mem_request_body_bytes", "int" },
        memresponsebodybytes = { "mem_response_body_bytes", "int" },
        retryexpression = { "retry_expression", "string" },
    } },
    chain = { plugin = "chain", opts = { middlewares = { "middlewares", "list" } } },
    compress = { plugin = "compress", opts = {
        encodings = { "encodings", "list" },
        excludedcontenttypes = { "excluded_content_types", "list" },
        includedcontenttypes = { "included_content_types", "list" },
        minresponsebodybytes = { "min_response_body_bytes", "int" },
        defaultencoding = { "default_encoding", "string" },
    } },
    retry = { plugin = "retry", opts = {
        attempts = { "attempts", "int" }, initialinterval = { "initial_interval", "duration" },
    } },
    forwardauth = { plugin = "forward_auth", opts = {
        address = { "address", "string" },
        trustforwardheader = { "trust_forward_header", "bool" },
        authresponseheaders = { "auth_response_headers", "list" },
        authresponseheadersregex = { "auth_response_headers_regex", "string" },
        authrequestheaders = { "auth_request_headers", "list" },
        addauthcookiestoresponse = { "add_auth_cookies_to_response", "list" },
        ["tls.ca"] = { "tls_ca", "string" },
        ["tls.insecureskipverify"] = { "tls_insecure_skip_verify", "bool" },
        ["tls.cert"] = { "tls_cert", "string" },
        ["tls.key"] = { "tls_key", "string" },
        ["tls.caoptional"] = { "tls_ca_optional", "bool" },
        headerfield = { "header_field", "string" },
        forwardbody = { "forward_body", "bool" },
        maxbodysize = { "max_body_size", "int" },
        preservelocationheader = { "preserve_location_header", "bool" },
    } },
    errors = { plugin = "errors", opts = {
        status = { "status", "list" }, service = { "service", "string" }, query = { "query", "string" },
    } },
}
TYPES.ipwhitelist = TYPES.ipallowlist

-- Traefik types moongate has no middleware for yet (see docs/middlewares.md):
-- a container that uses one is refused when the type guards access, and
-- runs without it (with a warning) otherwise.
local MISSING = { digestauth = "refuse", passtlsclientcert = "skip", contenttype = "skip", grpcweb = "skip" }

function _M.warn(...)
    local ok, mg = pcall(require, "moongate")
    if ok and mg.log then mg.log.warn(...) end
end
local warn = _M.warn

-- Fixes what differs in shape between Traefik's options and moongate's.
local function finish(kind, opts)
    if kind == "ratelimit" then
        local period = opts.period or 1
        local average = opts.average or 0
        opts.period, opts.average = nil, nil
        if average <= 0 or period <= 0 then return nil end -- Traefik: no limit
        opts.rate = average / period
    end
    if kind == "ratelimit" or kind == "inflightreq" then
        if opts.header then opts.key = "header" end
        if opts.key == true then opts.key = "host" elseif opts.key == false then opts.key = nil end
    end
    if kind == "buffering" then
        for _, k in ipairs({ "mem_request_body_bytes", "mem_response_body_bytes", "retry_expression" }) do
            if opts[k] ~= nil then
                opts[k] = nil
                _M.warn("buffering: ", k, " is not supported yet; ignored")
            end
        end
    end
    if kind == "compress" and opts.encodings then
        local keep = {}
        for _, e in ipairs(opts.encodings) do
            if e == "gzip" or e == "br" then keep[#keep + 1] = e else warn("compress: no ", e, " encoder; left out") end
        end
        opts.encodings = keep
    end
    if kind == "compress" and opts.default_encoding and opts.default_encoding ~= "gzip"
            and opts.default_encoding ~= "br" then
        warn("compress: no ", opts.default_encoding, " encoder for defaultEncoding; left out")
        opts.default_encoding = nil
    end
    if kind == "chain" then
        for i, m in ipairs(opts.middlewares or {}) do opts.middlewares[i] = strip_provider(m) end
    end
    if kind == "forwardauth" then
        local tls = {}
        for _, k in ipairs({ "ca", "insecure_skip_verify", "cert", "key" }) do
            if opts["tls_" .. k] ~= nil then tls[k] = opts["tls_" .. k] end
            opts["tls_" .. k] = nil
        end
        if opts.tls_ca_optional ~= nil then
            opts.tls_ca_optional = nil
            warn("forwardAuth: tls.caOptional has no meaning for a client; ignored")
        end
        if next(tls) then opts.tls = tls end
        for _, k in ipairs({ "header_field", "forward_body", "max_body_size", "preserve_location_header" }) do
            if opts[k] ~= nil then
                opts[k] = nil
                warn("forwardAuth: ", k, " is not supported yet; ignored")
            end
        end
    end
    if kind == "errors" and opts.service then opts.service = strip_provider(opts.service) end
    return opts
end

local function json_value(v)
    local ok, json = pcall(require, "moongate")
    local decode = ok and json.json and json.json.decode
    if decode then
        local first = v:match("^%s*(.)")
        if first == "[" or first == "{" or v == "true" or v == "false" or tonumber(v) then
            local d = decode(v)
            if d ~= nil then return d end
        end
    end
    return v
end

-- labels -> { name = spec } for every middleware the labels define, or nil, why.
function _M.definitions(labels)
    local traefik, own = {}, {}
    local keys = {}
    for k in pairs(labels) do keys[#keys + 1] = k end
    table.sort(keys) -- a stable order, so errors name the same label every time
    for _, k in ipairs(keys) do
        local v = labels[k]
        local name, kind, opt = k:match("^[Tt][Rr][Aa][Ee][Ff][Ii][Kk]%.[Hh][Tt][Tt][Pp]%.[Mm][Ii][Dd][Dd][Ll][Ee][Ww][Aa][Rr][Ee][Ss]%.([^.]+)%.([^.]+)%.?(.*)$")
        if name then
            kind = lower(kind)
            local t = TYPES[kind]
            if MISSING[kind] then
                traefik[name] = { missing = kind }
            elseif not t then
                return nil, "label " .. k .. ": unknown middleware type " .. kind
            else
                local d = traefik[name] or { kind = kind, opts = {} }
                if d.kind ~= kind then return nil, "middleware " .. name .. " has two types: " .. tostring(d.kind) .. " and " .. kind end
                traefik[name] = d
                if opt ~= "" then
                    local lopt = lower(opt)
                    local spec, mapkey = t.opts[lopt], nil
                    if not spec then
                        local head, rest = opt:match("^([^.]+)%.(.+)$")
                        spec = head and t.opts[lower(head)]
                        if spec and spec[2] == "map" then mapkey = rest else spec = nil end
                    end
                    if not spec then return nil, "label " .. k .. ": unknown option " .. opt .. " for " .. kind end
                    if spec[2] == "map" then
                        if not mapkey then return nil, "label " .. k .. ": " .. opt .. " needs a key (" .. opt .. ".NAME)" end
                        d.opts[spec[1]] = d.opts[spec[1]] or {}
                        d.opts[spec[1]][mapkey] = v
                    else
                        local val, err = CONVERT[spec[2]](v)
                        if val == nil then return nil, "label " .. k .. ": " .. err end
                        if spec.key then d.opts.key = spec.key end
                        d.opts[spec[1]] = val
                    end
                end
            end
        else
            local mname, path = k:match("^moongate%.middlewares%.([^.]+)%.(.+)$")
            if mname then
                local d = own[mname] or {}
                own[mname] = d
                local parts = {}
                for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
                local at = d
                for i = 1, #parts - 1 do
                    at[parts[i]] = type(at[parts[i]]) == "table" and at[parts[i]] or {}
                    at = at[parts[i]]
                end
                at[parts[#parts]] = parts[#parts] == "plugin" and v or json_value(v)
            end
        end
    end
    local defs = {}
    for name, d in pairs(traefik) do
        if d.missing then
            defs[name] = { missing = d.missing }
        else
            local opts = finish(d.kind, d.opts)
            if opts then
                opts.plugin = TYPES[d.kind].plugin
                defs[name] = opts
            else
                defs[name] = { none = true }
            end
        end
    end
    for name, d in pairs(own) do
        if type(d.plugin) ~= "string" then return nil, "moongate.middlewares." .. name .. ": needs .plugin" end
        defs[name] = d -- moongate's own wins over a Traefik definition of the same name
    end
    return defs
end

-- The middleware names the container's routers use, in order, without
-- provider suffixes (every router of the container, by router name).
function _M.router_middlewares(labels)
    local routers = {}
    for k, v in pairs(labels) do
        local r = k:match("^[Tt][Rr][Aa][Ee][Ff][Ii][Kk]%.[Hh][Tt][Tt][Pp]%.[Rr][Oo][Uu][Tt][Ee][Rr][Ss]%.([^.]+)%.[Mm][Ii][Dd][Dd][Ll][Ee][Ww][Aa][Rr][Ee][Ss]$")
        if r then routers[#routers + 1] = { r, v } end
    end
    table.sort(routers, function(a, b) return a[1] < b[1] end)
    local out, seen = {}, {}
    for _, r in ipairs(routers) do
        for _, name in ipairs(split(r[2])) do
            name = strip_provider(name)
            if not seen[name] then
                seen[name] = true
                out[#out + 1] = name
            end
        end
    end
    return out
end


-- Appends what `entry` (a name or a table) stands for; chains defined on
-- the container are expanded into their members here, since the config
-- file's middlewares table does not know the container's names.
local function expand(defs, entry, out, seen)
    if type(entry) ~= "string" then
        if type(entry) == "table" and entry.plugin == "chain" and type(entry.middlewares) == "table" then
            for _, m in ipairs(entry.middlewares) do
                local ok, err = expand(defs, m, out, seen)
                if not ok then return nil, err end
            end
            return true
        end
        out[#out + 1] = entry
        return true
    end
    local name = strip_provider(entry)
    local d = defs[name]
    if not d then
        out[#out + 1] = name -- the config file's, if it has one
        return true
    end
    if d.none then return true end
    if d.missing then
        if MISSING[d.missing] == "refuse" then
            return nil, "middleware " .. name .. ": moongate has no " .. d.missing .. " middleware yet; "
                .. "the container is not routed rather than routed without it"
        end
        warn("middleware ", name, ": moongate has no ", d.missing, " middleware yet; running without it")
        return true
    end
    if d.plugin == "chain" then
        if seen[name] then return nil, "chain " .. name .. " contains itself" end
        seen[name] = true
        for _, m in ipairs(d.middlewares or {}) do
            local ok, err = expand(defs, m, out, seen)
            if not ok then return nil, err end
        end
        seen[name] = nil
        return true
    end
    out[#out + 1] = d
    return true
end

function _M.for_container(labels, listed)
    local defs, err = _M.definitions(labels or {})
    if not defs then return nil, err end
    local names = listed or _M.router_middlewares(labels or {})
    local out = {}
    for _, entry in ipairs(names) do
        local ok, why = expand(defs, entry, out, {})
        if not ok then return nil, why end
    end
    return out
end

return _M
