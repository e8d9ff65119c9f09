-- The TLS parts of a config, normalized for core/config.c; called by
-- moongate.config with its error helpers (u.fail, u.check_keys, u.describe,
-- u.is_list). Every mistake is a "path: reason" that config.lua turns into
-- FILE:LINE.
--
--   listen entry:  "host:port" | { address = "host:port", tls = true, name = "websecure",
--                                  redirect = "https" | "<listener name>", alpn = { "h2", "http/1.1" },
--                                  http2 = false }
--   tls = { certificates = { { cert = "site.pem", key = "site.key" }, ... },
--           min_version = "1.2" | "1.3",
--           acme = { le = { directory = URL, email = "...", storage = "acme.json",
--                           challenge = "tls-alpn-01" | "http-01", ca_file = "...",
--                           key_type = "ec" | "rsa", renew_before = 30, plugin = "acme" } } }
--   route:   tls = true | { resolver = "le", domains = { { main = "a", sans = { "b" } } } },
--            entrypoints = { "websecure" }
--   service: tls = true | { verify = true, ca_file = "...", server_name = "..." };
--            targets may be "https://host:port" (port 443 by default) or "http://host:port"
local _M = {}

local ALPN_SUPPORTED = { ["h2"] = true, ["http/1.1"] = true }
local LISTENER_NAME = "^[%w_%.%-]+$"

local function abs(dir, p)
    if p:sub(1, 1) == "/" or dir == nil or dir == "." then return p end
    return dir .. "/" .. p
end

-- One `listen` entry: returns address (a string for parse_hostport) and
-- the TLS fields of the normalized listener.
function _M.listen_entry(u, l, path)
    if type(l) ~= "table" then return l, {} end
    u.check_keys(l, { "address", "tls", "name", "redirect", "redirect_port", "alpn", "http2" }, path)
    if l.http2 ~= nil and type(l.http2) ~= "boolean" then
        u.fail(path .. ".http2", "expected true or false, got %s", u.describe(l.http2))
    end
    if l.address == nil then u.fail(path .. ".address", "a listener table needs an address") end
    if l.tls ~= nil and type(l.tls) ~= "boolean" then
        u.fail(path .. ".tls", "expected true or false, got %s", u.describe(l.tls))
    end
    if l.name ~= nil and (type(l.name) ~= "string" or not l.name:match(LISTENER_NAME)) then
        u.fail(path .. ".name", "expected a name of letters, digits, '_', '.' and '-', got %s", u.describe(l.name))
    end
    if l.redirect ~= nil and l.redirect ~= false and type(l.redirect) ~= "string" then
        u.fail(path .. ".redirect", "expected \"https\" or the name of a TLS listener, got %s", u.describe(l.redirect))
    end
    if l.redirect and l.tls then
        u.fail(path .. ".redirect", "a TLS listener cannot redirect to HTTPS")
    end
    if l.redirect_port ~= nil then
        if type(l.redirect_port) ~= "number" or l.redirect_port ~= math.floor(l.redirect_port)
            or l.redirect_port < 1 or l.redirect_port > 65535 then
            u.fail(path .. ".redirect_port", "expected a port number, got %s", u.describe(l.redirect_port))
        end
        if not l.redirect then u.fail(path .. ".redirect_port", "redirect_port needs redirect") end
    end
    local alpn
    if l.alpn ~= nil then
        if type(l.alpn) ~= "table" or not u.is_list(l.alpn) or #l.alpn == 0 then
            u.fail(path .. ".alpn", "expected a list of protocol names such as { \"http/1.1\" }, got %s", u.describe(l.alpn))
        end
        if not l.tls then u.fail(path .. ".alpn", "ALPN needs tls = true") end
        alpn = {}
        for i, p in ipairs(l.alpn) do
            if not ALPN_SUPPORTED[p] then
                u.fail(path .. ".alpn[" .. i .. "]", "unsupported protocol %s (supported: h2, http/1.1)", u.describe(p))
            end
            if p == "h2" and l.http2 == false then
                u.fail(path .. ".alpn[" .. i .. "]", "h2 offered on a listener with http2 = false")
            end
            alpn[i] = p
        end
    end
    return l.address, { tls = l.tls or false, name = l.name, redirect = l.redirect or nil,
                        redirect_port = l.redirect_port, alpn = alpn, http2 = l.http2 ~= false }
