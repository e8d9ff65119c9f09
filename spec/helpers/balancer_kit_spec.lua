-- The balancer kit itself: every check fails for a balancer broken in the
-- way that check is about, and passes for one that is not.
local kit = require("moongate.test.balancer_kit")
local mg = require("moongate")

-- Runs the check `id` of kit.checks on plugin; returns ok, message.
local function run(plugin, opts, id)
    for _, c in ipairs(kit.checks("kit-spec", plugin, opts)) do
        if c.id == id then
            local ok, err = pcall(c.run)
            return ok, tostring(err)
        end
    end
    error("the kit has no check " .. id, 2)
end

local function fails(plugin, opts, id, why)
    local ok, err = run(plugin, opts, id)
    assert.is_false(ok, "the kit's " .. id .. " check passed a broken balancer")
    if why then assert.truthy(err:find(why, 1, true), err) end
end

local function passes(plugin, opts, id)
    local ok, err = run(plugin, opts, id)
    assert.is_true(ok, err)
end

local function untried(targets, tried, start)
    for k = 0, #targets - 1 do
        local t = targets[(start + k) % #targets + 1]
        if not tried[t] then return t end
    end
end

-- A correct smooth weighted round robin, the reference the broken ones
-- below differ from in one way each.
local function wrr(weight_of)
    local b = { type = "balancer" }
    function b.new(targets)
        local cur = {}
        for i = 1, #targets do cur[i] = 0 end
        return { targets = targets, cur = cur }
    end
    function b.pick(st, req)
        local best, total = nil, 0
        for i, t in ipairs(st.targets) do
            if not req.tried[t] then
                local w = weight_of and weight_of(t) or t.weight
                st.cur[i] = st.cur[i] + w
                total = total + w
                if not best or st.cur[i] > st.cur[best] then best = i end
            end
        end
        if not best then return nil end
        st.cur[best] = st.cur[best] - total
        return st.targets[best]
    end
    return b
end

-- A ring hash over the given key function; salt and points vary it.
local function ring_hash(opts)
    local b = { type = "balancer" }
    function b.new(targets)
        local ring, salt = {}, opts.salt and tostring(math.random()) or ""
        for _, t in ipairs(targets) do
            for k = 1, (opts.points or 100) * (opts.ignore_weight and 1 or t.weight) do
                ring[#ring + 1] = { h = mg.hash(salt .. t.id .. "#" .. k), t = t }
            end
        end
        table.sort(ring, function(x, y) return x.h < y.h end)
        return { ring = ring, targets = targets }
    end
    function b.pick(st, req)
        if opts.modulo then
            local n = #st.targets
            return untried(st.targets, req.tried, n > 0 and mg.hash(req.client_ip) % n or 0)
        end
        local h = mg.hash(opts.constant and "x" or req.client_ip)
        for k = 1, #st.ring do
            local e = st.ring[k]
            if e.h >= h and not req.tried[e.t] then return e.t end
        end
        for k = 1, #st.ring do
            if not req.tried[st.ring[k].t] then return st.ring[k].t end
        end
    end
    return b
end

describe("the balancer kit", function()
    describe("passes", function()
        it("a correct smooth weighted round robin on every fair check", function()
            for _, c in ipairs(kit.checks("wrr", wrr(), { fair = true })) do
                local ok, err = pcall(c.run)
                assert.is_true(ok, c.id .. ": " .. tostring(err))
            end
        end)

        it("a correct ring hash on every hash check", function()
            for _, c in ipairs(kit.checks("ring", ring_hash({}), { hash = true })) do
                local ok, err = pcall(c.run)
                assert.is_true(ok, c.id .. ": " .. tostring(err))
            end
        end)
    end)

    describe("fails a balancer that", function()
        it("returns a copy of a target instead of the target", function()
            local b = wrr()
            local pick = b.pick
            local copy = { type = "balancer", new = b.new }
            function copy.pick(st, req)
                local t = pick(st, req)
                return t and setmetatable({}, { __index = t })
            end
            fails(copy, {}, "own")
        end)

        it("returns a target already tried", function()
            local b = { type = "balancer", new = function(ts) return ts end }
            function b.pick(ts) return ts[1] end
            fails(b, {}, "untried", "picked a tried target")
        end)

        it("returns a target when every one was tried", function()
            local b = { type = "balancer", new = function(ts) return ts end }
            function b.pick(ts, req) return untried(ts, req.tried, 0) or ts[1] end
            fails(b, {}, "exhausted", "every target tried")
        end)

        it("never sends a request to a target added", function()
            local b = { type = "balancer", new = function(ts) return ts end }
            function b.pick(ts, req)
                for i = 1, math.min(3, #ts) do if not req.tried[ts[i]] then return ts[i] end end
                return untried(ts, req.tried, 0)
            end
            fails(b, {}, "membership", "never got a request")
        end)

        it("ignores weights", function()
            local flat = wrr(function() return 1 end)
            fails(flat, { fair = true }, "weights", "weights 1,2,5")
            fails(flat, { fair = true }, "reweight")
        end)

        it("keeps the weights it first saw for a target (re-weighting)", function()
            local first = {}
            local stale = wrr(function(t)
                first[t.id] = first[t.id] or t.weight
                return first[t.id]
            end)
            passes(stale, { fair = true }, "weights") -- weights 1,2,5 are the first it sees
            fails(stale, { fair = true }, "reweight", "re-weighted")
        end)

        it("starves a target added (its share)", function()
            -- round robin over the targets, but a target added after the
            -- first state gets every other turn it should
            local known = {}
            local b = wrr(function(t)
                if next(known) and not known[t.id] then return 0.5 end
                known[t.id] = true
                return 1
            end)
            fails(b, { fair = true }, "added_share", "a fourth target added")
        end)

        it("hashes differently in every state (another worker disagrees)", function()
            fails(ring_hash({ salt = true }), { hash = true }, "sticky", "another state")
        end)

        it("sends every key to the same place", function()
            fails(ring_hash({ constant = true }), { hash = true }, "key_spread")
        end)

        it("ignores weights when spreading keys", function()
            fails(ring_hash({ ignore_weight = true }), { hash = true }, "key_spread", "weights 1,2,5")
        end)

        it("hashes modulo the number of targets (moves most keys on a change)", function()
            fails(ring_hash({ modulo = true }), { hash = true }, "consistent", "moved between targets that stayed")
        end)

        it("ignores reported latencies", function()
            local rr = wrr()
            rr.report = function() end
            fails(rr, { latency = true }, "faster", "the fast target")
        end)

        it("has no report() but claims to be latency-aware", function()
            fails(wrr(), { latency = true }, "faster", "needs report()")
        end)
    end)
end)
