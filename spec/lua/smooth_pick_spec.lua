-- mg.smooth_pick: the one smooth weighted round robin (nginx's), shared by
-- roundrobin, sticky and least_conn.
local mg = require("moongate")
local kit = require("moongate.test.balancer_kit")

local function targets(weights)
    local out = {}
    for i, w in ipairs(weights) do out[i] = { id = "t" .. i, address = "127.0.0.1:" .. (9000 + i), weight = w } end
    return out
end

local function run(ts, n, tried, eligible)
    local current, names = {}, {}
    for k = 1, n do
        local i = mg.smooth_pick(ts, current, tried or {}, eligible)
        names[k] = i and string.char(96 + i) or "-"
    end
    return table.concat(names)
end

describe("mg.smooth_pick", function()
    it("interleaves by weight: 5,1,1 gives a a b a c a a", function()
        assert.equal("aabacaa", run(targets({ 5, 1, 1 }), 7))
        assert.equal("aabacaa" .. "aabacaa", run(targets({ 5, 1, 1 }), 14))
    end)

    it("alternates equal weights", function()
        assert.equal("abcabc", run(targets({ 1, 1, 1 }), 6))
        assert.equal("abab", run(targets({ 3, 3 }), 4))
    end)

    it("skips tried targets and spreads over the others by weight", function()
        local ts = targets({ 5, 1, 1 })
        assert.equal("bcbc", run(ts, 4, { [ts[1]] = true }))
    end)

    it("picks only where eligible[i] is true, when given", function()
        assert.equal("cccc", run(targets({ 5, 1, 1 }), 4, nil, { false, false, true }))
    end)

    it("returns nil when no target is left", function()
        local ts = targets({ 1, 1 })
        assert.is_nil(mg.smooth_pick(ts, {}, { [ts[1]] = true, [ts[2]] = true }))
        assert.is_nil(mg.smooth_pick({}, {}, {}))
    end)

    it("is what roundrobin's gateway-wide cycle walks", function()
        local rr = kit.load("plugins/roundrobin.lua")
        local ts = targets({ 4, 2, 2 }) -- reduced by the gcd to 2,1,1
        local state = rr.new(ts, {}, { name = "smooth-pick-spec-" .. tostring(mg.now()) })
        local seq = {}
        for k = 1, #state.seq do seq[k] = string.char(96 + state.seq[k]) end
        assert.equal(run(targets({ 2, 1, 1 }), 4), table.concat(seq))
    end)
end)