end

-- After every listener is read: resolves `redirect` to a port and checks
-- names are unique.
function _M.finish_listeners(u, listeners)
    local by_name, first_tls = {}, nil
    for _, l in ipairs(listeners) do
        if l.name then
            if by_name[l.name] then u.fail(l.path .. ".name", "listener name '%s' is used twice", l.name) end
            by_name[l.name] = l
        end
        if l.tls and not first_tls then first_tls = l end
    end
    for _, l in ipairs(listeners) do
        if l.redirect then
            local to = l.redirect == "https" and first_tls or by_name[l.redirect]
            if not to then
                u.fail(l.path .. ".redirect", l.redirect == "https" and "no listener has tls = true"
                    or ("no listener is named '" .. l.redirect .. "'"))
            end
            if not to.tls then u.fail(l.path .. ".redirect", "listener '%s' is not a TLS listener", l.redirect) end
            l.redirect_port = l.redirect_port or to.port
        end
        l.redirect = nil
    end
    return by_name
end

local ACME_KEYS = { "directory", "email", "storage", "challenge", "ca_file", "key_type",
                    "renew_before", "plugin", "check_interval", "timeout" }

local function acme_resolver(u, name, r, path, dir)
    if type(r) ~= "table" then u.fail(path, "expected a table, got %s", u.describe(r)) end
    if r.plugin ~= nil and r.plugin ~= "acme" then
        -- another certificate source: its options are its own (checked by its schema)
        if type(r.plugin) ~= "string" then u.fail(path .. ".plugin", "expected a plugin name") end
        local out = {}
        for k, v in pairs(r) do out[k] = v end
        out.name = name
        return out
    end
    u.check_keys(r, ACME_KEYS, path)
    if type(r.directory) ~= "string" or not r.directory:match("^https?://") then
        u.fail(path .. ".directory", "expected the ACME directory URL (https://...), got %s", u.describe(r.directory))
    end
    if r.email ~= nil and (type(r.email) ~= "string" or not r.email:match("^[^@%s]+@[^@%s]+$")) then
        u.fail(path .. ".email", "expected an email address, got %s", u.describe(r.email))
    end
    local challenge = r.challenge == nil and "tls-alpn-01" or r.challenge
    if challenge ~= "tls-alpn-01" and challenge ~= "http-01" then
        u.fail(path .. ".challenge", "expected \"tls-alpn-01\" or \"http-01\", got %s", u.describe(challenge))
    end
    local key_type = r.key_type == nil and "ec" or r.key_type
    if key_type ~= "ec" and key_type ~= "rsa" then
        u.fail(path .. ".key_type", "expected \"ec\" or \"rsa\", got %s", u.describe(key_type))
    end
    for _, k in ipairs({ "storage", "ca_file" }) do
        if r[k] ~= nil and (type(r[k]) ~= "string" or r[k] == "") then
            u.fail(path .. "." .. k, "expected a file path, got %s", u.describe(r[k]))
        end
    end
    for _, k in ipairs({ "renew_before", "check_interval", "timeout" }) do
        if r[k] ~= nil and (type(r[k]) ~= "number" or r[k] <= 0) then
            u.fail(path .. "." .. k, "expected a positive number, got %s", u.describe(r[k]))
        end
    end
    return { name = name, plugin = "acme", directory = r.directory, email = r.email,
             storage = abs(dir, r.storage or ("acme-" .. name .. ".json")), challenge = challenge,
             ca_file = r.ca_file and abs(dir, r.ca_file), key_type = key_type,
             renew_before = r.renew_before or 30, check_interval = r.check_interval or 43200,
             timeout = r.timeout or 30 }
end

