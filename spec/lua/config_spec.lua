-- lua/moongate/config.lua: normalization, defaults and file:line errors.
local config = require("moongate.config")

local function load(src) return config.load_string(src, "m.lua", { ncpu = 3 }) end

local function err_of(src)
    local cfg, err = load(src)
    assert.is_nil(cfg)
    return err
end

describe("config", function()
    it("fills every default", function()
        local cfg = assert(load("return {}"))
        assert.same({ { host = "0.0.0.0", port = 8080, line = 1 } }, cfg.listen)
        assert.equal(3, cfg.workers)
        assert.equal("combined", cfg.access_log)
        assert.same({ client_header = 10, client_idle = 60, upstream_connect = 3,
                      upstream_response = 60, grace = 10, queue = 10, upstream_stall = 1 }, cfg.timeouts)
        assert.same({ max_header_size = 32768, max_headers = 100 }, cfg.limits)
        assert.same({ keepalive = 64, keepalive_timeout = 60, keepalive_surplus_timeout = 2, retries = 2,
                      queue_max = 10000, max_connecting = 64, replay_body = 65536 }, cfg.upstream)
        assert.same({ normalize = true, encoded_slash = "reject" }, cfg.paths)
    end)

    it("normalizes listen forms, IPv6 included", function()
        local cfg = assert(load('return { listen = { ":81", "127.0.0.1:82", "[::1]:83" } }'))
        assert.same({ "0.0.0.0", "127.0.0.1", "::1" }, { cfg.listen[1].host, cfg.listen[2].host, cfg.listen[3].host })
        assert.equal(83, cfg.listen[3].port)
        assert.truthy(err_of('return { listen = { ":81", "0.0.0.0:81" } }'):find("listed twice"))
    end)

    it("normalizes targets and sorts services by name", function()
        local cfg = assert(load([[
return { services = {
  zeta = { targets = { "a:1" } },
  alpha = { balancer = "least_conn", targets = { { address = "[::1]:2", weight = 4, labels = { z = "1" } } } },
} }]]))
        assert.equal("alpha", cfg.services[1].name)
        local t = cfg.services[1].targets[1]
        assert.same({ "::1", 2, "[::1]:2", 4, "1" }, { t.host, t.port, t.address, t.weight, t.labels.z })
        assert.equal("roundrobin", cfg.services[2].balancer)
        assert.equal(3, cfg.services[1].line)
    end)

    it("parses trusted proxies as CIDRs", function()
        local cfg = assert(load('return { trusted_proxies = { "10.0.0.0/8", "::1", "192.168.1.1" } }'))
        assert.same({ addr = "10.0.0.0", bits = 8, family = 4, cidr = "10.0.0.0/8" }, cfg.trusted_proxies[1])
        assert.same({ addr = "::1", bits = 128, family = 6, cidr = "::1/128" }, cfg.trusted_proxies[2])
        assert.truthy(err_of('return { trusted_proxies = { "010.0.0.1" } }'):find("invalid address"))
        assert.truthy(err_of('return { trusted_proxies = { "10.0.0.0/33" } }'):find("longer than 32"))
        assert.truthy(err_of('return { trusted_proxies = { "nope" } }'):find("invalid address"))
    end)

    it("points errors at the offending line", function()
        assert.equal("m.lua:3: timeouts.grace: expected a positive number of seconds, got string \"x\"",
            err_of('return {\n  timeouts = {\n    grace = "x",\n  },\n}'))
        assert.equal("m.lua:2: lisen: unknown key 'lisen' (did you mean 'listen'?)",
            err_of('return {\n  lisen = ":80",\n}'))
        assert.equal("m.lua:4: routes[2].service: unknown service 'b'",
            err_of('return {\n  services = { a = { targets = { "x:1" } } },\n  routes = { { rule = "Path(`/`)", service = "a" },\n    { rule = "Path(`/b`)", service = "b" } },\n}'))
    end)

    it("runs the config in a sandbox that can read the environment", function()
        assert.truthy(err_of('os.execute("true") return {}'):find("execute", 1, true))
        assert.truthy(err_of('return { listen = io.open("/etc/passwd") }'))
        assert.truthy(err_of('local x = require("os") return {}'))
        local cfg = assert(load('return { log_level = os.getenv("MG_SPEC_UNSET") or "warn" }'))
        assert.equal("warn", cfg.log_level)
    end)

    it("resolves plugins_dir against the config file's directory", function()
        local path = os.tmpname()
        local f = io.open(path, "w")
        f:write('return { plugins_dir = "myplugins" }')
        f:close()
        local cfg = assert(config.load(path, {}))
        os.remove(path)
        assert.equal(path:match("^(.*)/") .. "/myplugins", cfg.plugins_dir)
    end)
end)

describe("plugin option schemas", function()
    local schema = require("moongate.schema")

    it("fills defaults and rejects unknown or mistyped options", function()
        local s = { rate = { type = "number", required = true }, key = { type = "string", default = "ip", one_of = { "ip", "header" } } }
        assert.same({ rate = 2, key = "ip" }, schema.validate(s, { rate = 2 }))
        assert.same({ nil, "rate: required" }, { schema.validate(s, {}) })
        assert.truthy(select(2, schema.validate(s, { rate = 1, kye = 1 })):find("unknown option 'kye'"))
        assert.truthy(select(2, schema.validate(s, { rate = 1, key = "x" })):find("one of ip, header"))
    end)
end)
