-- ip_allowlist through the real gateway, and the CIDR matching under it.
local h = require("spec.helpers")
local ipnet = require("moongate.ipnet")

local function stats(b) return h.json(h.request(b.port, { path = "/stats" })).requests end

describe("ipnet", function()
    it("matches IPv4 and IPv6 ranges, ports and brackets", function()
        local set = assert(ipnet.set({ "10.0.0.0/8", "192.168.1.0/25", "2001:db8::/32", "::1" }))
        assert.is_true(ipnet.contains(set, "10.200.3.4"))
        assert.is_true(ipnet.contains(set, "192.168.1.127"))
        assert.is_false(ipnet.contains(set, "192.168.1.128"))
        assert.is_true(ipnet.contains(set, "2001:db8:ffff::1"))
        assert.is_false(ipnet.contains(set, "2001:db9::1"))
        assert.is_true(ipnet.contains(set, "[::1]:8080"))
        assert.is_true(ipnet.contains(set, "::ffff:10.1.1.1"))
        assert.is_false(ipnet.contains(set, "not an ip"))
    end)

    it("refuses malformed ranges", function()
        assert.is_nil(ipnet.set({ "10.0.0.0/33" }))
        assert.is_nil(ipnet.set({ "1::2::3" }))
        assert.is_nil(ipnet.set({ "300.1.1.1" }))
    end)
end)

describe("ip_allowlist", function()
    after_each(h.cleanup)

    local function gateway(opts)
        local allowed, other = h.start_backend({ name = "allowed" }), h.start_backend({ name = "other" })
        local mw = { plugin = "ip_allowlist" }
        for k, v in pairs(opts) do mw[k] = v end
        local gw = h.start_gateway({ config = {
            middlewares = { only = mw },
            services = { api = { targets = { allowed.address } }, rest = { targets = { other.address } } },
            routes = {
                { rule = "PathPrefix(`/api`)", service = "api", middlewares = { "only" } },
                { rule = "PathPrefix(`/`)", service = "rest", priority = 1 },
            },
        } })
        return gw, allowed, other
    end

    it("lets an allowed peer through", function()
        local gw, allowed = gateway({ source_range = { "127.0.0.0/8" } })
        local r = h.request(gw.port, { path = "/api/x" })
        assert.equal(200, r.status)
        assert.equal("allowed", r.headers["x-backend"])
        assert.equal(2, stats(allowed))
    end)

    it("answers 403 itself instead of falling through to another route", function()
        local gw, allowed, other = gateway({ source_range = { "10.0.0.0/8", "2001:db8::/32" } })
        local r = h.request(gw.port, { path = "/api/x" })
        assert.equal(403, r.status)
        assert.equal("Forbidden\n", r.body)
        assert.is_nil(r.headers["x-backend"])
        assert.equal(1, stats(allowed))
        assert.equal(1, stats(other))
    end)

    it("judges the X-Forwarded-For address at the given depth, v4 and v6", function()
        local gw = gateway({ source_range = { "10.0.0.0/8", "2001:db8::/32" }, depth = 2 })
        local function status(xff)
            return h.request(gw.port, { path = "/api/", headers = { ["X-Forwarded-For"] = xff } }).status
        end
        assert.equal(200, status("1.1.1.1, 10.1.2.3, 203.0.113.9"))
        assert.equal(200, status("2001:db8::7, 198.51.100.1"))
        assert.equal(403, status("10.1.2.3, 203.0.113.9, 10.0.0.1"))
        assert.equal(403, status("10.1.2.3")) -- fewer addresses than the depth
        assert.equal(403, h.request(gw.port, { path = "/api/" }).status)
    end)

    it("skips excluded proxies from the right", function()
        local gw = gateway({ source_range = { "10.0.0.0/8" }, excluded_ips = { "192.0.2.0/24" } })
        local function status(xff)
            return h.request(gw.port, { path = "/api/", headers = { ["X-Forwarded-For"] = xff } }).status
        end
        assert.equal(200, status("10.9.9.9, 192.0.2.1, 192.0.2.2"))
        assert.equal(403, status("10.9.9.9, 198.51.100.1, 192.0.2.2"))
    end)

    it("reports a bad range when the config loads", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/moongate.lua", [[
return {
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api",
      middlewares = { { plugin = "ip_allowlist", source_range = { "10.0.0.0/40" } } } } },
}]])
        local f = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1")
        local out = f:read("*a")
        f:close()
        assert.truthy(out:find("source_range: [1]: prefix length too long", 1, true), out)
    end)
end)
