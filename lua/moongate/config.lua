-- Loads, validates and normalizes a moongate config file (a Lua file that
-- returns a table). Errors are one string "FILE:LINE: path: reason".
--
-- The normalized table, which core/config.c reads:
--   { source = "moongate.lua",
--     listen = { { host = "127.0.0.1", port = 8080, line = 3 }, ... },
--     workers = 2, plugins_dir = "...", access_log = "combined"|"json"|false,
--     log_level = "info",
--     timeouts = { client_header, client_idle, upstream_connect, upstream_response, grace },
--     limits = { max_header_size, max_headers },
--     upstream = { keepalive, keepalive_timeout, retries },
--     trusted_proxies = { { addr = "10.0.0.0", bits = 8, family = 4, cidr = "10.0.0.0/8" }, ... },
--     services = { { name, balancer, balancer_opts, line,
--                    targets = { { host, port, address, id, weight, labels, line } } } },  -- sorted by name
--     routes = { { rule, service, priority (nil = rule length), line, name } },
--     admin, providers, health, middlewares = reserved tables, passed through,
--     tls = nil | { certificates = { { cert, key, line } }, min_version = 0x0303|0x0304,
--                   acme = { name = settings }, domains = { name = { { main, sans } } } } }
--   TLS fields (lua/moongate/tls_config.lua): listen[i].tls/name/redirect_port/alpn,
--   services[i].tls = { verify, ca_file, server_name }, targets[i].tls,
--   routes[i].tls = { resolver, domains } | {}, routes[i].entrypoints
local lines_of = require("moongate.config_lines")
local tls_config = require("moongate.tls_config")

local _M = {}

local DEFAULTS = {
    timeouts = { client_header = 10, client_idle = 60, upstream_connect = 3,
                 upstream_response = 60, grace = 10, queue = 10, upstream_stall = 1 },
    limits = { max_header_size = 32768, max_headers = 100 },
    upstream = { keepalive = 64, keepalive_timeout = 60, keepalive_surplus_timeout = 2, retries = 2,
                 queue_max = 10000, max_connecting = 64, replay_body = 65536 },
    paths = { normalize = true, encoded_slash = "reject" },
    http2 = { enabled = true, max_concurrent_streams = 128 },
}

local TOP_KEYS = {
    "listen", "workers", "plugins_dir", "access_log", "log_level", "timeouts", "limits",
    "upstream", "trusted_proxies", "services", "routes", "admin", "providers", "health",
    "middlewares", "paths", "tls", "http2",
}

-- A config error: carries the key path so the loader can add file:line.
local function fail(path, fmt, ...)
    error({ path = path, msg = string.format(fmt, ...) }, 0)
end

local function describe(v)
    if type(v) == "string" then return string.format("string %q", v) end
    if type(v) == "table" or type(v) == "function" then return type(v) end
    return type(v) .. " " .. tostring(v)