-- The top-level `tls` table; dir: the config file's directory (relative
-- file names are relative to it).
function _M.section(u, t, dir)
    if t == nil then return nil end
    if type(t) ~= "table" then u.fail("tls", "expected a table, got %s", u.describe(t)) end
    u.check_keys(t, { "certificates", "min_version", "acme", "ocsp_stapling" }, "tls")
    local out = { certificates = {}, min_version = 0x0303, acme = {}, ocsp_stapling = true }
    if t.ocsp_stapling ~= nil then
        if type(t.ocsp_stapling) ~= "boolean" then
            u.fail("tls.ocsp_stapling", "expected true or false, got %s", u.describe(t.ocsp_stapling))
        end
        out.ocsp_stapling = t.ocsp_stapling
    end
    local certs = t.certificates == nil and {} or t.certificates
    if type(certs) ~= "table" or not u.is_list(certs) then
        u.fail("tls.certificates", "expected a list of { cert = ..., key = ... }, got %s", u.describe(certs))
    end
    for i, c in ipairs(certs) do
        local path = "tls.certificates[" .. i .. "]"
        if type(c) ~= "table" then u.fail(path, "expected { cert = ..., key = ... }, got %s", u.describe(c)) end
        u.check_keys(c, { "cert", "key" }, path)
        for _, k in ipairs({ "cert", "key" }) do
            if type(c[k]) ~= "string" or c[k] == "" then
                u.fail(path .. "." .. k, "expected a PEM file path, got %s", u.describe(c[k]))
            end
        end
        out.certificates[i] = { cert = abs(dir, c.cert), key = abs(dir, c.key), path = path }
    end
    local mv = t.min_version == nil and "1.2" or t.min_version
    if mv == "1.2" then
        out.min_version = 0x0303
    elseif mv == "1.3" then
        out.min_version = 0x0304
    else
        u.fail("tls.min_version", "expected \"1.2\" or \"1.3\", got %s", u.describe(mv))
    end
    if t.acme ~= nil and type(t.acme) ~= "table" then
        u.fail("tls.acme", "expected a table of resolvers, got %s", u.describe(t.acme))
    end
    for name, r in pairs(t.acme or {}) do
        if type(name) ~= "string" or not name:match(LISTENER_NAME) then
            u.fail("tls.acme", "resolver names are made of letters, digits, '_', '.' and '-', got %s", u.describe(name))
        end
        out.acme[name] = acme_resolver(u, name, r, "tls.acme." .. name, dir)
    end
    return out
end

