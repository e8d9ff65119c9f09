-- plugins/docker.lua against a unix-socket server replaying answers
-- recorded from a real Docker engine (spec/fixtures/docker).
local h = require("spec.helpers")
local mg = require("moongate")
local socket = require("socket")
local plugins = require("moongate.plugins")


-- Starts the replay (scenario, and the port its container's address gets)
-- and the docker provider on it; returns a function that turns the loop for
-- a while and returns the number of targets of service rec.
local function run_replay(scenario, port)
    local dir = h.tmpdir()
    local sock = dir .. "/docker.sock"
    h.spawn({ "python3", "spec/support/docker_replay.py", "--socket", sock, "--port", tostring(port),
              "--scenario", scenario })
    h.wait_until(function() return require("posix.sys.stat").stat(sock) ~= nil end, 5, "the replay socket")
    local discovery = require("moongate.discovery")
    local published = {}
    discovery.publish = function(lit) published[#published + 1] = plugins.deserialize(lit) end
    discovery.start(plugins.serialize({ docker = { endpoint = "unix://" .. sock } }), "plugins")
    return function()
        mg.run(0.05)
        local p = published[#published]
        local s = p and p.services.rec
        return s and #s.targets or 0
    end, published
end

local listeners = {}
local function listen(port)
    local srv = assert(socket.bind("127.0.0.1", port))
    listeners[#listeners + 1] = srv
    return srv
end

describe("docker discovery", function()
    after_each(function()
        require("moongate.discovery").stop()
        for _, l in ipairs(listeners) do l:close() end
        listeners = {}
        h.cleanup()
    end)

    it("negotiates the API version, joins a container once healthy, survives a broken stream and drains on kill", function()
        local port = h.free_port()
        listen(port)
        local rec_targets, published = run_replay("default", port)
        local deadline = socket.gettime() + 8
        local joined_at, drained_at
        while socket.gettime() < deadline and not drained_at do
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
        assert.equal("127.0.0.1:" .. port, t.address)
        assert.same({ rule = "PathPrefix(`/rec`)", service = "rec" }, { rule = p.routes[1].rule, service = p.routes[1].service })
        assert.truthy(drained_at, "the kill event did not drain the container")
    end)

    it("marks a container out at once on pause and back on unpause", function()
        local port = h.free_port()
        listen(port)
        local rec_targets = run_replay("pause", port)
        h.wait_until(function() return rec_targets() == 1 end, 5, "the running container to join")
        -- the replay pauses it 0.5 s after the event stream opens
        h.wait_until(function() return rec_targets() == 0 end, 3, "pause to take the container out")
        h.wait_until(function() return rec_targets() == 1 end, 3, "unpause to bring it back")
    end)

    it("keeps a known container when the engine fails to answer an inspect, and asks again", function()
        local port = h.free_port()
        listen(port)
        local rec_targets, published = run_replay("flaky", port)
        h.wait_until(function() return rec_targets() == 1 end, 5, "the running container to join")
        local joined = #published
        -- the replay sends an event 0.3 s into the stream, then fails the
        -- next two inspects: the container must stay published throughout
        local deadline = socket.gettime() + 3
        while socket.gettime() < deadline do
            assert.equal(1, rec_targets(), "a failed inspect took the container out")
        end
        assert.truthy(#published >= joined)
    end)

    it("admits a container once a TCP connect to it succeeds, not when it starts", function()
        local port = h.free_port()
        local rec_targets = run_replay("probe", port)
        local deadline = socket.gettime() + 1
        while socket.gettime() < deadline do
            assert.equal(0, rec_targets(), "admitted while nothing listens on its port")
        end
        listen(port)
        local t0 = socket.gettime()
        h.wait_until(function() return rec_targets() == 1 end, 3, "admission once the port listens")
        assert.truthy(socket.gettime() - t0 < 1.5, "admitted " .. (socket.gettime() - t0) .. " s after listening")
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
        -- forwardAuth and errors are routed with their middlewares
        l["traefik.http.routers.rec.middlewares"] = "fa,oops"
        l["traefik.http.middlewares.fa.forwardauth.address"] = "http://auth:9000/check"
        l["traefik.http.middlewares.fa.forwardauth.authResponseHeaders"] = "X-User"
        l["traefik.http.middlewares.oops.errors.status"] = "500-599"
        l["traefik.http.middlewares.oops.errors.service"] = "pages@docker"
        d = assert(docker.describe(c, {}, nil))
        assert.same({ { plugin = "forward_auth", address = "http://auth:9000/check", auth_response_headers = { "X-User" } },
                      { plugin = "errors", status = { "500-599" }, service = "pages" } }, d.middlewares)
        -- an auth guard moongate cannot honour keeps the container out, with the reason
        l["traefik.http.routers.rec.middlewares"] = "da"
        l["traefik.http.middlewares.da.digestauth.users"] = "a:b:c"
        local none, why, bad = docker.describe(c, {}, nil)
        assert.is_nil(none)
        assert.truthy(why:find("middleware labels: middleware da", 1, true), why)
        assert.is_true(bad)
    end)

    it("routes a container through its forwardAuth and errors labels", function()
        local port = h.free_port()
        local backend = h.start_backend({ name = "rec", port = port })
        local auth = h.start_backend({ name = "auth" })
        local pages = h.start_backend({ name = "pages" })
        local sock = h.tmpdir() .. "/docker.sock"
        local labels = {
            "traefik.http.routers.rec.middlewares=fa@docker,strip,oops@docker",
            "traefik.http.middlewares.strip.stripprefix.prefixes=/rec",
            "traefik.http.middlewares.fa.forwardauth.address=http://127.0.0.1:" .. auth.port .. "/auth",
            "traefik.http.middlewares.fa.forwardauth.authResponseHeaders=X-Auth-User",
            "traefik.http.middlewares.oops.errors.status=500-599",
            "traefik.http.middlewares.oops.errors.service=pages@file",
            "traefik.http.middlewares.oops.errors.query=/page/{status}",
        }
        local argv = { "python3", "spec/support/docker_replay.py", "--socket", sock, "--port", tostring(port),
                       "--scenario", "probe" }
        for _, l in ipairs(labels) do argv[#argv + 1] = "--label"; argv[#argv + 1] = l end
        h.spawn(argv)
        h.wait_until(function() return require("posix.sys.stat").stat(sock) ~= nil end, 5, "the replay socket")
        local gw = h.start_gateway({ config = {
            providers = { docker = { endpoint = "unix://" .. sock } },
            services = { pages = { targets = { pages.address } } },
        } })
        local good = { Authorization = "Bearer good" }
        h.wait_until(function()
            return h.request(gw.port, { path = "/rec/x", headers = good }).headers["x-backend"] == "rec"
        end, 8, "the container routed")
        local res = h.request(gw.port, { path = "/rec/x", headers = good })
        assert.equal("alice", h.json(res).headers["x-auth-user"])
        local denied = h.request(gw.port, { path = "/rec/x" })
        assert.equal(401, denied.status)
        assert.equal("denied by auth\n", denied.body)
        -- the backend's 503 becomes the page of the config's service, with its status
        local page = h.request(gw.port, { path = "/rec/status/503", headers = good })
        assert.equal(503, page.status)
        assert.equal("<h1>page for 503</h1><p></p>\n", page.body)
        assert.equal(404, h.request(gw.port, { path = "/rec/status/404", headers = good }).status)
        assert.equal("status\n", h.request(gw.port, { path = "/rec/status/404", headers = good }).body)
        assert.truthy(backend.port)
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

    it("looks at the gateway's Compose project, else at labelled containers, never at itself", function()
        local docker = plugins.load("docker", "plugins", "discovery")
        local c = mg.json.decode(h.read_file("spec/fixtures/docker/container.json"))
        c.State.Health.Status = "healthy"
        local L = c.Config.Labels
        L["com.docker.compose.project"] = "demo"
        assert.truthy(docker.describe(c, {}, nil, { project = "demo" }))
        local none, why = docker.describe(c, {}, nil, { project = "other" })
        assert.is_nil(none)
        assert.truthy(why:find("Compose project other", 1, true), why)
        L["moongate.enable"] = "true"
        assert.truthy(docker.describe(c, {}, nil, { project = "other" }), "moongate.enable=true is always in")
        none, why = docker.describe(c, {}, nil, { project = "demo", self_id = c.Id })
        assert.is_nil(none)
        assert.equal("the gateway itself", why)
        L["moongate.enable"], L["moongate.rule"], L["moongate.weight"] = nil, nil, nil
        none, why = docker.describe(c, {}, nil, {})
        assert.is_nil(none)
        assert.equal("no moongate or Traefik labels", why)
        assert.truthy(docker.describe(c, { exposed_by_default = true }, nil, {}))
        L["traefik.http.routers.r.rule"] = "Host(`x.test`)"
        assert.truthy(docker.describe(c, {}, nil, {}))
        c.State.Paused = true
        none, why = docker.describe(c, {}, nil, {})
        assert.equal("paused", why)
    end)

    it("answers 503 with the fix when the gateway's user may not read the Docker socket", function()
        if require("posix.unistd").geteuid() ~= 0 or not io.open("/usr/bin/setpriv") then
            pending("needs root and setpriv to run the gateway as another user")
            return
        end
        local dir = h.tmpdir()
        require("posix.sys.stat").chmod(dir, 493) -- 0755: the other user reads the config
        local sock = dir .. "/docker.sock"
        h.spawn({ "python3", "spec/support/docker_replay.py", "--socket", sock })
        h.wait_until(function() return require("posix.sys.stat").stat(sock) ~= nil end, 5, "the replay socket")
        require("posix.sys.stat").chmod(sock, 384) -- 0600: root's only
        local port = h.free_port()
        -- a copy the other user may run wherever the checkout is (/root is 0700)
        local bin = dir .. "/moongate"
        h.write_file(bin, h.read_file(h.bin))
        require("posix.sys.stat").chmod(bin, 493)
        -- The environment must let that user serve at all: a gateway with no
        -- provider, as uid 65534, must listen (the fresh-Debian chroot of
        -- make e2e has not let it; its reason is in the pending message).
        local function as_nobody(config, log, listen_port)
            h.write_file(config, string.format(
                "return { listen = '127.0.0.1:%d', workers = 1, admin = false%s }", listen_port,
                config:find("plain", 1, true) and "" or
                    string.format(", providers = { docker = { endpoint = 'unix://%s' } }", sock)))
            -- (in the temporary folder: the checkout may be in /root, 0700 to that user)
            return h.spawn({ "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "-c", config },
                { stderr = log, cwd = dir })
        end
        local plain_port, plain_log = h.free_port(), dir .. "/plain.log"
        local plain = as_nobody(dir .. "/plain.lua", plain_log, plain_port)
        local served = pcall(h.wait_until, function() return h.port_open(plain_port) end, 5, "a plain gateway")
        h.kill(plain)
        if not served then
            pending("the gateway does not serve as uid 65534 here: " .. (h.read_file(plain_log) or ""))
            return
        end
        local errlog = dir .. "/error.log"
        as_nobody(dir .. "/moongate.lua", errlog, port)
        h.wait_until(function() return h.port_open(port) end, 5, "the gateway, as uid 65534")
        local code, body
        h.wait_until(function()
            code, body = h.curl("http://127.0.0.1:" .. port .. "/")
            return body and body:find("DOCKER_GID", 1, true)
        end, 5, "the 503 page naming the fix")
        assert.equal(503, code)
        assert.truthy(body:find("is not readable by the gateway's user", 1, true), body)
        assert.truthy(h.read_file(errlog):find("DOCKER_GID=$(stat -c %g " .. sock .. ")", 1, true))
    end)

    it("names the fix when the Docker socket cannot be read", function()
        local why, unreadable = mg.docker.explain("permission denied", "unix:///var/run/docker.sock")
        assert.is_true(unreadable)
        assert.truthy(why:find("DOCKER_GID=$(stat -c %g /var/run/docker.sock)", 1, true), why)
        assert.is_false(select(2, mg.docker.explain("connection refused", "unix:///var/run/docker.sock")))
    end)
end)
