-- Docker labels -> route TLS settings (lua/moongate/tls_labels.lua).
local labels = require("moongate.tls_labels")

describe("TLS labels", function()
    it("read Traefik's tls=true and entrypoints", function()
        local r = labels.route_tls({ ["traefik.http.routers.shop.rule"] = "Host(`shop.example.com`)",
                                     ["traefik.http.routers.shop.tls"] = "true",
                                     ["traefik.http.routers.shop.entrypoints"] = "websecure" })
        assert.same({ tls = true, entrypoints = { "websecure" } }, r)
    end)

    it("read a certresolver and domains with sans", function()
        local r = labels.route_tls({
            ["traefik.http.routers.shop.tls.certresolver"] = "le",
            ["traefik.http.routers.shop.tls.domains[0].main"] = "Example.com",
            ["traefik.http.routers.shop.tls.domains[0].sans"] = "a.example.com, b.example.com",
            ["traefik.http.routers.shop.tls.domains[1].main"] = "other.org",
            ["traefik.http.routers.shop.entrypoints"] = "web,websecure",
        })
        assert.same({ resolver = "le", domains = {
            { main = "example.com", sans = { "a.example.com", "b.example.com" } },
            { main = "other.org", sans = {} } } }, r.tls)
        assert.same({ "web", "websecure" }, r.entrypoints)
    end)

    it("give moongate's own labels the same powers, and the last word", function()
        local r = labels.route_tls({ ["moongate.tls.resolver"] = "le", ["moongate.entrypoints"] = "websecure",
                                     ["traefik.http.routers.x.tls.certresolver"] = "other" })
        assert.same({ tls = { resolver = "le" }, entrypoints = { "websecure" } }, r)
        assert.same({ tls = true }, labels.route_tls({ ["moongate.tls"] = "true" }))
    end)

    it("return nothing for a container without TLS labels", function()
        assert.same({}, labels.route_tls({ ["traefik.http.routers.x.rule"] = "PathPrefix(`/`)" }))
    end)

    it("reject domains without a main name", function()
        local r, err = labels.route_tls({ ["traefik.http.routers.x.tls.domains[0].sans"] = "a.example.com" })
        assert.is_nil(r)
        assert.truthy(err:find("domains[0] has no main", 1, true))
    end)

    it("read the router asked for", function()
        local l = { ["traefik.http.routers.a.tls"] = "true", ["traefik.http.routers.b.tls.certresolver"] = "le" }
        assert.same({ tls = true }, labels.route_tls(l, "a"))
        assert.same({ tls = { resolver = "le" } }, labels.route_tls(l, "b"))
        assert.same({ "a", "b" }, labels.routers(l))
    end)
end)
