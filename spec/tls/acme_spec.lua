-- The ACME client (plugins/acme.lua) against Debian's pebble, validating
-- challenges for real on the gateway's own listeners.
local h = require("spec.helpers")
local t = require("spec.tls.support")

local function config(http_port, tls_port, pebble, dir, extra)
    local acme = { directory = pebble.directory, email = "ops@example.test", storage = dir .. "/acme.json",
                   challenge = "tls-alpn-01", ca_file = pebble.ca_file }
    for k, v in pairs(extra or {}) do acme[k] = v end
    return {
        listen = { "127.0.0.1:" .. http_port, { address = "127.0.0.1:" .. tls_port, tls = true } },
        tls = { acme = { le = acme } },
        services = { shop = { targets = { "127.0.0.1:9" } } },
        routes = {
            { rule = "Host(`shop.example.test`)", service = "shop", tls = { resolver = "le" } },
            { rule = "Host(`api.example.test`) || Host(`www.example.test`)", service = "shop", tls = { resolver = "le" } },
        },
    }
end

-- The certificate served for name, verified against pebble's root.
local function served(tls_port, name, root_file)
    local code, body = t.curl({ "--cacert", root_file, "--resolve", name .. ":" .. tls_port .. ":127.0.0.1",
                                "https://" .. name .. ":" .. tls_port .. "/" })
    return code, body
end

local function serial_of(tls_port, name)
    local out = t.s_client(tls_port, "-servername " .. name)
    local pem = t.peer_cert(out)
    return pem and t.cert_subject_serial(pem):match("serial=(%x+)")
end

-- pebble, the gateway with resolver le, and the first certificate served.
local function issued()
    local http_port, tls_port = h.free_port(), h.free_port()
    local pebble = t.start_pebble(http_port, tls_port)
    local dir = h.tmpdir()
    local cfg = config(http_port, tls_port, pebble, dir)
    local s = t.start_server(cfg, dir)
    local root = dir .. "/root.pem"
    h.write_file(root, pebble.root())
    h.wait_until(function() return served(tls_port, "shop.example.test", root) == 200 end, 60,
        "the first certificate\n" .. s:error_log())
    return { pebble = pebble, dir = dir, cfg = cfg, server = s, root = root, tls_port = tls_port }
end

describe("the ACME client against pebble", function()
    after_each(h.cleanup)

    for _, challenge in ipairs({ "tls-alpn-01", "http-01" }) do
        it("obtains a certificate for every routed host with " .. challenge .. " and serves it", function()
            local http_port, tls_port = h.free_port(), h.free_port()
            local pebble = t.start_pebble(http_port, tls_port)
            local dir = h.tmpdir()
            local s = t.start_server(config(http_port, tls_port, pebble, dir, { challenge = challenge }), dir)
            local root = dir .. "/root.pem"
            h.write_file(root, pebble.root())
            for _, name in ipairs({ "shop.example.test", "api.example.test", "www.example.test" }) do
                h.wait_until(function() return served(tls_port, name, root) == 200 end, 60,
                    name .. " served with a certificate from pebble\n" .. s:error_log() .. pebble.log())
                local _, body = served(tls_port, name, root)
                assert.equal(name, require("cjson").decode(body).sni)
            end
        end)
    end

    it("keeps the account and certificates in a 0600 storage file and reuses them after a restart", function()
        local e = issued()
        local tls_port, root, dir, cfg, s, pebble = e.tls_port, e.root, e.dir, e.cfg, e.server, e.pebble
        h.wait_until(function() return served(tls_port, "www.example.test", root) == 200 end, 60, "the second certificate")
        local first = serial_of(tls_port, "shop.example.test")
        local st = require("posix.sys.stat").stat(dir .. "/acme.json")
        assert.equal(tonumber("600", 8), st.st_mode % 512)
        local stored = require("cjson").decode(h.read_file(dir .. "/acme.json"))
        assert.truthy(stored.account.url)
        assert.truthy(stored.account.key:find("PRIVATE KEY", 1, true))
        assert.truthy(stored.certificates["shop.example.test"].cert:find("BEGIN CERTIFICATE", 1, true))
        s:stop()
        -- restart with the CA gone: only what is stored can be served
        h.kill(pebble.proc)
        local s2 = t.start_server(cfg, dir)
        assert.equal(200, (served(tls_port, "shop.example.test", root)))
        assert.equal(first, serial_of(tls_port, "shop.example.test"))
        assert.falsy(s2:error_log():find("retrying", 1, true))
    end)

    it("renews a certificate once it is within renew_before of its expiry", function()
        local e = issued()
        local tls_port, root, dir, cfg, s = e.tls_port, e.root, e.dir, e.cfg, e.server
        local first = serial_of(tls_port, "shop.example.test")
        s:stop()
        -- pebble's certificates last years: a window longer than that makes them due now
        cfg.tls.acme.le.renew_before = 36500
        cfg.tls.acme.le.check_interval = 3600
        local s2 = t.start_server(cfg, dir)
        -- the old certificate is served at once, the renewed one after the order
        assert.equal(first, serial_of(tls_port, "shop.example.test"))
        h.wait_until(function()
            local now = serial_of(tls_port, "shop.example.test")
            return now and now ~= first
        end, 60, "a renewed certificate\n" .. s2:error_log())
        assert.equal(200, (served(tls_port, "shop.example.test", root)))
    end)

    it("backs off and logs when the CA cannot be reached, serving the default certificate meanwhile", function()
        local http_port, tls_port = h.free_port(), h.free_port()
        local dir = h.tmpdir()
        local cfg = config(http_port, tls_port, { directory = "https://127.0.0.1:" .. h.free_port() .. "/dir",
                                                  ca_file = nil }, dir)
        local s = t.start_server(cfg, dir)
        s:wait_log("shop%.example%.test: .*connect failed.*retrying in 60 s", 10)
        local out = t.s_client(tls_port, "-servername shop.example.test")
        assert.truthy(t.cert_subject_serial(t.peer_cert(out)):find("moongate-default.invalid", 1, true))
    end)
end)
