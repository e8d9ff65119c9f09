-- Labels -> what moongate needs to route to a container or a Swarm task:
-- moongate.* labels and Traefik's (traefik.http.routers/services.*,
-- traefik.docker.network, traefik.swarm.network), moongate's winning.
-- Pure functions, no I/O: shared by plugins/docker.lua and
-- plugins/swarm.lua through require("moongate").labels.
--
-- The entry point is parse(labels); it returns a table of settings (see
-- below) or nil, err. More label families (Traefik middlewares, say) plug
-- in with register(fn): fn(labels, settings) runs after the built-in
-- parsing and may add to settings, or return nil, err to reject the labels.
-- assemble() then turns described members into services and routes.
local mg = require("moongate")
local tls_labels = require("moongate.tls_labels")

local _M = {}

local extensions = {}

function _M.truthy(v)
    v = tostring(v):lower()
    return v == "true" or v == "1" or v == "yes"
end
local truthy = _M.truthy

-- "2", "2s", "500ms", "1m" -> seconds, or nil
function _M.seconds(v)
    local n, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
    n = tonumber(n)
    if not n then return nil end
    local mult = ({ [""] = 1, s = 1, ms = 0.001, m = 60 })[unit]
    return mult and n * mult
end
local seconds = _M.seconds

-- Traefik's labels name routers and services; the first (in name order)
-- that has the wanted key wins, so the choice is the same on every host.
local function first(labels, pattern)
    local best_k, best_v
    for k, v in pairs(labels) do
        if k:match(pattern) and (not best_k or k < best_k) then best_k, best_v = k, v end
    end
    return best_v
end

local function router(labels, what)
    return first(labels, "^traefik%.http%.routers%.[^.]+%." .. what .. "$")
end

local function lb(labels, what)
    return first(labels, "^traefik%.http%.services%.[^.]+%.loadbalancer%." .. what .. "$")
end

