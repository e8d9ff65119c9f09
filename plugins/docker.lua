-- Docker discovery: containers become targets while they run, once their
-- port accepts a TCP connection (and, when they have a health check, while
-- they are healthy). Follows the Engine API over its unix socket: lists
-- running containers, then follows /events and updates only the container
-- an event names; after a lost stream it re-lists, with backoff, so
-- nothing that happened meanwhile is missed. On kill/stop/pause a
-- container's target is removed at once: requests in flight finish, no new
-- ones go there, before the container is gone.
--
--   providers = { docker = {
--       endpoint = "unix:///var/run/docker.sock",   -- or "http://127.0.0.1:2375"
--       exposed_by_default = nil,  -- nil: the gateway's Compose project, else labelled containers
--                                  -- true: every container; false: only moongate.enable=true
--       network = nil,             -- network to reach containers on
--       probe = true,              -- false: admit on start, without a TCP connect first
--       swarm = nil,               -- "auto" (the zero-config default): on a Swarm manager,
--                                  -- discover Swarm services (plugins/swarm.lua) instead
--   } }
--
-- Labels (moongate.* or Traefik's, parsed by lua/moongate/labels.lua): see docs/docker.md.
local mg = require("moongate")
local labels_mod = mg.labels

local _M = { type = "discovery" }

local function has_routing_labels(labels)
    for k in pairs(labels) do
        if k:sub(1, 9) == "moongate." or k:sub(1, 8) == "traefik." then return true end
    end
    return false
end

-- Which containers this provider looks at. scope = { self_id, project }
-- (from the gateway's own container, when it runs in one).
local function in_scope(c, labels, s, opts, scope)
    scope = scope or {}
    if scope.self_id and c.Id == scope.self_id then return false, "the gateway itself" end
    if s.enable == false then return false, "disabled by label" end
    if s.enable == true then return true end
    if opts.exposed_by_default == true then return true end
    if opts.exposed_by_default == false then return false, "not enabled" end
    if scope.project then
        if labels["com.docker.compose.project"] == scope.project then return true end
        return false, "not in the gateway's Compose project " .. scope.project
    end
    if has_routing_labels(labels) then return true end
    return false, "no moongate or Traefik labels"
end

-- The container's address on the wanted network, or on one shared with
-- the gateway (self_networks), or on any.
function _M.address(nets, want, self_networks)
    if want then
        local n = nets[want]
        if n and n.IPAddress and n.IPAddress ~= "" then return n.IPAddress end
        -- Compose prefixes network names with the project
        for name, m in pairs(nets) do
            if name:sub(-#want - 1) == "_" .. want and m.IPAddress and m.IPAddress ~= "" then return m.IPAddress end
        end
        return nil
    end
    local names = {}
    for name in pairs(nets) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
        local n = nets[name]
        if (not self_networks or self_networks[name]) and n.IPAddress and n.IPAddress ~= "" then return n.IPAddress end
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

-- What moongate needs from an inspected container, or nil, why, bad (bad:
-- the labels are wrong, worth a warning).
function _M.describe(c, opts, self_networks, scope)
    local labels = (c.Config and c.Config.Labels) or {}
    if labels["com.docker.compose.oneoff"] == "True" then return nil, "one-off container" end
    local s, perr = labels_mod.parse(labels)
    if not s then return nil, perr, true end
    local ok, why = in_scope(c, labels, s, opts, scope)
    if not ok then return nil, why end
    if not (c.State and c.State.Running) then return nil, "not running" end
    if c.State.Paused then return nil, "paused" end
    local health = c.State.Health and c.State.Health.Status
    if health and health ~= "healthy" then return nil, "health " .. health end
    local port = s.port
    if not port then
        local exposed = {}
        for p in pairs((c.Config and c.Config.ExposedPorts) or {}) do
            local n = p:match("^(%d+)/tcp$")
            if n then exposed[#exposed + 1] = n end
        end
        port = labels_mod.default_port(exposed)
    end
    local ip = _M.address((c.NetworkSettings and c.NetworkSettings.Networks) or {}, s.network or opts.network,
        self_networks)
    if not ip then return nil, "no address on a network shared with moongate", true end
    local d = s
    d.id = c.Id
    d.name = (c.Name or ""):gsub("^/", "")
    d.service = s.service or labels["com.docker.compose.service"] or d.name
    d.address = (ip:find(":", 1, true) and ("[" .. ip .. "]") or ip) .. ":" .. port
    d.created = c.Created or ""
    d.autoscale = autoscale_of(labels)
    return d
end

_M.assemble = labels_mod.assemble

-- The socket exists but may not be read: every request gets a 503 page
-- that says so and names the fix, instead of "no services configured".
local NOTICE = "moongate-docker-unreadable"
local function publish_unreadable(ctx, why)
    ctx.set_targets(NOTICE, {}, { middlewares = { {
        plugin = "respond", status = 503,
        body = "moongate: Docker discovery cannot start: " .. why .. "\n" } } })
    ctx.set_routes({ { rule = "PathPrefix(`/`)", service = NOTICE, priority = 0 } })
end

local DRAIN = { kill = true, stop = true, die = true, destroy = true, pause = true }
local REINSPECT = { start = true, unpause = true }

function _M.start(ctx)
    local opts = ctx.opts
    local docker = mg.docker
    local published, notice, swarm_checked = {}, false, false
    docker.follow(ctx, "docker", function(connected)
        local client, cerr, unreadable = docker.connect(opts.endpoint)
        if not client then
            if unreadable and not notice then
                notice = true
                publish_unreadable(ctx, cerr)
            end
            error(cerr, 0)
        end
        if notice then
            notice = false
            ctx.remove_service(NOTICE)
            ctx.set_routes({})
        end
        if opts.swarm == "auto" and not swarm_checked then
            swarm_checked = true
            local swarm = assert(require("moongate.plugins").load("swarm", nil, "discovery"))
            local role = swarm.role(client)
            if role == "manager" then
                mg.log.info("docker: this engine is a Swarm manager: discovering Swarm services")
                return swarm.start(ctx)
            elseif role == "worker" then
                mg.log.warn("docker: ", swarm.WORKER_MESSAGE, "; discovering this node's containers only")
            end
        end
        -- the gateway's own container: its networks, its Compose project
        local self_networks, scope = nil, {}
        local me = client:self_container()
        if me then
            self_networks = me.NetworkSettings and me.NetworkSettings.Networks
            scope.self_id = me.Id
            scope.project = me.Config and me.Config.Labels and me.Config.Labels["com.docker.compose.project"]
        end
        local containers = {} -- id -> description (admitted or not)
        local publish
        local admitter = docker.new_admitter(function() publish() end, opts)
        publish = function()
            if not ctx.alive() then return end
            local live = {}
            for id, d in pairs(containers) do
                if admitter:admitted(id, d.address) then live[id] = d end
            end
            local services, order, routes = _M.assemble(live)
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
        local consider
        -- The engine did not answer an inspect (busy with a scale event, a
        -- timeout): what is known of the container stays as it is, and it
        -- is asked again, a few times, backing off. Only an answer (or a
        -- 404: the container is gone) changes membership.
        local function ask_again(id, attempt, err)
            mg.log.warn("docker: inspecting container ", id:sub(1, 12), " failed (", tostring(err),
                "); keeping what was known of it", attempt <= 5 and ", asking again" or "")
            if attempt > 5 then return end
            mg.spawn(function()
                mg.sleep(0.2 * attempt)
                if ctx.alive() and consider(id, attempt + 1) then publish() end
            end)
        end
        consider = function(id, attempt)
            local c, gerr, status = client:get("/containers/" .. id .. "/json")
            if not c and status ~= 404 then
                ask_again(id, attempt or 1, gerr)
                return false
            end
            local d, why, bad
            if c then d, why, bad = _M.describe(c, opts, self_networks, scope) end
            local before = containers[id]
            containers[id] = d or nil
            if not d then admitter:forget(id) end
            if not d and c and why then
                (bad and mg.log.warn or mg.log.debug)("container ", c.Name, " skipped: ", why)
            end
            return d ~= nil or before ~= nil
        end
        local list, lerr = client:get("/containers/json")
        if not list then error(lerr, 0) end
        for _, item in ipairs(list) do consider(item.Id) end
        for id, d in pairs(containers) do admitter:admitted(id, d.address) end
        admitter:settle(1.5)
        publish()
        connected()
        local stream, serr = client:events({ type = { "container" } })
        if not stream then error(serr, 0) end
        error(docker.each_event(ctx, "docker", stream, function(e)
            local action = e.Action or e.status or ""
            local id = e.id or (e.Actor and e.Actor.ID)
            if id and DRAIN[action] then
                if containers[id] then
                    mg.log.info("container ", containers[id].name, " ", action, ": draining it")
                    containers[id] = nil
                    admitter:forget(id)
                    publish()
                end
            elseif id and (REINSPECT[action] or action:sub(1, 13) == "health_status") then
                if consider(id) then publish() end
            end
        end), 0)
    end)
end

return _M
