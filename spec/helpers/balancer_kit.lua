-- A conformance kit for balancer plugins, yours or the built-in ones:
--
--   local kit = require("spec.helpers.balancer_kit")
--   kit.conformance("my balancer", require_plugin("plugins/mine.lua"), { fair = true })
--
-- declares busted specs that every balancer must pass: it only returns its
-- own targets, never a tried one, nil when all are tried, copes with 0 and
-- 1 targets and with targets added, removed and re-weighted, and (with
-- fair = true) spreads picks in proportion to weights.
local _M = {}

-- Loads a plugin file the way the gateway does (its own globals table).
function _M.load(path)
    local fn = assert(loadfile(path))
    setfenv(fn, setmetatable({}, { __index = _G }))
    return fn()
end

function _M.targets(spec)
    local out = {}
    for i, s in ipairs(spec) do
        local w = type(s) == "table" and (s.weight or 1) or s
        out[i] = { host = "10.0.0." .. i, port = 8000 + i, weight = w or 1, id = "t" .. i,
                   address = "10.0.0." .. i .. ":" .. (8000 + i), labels = type(s) == "table" and s.labels or {},
                   inflight = type(s) == "table" and s.inflight or 0 }
    end
    return out
end

-- A request as a balancer sees it: tried list/set, fields, header, cookie.
function _M.request(opts)
    opts = opts or {}
    local tried = {}
    for i, t in ipairs(opts.tried or {}) do
        tried[i] = t
        tried[t] = true
    end
    local headers = {}
    for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
    local req = { tried = tried, method = opts.method or "GET", path = opts.path or "/",
                  host = opts.host or "example.test", client_ip = opts.client_ip or "192.0.2.1",
                  response_headers = {} }
    function req:header(name) return headers[name:lower()] end
    function req:cookie(name)
        local c = headers.cookie
        return c and c:match("%f[%w_]" .. name .. "=([^;]*)")
    end
    function req:add_response_header(name, value)
        self.response_headers[#self.response_headers + 1] = { name, value }
    end
    return req
end

local function is_member(list, t)
    for _, x in ipairs(list) do if x == t then return true end end
    return false
end

function _M.conformance(name, plugin, opts)
    opts = opts or {}
    -- busted's describe/it/assert live in the calling spec's environment
    local env = getfenv(2)
    local describe, it, assert = env.describe, env.it, env.assert
    local bopts = opts.balancer_opts or {}
    describe(name .. " (balancer conformance)", function()
        it("is a balancer with new and pick", function()
            assert.equal("balancer", plugin.type)
            assert.is_function(plugin.new)
            assert.is_function(plugin.pick)
        end)

        it("returns one of its own targets", function()
            local ts = _M.targets({ 1, 1, 1 })
            local st = plugin.new(ts, bopts, { name = name })
            for _ = 1, 50 do assert.is_true(is_member(ts, plugin.pick(st, _M.request()))) end
        end)

        it("never returns a target already tried", function()
            local ts = _M.targets({ 1, 2, 3, 1 })
            local st = plugin.new(ts, bopts, { name = name })
            for ntried = 1, #ts - 1 do
                for _ = 1, 30 do
                    local tried = {}
                    for i = 1, ntried do tried[i] = ts[i] end
                    local t = plugin.pick(st, _M.request({ tried = tried }))
                    assert.is_true(is_member(ts, t))
                    assert.is_false(is_member(tried, t), "picked a tried target")
                end
            end
        end)

        it("returns nil when every target was tried, and with no targets", function()
            local ts = _M.targets({ 1, 1 })
            local st = plugin.new(ts, bopts, { name = name })
            assert.is_nil(plugin.pick(st, _M.request({ tried = ts })))
            assert.is_nil(plugin.pick(plugin.new({}, bopts, { name = name .. "-empty" }), _M.request()))
        end)

        it("works with a single target", function()
            local ts = _M.targets({ 1 })
            local st = plugin.new(ts, bopts, { name = name .. "-one" })
            for _ = 1, 5 do assert.equal(ts[1], plugin.pick(st, _M.request())) end
        end)

        it("follows targets added, removed and re-weighted", function()
            local ts = _M.targets({ 1, 1, 1 })
            local st = plugin.new(ts, bopts, { name = name })
            local grown = _M.targets({ 1, 1, 1, 1 })
            st = plugin.new(grown, bopts, { name = name })
            local seen = {}
            for _ = 1, 400 do seen[plugin.pick(st, _M.request({ client_ip = "198.51.100." .. math.random(250) }))] = true end
            assert.truthy(seen[grown[4]] or not opts.fair, "the new target never got a request")
            local shrunk = { grown[1], grown[3] }
            st = plugin.new(shrunk, bopts, { name = name })
            for _ = 1, 50 do assert.is_true(is_member(shrunk, plugin.pick(st, _M.request()))) end
        end)

        if opts.fair then
            it("spreads picks in proportion to weights", function()
                local ts = _M.targets({ 1, 2, 5 })
                local st = plugin.new(ts, bopts, { name = name .. "-fair" })
                local count = {}
                local n = 8000
                for _ = 1, n do
                    local t = plugin.pick(st, _M.request())
                    count[t] = (count[t] or 0) + 1
                end
                for _, t in ipairs(ts) do
                    local expected = n * t.weight / 8
                    local got = count[t] or 0
                    assert.is_true(math.abs(got - expected) <= expected * 0.1,
                        string.format("target %s weight %d got %d, expected about %d", t.id, t.weight, got, expected))
                end
            end)
        end
    end)
end

return _M