-- Adds fn(labels, settings) -> settings | nil, err to the parsing chain.
function _M.register(fn)
    if type(fn) ~= "function" then error("labels.register expects a function", 2) end
    extensions[#extensions + 1] = fn
end

-- The settings in a set of labels:
--   enable (true/false/nil), service, port (string), network, rule,
--   priority, weight, balancer, protocol, sticky (cookie name), health_path,
--   health_interval, health_timeout, middlewares, tls, entrypoints
-- or nil, err for labels that cannot be understood (the caller skips that
-- member and logs err).
function _M.parse(labels)
    labels = labels or {}
    local s = {}
    local enable = labels["moongate.enable"] or labels["traefik.enable"]
    if enable ~= nil then s.enable = truthy(enable) end
    s.service = labels["moongate.service"]
    s.port = labels["moongate.port"] or lb(labels, "server%.port")
    if s.port and not tonumber(s.port) then
        return nil, "label moongate.port is not a number: " .. tostring(s.port)
    end
    s.network = labels["moongate.network"] or labels["traefik.swarm.network"] or labels["traefik.docker.network"]
    s.rule = labels["moongate.rule"] or router(labels, "rule")
    s.priority = tonumber(labels["moongate.priority"] or router(labels, "priority") or "")
    s.balancer = labels["moongate.balancer"]
    s.protocol = labels["moongate.protocol"] -- http1, h2c, h2 (docs/http2.md)
    s.sticky = labels["moongate.sticky.cookie.name"] or lb(labels, "sticky%.cookie%.name")
    s.health_path = labels["moongate.health.path"] or lb(labels, "healthcheck%.path")
    local interval = labels["moongate.health.interval"] or lb(labels, "healthcheck%.interval")
    local timeout = labels["moongate.health.timeout"] or lb(labels, "healthcheck%.timeout")
    if (interval and not seconds(interval)) or (timeout and not seconds(timeout)) then
        return nil, "health interval/timeout labels must be durations like 2 or 2s or 500ms"
    end
    s.health_interval = interval and seconds(interval)
    s.health_timeout = timeout and seconds(timeout)
    local weight = tonumber(labels["moongate.weight"] or "1")
    if not weight or weight < 1 or weight ~= math.floor(weight) then
        return nil, "label moongate.weight must be a positive integer"
    end
    s.weight = weight
    if labels["moongate.middlewares"] then
        -- a JSON list: [{"plugin":"strip_prefix","prefixes":["/api"]}]
        local list = mg.json.decode(labels["moongate.middlewares"])
        if type(list) ~= "table" or #list == 0 then
            return nil, "label moongate.middlewares is not a JSON list of middlewares"
        end
        s.middlewares = list
    end
    -- Traefik's middleware labels and moongate.middlewares.NAME.* (docs/middlewares.md)
    local lm, lerr = require("moongate.label_middlewares").for_container(labels, s.middlewares)
    if not lm then return nil, "middleware labels: " .. lerr end
    s.middlewares = #lm > 0 and lm or nil
    local rt, terr = tls_labels.route_tls(labels)
    if not rt then return nil, terr end
    s.tls, s.entrypoints = rt.tls, rt.entrypoints
    for _, fn in ipairs(extensions) do
        local out, err = fn(labels, s)
        if out == nil then return nil, err end
        s = out
    end
    return s
end

-- The port to use without a port label: the single one exposed, else 80.
-- ports: a list of port numbers (strings or numbers).
function _M.default_port(ports)
    return #ports == 1 and tostring(ports[1]) or "80"
end

-- Groups described members into services and routes for ctx.set_targets.
-- members: id -> { service, address, weight, name, created, id?, and the
-- parse() settings }. The newest member (by `created`) gives the service
-- its rule and settings; disagreeing replicas are logged. Returns
-- services (name -> { targets, extra }), their names sorted, and routes.
-- declared (optional): name -> settings of services known to exist with no
-- member yet (a Swarm service whose tasks are not healthy): they get their
-- route and settings with no targets, so their requests get a 503 instead
-- of falling through to a catch-all route.
function _M.assemble(members, declared)
    local services, order = {}, {}
    for name, d in pairs(declared or {}) do
        if not services[name] then
            services[name] = { targets = {}, newest = d }
            order[#order + 1] = name
        end
    end
    for _, d in pairs(members) do
        local s = services[d.service]
        if not s then
            s = { targets = {}, newest = d }
            services[d.service] = s
            order[#order + 1] = d.service
        elseif #s.targets == 0 then
            s.newest = d -- a declared service's first member
        end
        local name = d.name ~= "" and d.name or nil
        s.targets[#s.targets + 1] = { address = d.address, weight = d.weight,
                                      id = d.target_id or name or d.address,
                                      labels = { container = d.name, node = d.node } }
        if d.created > s.newest.created or (d.created == s.newest.created and d.name > s.newest.name) then
            s.newest = d
        end
    end
    table.sort(order)
    local routes = {}
    for _, name in ipairs(order) do
        local s = services[name]
        table.sort(s.targets, function(a, b) return a.id < b.id end)
        local n = s.newest
        for _, d in pairs(members) do
            if d.service == name and d.rule ~= n.rule then
                mg.log.warn("service ", name, ": replicas disagree on the rule; the newest (",
                    n.name, ") wins")
                break
            end
        end
        if n.rule then
            routes[#routes + 1] = { rule = n.rule, service = name, priority = n.priority,
                                    tls = n.tls, entrypoints = n.entrypoints }
        end
        s.extra = { balancer = n.sticky and "sticky" or n.balancer,
                    protocol = n.protocol,
                    autoscale = n.autoscale,
                    balancer_opts = n.sticky and { cookie = n.sticky } or nil,
                    middlewares = n.middlewares,
                    health = n.health_path and { path = n.health_path, interval = n.health_interval or 2,
                                                 timeout = n.health_timeout or 1 } or nil }
    end
    return services, order, routes
end

return _M
