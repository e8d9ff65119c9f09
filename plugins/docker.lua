-- Docker discovery: containers become targets while they run (and, when
-- they have a health check, while they are healthy). Follows the Engine API
-- over its unix socket: lists running containers, then follows /events and
-- updates only the container an event names; after a lost stream it
-- re-lists, with backoff, so nothing that happened meanwhile is missed.
-- On kill/stop a container's target is removed at once: requests in flight
-- finish, no new ones go there, before the container is gone.
--
--   providers = { docker = {
--       endpoint = "unix:///var/run/docker.sock",   -- or "http://127.0.0.1:2375"
--       exposed_by_default = true,                   -- false: only moongate.enable=true
--       network = nil,                               -- network to reach containers on
--   } }
--
-- Labels (moongate.* or Traefik's): see docs/docker.md.
local mg = require("moongate")

local _M = { type = "discovery" }

local function truthy(v) return v == "true" or v == "1" or v == "yes" end

local function urlencode(s)
    return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function base_url(endpoint)
    local sock = endpoint:match("^unix://(/.+)$")
    if sock then return "unix://" .. sock .. ":" end
    return endpoint:gsub("^tcp://", "http://"):gsub("/$", "")
end

local function get(base, prefix, path, timeout)
    local res, err = mg.http.request({ url = base .. prefix .. path, timeout = timeout or 5 })
    if not res then return nil, err end
    if res.status ~= 200 then return nil, "status " .. res.status .. " for " .. path end
    local v, jerr = mg.json.decode(res.body)
    if v == nil then return nil, "bad JSON from " .. path .. ": " .. tostring(jerr) end
    return v
end

-- Traefik's labels name a router and a service; take the first of each.
local function traefik(labels, what)
    for k, v in pairs(labels) do
        local m = k:match("^traefik%.http%.routers%.[^.]+%." .. what .. "$")
        if m ~= nil or k:match("^traefik%.http%.routers%.[^.]+%." .. what .. "$") then return v end
    end
end

local function traefik_hc(labels, what)
    for k, v in pairs(labels) do
        if k:match("^traefik%.http%.services%.[^.]+%.loadbalancer%.healthcheck%." .. what .. "$") then return v end
    end
end

-- "2", "2s", "500ms", "1m" -> seconds
local function seconds(v)
    local n, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
    n = tonumber(n)
    if not n then return nil end
    local mult = ({ [""] = 1, s = 1, ms = 0.001, m = 60 })[unit]
    return mult and n * mult
end

local function traefik_port(labels)
    for k, v in pairs(labels) do
        if k:match("^traefik%.http%.services%.[^.]+%.loadbalancer%.server%.port$") then return v end
    end
end

-- moongate.autoscale.* labels (docs/autoscaling.md); a Compose replica is
-- scaled by the Compose actuator.
local function autoscale_of(labels)
    local as = require("moongate.autoscale").from_labels(labels)
    if as and labels["com.docker.compose.project"] then
        as.compose = { project = labels["com.docker.compose.project"], service = labels["com.docker.compose.service"] }
    end
    return as
end

-- What moongate needs from an inspected container, or nil and why not.
function _M.describe(c, opts, self_networks)
    local labels = (c.Config and c.Config.Labels) or {}
    if labels["com.docker.compose.oneoff"] == "True" then return nil, "one-off container" end
    local enable = labels["moongate.enable"] or labels["traefik.enable"]
    if enable ~= nil and not truthy(enable) then return nil, "disabled by label" end
    if enable == nil and opts.exposed_by_default == false then return nil, "not enabled" end
    if not (c.State and c.State.Running) then return nil, "not running" end
    local health = c.State.Health and c.State.Health.Status
    if health and health ~= "healthy" then return nil, "health " .. health end
    local service = labels["moongate.service"] or labels["com.docker.compose.service"]
        or (c.Name or ""):gsub("^/", "")
    local port = labels["moongate.port"] or traefik_port(labels)
    if not port then
        local exposed = {}
        for p in pairs((c.Config and c.Config.ExposedPorts) or {}) do
            local n = p:match("^(%d+)/tcp$")
            if n then exposed[#exposed + 1] = n end
        end
        port = #exposed == 1 and exposed[1] or "80"
    end
    if not tonumber(port) then return nil, "label moongate.port is not a number: " .. tostring(port), true end
    local nets = (c.NetworkSettings and c.NetworkSettings.Networks) or {}
    local want = labels["moongate.network"] or labels["traefik.docker.network"] or opts.network
    local ip
    if want then
        ip = nets[want] and nets[want].IPAddress
        if not ip or ip == "" then
            -- Compose prefixes network names with the project
            for name, n in pairs(nets) do
                if name:sub(-#want - 1) == "_" .. want and n.IPAddress ~= "" then ip = n.IPAddress end
            end
        end
    else
        for name, n in pairs(nets) do
            if (not self_networks or self_networks[name]) and n.IPAddress and n.IPAddress ~= "" then
                ip = n.IPAddress
                break
            end
        end
    end
    if not ip or ip == "" then return nil, "no address on a network shared with moongate", true end
    local middlewares
    if labels["moongate.middlewares"] then
        -- a JSON list: [{"plugin":"strip_prefix","prefixes":["/api"]}]
        local list = mg.json.decode(labels["moongate.middlewares"])
        if type(list) ~= "table" or #list == 0 then
            return nil, "label moongate.middlewares is not a JSON list of middlewares", true
        end
        middlewares = list
    end
    local interval = labels["moongate.health.interval"] or traefik_hc(labels, "interval")
    local timeout = labels["moongate.health.timeout"] or traefik_hc(labels, "timeout")
    if (interval and not seconds(interval)) or (timeout and not seconds(timeout)) then
        return nil, "health interval/timeout labels must be durations like 2 or 2s or 500ms", true
    end
    local weight = tonumber(labels["moongate.weight"] or "1")
    if not weight or weight < 1 or weight ~= math.floor(weight) then
        return nil, "label moongate.weight must be a positive integer", true
    end
    return {
        id = c.Id, name = (c.Name or ""):gsub("^/", ""), service = service,
        address = ip .. ":" .. port, weight = weight, created = c.Created or "",
        rule = labels["moongate.rule"] or traefik(labels, "rule"),
        priority = tonumber(labels["moongate.priority"] or traefik(labels, "priority") or ""),
        balancer = labels["moongate.balancer"],
        sticky = (function()
            for k, v in pairs(labels) do
                if k:match("%.sticky%.cookie%.name$") then return v end
            end
        end)(),
        health_path = labels["moongate.health.path"] or traefik_hc(labels, "path"),
        health_interval = interval and seconds(interval),
        health_timeout = timeout and seconds(timeout),
        middlewares = middlewares,
        autoscale = autoscale_of(labels),
    }
end

-- Groups described containers into services and routes for set_targets.
function _M.assemble(containers)
    local services, order = {}, {}
    for _, d in pairs(containers) do
        local s = services[d.service]
        if not s then
            s = { targets = {}, newest = d }
            services[d.service] = s
            order[#order + 1] = d.service
        end
        s.targets[#s.targets + 1] = { address = d.address, weight = d.weight, id = d.name ~= "" and d.name or d.address,
                                      labels = { container = d.name } }
        if d.created > s.newest.created then s.newest = d end
    end
    table.sort(order)
    local routes = {}
    for _, name in ipairs(order) do
        local s = services[name]
        table.sort(s.targets, function(a, b) return a.id < b.id end)
        local n = s.newest
        for _, d in pairs(containers) do
            if d.service == name and d.rule ~= n.rule then
                mg.log.warn("service ", name, ": replicas disagree on the rule; the newest container (",
                    n.name, ") wins")
                break
            end
        end
        if n.rule then routes[#routes + 1] = { rule = n.rule, service = name, priority = n.priority } end
        s.extra = { balancer = n.sticky and "sticky" or n.balancer,
                    balancer_opts = n.sticky and { cookie = n.sticky } or nil,
                    middlewares = n.middlewares,
                    autoscale = n.autoscale,
                    health = n.health_path and { path = n.health_path, interval = n.health_interval or 2,
                                                 timeout = n.health_timeout or 1 } or nil }
    end
    return services, order, routes
end

function _M.start(ctx)
    local opts = ctx.opts
    local base = base_url(opts.endpoint or "unix:///var/run/docker.sock")
    local backoff = 0.5
    local published = {}
    while ctx.alive() do
        local ok, err = pcall(function()
            local ping, perr = mg.http.request({ url = base .. "/_ping", timeout = 5 })
            if not ping then error(perr, 0) end
            local prefix = "/v" .. (ping.headers["api-version"] or "1.41")
            -- the networks moongate itself is on, when it runs in a container
            local self_networks
            local me = os.getenv("HOSTNAME")
            if me then
                local c = get(base, prefix, "/containers/" .. me .. "/json")
                if c and c.NetworkSettings then self_networks = c.NetworkSettings.Networks end
            end
            local containers = {}
            local list, lerr = get(base, prefix, "/containers/json")
            if not list then error(lerr, 0) end
            for _, item in ipairs(list) do
                local c = get(base, prefix, "/containers/" .. item.Id .. "/json")
                if c then
                    local d, why, bad = _M.describe(c, opts, self_networks)
                    if d then containers[c.Id] = d
                    elseif bad then mg.log.warn("container ", c.Name, " skipped: ", why)
                    else mg.log.debug("container ", c.Name, " skipped: ", why) end
                end
            end
            local function publish()
                local services, order, routes = _M.assemble(containers)
                for name in pairs(published) do
                    if not services[name] then ctx.set_targets(name, {}) end
                end
                published = {}
                for _, name in ipairs(order) do
                    published[name] = true
                    ctx.set_targets(name, services[name].targets, services[name].extra)
                end
                ctx.set_routes(routes)
            end
            publish()
            backoff = 0.5
            local filters = urlencode('{"type":["container"]}')
            local stream, serr = mg.http.stream({ url = base .. prefix .. "/events?filters=" .. filters })
            if not stream then error(serr, 0) end
            for line in stream:lines() do
                if not ctx.alive() then break end
                local e = mg.json.decode(line)
                if type(e) == "table" then
                    local action = e.Action or e.status or ""
                    local id = e.id or (e.Actor and e.Actor.ID)
                    if id and (action == "kill" or action == "stop" or action == "die" or action == "destroy") then
                        if containers[id] then
                            mg.log.info("container ", containers[id].name, " ", action, ": draining it")
                            containers[id] = nil
                            publish()
                        end
                    elseif id and (action == "start" or action:sub(1, 13) == "health_status") then
                        local c = get(base, prefix, "/containers/" .. id .. "/json")
                        local d, why, bad
                        if c then d, why, bad = _M.describe(c, opts, self_networks) end
                        local before = containers[id]
                        containers[id] = d or nil
                        if d or before then publish() end
                        if not d and c and why then
                            (bad and mg.log.warn or mg.log.debug)("container ", c.Name, " skipped: ", why)
                        end
                    end
                else
                    mg.log.warn("docker: ignoring a malformed event line")
                end
            end
            stream:close()
            error(stream.err or "the event stream ended", 0)
        end)
        if not ctx.alive() then return end
        mg.log.warn("docker: ", tostring(err), "; reconnecting in ", backoff, " s")
        mg.sleep(backoff)
        backoff = math.min(backoff * 2, 10)
        if ok then backoff = 0.5 end
    end
end

return _M
