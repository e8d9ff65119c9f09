-- The Compose and Swarm actuators against an Engine API replaying answers
-- recorded from a real engine (spec/support/engine_replay.py).
local h = require("spec.helpers")
local mg = require("moongate")
local cjson = require("cjson")

local function engine()
    local dir = h.tmpdir()
    local sock = dir .. "/docker.sock"
    h.spawn({ "python3", "spec/support/engine_replay.py", "--socket", sock })
    h.wait_until(function() return require("posix.sys.stat").stat(sock) ~= nil end, 5, "the replay socket")
    return sock
end

-- Runs fn as a control-plane coroutine (mg.http needs one) until it returns.
local function run(fn)
    local done, out = false, nil
    mg.spawn(function() out = { fn() }; done = true end)
    local deadline = os.time() + 10
    while not done and os.time() < deadline do mg.run(0.05) end
    assert.is_true(done, "the actuator did not finish")
    return table.unpack(out)
end

local function calls(sock)
    local res = run(function()
        return mg.http.request({ url = "unix://" .. sock .. ":/__calls" })
    end)
    return cjson.decode(res.body)
end

local function of(list, method, pattern)
    local out = {}
    for _, c in ipairs(list) do
        if c.method == method and c.path:match(pattern) then out[#out + 1] = c end
    end
    return out
end

describe("the Compose actuator", function()
    after_each(h.cleanup)
    local compose = require("moongate.autoscale_compose")

    local function service(sock)
        return { name = "api", autoscale = { compose = { project = "mgasrec", service = "api" },
                                             endpoint = "unix://" .. sock, drain_timeout = 1 } }
    end

    it("creates replicas from an existing one with the next numbers, and starts them", function()
        local sock = engine()
        assert.is_nil(run(function() return compose.apply(service(sock), 3, {}) end))
        local c = calls(sock)
        local made = of(c, "POST", "/containers/create$")
        assert.equal(2, #made)
        local names, numbers = {}, {}
        for _, m in ipairs(made) do
            names[#names + 1] = m.query.name
            numbers[#numbers + 1] = m.body.Labels["com.docker.compose.container-number"]
            assert.equal("moongate-demo-api:e2e", m.body.Image)
            assert.same({ "python3", "/app/app.py" }, m.body.Cmd)
            assert.same({ ["8000/tcp"] = {} }, m.body.ExposedPorts)
            assert.equal("mgasrec", m.body.Labels["com.docker.compose.project"])
            assert.equal("api", m.body.Labels["com.docker.compose.service"])
            assert.same({ "api" }, m.body.NetworkingConfig.EndpointsConfig.bridge.Aliases)
        end
        table.sort(names)
        table.sort(numbers)
        assert.same({ "mgasrec_api_2", "mgasrec_api_3" }, names)
        assert.same({ "2", "3" }, numbers)
        assert.equal(2, #of(c, "POST", "/start$"))
    end)

    it("drains the highest numbers first, then stops and removes them; parks the last at zero", function()
        local sock = engine()
        local svc = service(sock)
        assert.is_nil(run(function() return compose.apply(svc, 3, {}) end))
        local order = {}
        local env = {
            drain = function(_, id) order[#order + 1] = "drain " .. id; return true end,
            forget = function(id) order[#order + 1] = "forget " .. id end,
        }
        assert.is_nil(run(function() return compose.apply(svc, 1, env) end))
        table.sort(order)
        assert.same({ "drain mgasrec_api_2", "drain mgasrec_api_3", "forget mgasrec_api_2", "forget mgasrec_api_3" }, order)
        local c = calls(sock)
        assert.equal(2, #of(c, "POST", "/stop$"))
        assert.equal(2, #of(c, "DELETE", "^/v1.41/containers/"))
        -- to zero: mgasrec_api_1 is stopped, not removed
        assert.is_nil(run(function() return compose.apply(svc, 0, env) end))
        c = calls(sock)
        assert.equal(3, #of(c, "POST", "/stop$"))
        assert.equal(2, #of(c, "DELETE", "^/v1.41/containers/"))
        -- and back: it is started again, nothing created
        assert.is_nil(run(function() return compose.apply(svc, 1, env) end))
        c = calls(sock)
        assert.equal(2, #of(c, "POST", "/containers/create$"))
        assert.matches("40f060a2", of(c, "POST", "/start$")[3].path)
    end)

    it("says so when the engine is not there", function()
        local svc = { name = "api", autoscale = { compose = { project = "p", service = "s" },
                                                  endpoint = "unix:///nonexistent/docker.sock" } }
        assert.matches("docker", run(function() return compose.apply(svc, 2, {}) end))
    end)
end)

describe("the Swarm actuator", function()
    after_each(h.cleanup)
    local swarm = require("moongate.autoscale_swarm")

    it("updates the replicas with the version and the spec it read", function()
        local sock = engine()
        local svc = { name = "web", autoscale = { swarm = { service = "mgasrec" }, endpoint = "unix://" .. sock } }
        assert.is_nil(run(function() return swarm.apply(svc, 3) end))
        local up = of(calls(sock), "POST", "/update$")
        assert.equal(1, #up)
        assert.equal("63", up[1].query.version)
        assert.equal(3, up[1].body.Mode.Replicated.Replicas)
        assert.equal("mgasrec", up[1].body.Name)
        assert.equal("moongate-demo-api:e2e", up[1].body.TaskTemplate.ContainerSpec.Image)
        assert.equal("3", up[1].body.Labels["moongate.autoscale.max"])
        -- the same replicas again: nothing to send
        assert.is_nil(run(function() return swarm.apply(svc, 3) end))
        assert.equal(1, #of(calls(sock), "POST", "/update$"))
        -- a change made meanwhile bumps the version: the next read has it
        run(function() return mg.http.request({ url = "unix://" .. sock .. ":/v1.41/services/mgasrec/__bump", method = "POST" }) end)
        assert.is_nil(run(function() return swarm.apply(svc, 1) end))
        up = of(calls(sock), "POST", "/update$")
        assert.equal("65", up[#up].query.version)
    end)

    -- A spec that differs in anything but the replicas (an empty Resources
    -- or Placement left out, a null dropped) makes Swarm replace every task
    -- (a rolling update, stop-first): scaling 1 -> 2 stopped the one running.
    it("sends back the spec it read unchanged but for the replicas, empty objects included", function()
        local sock = engine()
        local svc = { name = "web", autoscale = { swarm = { service = "mgasrec" }, endpoint = "unix://" .. sock } }
        assert.is_nil(run(function() return swarm.apply(svc, 2) end))
        local up = of(calls(sock), "POST", "/update$")
        assert.equal(1, #up)
        local want = cjson.decode(h.read_file("spec/fixtures/autoscale/swarm_service.json")).Spec
        want.Mode.Replicated.Replicas = 2
        assert.same(want, cjson.decode(up[1].raw))
        local compact = up[1].raw:gsub("%s", "")
        assert.truthy(compact:find('"Resources":{"Limits":{},"Reservations":{}}', 1, true), up[1].raw)
        assert.truthy(compact:find('"Placement":{}', 1, true), up[1].raw)
    end)

    it("edits only the replicas in the JSON: nulls, [] and {} stay, members keep their order, strings are not looked into", function()
        local raw = '{"ID":"x","Version":{"Index":7},"Spec":{"Name":"a\\\"}{","Labels":{"Replicas":"9"},'
            .. '"TaskTemplate":{"ContainerSpec":{"Args":[],"Privileges":{"CredentialSpec":null}},"Resources":{}},'
            .. '"Mode" : { "Replicated" : { "Replicas" : 1 } },"EndpointSpec":{"Ports":[]}},"PreviousSpec":{"Mode":{"Replicated":{"Replicas":5}}}}'
        assert.equal('{"Name":"a\\\"}{","Labels":{"Replicas":"9"},'
            .. '"TaskTemplate":{"ContainerSpec":{"Args":[],"Privileges":{"CredentialSpec":null}},"Resources":{}},'
            .. '"Mode":{"Replicated":{"Replicas":4}},"EndpointSpec":{"Ports":[]}}',
            swarm.with_replicas(raw, 4))
        assert.equal('{"Mode":{"Replicated":{"Replicas":0}}}',
            swarm.with_replicas('{"Spec":{"Mode":{"Replicated":{}}}}', 0))
        local none, err = swarm.with_replicas('{"Spec":{"Mode":{"Global":{}}}}', 2)
        assert.is_nil(none)
        assert.matches("not replicated", err)
    end)
end)
