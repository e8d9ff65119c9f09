-- Discovery plugins on the control plane: services whose members change
-- while the gateway runs.
local h = require("spec.helpers")
local socket = require("socket")

describe("dns discovery", function()
    after_each(h.cleanup)

    it("follows a changed record within an interval or two", function()
        local port = h.free_port()
        local one = h.start_backend({ name = "one", port = port })
        local two = h.start_backend({ name = "two", port = port, host = "127.0.0.2" })
        local dir = h.tmpdir()
        local hosts = dir .. "/hosts"
        h.write_file(hosts, "127.0.0.1 api.test\n")
        local gw = h.start_gateway({ config = {
            providers = { dns = { interval = 0.2, hosts_file = hosts,
                                  services = { api = { host = "api.test", port = port } } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        h.wait_until(function() return h.request(gw.port, {}).headers["x-backend"] == "one" end, 3, "one")
        h.write_file(hosts, "127.0.0.2 api.test\n")
        local t0 = socket.gettime()
        h.wait_until(function() return h.request(gw.port, {}).headers["x-backend"] == "two" end, 3, "two")
        assert.is_true(socket.gettime() - t0 < 1 * h.slow)
        h.write_file(hosts, "127.0.0.1 api.test\n127.0.0.2 api.test\n")
        h.wait_until(function()
            local seen = {}
            for _ = 1, 4 do seen[h.request(gw.port, {}).headers["x-backend"] or "?"] = true end
            return seen.one and seen.two
        end, 3, "both")
        gw:wait_log("api%.test %-> 127%.0%.0%.1:" .. port .. ",127%.0%.0%.2:" .. port)
        assert.is_not_nil(one)
        assert.is_not_nil(two)
    end)

    it("answers 503 for a routed service with no members yet, not a config error", function()
        local gw = h.start_gateway({ config = {
            providers = { dns = { interval = 5, hosts_file = "/nonexistent",
                                  services = { api = { host = "nothing.test", port = 1 } } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        assert.equal(503, h.request(gw.port, {}).status)
        gw:wait_log("cannot resolve nothing%.test")
    end)
end)