-- Host names of a rule: every name in Host(`a`, `b`) matchers.
function _M.rule_hosts(rule)
    local hosts = {}
    for args in rule:gmatch("Host%s*%(([^)]*)%)") do
        for h in args:gmatch("`([^`]*)`") do hosts[#hosts + 1] = h:lower() end
    end
    return hosts
end

local function name_list(u, v, path)
    if type(v) ~= "table" or not u.is_list(v) then u.fail(path, "expected a list of names, got %s", u.describe(v)) end
    for i, n in ipairs(v) do
        if type(n) ~= "string" or not n:match("^[%w%*][%w%.%-]*$") then
            u.fail(path .. "[" .. i .. "]", "expected a DNS name, got %s", u.describe(n))
        end
    end
    return v
end

-- A route's `tls` and `entrypoints`. Returns the normalized tls (or nil)
-- and the entrypoints list (or nil). discovered: the route came from a
-- discovery provider (a container's labels): an unknown resolver or entry
-- point is dropped with a warning there, so one bad label does not stop
-- every membership update.
local function warn(...)
    local ok, mg = pcall(require, "moongate")
    if ok and mg.log then mg.log.warn(...) end
end

function _M.route(u, r, path, tls, listeners_by_name, discovered)
    local out
    if r.tls ~= nil then
        if r.tls == true then
            out = {}
        elseif r.tls == false then
            out = nil
        elseif type(r.tls) == "table" then
            u.check_keys(r.tls, { "resolver", "domains", "certresolver" }, path .. ".tls")
            local resolver = r.tls.resolver or r.tls.certresolver
            if resolver ~= nil then
                if type(resolver) ~= "string" then
                    u.fail(path .. ".tls.resolver", "expected a resolver name, got %s", u.describe(resolver))
                end
                if not (tls and tls.acme[resolver]) then
                    if not discovered then
                        u.fail(path .. ".tls.resolver", "unknown resolver '%s' (define it in tls.acme)", resolver)
                    end
                    warn("route ", tostring(r.rule), ": unknown certificate resolver '", resolver, "', ignored")
                    resolver = nil
                end
            end
            local domains
            if r.tls.domains ~= nil then
                if type(r.tls.domains) ~= "table" or not u.is_list(r.tls.domains) then
                    u.fail(path .. ".tls.domains", "expected a list of { main = ..., sans = { ... } }")
                end
                domains = {}
                for i, d in ipairs(r.tls.domains) do
                    local dp = path .. ".tls.domains[" .. i .. "]"
                    if type(d) ~= "table" then u.fail(dp, "expected { main = ..., sans = { ... } }") end
                    u.check_keys(d, { "main", "sans" }, dp)
                    name_list(u, { d.main }, dp .. ".main")
                    domains[i] = { main = d.main:lower(), sans = d.sans and name_list(u, d.sans, dp .. ".sans") or {} }
                end
            end
            out = { resolver = resolver, domains = domains }
        else
            u.fail(path .. ".tls", "expected true or { resolver = ... }, got %s", u.describe(r.tls))
        end
    end
    local eps
    if r.entrypoints ~= nil then
        if type(r.entrypoints) == "string" then r.entrypoints = { r.entrypoints } end
        if type(r.entrypoints) ~= "table" or not u.is_list(r.entrypoints) then
            u.fail(path .. ".entrypoints", "expected a list of listener names, got %s", u.describe(r.entrypoints))
        end
        eps = {}
        for i, e in ipairs(r.entrypoints) do
            if listeners_by_name[e] then
                eps[#eps + 1] = e
            elseif discovered then
                warn("route ", tostring(r.rule), ": no listener is named '", tostring(e), "', entry point ignored")
            else
                u.fail(path .. ".entrypoints[" .. i .. "]", "no listener is named %s", u.describe(e))
            end
        end
    end
    return out, eps
end

-- What each resolver must obtain: resolver -> list of { main, sans }, one
-- certificate per domain entry (Traefik's tls.domains) or one per rule host.
function _M.domains(routes)
    local out, seen = {}, {}
    for _, r in ipairs(routes) do
        local res = r.tls and r.tls.resolver
        if res then
            out[res] = out[res] or {}
            seen[res] = seen[res] or {}
            local list = r.tls.domains
            if not list then
                list = {}
                for _, h in ipairs(_M.rule_hosts(r.rule)) do list[#list + 1] = { main = h, sans = {} } end
            end
            for _, d in ipairs(list) do
                local key = d.main .. "|" .. table.concat(d.sans, ",")
                if not seen[res][key] then
                    seen[res][key] = true
                    out[res][#out[res] + 1] = d
                end
            end
        end
    end
    return out
end

-- A service's upstream TLS settings.
function _M.service(u, v, path, dir)
    if v == nil or v == false then return nil end
    if v == true then return { verify = true } end
    if type(v) ~= "table" then u.fail(path, "expected true or { verify, ca_file, server_name }, got %s", u.describe(v)) end
    u.check_keys(v, { "verify", "ca_file", "server_name" }, path)
    if v.verify ~= nil and type(v.verify) ~= "boolean" then
        u.fail(path .. ".verify", "expected true or false, got %s", u.describe(v.verify))
    end
    if v.ca_file ~= nil and (type(v.ca_file) ~= "string" or v.ca_file == "") then
        u.fail(path .. ".ca_file", "expected a PEM file path, got %s", u.describe(v.ca_file))
    end
    if v.server_name ~= nil and (type(v.server_name) ~= "string" or not v.server_name:match("^[%w][%w%.%-]*$")) then
        u.fail(path .. ".server_name", "expected a DNS name, got %s", u.describe(v.server_name))
    end
    return { verify = v.verify ~= false, ca_file = v.ca_file and abs(dir, v.ca_file), server_name = v.server_name }
end

-- "https://host:port" / "http://host:port" -> "host:port", true / false;
-- anything else is returned as is, with nil (no scheme said).
function _M.target_url(addr)
    if type(addr) ~= "string" then return addr, nil end
    local scheme, rest = addr:match("^(https?)://(.*)$")
    if not scheme then return addr, nil end
    rest = rest:gsub("/$", "")
    if not rest:match(":%d+$") then rest = rest .. (scheme == "https" and ":443" or ":80") end
    return rest, scheme == "https"
end

return _M
