-- Docker Swarm discovery: a service's running tasks become its targets, at
-- their address on the network they share with the gateway. Needs a
-- manager's Engine API (only managers answer /services and /tasks).
--
-- Swarm emits no task events (moby issue 37403), so the plugin lists nodes,
-- services and tasks, follows /events for service, node and (this node's)
-- container events, and re-lists what an event names: the service's tasks,
-- or the node's. While a service converges (tasks starting or stopping) its
-- tasks are re-listed every 0.2 s until they settle; a slow full re-list
-- (every `refresh` seconds) catches what events miss, and a lost event
-- stream is followed by a full re-list with backoff.
--
-- A task gets traffic while its state is running (with a health check,
-- Swarm reports running only once it is healthy), its node is up and not
-- drained, its desired state is running, and a TCP connect to it has
-- succeeded once. A task whose desired state turns to shutdown or remove
-- is drained at once: Swarm sets that seconds before the container gets
-- SIGTERM (about 3 s after a scale-down, e2e/autoscale_swarm_test.sh).
--
--   providers = { swarm = {
--       endpoint = "unix:///var/run/docker.sock",  -- a manager's API
--       refresh = 30,                               -- seconds between full re-lists
--       network = nil,                              -- network to reach tasks on
--       exposed_by_default = true,                  -- false: only moongate.enable=true
--   } }
--
-- Labels: the service's (deploy.labels) and its containers' (labels), the
-- service's winning; moongate.* and Traefik's. See docs/swarm.md.
-- moongate.autoscale.* labels have the service scaled by the Swarm
-- actuator (docs/autoscaling.md).
local mg = require("moongate")
local labels_mod = mg.labels
local serialize = require("moongate.plugins").serialize

local _M = { type = "discovery" }

local CONVERGING = { new = true, pending = true, assigned = true, accepted = true, preparing = true,
                     ready = true, starting = true }

-- "10.0.1.5/24" -> "10.0.1.5"
local function strip_mask(a) return (tostring(a):gsub("/%d+$", "")) end

-- The labels of a task: its container's, then its service's over them.
function _M.task_labels(service, task)
    local out = {}
    local cs = task.Spec and task.Spec.ContainerSpec
    for k, v in pairs((cs and cs.Labels) or {}) do out[k] = v end
    for k, v in pairs((service.Spec and service.Spec.Labels) or {}) do out[k] = v end
    return out
end

-- The service's name for moongate: moongate.service, else the Swarm name
-- without its stack's prefix (stack "demo", service "demo_web" -> "web").
local function service_name(service, labels)
    if labels["moongate.service"] then return labels["moongate.service"] end
    local name = service.Spec.Name
    local ns = labels["com.docker.stack.namespace"]
    if ns and name:sub(1, #ns + 1) == ns .. "_" then return name:sub(#ns + 2) end
    return name
end

-- The task's address on the wanted network (its name, or the stack's
-- prefixed name), on a network the gateway is on (self_networks: network
-- id -> true), or on the first non-ingress network by name.
function _M.task_address(task, want, ns, self_networks)
    local atts = {}
    for _, a in ipairs(task.NetworksAttachments or {}) do
        local n = a.Network or {}
        local spec = n.Spec or {}
        if not spec.Ingress and spec.Name ~= "ingress" and a.Addresses and a.Addresses[1] then
            atts[#atts + 1] = { id = n.ID, name = spec.Name or "", ip = strip_mask(a.Addresses[1]) }
        end
    end
    table.sort(atts, function(a, b) return a.name < b.name end)
    if want then
        for _, a in ipairs(atts) do
            if a.name == want or (ns and a.name == ns .. "_" .. want) then return a.ip end
        end
        return nil, "not on network " .. want
    end
    for _, a in ipairs(atts) do
        if not self_networks or self_networks[a.id] then return a.ip end
    end
    return nil, self_networks and "no network shared with moongate" or "on no network but ingress"
end

-- moongate.autoscale.* labels (docs/autoscaling.md): the service is scaled
-- by the Swarm actuator, by its name.
local function autoscale_of(service, labels)
    local as = require("moongate.autoscale").from_labels(labels)
    if as then as.swarm = { service = service.Spec.Name } end
    return as
end

-- Why a task gets no traffic, or nil when it may.
local function task_excluded(task, nodes)
    if task.DesiredState ~= "running" then return "desired state " .. tostring(task.DesiredState) end
    local st = task.Status and task.Status.State
    if st ~= "running" then return "state " .. tostring(st) end
    local node = task.NodeID and nodes[task.NodeID]
    if node then
        local ns = node.Status and node.Status.State
        if ns and ns ~= "ready" then return "node " .. ns end
        local av = node.Spec and node.Spec.Availability
        if av == "drain" then return "node drained" end
    end
end

-- The pure step: services, tasks and nodes as the Engine API lists them ->
-- members for labels.assemble (task id -> description). opts: the provider's
-- settings; me = { container_id, networks } for the gateway's own task.
-- Returns members, a list of { task, why, bad } for skipped tasks, and the
-- services declared by their labels (name -> settings), with or without a
-- task that may get traffic.
function _M.members(state, opts, me)
    me = me or {}
    local members, skipped, declared = {}, {}, {}
    for _, svc in pairs(state.services) do
        local tmpl = svc.Spec.TaskTemplate or {}
        local labels = _M.task_labels(svc, { Spec = tmpl })
        local s = labels_mod.parse(labels)
        if s and s.enable ~= false and not (s.enable == nil and opts.exposed_by_default == false) then
            s.name, s.created = svc.Spec.Name, ""
            s.autoscale = autoscale_of(svc, labels)
            declared[service_name(svc, labels)] = s
        end
    end
    for tid, task in pairs(state.tasks) do
        local svc = state.services[task.ServiceID]
        local cid = task.Status and task.Status.ContainerStatus and task.Status.ContainerStatus.ContainerID
        local why, bad
        if not svc then
            why = "service gone"
        elseif cid and state.dead[cid] then
            why = "container stopped"
        elseif me.container_id and cid and cid:sub(1, #me.container_id) == me.container_id then
            why = "the gateway itself"
        else
            why = task_excluded(task, state.nodes)
        end
        local d
        if not why then
            local labels = _M.task_labels(svc, task)
            local s, perr = labels_mod.parse(labels)
            if not s then
                why, bad = perr, true
            elseif s.enable == false then
                why = "disabled by label"
            elseif s.enable == nil and opts.exposed_by_default == false then
                why = "not enabled"
            else
                local port = s.port
                if not port then
                    local ports = {}
                    for _, p in ipairs((svc.Endpoint and svc.Endpoint.Spec and svc.Endpoint.Spec.Ports)
                                       or (svc.Spec.EndpointSpec and svc.Spec.EndpointSpec.Ports) or {}) do
                        if (p.Protocol or "tcp") == "tcp" then ports[#ports + 1] = p.TargetPort end
                    end
                    port = labels_mod.default_port(ports)
                end
                local ns = labels["com.docker.stack.namespace"]
                local ip, aerr = _M.task_address(task, s.network or opts.network, ns, me.networks)
                if not ip then
                    why, bad = aerr, true
                else
                    d = s
                    d.service = service_name(svc, labels)
                    d.name = svc.Spec.Name .. "." .. tostring(task.Slot or task.NodeID) .. "." .. tid
                    d.target_id = d.name
                    d.address = (ip:find(":", 1, true) and ("[" .. ip .. "]") or ip) .. ":" .. port
                    d.created = (svc.UpdatedAt or svc.CreatedAt or "") .. (task.CreatedAt or "")
                    local node = task.NodeID and state.nodes[task.NodeID]
                    d.node = node and node.Description and node.Description.Hostname or task.NodeID
                    d.autoscale = autoscale_of(svc, labels)
                end
            end
        end
        if d then members[tid] = d else skipped[#skipped + 1] = { task = task, why = why, bad = bad } end
    end
    return members, skipped, declared
end

-- Does the service still move (a rolling update under way, tasks starting,
-- or stopping, or not as many tasks wanted as its replicas)? A rolling
-- update turns one task after another to shutdown with no event of its
-- own: only polling sees each step before its container is stopped. A
-- scale's service event comes before the orchestrator marks the tasks it
-- removes: the first re-list still sees them all wanted.
local UPDATING = { updating = true, rollback_started = true }
function _M.converging(state, sid)
    local svc = state.services[sid]
    local us = svc and svc.UpdateStatus
    if us and UPDATING[us.State] then return true end
    local wanted = 0
    for _, t in pairs(state.tasks) do
        if t.ServiceID == sid then
            local st = t.Status and t.Status.State
            if (t.DesiredState == "running" or t.DesiredState == "ready") and CONVERGING[st] then return true end
            if t.DesiredState ~= "running" and st == "running" then return true end
            if t.DesiredState == "running" then wanted = wanted + 1 end
        end
    end
    local rep = svc and svc.Spec and svc.Spec.Mode and svc.Spec.Mode.Replicated
    if rep and tonumber(rep.Replicas) and wanted ~= tonumber(rep.Replicas) then return true end
    return false
end

-- Swarm's role for the engine behind client: "manager", "worker" or nil
-- (not in a swarm), from /info.
function _M.role(client)
    local info, err = client:get("/info")
    if not info then return nil, err end
    local sw = info.Swarm or {}
    if sw.LocalNodeState ~= "active" then return nil end
    return sw.ControlAvailable and "manager" or "worker", sw.NodeID
end

_M.WORKER_MESSAGE = "this engine is a Swarm worker: Swarm discovery needs a manager's Engine API"
    .. " (only managers list services and tasks); run moongate on a manager"
    .. " (deploy.placement.constraints: [node.role == manager]) or point the provider's endpoint at one"

local function filter(key, value)
    return mg.docker.urlencode(mg.json.encode({ [key] = { value } }))
end

function _M.start(ctx)
    local opts = ctx.opts
    local refresh = tonumber(opts.refresh) or 30
    local published = {}
    mg.docker.follow(ctx, "swarm", function(connected)
        local client, cerr = mg.docker.connect(opts.endpoint)
        if not client then error(cerr, 0) end
        local role = _M.role(client)
        if role == "worker" then error(_M.WORKER_MESSAGE, 0) end
        if role == nil then error("this engine is not in a swarm (docker swarm init, or join one)", 0) end
        local me = {}
        local self_c = client:self_container()
        if self_c then
            me.container_id = self_c.Id
            me.networks = {}
            for _, n in pairs((self_c.NetworkSettings and self_c.NetworkSettings.Networks) or {}) do
                if n.NetworkID then me.networks[n.NetworkID] = true end
            end
        end
        local state = { services = {}, tasks = {}, nodes = {}, dead = {} }
        local alive = true -- this connection's generation
        local last_sig
        local publish
        local admitter = mg.docker.new_admitter(function() publish() end, opts)
        publish = function()
            if not (alive and ctx.alive()) then return end
            local members, skipped, declared = _M.members(state, opts, me)
            for _, s in ipairs(skipped) do
                if s.bad then mg.log.warn("task ", s.task.ID, " skipped: ", s.why) end
            end
            local live = {}
            for tid, d in pairs(members) do
                if admitter:admitted(tid, d.address) then live[tid] = d end
            end
            for tid in pairs(admitter.state) do
                if not members[tid] then admitter:forget(tid) end
            end
            local services, order, routes = labels_mod.assemble(live, declared)
            -- polls re-list often: publish only what changed
            local sig = serialize({ services, routes })
            if sig == last_sig then return end
            last_sig = sig
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
        -- the tasks matching key (service or node) are replaced by a fresh list
        local seq = {}
        local function relist_tasks(key, value)
            local n = (seq[key .. value] or 0) + 1
            seq[key .. value] = n
            local tasks, terr = client:get("/tasks?filters=" .. filter(key, value))
            if not tasks then return nil, terr end
            if seq[key .. value] ~= n then return true end -- a newer answer is on its way
            local field = key == "service" and "ServiceID" or "NodeID"
            for tid, t in pairs(state.tasks) do
                if t[field] == value then state.tasks[tid] = nil end
            end
            for _, t in ipairs(tasks) do state.tasks[t.ID] = t end
            return true
        end
        local polling = {}
        -- the service and its tasks, afresh; false when it could not be read
        local function fetch_service(sid)
            local svc, serr, status = client:get("/services/" .. sid)
            if svc then
                state.services[sid] = svc
            elseif status == 404 then
                state.services[sid] = nil
            else
                mg.log.warn("swarm: service ", sid, ": ", tostring(serr))
                return false
            end
            relist_tasks("service", sid)
            publish()
            return true
        end
        local function relist_service(sid)
            if not fetch_service(sid) then return end
            -- follow a converging service closely: no task events exist
            if not polling[sid] and state.services[sid] and _M.converging(state, sid) then
                polling[sid] = true
                mg.spawn(function()
                    local deadline = mg.now() + 120
                    while alive and ctx.alive() and mg.now() < deadline and state.services[sid]
                          and _M.converging(state, sid) do
                        mg.sleep(0.2)
                        if not (alive and ctx.alive()) then break end
                        fetch_service(sid)
                    end
                    polling[sid] = nil
                end)
            end
        end
        local function relist_node(nid)
            local node, nerr, status = client:get("/nodes/" .. nid)
            if node then state.nodes[nid] = node
            elseif status == 404 then state.nodes[nid] = nil
            else mg.log.warn("swarm: node ", nid, ": ", tostring(nerr)) end
            relist_tasks("node", nid)
            publish()
        end
        local function relist_all()
            local nodes, nerr = client:get("/nodes")
            if not nodes then return nil, nerr end
            local services, serr = client:get("/services")
            if not services then return nil, serr end
            local tasks, terr = client:get("/tasks")
            if not tasks then return nil, terr end
            state.nodes, state.services, state.tasks = {}, {}, {}
            for _, n in ipairs(nodes) do state.nodes[n.ID] = n end
            for _, s in ipairs(services) do state.services[s.ID] = s end
            for _, t in ipairs(tasks) do state.tasks[t.ID] = t end
            return true
        end
        local lok, lerr = relist_all()
        if not lok then
            if tostring(lerr):find("not a swarm manager", 1, true) then error(_M.WORKER_MESSAGE, 0) end
            error(lerr, 0)
        end
        local _, skipped0 = _M.members(state, opts, me)
        for _, s in ipairs(skipped0) do
            if s.why ~= "service gone" then mg.log.debug("task ", s.task.ID, ": ", s.why) end
        end
        publish()
        admitter:settle(1.5)
        publish()
        for sid in pairs(state.services) do
            if _M.converging(state, sid) then relist_service(sid) end
        end
        connected()
        -- the slow full re-list, for what the events miss
        mg.spawn(function()
            while alive and ctx.alive() do
                mg.sleep(refresh)
                if not (alive and ctx.alive()) then return end
                local rok, rerr = relist_all()
                if rok then publish() else mg.log.warn("swarm: full re-list: ", tostring(rerr)) end
            end
        end)
        local stream, serr = client:events({ type = { "service", "node", "container" } })
        if not stream then
            alive = false
            error(serr, 0)
        end
        local why = mg.docker.each_event(ctx, "swarm", stream, function(e)
            local actor = e.Actor or {}
            local attrs = actor.Attributes or {}
            local action = e.Action or ""
            if e.Type == "service" and actor.ID then
                mg.spawn(relist_service, actor.ID)
            elseif e.Type == "node" and actor.ID then
                mg.spawn(relist_node, actor.ID)
            elseif e.Type == "container" and attrs["com.docker.swarm.service.id"] then
                local sid = attrs["com.docker.swarm.service.id"]
                if action == "kill" or action == "die" or action == "stop" or action == "pause" then
                    -- this node's task container stops: out before Swarm notices
                    state.dead[actor.ID] = true
                    publish()
                elseif action == "unpause" then
                    state.dead[actor.ID] = nil
                end
                if action == "destroy" then state.dead[actor.ID] = nil end
                if action ~= "exec_create" and action:sub(1, 5) ~= "exec_" then
                    mg.spawn(relist_service, sid)
                end
            end
        end)
        alive = false
        error(why, 0)
    end)
end

return _M
