-- Hot reload: plugin files and the config change under a running gateway.
local h = require("spec.helpers")
local socket = require("socket")

local function tagger(tag)
    return ([[
return {
    type = "middleware",
    on_response = function(conf, req, res) res:set_header("X-Version", "%s") end,
}
]]):format(tag)
end

local function start(b, extra_plugins)
    local plugins = { tag = tagger("one") }
    for k, v in pairs(extra_plugins or {}) do plugins[k] = v end
    return h.start_gateway({
        config = {
            workers = 2,
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { { plugin = "tag" } } } },
        },
        plugins = plugins,
    })
end

describe("hot reload", function()
    after_each(h.cleanup)

    it("switches to a rewritten plugin within a second, failing no request under load", function()
        local b = h.start_backend()
        local gw = start(b)
        assert.equal("one", h.request(gw.port, {}).headers["x-version"])
        local conns = {}
        for i = 1, 4 do conns[i] = h.connect(gw.port) end
        local failed, total, switched_at = 0, 0, nil
        local t0 = socket.gettime()
        local rewritten_at
        while socket.gettime() - t0 < 4 * h.slow and total < 20000 do
            for _, c in ipairs(conns) do
                c:send_request({})
                local r = c:read_response()
                total = total + 1
                if not r or r.status ~= 200 then
                    failed = failed + 1
                elseif r.headers["x-version"] == "two" and not switched_at then
                    switched_at = socket.gettime()
                end
            end
            if not rewritten_at and socket.gettime() - t0 > 0.5 then
                h.write_file(gw.dir .. "/plugins/tag.lua", tagger("two"))
                rewritten_at = socket.gettime()
            end
            if switched_at and socket.gettime() - switched_at > 0.5 then break end
        end
        for _, c in ipairs(conns) do c:close() end
        assert.equal(0, failed, "failed requests out of " .. total)
        assert.truthy(switched_at, "never switched in " .. total .. " requests")
        assert.is_true(switched_at - rewritten_at < 1 * h.slow, "took " .. (switched_at - rewritten_at))
        -- every later request runs the new version
        for _ = 1, 10 do assert.equal("two", h.request(gw.port, {}).headers["x-version"]) end
    end)

    it("keeps the last good version when a plugin file breaks, naming file:line", function()
        local b = h.start_backend()
        local gw = start(b)
        h.write_file(gw.dir .. "/plugins/tag.lua", "return {\n  type = 'middleware',\n  on_response = function(\n}\n")
        gw:wait_log("reload failed.*tag%.lua:4:")
        for _ = 1, 5 do assert.equal("one", h.request(gw.port, {}).headers["x-version"]) end
        -- fixing it takes effect again
        h.write_file(gw.dir .. "/plugins/tag.lua", tagger("three"))
        h.wait_until(function() return h.request(gw.port, {}).headers["x-version"] == "three" end, 2)
    end)

    it("applies a changed config without a restart (new route and target)", function()
        local b1, b2 = h.start_backend({ name = "one" }), h.start_backend({ name = "two" })
        local gw = start(b1)
        assert.equal("one", h.request(gw.port, { host = "other.test" }).headers["x-backend"])
        local pid = gw:pid()
        h.write_file(gw.config_path, ("return " .. h.serialize({
            listen = "127.0.0.1:" .. gw.port, workers = 2,
            services = { api = { targets = { b1.address } }, other = { targets = { b2.address } } },
            routes = {
                { rule = "Host(`other.test`)", service = "other" },
                { rule = "PathPrefix(`/`)", service = "api", middlewares = { { plugin = "tag" } } },
            },
        })))
        h.wait_until(function()
            return h.request(gw.port, { host = "other.test" }).headers["x-backend"] == "two"
        end, 2)
        assert.equal(pid, gw:pid())
        gw:wait_log("reloaded")
    end)

    it("rejects a broken config and keeps serving the old one", function()
        local b = h.start_backend()
        local gw = start(b)
        h.write_file(gw.config_path, "return {\n  services = 5,\n}\n")
        local ok = pcall(gw.wait_log, gw, "reload failed.*moongate%.lua:2: services: expected a table")
        if not ok then print(gw:error_log()) end
        gw:wait_log("reload failed.*moongate%.lua:2: services: expected a table")
        assert.equal(200, h.request(gw.port, {}).status)
    end)
end)

describe("plugin timers", function()
    after_each(h.cleanup)

    it("stop when their plugin is replaced, so no old version runs in the background", function()
        local b = h.start_backend()
        local function ticker(tag)
            return ([[
                local mg = require("moongate")
                return {
                    type = "middleware",
                    init = function(conf)
                        mg.timer.every(0.1, function() mg.log.info("tick %s") end)
                    end,
                    on_request = function() end,
                }
            ]]):format(tag)
        end
        local gw = h.start_gateway({
            config = {
                services = { api = { targets = { b.address } } },
                routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { { plugin = "ticker" } } } },
            },
            plugins = { ticker = ticker("v1") },
        })
        gw:wait_log("tick v1")
        h.write_file(gw.dir .. "/plugins/ticker.lua", ticker("v2"))
        gw:wait_log("tick v2")
        h.sleep(0.3)
        local before = select(2, gw:error_log():gsub("tick v1", ""))
        h.sleep(0.5)
        assert.equal(before, select(2, gw:error_log():gsub("tick v1", "")))
    end)
end)
