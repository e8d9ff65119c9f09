-- A conformance kit for balancer plugins, yours or the built-in ones:
--
--   local kit = require("moongate.test.balancer_kit")
--   kit.conformance("mine", kit.load("plugins/mine.lua"), { fair = true })
--
-- declares busted specs every balancer must pass: it returns only its own
-- targets, never a tried one, nil when all are tried, copes with 0 and 1
-- targets, never returns a removed target and sends requests to an added
-- one. Options add the checks that fit what the balancer promises:
--   fair = true     picks in proportion to weights, also after re-weighting
--                   and for a target just added (round robin, least_conn, ...)
--   hash = true     the same key always goes to the same target, from any
--                   state built on the same targets (every worker builds its
--                   own); keys spread in proportion to weights; adding a
--                   target moves about 1/n of the keys, all to it (chash)
--   key = fn(i)     the i-th distinct request for the hash checks (default:
--                   kit.key_request, which varies the client IP, X-Hash-Key
--                   and the session cookie)
--   latency = true  once every target has answered, it prefers the faster
--                   one, and follows when that changes (ewma); as such a balancer may
--                   concentrate on one target, the spread check is skipped
--   spread = false  skip "an added target gets requests"
--   balancer_opts   passed to new() as opts
-- kit.checks(name, plugin, opts) returns the same checks as a list of
-- { id, name, run } for specs about the kit itself.
--
-- kit.targets{ 1, 2, { weight = 5, labels = { zone = "a" }, inflight = 3 } }
-- builds targets; a number is a weight. kit targets have no uid, so
-- mg.inflight(t) returns t.inflight (default 0): set it, or change it
-- between picks, to show a balancer the load it should see.
local mg = require("moongate")
local lua_assert = assert
local assert = require("luassert") -- failures, not errors, in busted's report

local _M = {}

-- Loads a plugin file the way the gateway does (its own globals table).
function _M.load(path)
    local fn = lua_assert(loadfile(path))
    setfenv(fn, require("moongate.plugin_env").new()) -- as the gateway loads it
    return fn()
end

function _M.targets(spec)
    local out = {}
    for i, s in ipairs(spec) do
        local tab = type(s) == "table"
        out[i] = { host = "10.0.0." .. i, port = 8000 + i, weight = tab and (s.weight or 1) or s, id = "t" .. i,
                   address = "10.0.0." .. i .. ":" .. (8000 + i), labels = tab and s.labels or {},
                   inflight = tab and s.inflight or 0 }
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

