-- The example balancers: conformance, their own behaviour, and one of them
-- running for real inside the gateway.
local kit = require("spec.helpers.balancer_kit")
local h = require("spec.helpers")

local canary = kit.load("examples/canary.lua")
local tenant = kit.load("examples/tenant.lua")
local prefer = kit.load("examples/prefer_label.lua")

kit.conformance("examples/canary", canary)
kit.conformance("examples/tenant", tenant)
kit.conformance("examples/prefer_label", prefer, { balancer_opts = { label = "zone", value = "a" } })

describe("examples/canary", function()
    local ts = kit.targets({ 1, 1, { labels = { canary = "yes" } } })

    it("sends X-Canary: 1 to the canary", function()
        local st = canary.new(ts, {})
        for _ = 1, 5 do assert.equal(ts[3], canary.pick(st, kit.request({ headers = { ["X-Canary"] = "1" } }))) end
    end)

    it("sends about percent % of the rest to the canary", function()
        local st = canary.new(ts, { percent = 10 })
        local hits = 0
        for _ = 1, 1000 do if canary.pick(st, kit.request()) == ts[3] then hits = hits + 1 end end
        assert.equal(100, hits)
    end)

    it("runs inside the gateway", function()
        finally(h.cleanup)
        local stable = h.start_backend({ name = "stable" })
        local can = h.start_backend({ name = "canary" })
        local gw = h.start_gateway({
            config = {
                services = { api = { balancer = "canary", targets = {
                    stable.address, { address = can.address, labels = { canary = "yes" } } } } },
                routes = { { rule = "PathPrefix(`/`)", service = "api" } },
            },
            plugins = { canary = h.read_file("examples/canary.lua") },
        })
        assert.equal("canary", h.request(gw.port, { headers = { ["X-Canary"] = "1" } }).headers["x-backend"])
        assert.equal("stable", h.request(gw.port, {}).headers["x-backend"])
        gw:wait_access(2)
        assert.truthy(gw:access_log()[1]:find(can.address, 1, true))
    end)
end)

describe("examples/tenant", function()
    local ts = kit.targets({ { labels = { tenant = "acme" } }, { labels = { tenant = "globex" } }, 1 })

    it("keeps a tenant on its own targets", function()
        local st = tenant.new(ts)
        for _ = 1, 5 do assert.equal(ts[1], tenant.pick(st, kit.request({ headers = { ["X-Tenant"] = "acme" } }))) end
    end)

    it("falls back to any target for unknown tenants or when its own failed", function()
        local st = tenant.new(ts)
        assert.truthy(tenant.pick(st, kit.request({ headers = { ["X-Tenant"] = "nobody" } })))
        local t = tenant.pick(st, kit.request({ headers = { ["X-Tenant"] = "acme" }, tried = { ts[1] } }))
        assert.are_not.equal(ts[1], t)
    end)
end)

describe("examples/prefer_label", function()
    local ts = kit.targets({ { labels = { zone = "b" } }, { labels = { zone = "a" } }, { labels = { zone = "a" } } })

    it("uses only preferred targets while they last", function()
        local st = prefer.new(ts, { label = "zone", value = "a" })
        for _ = 1, 10 do assert.are_not.equal(ts[1], prefer.pick(st, kit.request())) end
        assert.equal(ts[1], prefer.pick(st, kit.request({ tried = { ts[2], ts[3] } })))
    end)
end)
