-- plugins/docker.lua against a unix-socket server replaying answers
-- recorded from a real Docker engine (spec/fixtures/docker).
local h = require("spec.helpers")
local mg = require("moongate")
local socket = require("socket")
local plugins = require("moongate.plugins")


describe("docker discovery", function()
    after_each(function()
        require("moongate.discovery").stop()
        h.cleanup()
    end)

    it("negotiates the API version, joins a container once healthy, survives a broken stream and drains on kill", function()
        local dir = h.tmpdir()
        local sock = dir .. "/docker.sock"
        h.spawn({ "python3", "spec/support/docker_replay.py", "--socket", sock })
        h.wait_until(function() return require("posix.sys.stat").stat(sock) ~= nil end, 5, "the replay socket")
        local discovery = require("moongate.discovery")
        local published = {}
        discovery.publish = function(lit) published[#published + 1] = plugins.deserialize(lit) end
        discovery.start(plugins.serialize({ docker = { endpoint = "unix://" .. sock } }), "plugins")
        local function latest() return published[#published] end
        local function rec_targets()
            local p = latest()
            local s = p and p.services.rec
            return s and #s.targets or 0
        end
        local deadline = socket.gettime() + 8
        local joined_at, drained_at
        while socket.gettime() < deadline and not drained_at do
            mg.run(0.05)
            if not joined_at and rec_targets() == 1 then joined_at = socket.gettime() end
            if joined_at and rec_targets() == 0 then drained_at = socket.gettime() end
        end
        assert.truthy(joined_at, "the container never joined once healthy")
        -- health "starting" at first: nothing published for it yet
        assert.equal(0, (published[1].services.rec and #published[1].services.rec.targets) or 0)
        local p = nil
        for _, x in ipairs(published) do if x.services.rec and #x.services.rec.targets == 1 then p = x end end
        local t = p.services.rec.targets[1]
        assert.equal(2, t.weight) -- moongate.weight=2
        assert.truthy(t.address:match("^%d+%.%d+%.%d+%.%d+:8000$"), t.address)
        assert.same({ rule = "PathPrefix(`/rec`)", service = "rec" }, { rule = p.routes[1].rule, service = p.routes[1].service })
        assert.truthy(drained_at, "the kill event did not drain the container")
    end)

    it("describes containers from their labels, Traefik's included", function()
        local docker = plugins.load("docker", "plugins", "discovery")
        local c = mg.json.decode(h.read_file("spec/fixtures/docker/container.json"))
        c.State.Health.Status = "healthy"
        local d = assert(docker.describe(c, {}, nil))
        assert.equal("rec", d.service)
        assert.equal("PathPrefix(`/rec`)", d.rule)
        c.Config.Labels["moongate.enable"] = "false"
        local none, why = docker.describe(c, {}, nil)
        assert.is_nil(none)
        assert.equal("disabled by label", why)
        c.Config.Labels["moongate.enable"] = nil
        c.Config.Labels["traefik.http.services.x.loadbalancer.server.port"] = "9000"
        c.Config.Labels["traefik.http.routers.x.rule"] = "Host(`a.test`)"
        c.Config.Labels["moongate.rule"] = nil
        d = assert(docker.describe(c, {}, nil))
        assert.truthy(d.address:match(":9000$"))
        assert.equal("Host(`a.test`)", d.rule)
        c.Config.Labels["moongate.weight"] = "heavy"
        local bad
        none, why, bad = docker.describe(c, {}, nil)
        assert.is_nil(none)
        assert.truthy(why:find("moongate.weight", 1, true))
        assert.is_true(bad)
        c.Config.Labels["moongate.weight"] = nil
        c.Config.Labels["moongate.middlewares"] = '[{"plugin":"strip_prefix","prefixes":["/rec"]}]'
        c.Config.Labels["traefik.http.services.x.loadbalancer.healthcheck.path"] = "/healthz"
        c.Config.Labels["traefik.http.services.x.loadbalancer.healthcheck.interval"] = "500ms"
        d = assert(docker.describe(c, {}, nil))
        assert.same({ { plugin = "strip_prefix", prefixes = { "/rec" } } }, d.middlewares)
        assert.equal("/healthz", d.health_path)
        assert.equal(0.5, d.health_interval)
        c.Config.Labels["moongate.middlewares"] = "strip_prefix"
        none, why = docker.describe(c, {}, nil)
        assert.truthy(why:find("moongate.middlewares", 1, true))
        c.Config.Labels["moongate.middlewares"] = nil
        c.Config.Labels["moongate.weight"] = nil
        c.State.Health.Status = "unhealthy"
        assert.is_nil(docker.describe(c, {}, nil))
        c.State.Health.Status = "healthy"
        c.Config.Labels["com.docker.compose.oneoff"] = "True"
        assert.is_nil(docker.describe(c, {}, nil))
    end)

    it("turns Traefik's middleware labels into the service's middlewares", function()
        local docker = plugins.load("docker", "plugins", "discovery")
        local c = mg.json.decode(h.read_file("spec/fixtures/docker/container.json"))
        c.State.Health.Status = "healthy"
        local l = c.Config.Labels
        l["traefik.http.routers.rec.middlewares"] = "office@docker,noapi@docker"
        l["traefik.http.middlewares.office.ipallowlist.sourcerange"] = "10.0.0.0/8"
        l["traefik.http.middlewares.noapi.stripprefix.prefixes"] = "/rec"
        local d = assert(docker.describe(c, {}, nil))
        assert.same({ { plugin = "ip_allowlist", source_range = { "10.0.0.0/8" } },
                      { plugin = "strip_prefix", prefixes = { "/rec" } } }, d.middlewares)
        local services = docker.assemble({ [c.Id] = d })
        assert.same(d.middlewares, services.rec.extra.middlewares)
        -- an auth guard moongate cannot honour keeps the container out, with the reason
        l["traefik.http.routers.rec.middlewares"] = "fa"
        l["traefik.http.middlewares.fa.forwardauth.address"] = "http://auth:9000"
        local none, why, bad = docker.describe(c, {}, nil)
        assert.is_nil(none)
        assert.truthy(why:find("middleware labels: middleware fa", 1, true), why)
        assert.is_true(bad)
    end)

    it("passes the moongate.protocol label to the service", function()
        local docker = plugins.load("docker", "plugins", "discovery")
        local c = mg.json.decode(h.read_file("spec/fixtures/docker/container.json"))
        c.State.Health.Status = "healthy"
        c.Config.Labels["moongate.protocol"] = "h2c"
        local d = assert(docker.describe(c, {}, nil))
        assert.equal("h2c", d.protocol)
        local services = docker.assemble({ [c.Id] = d })
        assert.equal("h2c", services.rec.extra.protocol)
    end)
end)
