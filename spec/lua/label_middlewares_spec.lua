-- moongate.label_middlewares: container labels (Traefik's and moongate's)
-- to middleware specs.
local lm = require("moongate.label_middlewares")

local function specs(labels, listed)
    return assert(lm.for_container(labels, listed))
end

describe("label_middlewares", function()
    it("turns each Traefik type into its moongate middleware", function()
        local out = specs({
            ["traefik.http.routers.web.middlewares"] = "office@docker,sec,auth@docker,tohttps,move,api,noapi,hc,v2,cb,cap,slow,buf",
            ["traefik.http.middlewares.office.ipallowlist.sourcerange"] = "10.0.0.0/8, 2001:db8::/32",
            ["traefik.http.middlewares.office.ipallowlist.ipstrategy.depth"] = "2",
            ["traefik.http.middlewares.sec.headers.stsSeconds"] = "31536000",
            ["traefik.http.middlewares.sec.headers.frameDeny"] = "true",
            ["traefik.http.middlewares.sec.headers.customRequestHeaders.X-Script"] = "yes",
            ["traefik.http.middlewares.sec.headers.accessControlAllowOriginList"] = "https://a.test,https://b.test",
            ["traefik.http.middlewares.auth.basicauth.users"] = "alice:$apr1$x$y,bob:{SHA}z",
            ["traefik.http.middlewares.tohttps.redirectscheme.scheme"] = "https",
            ["traefik.http.middlewares.tohttps.redirectscheme.permanent"] = "true",
            ["traefik.http.middlewares.move.redirectregex.regex"] = "^http://a/(.*)",
            ["traefik.http.middlewares.move.redirectregex.replacement"] = "http://b/${1}",
            ["traefik.http.middlewares.api.addprefix.prefix"] = "/api",
            ["traefik.http.middlewares.noapi.stripprefix.prefixes"] = "/api,/v1",
            ["traefik.http.middlewares.hc.replacepath.path"] = "/health",
            ["traefik.http.middlewares.v2.replacepathregex.regex"] = "^/v1/(.*)",
            ["traefik.http.middlewares.v2.replacepathregex.replacement"] = "/v2/$1",
            ["traefik.http.middlewares.cb.circuitbreaker.expression"] = "NetworkErrorRatio() > 0.5",
            ["traefik.http.middlewares.cb.circuitbreaker.fallbackDuration"] = "1m30s",
            ["traefik.http.middlewares.cb.circuitbreaker.checkPeriod"] = "100ms",
            ["traefik.http.middlewares.cap.inflightreq.amount"] = "10",
            ["traefik.http.middlewares.cap.inflightreq.sourcecriterion.requestheadername"] = "X-Tenant",
            ["traefik.http.middlewares.slow.ratelimit.average"] = "120",
            ["traefik.http.middlewares.slow.ratelimit.period"] = "1m",
            ["traefik.http.middlewares.slow.ratelimit.burst"] = "10",
            ["traefik.http.middlewares.buf.buffering.maxRequestBodyBytes"] = "1048576",
            ["traefik.http.middlewares.buf.buffering.maxResponseBodyBytes"] = "2048",
        })
        assert.same({
            { plugin = "ip_allowlist", source_range = { "10.0.0.0/8", "2001:db8::/32" }, depth = 2 },
            { plugin = "headers", sts_seconds = 31536000, frame_deny = true,
              custom_request_headers = { ["X-Script"] = "yes" },
              access_control_allow_origin_list = { "https://a.test", "https://b.test" } },
            { plugin = "basic_auth", users = { "alice:$apr1$x$y", "bob:{SHA}z" } },
            { plugin = "redirect_scheme", scheme = "https", permanent = true },
            { plugin = "redirect_regex", regex = "^http://a/(.*)", replacement = "http://b/${1}" },
            { plugin = "add_prefix", prefix = "/api" },
            { plugin = "strip_prefix", prefixes = { "/api", "/v1" } },
            { plugin = "replace_path", path = "/health" },
            { plugin = "replace_path_regex", regex = "^/v1/(.*)", replacement = "/v2/$1" },
            { plugin = "circuit_breaker", expression = "NetworkErrorRatio() > 0.5", fallback_duration = 90,
              check_period = 0.1 },
            { plugin = "inflight_req", amount = 10, key = "header", header = "X-Tenant" },
            { plugin = "rate_limit", rate = 2, burst = 10 },
            { plugin = "buffering", max_request_body_bytes = 1048576, max_response_body_bytes = 2048 },
        }, out)
    end)

    it("reads ipWhiteList as ipAllowList and keys case-insensitively", function()
        assert.same({ { plugin = "ip_allowlist", source_range = { "10.0.0.1" } } }, specs({
            ["Traefik.HTTP.Routers.r.Middlewares"] = "w",
            ["traefik.http.middlewares.w.IPWhiteList.SourceRange"] = "10.0.0.1",
        }))
    end)

    it("expands chains defined on the container and keeps other names for the config file", function()
        assert.same({ { plugin = "add_prefix", prefix = "/a" }, "fromfile", { plugin = "replace_path", path = "/p" } }, specs({
            ["traefik.http.routers.r.middlewares"] = "both@docker",
            ["traefik.http.middlewares.both.chain.middlewares"] = "a,fromfile@file,inner",
            ["traefik.http.middlewares.inner.chain.middlewares"] = "p",
            ["traefik.http.middlewares.a.addprefix.prefix"] = "/a",
            ["traefik.http.middlewares.p.replacepath.path"] = "/p",
        }))
        local none, err = lm.for_container({
            ["traefik.http.routers.r.middlewares"] = "x",
            ["traefik.http.middlewares.x.chain.middlewares"] = "y",
            ["traefik.http.middlewares.y.chain.middlewares"] = "x",
        })
        assert.is_nil(none)
        assert.truthy(err:find("contains itself", 1, true))
    end)

    it("takes moongate's own middlewares, with JSON values, used by moongate.middlewares", function()
        assert.same({ { plugin = "rate_limit", rate = 5, bucket = "all", key = "header" },
                      { plugin = "headers", response = { set = { ["X-A"] = "1" } } } }, specs({
            ["moongate.middlewares.lim.plugin"] = "rate_limit",
            ["moongate.middlewares.lim.rate"] = "5",
            ["moongate.middlewares.lim.bucket"] = "all",
            ["moongate.middlewares.lim.key"] = "header",
        }, { "lim", { plugin = "headers", response = { set = { ["X-A"] = "1" } } } }))
    end)

    it("leaves out a rate limit of 0 (Traefik: no limit) and types it has no middleware for", function()
        assert.same({}, specs({
            ["traefik.http.routers.r.middlewares"] = "free,ct",
            ["traefik.http.middlewares.free.ratelimit.average"] = "0",
            ["traefik.http.middlewares.ct.contenttype.autodetect"] = "false",
        }))
    end)

    it("maps compress, a bare type label included, and drops encoders it lacks", function()
        assert.same({ { plugin = "compress" },
                      { plugin = "compress", encodings = { "br", "gzip" }, min_response_body_bytes = 512,
                        excluded_content_types = { "text/event-stream" } } }, specs({
            ["traefik.http.routers.r.middlewares"] = "gz,gz2",
            ["traefik.http.middlewares.gz.compress"] = "true",
            ["traefik.http.middlewares.gz2.compress.encodings"] = "zstd,br,gzip",
            ["traefik.http.middlewares.gz2.compress.minResponseBodyBytes"] = "512",
            ["traefik.http.middlewares.gz2.compress.excludedContentTypes"] = "text/event-stream",
        }))
    end)

    it("refuses a container whose access guard it cannot honour, and bad values", function()
        local none, err = lm.for_container({
            ["traefik.http.routers.r.middlewares"] = "da",
            ["traefik.http.middlewares.da.digestauth.users"] = "a:b:c",
        })
        assert.is_nil(none)
        assert.truthy(err:find("no digestauth middleware", 1, true), err)
        _, err = lm.for_container({ ["traefik.http.middlewares.x.headers.framedeny"] = "yes" })
        assert.truthy(err:find("expected true or false", 1, true), err)
        _, err = lm.for_container({ ["traefik.http.middlewares.x.headers.nope"] = "1" })
        assert.truthy(err:find("unknown option nope for headers", 1, true), err)
        _, err = lm.for_container({ ["traefik.http.middlewares.x.teleport.to"] = "mars" })
        assert.truthy(err:find("unknown middleware type teleport", 1, true), err)
    end)

    it("maps retry's attempts and initialInterval", function()
        assert.same({ { plugin = "retry", attempts = 4, initial_interval = 0.25 } }, specs({
            ["traefik.http.routers.r.middlewares"] = "again",
            ["traefik.http.middlewares.again.retry.attempts"] = "4",
            ["traefik.http.middlewares.again.retry.initialInterval"] = "250ms",
        }))
    end)

    it("parses Go durations", function()
        assert.equal(0.1, lm.duration("100ms"))
        assert.equal(90, lm.duration("1m30s"))
        assert.equal(3600, lm.duration("1h"))
        assert.equal(5, lm.duration("5"))
        assert.is_nil(lm.duration("5 parsecs"))
    end)
end)
