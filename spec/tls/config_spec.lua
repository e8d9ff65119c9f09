-- The TLS keys of a config: listeners, tls, route and service tls, https
-- targets; normalized for the core, mistakes reported with file:line.
local config = require("moongate.config")

local function load(src) return config.load_string(src, "t.lua", { ncpu = 1 }) end

describe("TLS config", function()
    it("keeps plain string listeners as they are", function()
        local cfg = assert(load('return { listen = { "127.0.0.1:8080", ":9090" } }'))
        assert.same({ host = "127.0.0.1", port = 8080, line = 1 }, cfg.listen[1])
        assert.equal("0.0.0.0", cfg.listen[2].host)
        assert.is_nil(cfg.tls)
    end)

    it("reads listener tables with tls, a name, ALPN and a redirect to the TLS listener", function()
        local cfg = assert(load([[return {
  listen = { { address = ":80", name = "web", redirect = "https" },
             { address = ":443", tls = true, name = "websecure", alpn = { "http/1.1" } } } }]]))
        assert.same({ port = 80, tls = false, name = "web", redirect_port = 443 },
            { port = cfg.listen[1].port, tls = cfg.listen[1].tls, name = cfg.listen[1].name,
              redirect_port = cfg.listen[1].redirect_port })
        assert.is_true(cfg.listen[2].tls)
        assert.same({ "http/1.1" }, cfg.listen[2].alpn)
    end)

    it("redirects to the port clients use when a port mapping differs (redirect_port)", function()
        local cfg = assert(load([[return { listen = { { address = ":8080", redirect = "https", redirect_port = 443 },
  { address = ":8443", tls = true } } }]]))
        assert.equal(443, cfg.listen[1].redirect_port)
    end)

    it("accepts one listener table on its own", function()
        local cfg = assert(load('return { listen = { address = "127.0.0.1:8443", tls = true } }'))
        assert.is_true(cfg.listen[1].tls)
    end)

    it("redirects to a named TLS listener", function()
        local cfg = assert(load([[return { listen = { { address = ":8080", redirect = "secure" },
  { address = ":8443", tls = true, name = "secure" } } }]]))
        assert.equal(8443, cfg.listen[1].redirect_port)
    end)

    local errors = {
        { "a redirect without a TLS listener",
          'return {\n listen = { { address = ":80", redirect = "https" } } }',
          't.lua:2: listen[1].redirect: no listener has tls = true' },
        { "a redirect to a plain listener",
          'return {\n listen = { { address = ":80", redirect = "web" }, { address = ":81", name = "web" } } }',
          "listener 'web' is not a TLS listener" },
        { "an unknown listener key", 'return { listen = { { address = ":443", tsl = true } } }',
          "unknown key 'tsl' (did you mean 'tls'?)" },
        { "an ALPN protocol the core does not speak",
          'return { listen = { { address = ":443", tls = true, alpn = { "h3" } } } }',
          'unsupported protocol string "h3"' },
        { "ALPN h2 on a listener with HTTP/2 off",
          'return { listen = { { address = ":443", tls = true, http2 = false, alpn = { "h2" } } } }',
          "h2 offered on a listener with http2 = false" },
        { "a bad min_version", 'return {\n tls = {\n min_version = "1.1" } }',
          't.lua:3: tls.min_version: expected "1.2" or "1.3", got string "1.1"' },
        { "a certificate entry without a key", 'return { tls = { certificates = {\n { cert = "a.pem" } } } }',
          't.lua:2: tls.certificates[1].key: expected a PEM file path' },
        { "an ACME resolver without a directory", 'return { tls = { acme = { le = { email = "a@b.c" } } } }',
          "tls.acme.le.directory: expected the ACME directory URL" },
        { "an unknown challenge",
          'return { tls = { acme = { le = { directory = "https://ca/dir", challenge = "dns-01" } } } }',
          'expected "tls-alpn-01" or "http-01", got string "dns-01"' },
        { "a route naming an unknown resolver", [[return { services = { a = {} },
 routes = { { rule = "Host(`a.test`)", service = "a",
   tls = { resolver = "le" } } } }]], "t.lua:3: routes[1].tls.resolver: unknown resolver 'le' (define it in tls.acme)" },
        { "a route naming an unknown entry point",
          'return { services = { a = {} }, routes = { { rule = "PathPrefix(`/`)", service = "a", entrypoints = { "websecure" } } } }',
          'routes[1].entrypoints[1]: no listener is named string "websecure"' },
        { "a bad service tls table",
          'return { services = { a = { targets = { "127.0.0.1:1" }, tls = { verify = "yes" } } } }',
          'services.a.tls.verify: expected true or false, got string "yes"' },
    }
    for _, e in ipairs(errors) do
        it("reports " .. e[1], function()
            local cfg, err = load(e[2])
            assert.is_nil(cfg)
            assert.truthy(err:find(e[3], 1, true), err)
        end)
    end

    it("collects what each resolver must obtain from the routes' Host rules and domains", function()
        local cfg = assert(load([[return {
  tls = { acme = { le = { directory = "https://ca.test/dir", storage = "acme.json" } } },
  services = { a = {} },
  routes = {
    { rule = "Host(`Shop.Example.com`) && PathPrefix(`/`)", service = "a", tls = { resolver = "le" } },
    { rule = "Host(`a.example.com`, `b.example.com`)", service = "a", tls = { certresolver = "le" } },
    { rule = "Host(`x.example.com`)", service = "a",
      tls = { resolver = "le", domains = { { main = "example.com", sans = { "*.example.com" } } } } },
    { rule = "Host(`plain.example.com`)", service = "a" },
    { rule = "Host(`shop.example.com`)", service = "a", tls = { resolver = "le" } },
  } }]]))
        local d = cfg.tls.domains.le
        assert.same({ "shop.example.com", "a.example.com", "b.example.com", "example.com" },
            { d[1].main, d[2].main, d[3].main, d[4].main })
        assert.same({ "*.example.com" }, d[4].sans)
        assert.equal(4, #d)
        local r = cfg.tls.acme.le
        assert.equal("acme.json", r.storage)
        assert.equal("tls-alpn-01", r.challenge)
        assert.equal(30, r.renew_before)
    end)

    it("makes relative certificate and storage paths relative to the config file", function()
        local cfg = assert(config.load_string([[return { tls = {
  certificates = { { cert = "certs/site.pem", key = "/etc/k.pem" } },
  acme = { le = { directory = "https://ca/dir", storage = "acme.json" } } } }]], "/srv/gw/moongate.lua", { ncpu = 1 }))
        assert.equal("/srv/gw/certs/site.pem", cfg.tls.certificates[1].cert)
        assert.equal("/etc/k.pem", cfg.tls.certificates[1].key)
        assert.equal("/srv/gw/acme.json", cfg.tls.acme.le.storage)
    end)

    it("reads https:// targets and service-level upstream TLS", function()
        local cfg = assert(load([[return { services = {
  a = { targets = { "https://api.internal", "https://10.0.0.2:8443", "http://10.0.0.3" } },
  b = { targets = { "10.0.0.4:443" }, tls = { verify = false, server_name = "b.internal" } } } }]]))
        local a, b = cfg.services[1], cfg.services[2]
        assert.same({ "api.internal", 443, true }, { a.targets[1].host, a.targets[1].port, a.targets[1].tls })
        assert.same({ 8443, true }, { a.targets[2].port, a.targets[2].tls })
        assert.same({ 80, false }, { a.targets[3].port, a.targets[3].tls })
        assert.same({ verify = true }, a.tls)
        assert.same({ verify = false, server_name = "b.internal" }, b.tls)
        assert.is_true(b.targets[1].tls)
    end)
end)

describe("TLS settings of discovered routes", function()
    it("drop an unknown resolver or entry point instead of failing the config", function()
        local discovered = { services = { web = { targets = { "127.0.0.1:1" } } },
                             routes = { { rule = "Host(`a.test`)", service = "web", tls = { resolver = "nope" },
                                          entrypoints = { "websecure", "missing" } } } }
        local cfg = assert(config.load_string([[return { listen = { { address = ":443", tls = true, name = "websecure" } } }]],
            "t.lua", { ncpu = 1, discovered = discovered }))
        assert.same({}, cfg.routes[1].tls)
        assert.same({ "websecure" }, cfg.routes[1].entrypoints)
    end)
end)
