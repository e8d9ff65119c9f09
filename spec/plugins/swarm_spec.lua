-- plugins/swarm.lua against answers recorded from a real Swarm manager
-- (spec/fixtures/swarm), replayed with a second node added
-- (spec/support/swarm_replay.py).
local h = require("spec.helpers")
local mg = require("moongate")
local socket = require("socket")
local plugins = require("moongate.plugins")

local function fixture(name) return mg.json.decode(h.read_file("spec/fixtures/swarm/" .. name)) end

-- The recorded state as the plugin keeps it (id -> object).
local function state_of(tasks_file)
    local st = { services = {}, tasks = {}, nodes = {}, dead = {} }
    for _, s in ipairs(fixture("services.json")) do st.services[s.ID] = s end
    for _, t in ipairs(fixture(tasks_file or "tasks.json")) do st.tasks[t.ID] = t end
    for _, n in ipairs(fixture("nodes.json")) do st.nodes[n.ID] = n end
    return st
end

local function by_service(members)
    local out = {}
    for _, d in pairs(members) do
        out[d.service] = out[d.service] or {}
        table.insert(out[d.service], d)
    end
    for _, list in pairs(out) do table.sort(list, function(a, b) return a.name < b.name end) end
    return out
end

local function start_replay(extra, provider)
    local sock = h.tmpdir() .. "/docker.sock"
    local argv = { "python3", "spec/support/swarm_replay.py", "--socket", sock }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    h.spawn(argv)
    h.wait_until(function() return require("posix.sys.stat").stat(sock) ~= nil end, 5, "the replay socket")
    local published = {}
    local discovery = require("moongate.discovery")
    discovery.publish = function(lit) published[#published + 1] = { at = socket.gettime(), v = plugins.deserialize(lit) } end
    local conf = { endpoint = "unix://" .. sock, probe = false }
    if provider == "docker" then conf.swarm = "auto" end
    discovery.start(plugins.serialize({ [provider or "swarm"] = conf }), "plugins")
    return published
end

describe("swarm discovery", function()
    local swarm
    before_each(function() swarm = assert(plugins.load("swarm", "plugins", "discovery")) end)
    after_each(function()
        require("moongate.discovery").stop()
        h.cleanup()
    end)

    describe("the pure step (tasks -> members)", function()
        it("makes each running task a target at its overlay address, with the service's and container's labels", function()
            local members = by_service(swarm.members(state_of(), {}, nil))
            assert.equal(2, #members.recweb)
            local w = members.recweb[1]
            assert.truthy(w.address:match("^10%.0%.1%.%d+:80$"), w.address)
            assert.equal("PathPrefix(`/`)", w.rule) -- deploy.labels (the service's)
            assert.equal(1, w.priority)
            local a = members.recapi[1]
            assert.truthy(a.address:match("^10%.0%.1%.%d+:8000$"), a.address) -- Traefik's port label
            assert.equal("PathPrefix(`/api`)", a.rule)
            assert.equal("mgrec", a.network) -- traefik.swarm.network
        end)

        it("lets the service's labels win over its containers'", function()
            local st = state_of()
            for _, s in pairs(st.services) do s.Spec.Labels["moongate.port"] = "8080" end
            for _, d in pairs(swarm.members(st, {}, nil)) do
                if d.service == "recweb" then assert.truthy(d.address:match(":8080$"), d.address) end
            end
        end)

        it("gives no traffic to a task still starting (its health check has not passed)", function()
            local members, skipped = swarm.members(state_of("tasks_starting.json"), {}, nil)
            assert.is_nil(by_service(members).recapi)
            local why = {}
            for _, s in ipairs(skipped) do why[#why + 1] = s.why end
            assert.truthy(table.concat(why, ","):find("state starting", 1, true))
        end)

        it("keeps the route of a service none of whose tasks may get traffic yet (a 503, not a catch-all)", function()
            local members, _, declared = swarm.members(state_of("tasks_starting.json"), {}, nil)
            local services, _, routes = mg.labels.assemble(members, declared)
            assert.same({}, services.recapi.targets)
            local rules = {}
            for _, r in ipairs(routes) do rules[r.service] = r.rule end
            assert.equal("PathPrefix(`/api`)", rules.recapi)
        end)

        it("autoscales a service by its deploy labels with the Swarm actuator, with tasks or none", function()
            for _, file in ipairs({ "tasks.json", "tasks_starting.json" }) do
                local st = state_of(file)
                for _, s in pairs(st.services) do
                    if s.Spec.Name == "recapi" then
                        s.Spec.Labels["moongate.autoscale.min"] = "0"
                        s.Spec.Labels["moongate.autoscale.max"] = "4"
                        s.Spec.Labels["moongate.autoscale.scale_down_window"] = "10s"
                    end
                end
                local members, _, declared = swarm.members(st, {}, nil)
                local services = mg.labels.assemble(members, declared)
                local as = services.recapi.extra.autoscale
                assert.truthy(as, file)
                assert.same({ service = "recapi" }, as.swarm)
                assert.equal(0, as.min)
                assert.equal(4, as.max)
                assert.equal(10, require("moongate.autoscale").settings(as, false).scale_down_window)
                assert.is_nil(services.recweb.extra.autoscale) -- no autoscale label: not scaled
            end
        end)

        -- A service event comes when the spec changes, before the
        -- orchestrator marks the tasks it removes (or creates new ones): a
        -- re-list then sees every task wanted and running. Unless polled,
        -- the removed ones stayed targets until their containers stopped.
        it("sees a service converge while its tasks wanted differ from its replicas (a scale just asked for)", function()
            local st = state_of()
            local sid
            for id, svc in pairs(st.services) do if svc.Spec.Name == "recweb" then sid = id end end
            assert.is_false(swarm.converging(st, sid))
            st.services[sid].Spec.Mode.Replicated.Replicas = 1
            assert.is_true(swarm.converging(st, sid))
            st.services[sid].Spec.Mode.Replicated.Replicas = 4
            assert.is_true(swarm.converging(st, sid))
        end)

        it("drains a task whose desired state is remove while it still runs", function()
            local members = by_service(swarm.members(state_of("tasks_removing.json"), {}, nil))
            assert.equal(1, #members.recweb)
        end)

        it("leaves out tasks on a node that is down or drained", function()
            local st = state_of()
            local node = next(st.nodes)
            st.nodes[node].Status.State = "down"
            assert.is_nil(next((swarm.members(st, {}, nil))))
            st.nodes[node].Status.State = "ready"
            st.nodes[node].Spec.Availability = "drain"
            assert.is_nil(next((swarm.members(st, {}, nil))))
        end)

        it("never routes to the gateway's own task, nor to a task whose container stopped", function()
            local st = state_of()
            local t = next(st.tasks)
            local cid = st.tasks[t].Status.ContainerStatus.ContainerID
            local m = swarm.members(st, {}, { container_id = cid:sub(1, 12) })
            assert.is_nil(m[t])
            st.dead[cid] = true
            assert.is_nil(swarm.members(st, {}, nil)[t])
        end)

        it("names targets the same on every gateway instance, so a sticky cookie works on any of them", function()
            local sticky = assert(plugins.load("sticky", "plugins", "balancer"))
            local function tokens(tasks_order)
                local st = state_of()
                if tasks_order == "reversed" then
                    local list = fixture("tasks.json")
                    st.tasks = {}
                    for i = #list, 1, -1 do st.tasks[list[i].ID] = list[i] end
                end
                local services = mg.labels.assemble(swarm.members(st, {}, nil))
                local b = sticky.new(services.recweb.targets, { cookie = "s" })
                local out = {}
                for tok, target in pairs(b.by_token) do out[tok] = target.id end
                return out
            end
            local a, b = tokens(), tokens("reversed")
            assert.same(a, b)
            for _, id in pairs(a) do assert.truthy(id:match("^recweb%.%d+%.%w+$"), id) end
        end)
    end)

    it("follows two nodes event by event: a scale-up without task events, a node down and back, a stream break, a drain", function()
        local published = start_replay()
        local seen, last = {}, nil
        local deadline = socket.gettime() + 9
        while socket.gettime() < deadline and #seen < 6 do
            mg.run(0.05)
            local p = published[#published]
            local s = p and p.v.services.recweb
            local n = s and #s.targets or 0
            if p and n ~= last then
                seen[#seen + 1] = n
                last = n
            end
        end
        -- 2 tasks on two nodes; scale-up: 3 once slot 3 runs; vm2 down: 1;
        -- (the stream breaks and a re-list keeps 1); vm2 ready: 3; slot 2 remove: 2
        assert.same({ 2, 3, 1, 3, 2 }, { seen[1], seen[2], seen[3], seen[4], seen[5] })
        local p = published[#published].v
        local nodes = {}
        for _, t in ipairs(p.services.recweb.targets) do nodes[#nodes + 1] = t.labels.node end
        table.sort(nodes)
        assert.same({ "vm", "vm2" }, nodes)
        assert.equal(1, #p.services.recapi.targets)
        local rules = {}
        for _, r in ipairs(p.routes) do rules[r.service] = r.rule end
        assert.same({ recweb = "PathPrefix(`/`)", recapi = "PathPrefix(`/api`)" }, rules)
    end)

    it("is what zero config runs on a Swarm manager (docker provider, swarm = \"auto\")", function()
        local published = start_replay(nil, "docker")
        h.wait_until(function()
            mg.run(0.05)
            local p = published[#published]
            return p and p.v.services.recweb and #p.v.services.recweb.targets == 2
        end, 5, "the Swarm services through the docker provider")
        local cfg = require("moongate.config").default({ docker_socket_present = true })
        assert.equal("auto", cfg.providers.docker.swarm)
    end)

    it("says that a manager's API is needed when the engine is a worker", function()
        local warned = {}
        local orig = mg.log.warn
        mg.log.warn = function(...) warned[#warned + 1] = table.concat({ ... }); orig(...) end
        local published = start_replay({ "--worker" })
        h.wait_until(function() mg.run(0.05); return #warned > 0 end, 5, "a warning")
        mg.log.warn = orig
        assert.truthy(warned[1]:find("needs a manager's Engine API", 1, true), warned[1])
        assert.equal(0, #published)
    end)
end)
