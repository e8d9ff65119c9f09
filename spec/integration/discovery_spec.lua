-- Discovery plugins on the control plane: services whose members change
-- while the gateway runs.
local h = require("spec.helpers")
local socket = require("socket")

-- Backends "one" on 127.0.0.1 and "two" on 127.0.0.2, on the same port, and
-- a hosts file naming api.test 127.0.0.1. Returns port, hosts file, one, two.
local function two_replicas()
    local port = h.free_port()
    local one = h.start_backend({ name = "one", port = port })
    local two = h.start_backend({ name = "two", port = port, host = "127.0.0.2" })
    local hosts = h.tmpdir() .. "/hosts"
    h.write_file(hosts, "127.0.0.1 api.test\n")
    return port, hosts, one, two
end

-- The gateway's config: the dns provider reads hosts every interval seconds
-- for service api (api.test:port); route (by default every path) to api.
local function dns_config(hosts, port, interval, route)
    return {
        providers = { dns = { interval = interval, hosts_file = hosts,
                              services = { api = { host = "api.test", port = port } } } },
        routes = { route or { rule = "PathPrefix(`/`)", service = "api" } },
    }
end

-- Waits (3 s) until the gateway's answers come from the backend called name.
local function wait_backend(gw, name)
    h.wait_until(function() return h.request(gw.port, {}).headers["x-backend"] == name end, 3, name)
end

describe("dns discovery", function()
    after_each(h.cleanup)

    it("follows a changed record within an interval or two", function()
        local port, hosts, one, two = two_replicas()
        local gw = h.start_gateway({ config = dns_config(hosts, port, 0.2) })
        wait_backend(gw, "one")
        h.write_file(hosts, "127.0.0.2 api.test\n")
        local t0 = socket.gettime()
        wait_backend(gw, "two")
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

    it("keeps following membership while the config file on disk is broken", function()
        local port, hosts, one, two = two_replicas()
        local gw = h.start_gateway({ config = dns_config(hosts, port, 0.2) })
        wait_backend(gw, "one")
        local good = h.read_file(gw.config_path)
        h.write_file(gw.config_path, good .. "\nthis is not lua\n")
        gw:wait_log("reload failed")
        -- a replica goes away and another comes: the last good config plus
        -- the new members must serve, not the members of the broken moment
        h.write_file(hosts, "127.0.0.2 api.test\n")
        wait_backend(gw, "two")
        assert.is_not_nil(one)
        assert.is_not_nil(two)
    end)

    it("keeps following membership while a plugin file on disk is broken", function()
        local port, hosts = two_replicas()
        local tag = [[
return { type = "middleware",
         on_response = function(conf, req, res) res:set_header("X-Tag", "good") end }
]]
        local gw = h.start_gateway({
            config = dns_config(hosts, port, 0.2,
                                { rule = "PathPrefix(`/`)", service = "api", middlewares = { { plugin = "tag" } } }),
            plugins = { tag = tag },
        })
        wait_backend(gw, "one")
        h.write_file(gw.dir .. "/plugins/tag.lua", "return { type = 'middleware', on_response = function( }")
        gw:wait_log("reload failed")
        h.write_file(hosts, "127.0.0.2 api.test\n")
        wait_backend(gw, "two")
        assert.equal("good", h.request(gw.port, {}).headers["x-tag"]) -- the last good plugin serves
    end)

    it("frees the configs of past membership changes", function()
        local port, hosts = two_replicas()
        local gw = h.start_gateway({ config = dns_config(hosts, port, 0.05) })
        local function metric(name)
            local r = h.request(gw.admin_port, { path = "/metrics" })
            return tonumber(r.body:match("\n" .. name .. " (%d+)"))
        end
        -- the first membership is served before counting: a version read
        -- earlier could precede the provider's first publish, and the
        -- count would then run one ahead of the changes it waits for
        h.wait_until(function() return h.request(gw.port, {}).headers["x-backend"] == "one" end, 10, "one")
        local v0 = metric("moongate_snapshot_version")
        for i = 1, 30 do
            local want = i % 2 == 1 and "two" or "one"
            h.write_file(hosts, (want == "two" and "127.0.0.2" or "127.0.0.1") .. " api.test\n")
            -- each change is waited for by its effect, so no two writes
            -- fall between two polls (a generous deadline: a loaded
            -- machine delays the provider's polls)
            h.wait_until(function() return h.request(gw.port, {}).headers["x-backend"] == want end, 10,
                "change " .. i)
        end
        assert.is_true(metric("moongate_snapshot_version") >= v0 + 30)
        -- the current one, plus at most one a worker has not let go of yet
        h.wait_until(function() return metric("moongate_configs_alive") <= 2 end, 3, "configs freed")
    end)

    it("answers 503 for a routed service with no members yet, not a config error", function()
        local gw = h.start_gateway({ config = {
            timeouts = { queue = 0.2 },
            providers = { dns = { interval = 5, hosts_file = "/nonexistent",
                                  services = { api = { host = "nothing.test", port = 1 } } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        assert.equal(503, h.request(gw.port, {}).status)
        gw:wait_log("cannot resolve nothing%.test")
    end)
end)

describe("static discovery", function()
    after_each(h.cleanup)

    it("serves services and routes written in a provider block", function()
        local b = h.start_backend({ name = "legacy" })
        local gw = h.start_gateway({ config = {
            providers = { static = {
                services = { legacy = { targets = { b.address }, balancer = "least_conn" } },
                routes = { { rule = "PathPrefix(`/legacy`)", service = "legacy" } },
            } },
        } })
        h.wait_until(function() return h.request(gw.port, { path = "/legacy/x" }).status == 200 end, 3)
        assert.equal("legacy", h.request(gw.port, { path = "/legacy/x" }).headers["x-backend"])
        assert.equal(404, h.request(gw.port, { path = "/other" }).status)
    end)
end)

describe("control-plane timers", function()
    after_each(h.cleanup)

    it("run mg.timer callbacks of discovery plugins", function()
        local b = h.start_backend()
        local gw = h.start_gateway({
            config = {
                timeouts = { queue = 0 },
                providers = { ticker = { address = b.address } },
                routes = { { rule = "PathPrefix(`/`)", service = "ticked" } },
            },
            plugins = { ticker = [[
                local mg = require("moongate")
                return { type = "discovery", start = function(ctx)
                    mg.timer.after(0.2, function() ctx.set_targets("ticked", { ctx.opts.address }) end)
                end }
            ]] },
        })
        assert.equal(503, h.request(gw.port, {}).status)
        h.wait_until(function() return h.request(gw.port, {}).status == 200 end, 3, "the timer")
    end)
end)