-- The i-th of many distinct clients: its own IP, X-Hash-Key and session
-- cookie (chash's defaults), path and X-Tenant.
function _M.key_request(i, tried)
    local k = "key-" .. i
    return _M.request({ client_ip = string.format("10.%d.%d.%d", math.floor(i / 65536) % 256,
                                                  math.floor(i / 256) % 256, i % 256),
                        path = "/" .. k, tried = tried,
                        headers = { ["X-Hash-Key"] = k, Cookie = "session=" .. k, ["X-Tenant"] = k } })
end

local function is_member(list, t)
    for _, x in ipairs(list) do if x == t then return true end end
    return false
end

-- Picks n times with make(i) -> request; returns count[target].
local function tally(plugin, st, n, make)
    local count = {}
    for i = 1, n do
        local t = plugin.pick(st, make(i))
        if t ~= nil then count[t] = (count[t] or 0) + 1 end
    end
    return count
end

-- Asserts that each target got its weight's share of n picks, within tol.
local function assert_shares(ts, count, n, tol, what)
    local total = 0
    for _, t in ipairs(ts) do total = total + t.weight end
    for _, t in ipairs(ts) do
        local expected = n * t.weight / total
        local got = count[t] or 0
        assert.is_true(math.abs(got - expected) <= expected * tol,
            string.format("%s: target %s (weight %d) got %d of %d picks, expected %d +- %d%%",
                what, t.id, t.weight, got, n, expected, tol * 100))
    end
end

local function add_common(checks, name, plugin, opts, bopts)
    local function new(ts, suffix) return plugin.new(ts, bopts, { name = name .. (suffix or "") }) end
    local varied = opts.key or _M.key_request

    checks[#checks + 1] = { id = "shape", name = "is a balancer with new and pick", run = function()
        assert.equal("balancer", plugin.type)
        assert.is_function(plugin.new)
        assert.is_function(plugin.pick)
    end }

    checks[#checks + 1] = { id = "own", name = "returns one of its own targets", run = function()
        local ts = _M.targets({ 1, 1, 1 })
        local st = new(ts)
        for i = 1, 50 do
            assert.is_true(is_member(ts, plugin.pick(st, i % 2 == 0 and _M.request() or varied(i))),
                "returned something that is not one of its targets")
        end
    end }

    checks[#checks + 1] = { id = "untried", name = "never returns a target already tried", run = function()
        local ts = _M.targets({ 1, 2, 3, 1 })
        local st = new(ts)
        for ntried = 1, #ts - 1 do
            for i = 1, 30 do
                local tried = {}
                for k = 1, ntried do tried[k] = ts[(i + k) % #ts + 1] end
                local t = plugin.pick(st, varied(i, tried))
                assert.is_true(is_member(ts, t), "returned nil or a stranger with untried targets left")
                assert.is_false(is_member(tried, t), "picked a tried target")
            end
        end
    end }

    checks[#checks + 1] = { id = "exhausted", name = "returns nil when every target was tried, and with no targets",
                            run = function()
        local ts = _M.targets({ 1, 1 })
        local st = new(ts)
        assert.is_nil(plugin.pick(st, _M.request({ tried = ts })), "picked with every target tried")
        assert.is_nil(plugin.pick(new({}, "-empty"), _M.request()), "picked with no targets")
    end }

    checks[#checks + 1] = { id = "single", name = "works with a single target", run = function()
        local ts = _M.targets({ 1 })
        local st = new(ts, "-one")
        for i = 1, 5 do assert.equal(ts[1], plugin.pick(st, varied(i))) end
    end }

    local spread = opts.spread ~= false and not opts.latency
    checks[#checks + 1] = { id = "membership",
                            name = spread and "sends requests to a target added, none to one removed"
                                or "never returns a target removed", run = function()
        local grown = _M.targets({ 1, 1, 1, 1 })
        new({ grown[1], grown[2], grown[3] })
        local st = new(grown)
        if spread then
            local count = tally(plugin, st, 400, varied)
            assert.is_true((count[grown[4]] or 0) > 0, "the target added never got a request in 400")
        end
        local shrunk = { grown[1], grown[3] }
        st = new(shrunk)
        for i = 1, 100 do
            assert.is_true(is_member(shrunk, plugin.pick(st, varied(i))), "returned a target that was removed")
        end
    end }
end

-- One client, always the same request (round robin-like balancers).
local function same() return _M.request() end

local function add_fair(checks, name, plugin, bopts)
    local function new(ts, suffix) return plugin.new(ts, bopts, { name = name .. suffix }) end
    checks[#checks + 1] = { id = "weights", name = "spreads picks in proportion to weights", run = function()
        local ts = _M.targets({ 1, 2, 5 })
        assert_shares(ts, tally(plugin, new(ts, "-fair"), 8000, same), 8000, 0.1, "weights 1,2,5")
    end }
    checks[#checks + 1] = { id = "reweight", name = "follows targets re-weighted", run = function()
        local before = _M.targets({ 1, 1, 1 })
        local st = new(before, "-rew")
        tally(plugin, st, 300, same)
        -- the same targets (same ids and addresses), now weighted 4,1,3
        local after = _M.targets({ 4, 1, 3 })
        assert_shares(after, tally(plugin, new(after, "-rew"), 8000, same), 8000, 0.1,
            "re-weighted from 1,1,1 to 4,1,3")
    end }
    checks[#checks + 1] = { id = "added_share", name = "gives a target added its share", run = function()
        local grown = _M.targets({ 1, 1, 1, 1 })
        tally(plugin, new({ grown[1], grown[2], grown[3] }, "-grow"), 300, same)
        assert_shares(grown, tally(plugin, new(grown, "-grow"), 4000, same), 4000, 0.1,
            "a fourth target added")
    end }
end

local function add_hash(checks, name, plugin, opts, bopts)
    local function new(ts, suffix) return plugin.new(ts, bopts, { name = name .. (suffix or "") }) end
    local key = opts.key or _M.key_request
    checks[#checks + 1] = { id = "sticky", name = "sends a key to the same target, from every state built on the same targets",
                            run = function()
        local ts = _M.targets({ 1, 1, 1, 1 })
        local a, b = new(ts, "-w1"), new(_M.targets({ 1, 1, 1, 1 }), "-w2")
        for i = 1, 200 do
            local first = plugin.pick(a, key(i))
            for _ = 1, 3 do assert.equal(first, plugin.pick(a, key(i)), "key " .. i .. " moved between picks") end
            -- b: another worker (or a reload) with equal targets, other tables
            local other = plugin.pick(b, key(i))
            assert.equal(first.id, other and other.id, "key " .. i .. " goes elsewhere in another state")
        end
    end }
    checks[#checks + 1] = { id = "key_spread", name = "spreads keys in proportion to weights, also after re-weighting",
                            run = function()
        local ts = _M.targets({ 1, 2, 5 })
        assert_shares(ts, tally(plugin, new(ts, "-spread"), 4000, key), 4000, 0.25, "4000 keys, weights 1,2,5")
        local rew = _M.targets({ 4, 1, 3 })
        assert_shares(rew, tally(plugin, new(rew, "-spread"), 4000, key), 4000, 0.25,
            "4000 keys, re-weighted to 4,1,3")
    end }
    checks[#checks + 1] = { id = "consistent", name = "moves about 1/n of the keys, all to a target added",
                            run = function()
        local ts = _M.targets({ 1, 1, 1, 1 })
        local before, after = new({ ts[1], ts[2], ts[3] }, "-cons"), new(ts, "-cons")
        local moved, n = 0, 2000
        for i = 1, n do
            local a, b = plugin.pick(before, key(i)), plugin.pick(after, key(i))
            if a ~= b then
                moved = moved + 1
                assert.equal(ts[4], b, "key " .. i .. " moved between targets that stayed")
            end
        end
        assert.is_true(moved >= n / 4 * 0.5 and moved <= n / 4 * 1.5,
            string.format("%d of %d keys moved to the fourth target, expected about %d", moved, n, n / 4))
    end }
end

-- Feeds back latencies: picks, reports latency_of(t), moves the test clock.
local function drive(plugin, st, n, latency_of)
    local count = {}
    for i = 1, n do
        local t = plugin.pick(st, _M.key_request(i))
        assert.is_truthy(t, "picked nothing")
        count[t] = (count[t] or 0) + 1
        plugin.report(st, t, { status = 200, latency = latency_of(t) })
        mg.advance(0.02)
    end
    return count
end

local function add_latency(checks, name, plugin, bopts)
    checks[#checks + 1] = { id = "faster", name = "prefers the faster target, and follows when that changes",
                            run = function()
        assert.is_function(plugin.report, "a latency-aware balancer needs report()")
        mg.set_test_clock(1000)
        local ok, err = pcall(function()
            local ts = _M.targets({ 1, 1, 1 })
            local st = plugin.new(ts, bopts, { name = name .. "-lat" })
            local fast = ts[2]
            -- one answer from each first: the check is about using what was
            -- measured, not about how soon a balancer explores
            for _, t in ipairs(ts) do plugin.report(st, t, { status = 200, latency = t == fast and 0.01 or 0.2 }) end
            drive(plugin, st, 100, function(t) return t == fast and 0.01 or 0.2 end)
            local count = drive(plugin, st, 200, function(t) return t == fast and 0.01 or 0.2 end)
            assert.is_true((count[fast] or 0) > 120,
                string.format("the fast target (%s) got %d of 200 picks", fast.id, count[fast] or 0))
            fast = ts[3]
            drive(plugin, st, 100, function(t) return t == fast and 0.01 or 0.2 end)
            count = drive(plugin, st, 200, function(t) return t == fast and 0.01 or 0.2 end)
            assert.is_true((count[fast] or 0) > 120,
                string.format("after the change, the fast target (%s) got %d of 200 picks", fast.id, count[fast] or 0))
        end)
        mg.set_test_clock(nil)
        if not ok then error(err, 0) end
    end }
end

function _M.checks(name, plugin, opts)
    opts = opts or {}
    local bopts = opts.balancer_opts or {}
    local checks = {}
    add_common(checks, name, plugin, opts, bopts)
    if opts.fair then add_fair(checks, name, plugin, bopts) end
    if opts.hash then add_hash(checks, name, plugin, opts, bopts) end
    if opts.latency then add_latency(checks, name, plugin, bopts) end
    for _, c in ipairs(checks) do
        -- a fixed seed: a randomised balancer gets the same draws every run,
        -- so a check passes or fails for the balancer, not for the dice
        local run = c.run
        c.run = function()
            math.randomseed(20261124)
            return run()
        end
    end
    return checks
end

function _M.conformance(name, plugin, opts)
    -- busted's describe/it live in the calling spec's environment
    local env = getfenv(2)
    local describe, it = env.describe, env.it
    local checks = _M.checks(name, plugin, opts)
    describe(name .. " (balancer conformance)", function()
        for _, c in ipairs(checks) do it(c.name, c.run) end
    end)
end

return _M
