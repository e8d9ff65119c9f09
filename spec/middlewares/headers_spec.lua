-- headers through the real gateway: custom headers, CORS (preflights
-- answered by the gateway) and security headers.
local h = require("spec.helpers")

local function stats(b) return h.json(h.request(b.port, { path = "/stats" })).requests end

local function gateway(opts)
    local b = h.start_backend({ name = "api" })
    local mw = { plugin = "headers" }
    for k, v in pairs(opts) do mw[k] = v end
    local gw = h.start_gateway({ config = {
        middlewares = { hdr = mw },
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { "hdr" } } },
    } })
    return gw, b
end

describe("headers", function()
    after_each(h.cleanup)

    it("sets and removes custom headers both ways (an empty value removes)", function()
        local gw = gateway({ custom_request_headers = { ["X-Script"] = "yes", ["X-Drop"] = "" },
                             custom_response_headers = { ["X-Served"] = "mg", ["X-Backend"] = "" } })
        local r = h.request(gw.port, { headers = { ["X-Drop"] = "1" } })
        local info = h.json(r)
        assert.equal("yes", info.headers["x-script"])
        assert.is_nil(info.headers["x-drop"])
        assert.equal("mg", r.headers["x-served"])
        assert.is_nil(r.headers["x-backend"])
    end)

    describe("CORS", function()
        local cors = {
            access_control_allow_origin_list = { "https://app.test" },
            access_control_allow_origin_list_regex = { [[^https://[a-z]+\.example\.test$]] },
            access_control_allow_methods = { "GET", "PUT" },
            access_control_allow_headers = { "X-Token", "Content-Type" },
            access_control_expose_headers = { "X-Backend" },
            access_control_max_age = 600,
            access_control_allow_credentials = true,
            add_vary_header = true,
        }

        it("answers a preflight itself", function()
            local gw, b = gateway(cors)
            local r = h.request(gw.port, { method = "OPTIONS", path = "/things", headers = {
                Origin = "https://app.test", ["Access-Control-Request-Method"] = "PUT" } })
            assert.equal(200, r.status)
            assert.equal("", r.body)
            assert.is_nil(r.headers["x-backend"])
            assert.equal("https://app.test", r.headers["access-control-allow-origin"])
            assert.equal("GET,PUT", r.headers["access-control-allow-methods"])
            assert.equal("X-Token,Content-Type", r.headers["access-control-allow-headers"])
            assert.equal("600", r.headers["access-control-max-age"])
            assert.equal("true", r.headers["access-control-allow-credentials"])
            assert.equal("Origin", r.headers["vary"])
            assert.equal(1, stats(b))
        end)

        it("passes a plain OPTIONS request upstream", function()
            local gw = gateway(cors)
            local r = h.request(gw.port, { method = "OPTIONS", headers = { Origin = "https://app.test" } })
            assert.equal("api", r.headers["x-backend"])
        end)

        it("marks answers to allowed origins, by list and by regex, and only those", function()
            local gw = gateway(cors)
            local r = h.request(gw.port, { headers = { Origin = "https://app.test" } })
            assert.equal(200, r.status)
            assert.equal("https://app.test", r.headers["access-control-allow-origin"])
            assert.equal("X-Backend", r.headers["access-control-expose-headers"])
            assert.equal("true", r.headers["access-control-allow-credentials"])
            local byre = h.request(gw.port, { headers = { Origin = "https://shop.example.test" } })
            assert.equal("https://shop.example.test", byre.headers["access-control-allow-origin"])
            local other = h.request(gw.port, { headers = { Origin = "https://evil.test" } })
            assert.equal(200, other.status)
            assert.is_nil(other.headers["access-control-allow-origin"])
            assert.equal("Origin", other.headers["vary"])
        end)

        it("allows any origin with *", function()
            local gw = gateway({ access_control_allow_origin_list = { "*" } })
            local r = h.request(gw.port, { headers = { Origin = "https://x.test" } })
            assert.equal("*", r.headers["access-control-allow-origin"])
        end)
    end)

    it("adds security headers", function()
        local gw = gateway({ frame_deny = true, content_type_nosniff = true, browser_xss_filter = true,
                             content_security_policy = "default-src 'self'", referrer_policy = "no-referrer",
                             permissions_policy = "camera=()", sts_seconds = 31536000,
                             sts_include_subdomains = true, sts_preload = true, force_sts_header = true })
        local r = h.request(gw.port, {})
        assert.equal(200, r.status)
        assert.equal("DENY", r.headers["x-frame-options"])
        assert.equal("nosniff", r.headers["x-content-type-options"])
        assert.equal("1; mode=block", r.headers["x-xss-protection"])
        assert.equal("default-src 'self'", r.headers["content-security-policy"])
        assert.equal("no-referrer", r.headers["referrer-policy"])
        assert.equal("camera=()", r.headers["permissions-policy"])
        assert.equal("max-age=31536000; includeSubDomains; preload", r.headers["strict-transport-security"])
    end)

    it("sends Strict-Transport-Security only over TLS unless forced", function()
        local gw = gateway({ sts_seconds = 60, custom_frame_options_value = "SAMEORIGIN" })
        local r = h.request(gw.port, {})
        assert.is_nil(r.headers["strict-transport-security"])
        assert.equal("SAMEORIGIN", r.headers["x-frame-options"])
    end)

    it("refuses hosts not in allowed_hosts", function()
        local gw, b = gateway({ allowed_hosts = { "good.test" } })
        assert.equal(200, h.request(gw.port, { host = "good.test" }).status)
        local r = h.request(gw.port, { host = "bad.test" })
        assert.equal(500, r.status)
        assert.equal(2, stats(b))
    end)
end)