end

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur = { [0] = i }
        for j = 1, #b do
            local cost = a:byte(i) == b:byte(j) and 0 or 1
            cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        end
        prev = cur
    end
    return prev[#b]
end

local function check_keys(t, allowed, path)
    local set = {}
    for _, k in ipairs(allowed) do set[k] = true end
    for k in pairs(t) do
        if not set[k] then
            local best, bestd
            if type(k) == "string" then
                for _, cand in ipairs(allowed) do
                    local d = distance(k, cand)
                    if d <= 2 and (not bestd or d < bestd) then best, bestd = cand, d end
                end
            end
            local p = type(k) == "string" and (path == "" and k or path .. "." .. k)
                or path .. "[" .. tostring(k) .. "]"
            fail(p, "unknown key '%s'%s", tostring(k), best and (" (did you mean '" .. best .. "'?)") or "")
        end
    end
end

local function is_list(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n == #t
end

local function number(v, path, min, max, integer)
    if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
        fail(path, "expected a number, got %s", describe(v))
    end
    if integer and v ~= math.floor(v) then fail(path, "expected an integer, got %s", tostring(v)) end
    if (min and v < min) or (max and v > max) then
        fail(path, "must be between %s and %s, got %s", tostring(min), tostring(max), tostring(v))
    end
    return v
end

local function positive(v, path)
    if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
        fail(path, "expected a positive number of seconds, got %s", describe(v))
    end
    return v
end

-- "host:port", "[v6]:port", ":port"
local function parse_hostport(s, path, what)
    if type(s) ~= "string" then fail(path, "expected \"host:port\", got %s", describe(s)) end
    local host, port = s:match("^%[([%x:%.]+)%]:(%d+)$")
    if not host then host, port = s:match("^([^:%[%]]*):(%d+)$") end
    if not host then fail(path, "expected \"host:port\" or \"[v6]:port\", got %q", s) end
    port = tonumber(port)
    if port < 1 or port > 65535 then fail(path, "port must be 1..65535, got %d", port) end
    if host == "" then
        if what ~= "listen" then fail(path, "a target needs a host, got %q", s) end
        host = "0.0.0.0"
    end
    return host, port
end

local function parse_ipv4(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return nil end
    for _, x in ipairs({ a, b, c, d }) do
        -- "010" is octal to some parsers and decimal to others: refuse it
        if tonumber(x) > 255 or (#x > 1 and x:sub(1, 1) == "0") then return nil end
    end
    return true
end

local function parse_ipv6(s)
    if not s:find(":", 1, true) or s:find("[^%x:%.]") then return nil end
    local dbl = select(2, s:gsub("::", ""))
    if dbl > 1 then return nil end
    local groups = 0
    for g in s:gmatch("[^:]+") do
        if g:find("%.") then
            if not parse_ipv4(g) then return nil end
            groups = groups + 2
        else
            if #g > 4 then return nil end
            groups = groups + 1
        end
    end
    if (dbl == 0 and groups ~= 8) or groups > 8 then return nil end
    return true
end

local function parse_cidr(s, path)
    if type(s) ~= "string" then fail(path, "expected an address or CIDR, got %s", describe(s)) end
    local addr, bits = s:match("^([^/]+)/(%d+)$")
    addr = addr or s
    local family = parse_ipv4(addr) and 4 or parse_ipv6(addr) and 6
    if not family then fail(path, "invalid address or CIDR %q", s) end
    local max = family == 4 and 32 or 128
    bits = bits and tonumber(bits) or max
    if bits > max then fail(path, "prefix length %d is longer than %d in %q", bits, max, s) end
    return { addr = addr, bits = bits, family = family, cidr = addr .. "/" .. bits }
end

local NAME = "^[%w_%.%-]+$"

local function rule_checker()
    local ok, ffi = pcall(require, "ffi")
    if not ok then return nil end
    local core = require("moongate.ffi")
    if not core.in_gateway then return nil end
    local fn = core.C.mg_ffi_rule_check
    return function(rule)
        local buf = ffi.new("char[256]")
        if fn(rule, buf, 256) ~= core.OK then return ffi.string(buf) end
    end
end

local U = { fail = fail, check_keys = check_keys, describe = describe, is_list = is_list }

local function normalize(t, opts)
    if type(t) ~= "table" then fail("", "a config must return a table, got %s", describe(t)) end
    local dir = opts and opts.dir
    check_keys(t, TOP_KEYS, "")
    local cfg = { providers = t.providers, health = t.health, middlewares = t.middlewares }
    for _, k in ipairs({ "providers", "health", "middlewares" }) do
        if t[k] ~= nil and type(t[k]) ~= "table" then fail(k, "expected a table, got %s", describe(t[k])) end
    end

    -- listen
    local listen = t.listen == nil and "0.0.0.0:8080" or t.listen
    if type(listen) == "string" or (type(listen) == "table" and listen.address ~= nil) then listen = { listen } end
    if type(listen) ~= "table" or #listen == 0 or not is_list(listen) then
        fail("listen", "expected \"host:port\" or a list of them, got %s", describe(t.listen))
    end
    cfg.listen = {}
    local seen = {}
    for i, l in ipairs(listen) do
        local path = (type(t.listen) == "table" and t.listen.address == nil) and ("listen[" .. i .. "]") or "listen"
        local addr, lt = tls_config.listen_entry(U, l, path)
        local host, port = parse_hostport(addr, type(l) == "table" and path .. ".address" or path, "listen")
        local key = host .. "|" .. port
        if seen[key] then fail(path, "address %s is listed twice", addr) end
        seen[key] = true
        cfg.listen[i] = { host = host, port = port, path = path, tls = lt.tls, name = lt.name,
                          redirect = lt.redirect, redirect_port = lt.redirect_port, alpn = lt.alpn,
                          http2 = lt.http2 }
    end
    local listeners_by_name = tls_config.finish_listeners(U, cfg.listen)
    cfg.tls = tls_config.section(U, t.tls, dir)

    -- admin API: its own listener, loopback unless configured otherwise
    local admin = t.admin == nil and {} or t.admin
    if admin == false then
        cfg.admin = false
    else
        if type(admin) ~= "table" then fail("admin", "expected a table or false, got %s", describe(admin)) end
        check_keys(admin, { "listen", "token" }, "admin")
        local host, port = parse_hostport(admin.listen or "127.0.0.1:8081", "admin.listen", "listen")
        if admin.token ~= nil and (type(admin.token) ~= "string" or #admin.token < 8) then
            fail("admin.token", "expected a string of at least 8 characters")
        end
        cfg.admin = { host = host, port = port, token = admin.token }
    end

    -- workers
    local w = t.workers == nil and "auto" or t.workers
    if w == "auto" then
        w = math.max(1, math.min(64, math.floor((opts and opts.ncpu) or 1)))
    else
        number(w, "workers", 1, 64, true)
    end
    cfg.workers = w

    if t.plugins_dir ~= nil and (type(t.plugins_dir) ~= "string" or t.plugins_dir == "") then
        fail("plugins_dir", "expected a directory path, got %s", describe(t.plugins_dir))
    end
    cfg.plugins_dir = t.plugins_dir or "plugins"

    local al = t.access_log
    if al == nil or al == true then
        cfg.access_log = "combined"
    elseif al == false or al == "combined" or al == "json" then
        cfg.access_log = al
    else
        fail("access_log", "expected true, false, \"combined\" or \"json\", got %s", describe(al))
    end

    local lvl = t.log_level == nil and "info" or t.log_level
    if lvl ~= "debug" and lvl ~= "info" and lvl ~= "warn" and lvl ~= "error" then
        fail("log_level", "expected \"debug\", \"info\", \"warn\" or \"error\", got %s", describe(lvl))
    end
    cfg.log_level = lvl

    -- sections with defaults
    for section, defaults in pairs(DEFAULTS) do
        local v = t[section] == nil and {} or t[section]
        if type(v) ~= "table" then fail(section, "expected a table, got %s", describe(v)) end
        local keys = {}
        for k in pairs(defaults) do keys[#keys + 1] = k end
        table.sort(keys)
        check_keys(v, keys, section)
        local out = {}
        for k, def in pairs(defaults) do out[k] = v[k] == nil and def or v[k] end
        cfg[section] = out
    end
    for k, v in pairs(cfg.timeouts) do
        if k == "upstream_stall" or k == "queue" then number(v, "timeouts." .. k, 0, 3600)
        else positive(v, "timeouts." .. k) end
    end
    number(cfg.upstream.queue_max, "upstream.queue_max", 0, 1000000, true)
    number(cfg.upstream.max_connecting, "upstream.max_connecting", 0, 100000, true)
    number(cfg.limits.max_header_size, "limits.max_header_size", 1024, 1048576, true)
    number(cfg.limits.max_headers, "limits.max_headers", 1, 10000, true)
    number(cfg.http2.max_concurrent_streams, "http2.max_concurrent_streams", 1, 10000, true)
    if type(cfg.http2.enabled) ~= "boolean" then
        fail("http2.enabled", "expected true or false, got %s", describe(cfg.http2.enabled))
    end
    number(cfg.upstream.keepalive, "upstream.keepalive", 0, 10000, true)
    positive(cfg.upstream.keepalive_timeout, "upstream.keepalive_timeout")
    number(cfg.upstream.keepalive_surplus_timeout, "upstream.keepalive_surplus_timeout", 0, 3600)
    number(cfg.upstream.retries, "upstream.retries", 0, 10, true)
    number(cfg.upstream.replay_body, "upstream.replay_body", 0, 16777216, true)
    if type(cfg.paths.normalize) ~= "boolean" then
        fail("paths.normalize", "expected true or false, got %s", describe(cfg.paths.normalize))
    end
    if cfg.paths.encoded_slash ~= "reject" and cfg.paths.encoded_slash ~= "keep" then
        fail("paths.encoded_slash", "expected \"reject\" or \"keep\", got %s", describe(cfg.paths.encoded_slash))
    end

    -- trusted proxies
    local tp = t.trusted_proxies == nil and {} or t.trusted_proxies
    if type(tp) == "string" then tp = { tp } end
    if type(tp) ~= "table" or not is_list(tp) then
        fail("trusted_proxies", "expected a list of addresses or CIDRs, got %s", describe(tp))
    end
    cfg.trusted_proxies = {}
    for i, s in ipairs(tp) do cfg.trusted_proxies[i] = parse_cidr(s, "trusted_proxies[" .. i .. "]") end

    -- services
    local services = t.services == nil and {} or t.services
    -- With discovery providers, a route may name a service that is only
    -- discovered later: it exists, empty (503), until members appear.
    if type(t.providers) == "table" and next(t.providers) and type(services) == "table"
        and type(t.routes) == "table" then
        local copy = {}
        for k, v in pairs(services) do copy[k] = v end
        for _, r in ipairs(t.routes) do
            if type(r) == "table" and type(r.service) == "string" and copy[r.service] == nil
                and r.service:match(NAME) then
                copy[r.service] = { targets = {} }
            end
        end
        services = copy
    end
    if type(services) ~= "table" then fail("services", "expected a table of services, got %s", describe(services)) end
    cfg.services = {}
    local names = {}
    for name in pairs(services) do
        if type(name) ~= "string" or not name:match(NAME) then
            fail("services", "service names are made of letters, digits, '_', '.' and '-', got %s", describe(name))
        end
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        local s, path = services[name], "services." .. name
        if type(s) ~= "table" then fail(path, "expected a table, got %s", describe(s)) end
        check_keys(s, { "balancer", "balancer_opts", "targets", "middlewares", "health", "tls", "protocol", "autoscale" }, path)
        local proto = s.protocol == nil and "http1" or s.protocol
        if proto ~= "http1" and proto ~= "h2c" and proto ~= "h2" then
            fail(path .. ".protocol", "expected \"http1\", \"h2c\" or \"h2\", got %s", describe(s.protocol))
        end
        local bal = s.balancer == nil and "roundrobin" or s.balancer
        if type(bal) ~= "string" or not bal:match(NAME) then
            fail(path .. ".balancer", "expected a plugin name, got %s", describe(bal))
        end
        if s.balancer_opts ~= nil and type(s.balancer_opts) ~= "table" then
            fail(path .. ".balancer_opts", "expected a table, got %s", describe(s.balancer_opts))
        end
        local targets = s.targets == nil and {} or s.targets
        if type(targets) ~= "table" or not is_list(targets) then
            fail(path .. ".targets", "expected a list of targets, got %s", describe(targets))
        end
        local svc = { name = name, balancer = bal, balancer_opts = s.balancer_opts or {},
                      middlewares = s.middlewares, health = s.health, targets = {}, path = path,
                      protocol = proto,
                      -- h2 is HTTP/2 over TLS: the targets speak TLS whatever s.tls says
                      tls = tls_config.service(U, s.tls == nil and proto == "h2" or s.tls, path .. ".tls", dir) }
        if s.autoscale ~= nil then
            -- the policy is looked up in plugins_dir by the loader (core/config.c)
            local as, aerr = require("moongate.autoscale").settings(s.autoscale, false)
            if not as then fail(path .. ".autoscale", "%s", aerr) end
            svc.autoscale = as
        end
        for i, tg in ipairs(targets) do
            local tpath = path .. ".targets[" .. i .. "]"
            local addr, weight, labels = tg, 1, {}
            if type(tg) == "table" then
                check_keys(tg, { "address", "weight", "labels", "id" }, tpath)
                addr = tg.address
                if addr == nil then fail(tpath .. ".address", "a target table needs an address") end
                if tg.weight ~= nil then
                    if type(tg.weight) ~= "number" or tg.weight ~= math.floor(tg.weight) or tg.weight < 1 or tg.weight > 1000 then
                        fail(tpath .. ".weight", "expected an integer from 1 to 1000, got %s", describe(tg.weight))
                    end
                    weight = tg.weight
                end
                if tg.labels ~= nil then
                    if type(tg.labels) ~= "table" then fail(tpath .. ".labels", "expected a table, got %s", describe(tg.labels)) end
                    for k, v in pairs(tg.labels) do
                        if type(k) ~= "string" or type(v) ~= "string" then
                            fail(tpath .. ".labels", "labels map strings to strings")
                        end
                        labels[k] = v
                    end
                end
            end
            local target_tls
            addr, target_tls = tls_config.target_url(addr)
            local host, port = parse_hostport(addr, type(tg) == "table" and tpath .. ".address" or tpath, "target")
            local address = host:find(":", 1, true) and ("[" .. host .. "]:" .. port) or (host .. ":" .. port)
            if target_tls and not svc.tls then svc.tls = { verify = true } end
            if target_tls == nil then target_tls = s.tls ~= nil and s.tls ~= false end
            svc.targets[i] = { host = host, port = port, address = address,
                               id = type(tg) == "table" and tg.id or address,
                               weight = weight, labels = labels, path = tpath,
                               tls = target_tls }
        end
        cfg.services[#cfg.services + 1] = svc
    end

    -- routes
    local routes = t.routes == nil and {} or t.routes
    if type(routes) ~= "table" or not is_list(routes) then
        fail("routes", "expected a list of routes, got %s", describe(routes))
    end
    local check_rule = rule_checker()
    local discovered_routes = {}
    for _, r in ipairs(opts and opts.discovered and opts.discovered.routes or {}) do discovered_routes[r] = true end
    cfg.routes = {}
    for i, r in ipairs(routes) do
        local path = "routes[" .. i .. "]"
        if type(r) ~= "table" then fail(path, "expected a table, got %s", describe(r)) end
        check_keys(r, { "rule", "service", "priority", "middlewares", "name", "allow_trace", "tls", "entrypoints" }, path)
        if type(r.rule) ~= "string" or r.rule:match("^%s*$") then
            fail(path .. ".rule", "expected a rule such as \"PathPrefix(`/`)\", got %s", describe(r.rule))
        end
        if check_rule then
            local why = check_rule(r.rule)
            if why then fail(path .. ".rule", "%s", why) end
        end
        if type(r.service) ~= "string" then fail(path .. ".service", "expected a service name, got %s", describe(r.service)) end
        if not services[r.service] then fail(path .. ".service", "unknown service '%s'", r.service) end
        if r.priority ~= nil then number(r.priority, path .. ".priority", 0, 1e9, true) end
        if r.allow_trace ~= nil and type(r.allow_trace) ~= "boolean" then
            fail(path .. ".allow_trace", "expected true or false, got %s", describe(r.allow_trace))
        end
        local rtls, eps = tls_config.route(U, r, path, cfg.tls, listeners_by_name, discovered_routes[r])
        cfg.routes[i] = { rule = r.rule, service = r.service, priority = r.priority,
                          allow_trace = r.allow_trace or nil,
                          middlewares = r.middlewares, name = r.name or path, path = path,
                          tls = rtls, entrypoints = eps }
    end
    if cfg.tls then cfg.tls.domains = tls_config.domains(cfg.routes) end
    return cfg
end

-- Replaces every `path` field with the line it points to.
local function attach_lines(cfg, lines)
    local function line(p) return lines_of.lookup(lines, p) end
    for _, l in ipairs(cfg.listen) do l.line = line(l.path); l.path = nil end
    for _, s in ipairs(cfg.services) do
        s.line = line(s.path); s.path = nil
        for _, tg in ipairs(s.targets) do tg.line = line(tg.path); tg.path = nil end
    end
    for _, r in ipairs(cfg.routes) do r.line = line(r.path); r.path = nil end
    for _, c in ipairs(cfg.tls and cfg.tls.certificates or {}) do c.line = line(c.path); c.path = nil end
end

local function sandbox()
    return {
        os = { getenv = os.getenv }, string = string, table = table, math = math,
        tostring = tostring, tonumber = tonumber, pairs = pairs, ipairs = ipairs,
        type = type, select = select, error = error, assert = assert, pcall = pcall,
        next = next, unpack = unpack,
    }
end

local function dirname(path)
    return path:match("^(.*)/[^/]*$") or "."
end

-- Adds what discovery plugins found (opts.discovered, from the control
-- plane) to the file's config: services the file does not define, and
-- their routes after the file's. A service the file defines keeps the
-- file's settings; discovered targets are added to it.
function _M.merge(t, discovered)
    -- a malformed file stays malformed: normalize() reports it
    if (t.services ~= nil and type(t.services) ~= "table") or (t.routes ~= nil and type(t.routes) ~= "table") then
        return t
    end
    local out = {}
    for k, v in pairs(t) do out[k] = v end
    local services = {}
    for name, svc in pairs(type(t.services) == "table" and t.services or {}) do services[name] = svc end
    for name, svc in pairs(discovered.services or {}) do
        local mine = services[name]
        if type(mine) == "table" then
            local merged = {}
            for k, v in pairs(mine) do merged[k] = v end
            local targets = {}
            for _, tg in ipairs(mine.targets or {}) do targets[#targets + 1] = tg end
            for _, tg in ipairs(svc.targets or {}) do targets[#targets + 1] = tg end
            merged.targets = targets
            services[name] = merged
        else
            services[name] = svc
        end
    end
    out.services = services
    local routes = {}
    for _, r in ipairs(type(t.routes) == "table" and t.routes or {}) do routes[#routes + 1] = r end
    for _, r in ipairs(discovered.routes or {}) do routes[#routes + 1] = r end
    out.routes = routes
    return out
end

-- The message of an error the config file raised, as "FILE:LINE: reason".
-- Lua positions most errors itself; error("...", 0), an error value that is
-- not a string, and a memory error carry none: those get the line of the
-- innermost call in the file (0 when there is none, for a memory error).
local function positioned(chunkname)
    local prefix = chunkname .. ":"
    return function(e)
        if type(e) == "string" and e:sub(1, #prefix) == prefix and e:find("^:%d+:", #prefix) then
            return e
        end
        local line = 0
        for level = 2, 100 do
            local info = debug.getinfo(level, "Sl")
            if not info then break end
            if info.source == "@" .. chunkname and (info.currentline or 0) > 0 then
                line = info.currentline
                break
            end
        end
        local what = type(e) == "string" and e or ("error " .. describe(e))
        return string.format("%s:%d: %s", chunkname, line, what)
    end
end

function _M.load_string(src, chunkname, opts)
    chunkname = chunkname or "moongate.lua"
    -- text only: LuaJIT would load (unverified) bytecode given as source
    if src:sub(1, 1) == "\27" then
        return nil, chunkname .. ":1: a config file is Lua source, not bytecode"
    end
    local fn, err = load(src, "@" .. chunkname, "t")
    if not fn then return nil, err end
    setfenv(fn, sandbox())
    local where = positioned(chunkname)
    local ok, t = xpcall(fn, where)
    if not ok then return nil, type(t) == "string" and t or where(t) end
    local lines = lines_of.map(src)
    if type(t) == "table" and opts and opts.discovered then t = _M.merge(t, opts.discovered) end
    local nopts = {}
    for k, v in pairs(opts or {}) do nopts[k] = v end
    nopts.dir = nopts.dir or dirname(chunkname)
    local nok, cfg = pcall(normalize, t, nopts)
    if not nok then
        if type(cfg) == "table" then
            return nil, string.format("%s:%d: %s%s", chunkname, lines_of.lookup(lines, cfg.path),
                cfg.path ~= "" and (cfg.path .. ": ") or "", cfg.msg)
        end
        return nil, chunkname .. ": " .. tostring(cfg)
    end
    attach_lines(cfg, lines)
    cfg.source = chunkname
    cfg._lines = lines
    return cfg
end

-- Loads the config file at path; opts.source, when given, is used as the
-- file's text (the control plane passes the text it last loaded, so a
-- membership change never re-reads a file that is being edited).
function _M.load(path, opts)
    local src = opts and opts.source
    if not src then
        local f, err = io.open(path, "rb")
        if not f then return nil, path .. ":0: cannot read config: " .. tostring(err) end
        src = f:read("*a")
        f:close()
    end
    local cfg, lerr = _M.load_string(src, path, opts)
    if not cfg then return nil, lerr end
    if cfg.plugins_dir:sub(1, 1) ~= "/" then
        local dir = dirname(path)
        if dir ~= "." then cfg.plugins_dir = dir .. "/" .. cfg.plugins_dir end
    end
    return cfg
end

-- The embedded default: listen on :8080 with no services, so every request
-- gets a page that says how to add one. With a Docker socket present
-- (opts.docker_socket_present), Docker discovery is on: a Compose file
-- needs no moongate config at all; on a Swarm manager it discovers Swarm
-- services instead (swarm = "auto", plugins/docker.lua). MOONGATE_ADMIN_LISTEN moves the admin
-- API (for a container whose port is published on the host's loopback).
function _M.default(opts)
    local parts = {}
    if opts and opts.docker_socket_present then
        parts[#parts + 1] = "providers = { docker = { swarm = \"auto\" } }"
    end
    local admin = os.getenv("MOONGATE_ADMIN_LISTEN")
    if admin and admin ~= "" then
        parts[#parts + 1] = string.format("admin = { listen = %q }", admin)
    end
    local cfg, err = _M.load_string("return { " .. table.concat(parts, ", ") .. " }",
        "(embedded default)", opts)
    if not cfg then return nil, "MOONGATE_ADMIN_LISTEN: " .. tostring(err) end
    return cfg
end

return _M
