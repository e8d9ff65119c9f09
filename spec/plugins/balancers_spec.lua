-- Every built-in balancer through the conformance kit, plus what makes
-- each one what it is.
local kit = require("spec.helpers.balancer_kit")
local mg = require("moongate")

local function plugin(name) return kit.load("plugins/" .. name .. ".lua") end

kit.conformance("roundrobin", plugin("roundrobin"), { fair = true })
kit.conformance("least_conn", plugin("least_conn"), { fair = true })
kit.conformance("p2c", plugin("p2c"), { fair = true })
kit.conformance("ewma", plugin("ewma"), { latency = true })
kit.conformance("chash", plugin("chash"), { hash = true })
kit.conformance("sticky", plugin("sticky"), { fair = true })

describe("roundrobin", function()
    it("interleaves weights smoothly (5,1,1 gives a a b a c a a)", function()
        local rr = plugin("roundrobin")
        local ts = kit.targets({ 5, 1, 1 })
        local st = rr.new(ts, {}, { name = "smooth-spec" })
        local seq = {}
        for i = 1, 7 do seq[i] = rr.pick(st, kit.request()).id end
        -- the cycle may start anywhere (the counter is shared), but its shape is fixed
        local s = table.concat(seq, " ")
        assert.truthy(("t1 t1 t2 t1 t3 t1 t1 t1 t1 t2 t1 t3 t1 t1"):find(s, 1, true), s)
    end)
end)

describe("least_conn", function()
    it("picks the target with the fewest in-flight requests per weight", function()
        local lc = plugin("least_conn")
        local ts = kit.targets({ { inflight = 5 }, { inflight = 1 }, { inflight = 3 } })
        local st = lc.new(ts, {}, { name = "lc-spec" })
        for _ = 1, 10 do assert.equal(ts[2], lc.pick(st, kit.request())) end
        ts[2].inflight = 9
        assert.equal(ts[3], lc.pick(st, kit.request()))
        local heavy = kit.targets({ { inflight = 4, weight = 4 }, { inflight = 2, weight = 1 } })
        assert.equal(heavy[1], lc.pick(lc.new(heavy, {}, { name = "lc-w" }), kit.request()))
    end)

    it("still picks when other workers change the counts while it reads them", function()
        local lc = plugin("least_conn")
        local ts = kit.targets({ 1, 1, 1 })
        -- every read of a count sees a new value, as when other workers'
        -- requests start and end between two reads of the shared counters
        local reads = 0
        for _, t in ipairs(ts) do
            t.inflight = nil
            setmetatable(t, { __index = function(_, k)
                if k == "inflight" then reads = reads + 1; return reads end
            end })
        end
        local st = lc.new(ts, {}, { name = "lc-race" })
        for _ = 1, 20 do assert.is_not_nil(lc.pick(st, kit.request())) end
    end)
end)

describe("p2c", function()
    it("of the two it samples, takes the less loaded", function()
        local p2c = plugin("p2c")
        local ts = kit.targets({ { inflight = 10 }, { inflight = 0 } })
        local st = p2c.new(ts, {})
        for _ = 1, 20 do assert.equal(ts[2], p2c.pick(st, kit.request())) end
    end)
end)

describe("ewma", function()
    before_each(function() mg.set_test_clock(1000) end)
    after_each(function() mg.set_test_clock(nil) end)

    it("moves traffic to the faster target after reports", function()
        local ewma = plugin("ewma")
        local ts = kit.targets({ 1, 1 })
        local st = ewma.new(ts, { decay = 10 })
        for _ = 1, 5 do
            ewma.report(st, ts[1], { status = 200, latency = 0.5 })
            ewma.report(st, ts[2], { status = 200, latency = 0.01 })
            mg.advance(0.1)
        end
        for _ = 1, 10 do assert.equal(ts[2], ewma.pick(st, kit.request())) end
    end)

    it("counts a failure as slow, and forgives it as time passes", function()
        local ewma = plugin("ewma")
        local ts = kit.targets({ 1, 1 })
        local st = ewma.new(ts, { decay = 1, penalty = 2 })
        ewma.report(st, ts[1], { error = "connect", latency = 0.001 })
        ewma.report(st, ts[2], { status = 200, latency = 0.05 })
        assert.equal(ts[2], ewma.pick(st, kit.request()))
        mg.advance(30) -- both decay towards zero; the failure no longer dominates
        ewma.report(st, ts[2], { status = 200, latency = 0.05 })
        assert.equal(ts[1], ewma.pick(st, kit.request()))
    end)
end)

describe("chash", function()
    local ch = plugin("chash")

    it("sends the same key to the same target", function()
        local ts = kit.targets({ 1, 1, 1 })
        local st = ch.new(ts, { hash_on = "header", header = "X-User" })
        for u = 1, 20 do
            local r = kit.request({ headers = { ["X-User"] = "user" .. u } })
            local first = ch.pick(st, r)
            for _ = 1, 3 do assert.equal(first, ch.pick(st, r)) end
        end
    end)

    it("moves only about 1/n of the keys when a target is added", function()
        local ts = kit.targets({ 1, 1, 1, 1 })
        local before = ch.new({ ts[1], ts[2], ts[3] }, {})
        local after = ch.new(ts, {})
        local moved = 0
        for k = 1, 1000 do
            local r = kit.request({ client_ip = "10.1." .. math.floor(k / 256) .. "." .. (k % 256) })
            local a, b = ch.pick(before, r), ch.pick(after, r)
            if a ~= b then
                moved = moved + 1
                assert.equal(ts[4], b, "a key moved between old targets")
            end
        end
        assert.is_true(moved > 150 and moved < 350, "moved " .. moved .. " of 1000 keys")
    end)

    it("walks the ring past a tried target", function()
        local ts = kit.targets({ 1, 1, 1 })
        local st = ch.new(ts, { hash_on = "cookie", cookie = "sid" })
        local r = kit.request({ headers = { Cookie = "sid=abc" } })
        local first = ch.pick(st, r)
        local second = ch.pick(st, kit.request({ headers = { Cookie = "sid=abc" }, tried = { first } }))
        assert.are_not.equal(first, second)
    end)
end)

describe("sticky", function()
    local sticky = plugin("sticky")

    it("sets a cookie on the first pick and honours it afterwards", function()
        local ts = kit.targets({ 1, 1, 1 })
        local st = sticky.new(ts, { cookie = "pin" })
        local r = kit.request()
        local t = sticky.pick(st, r)
        local cookie = r.response_headers[1][2]:match("^pin=([^;]+)")
        assert.truthy(cookie)
        for _ = 1, 10 do
            local again = kit.request({ headers = { Cookie = "other=1; pin=" .. cookie } })
            assert.equal(t, sticky.pick(st, again))
            assert.equal(0, #again.response_headers)
        end
    end)

    it("falls back when the pinned target is gone or failed", function()
        local ts = kit.targets({ 1, 1 })
        local st = sticky.new(ts, {})
        local r = kit.request()
        local t = sticky.pick(st, r)
        local cookie = r.response_headers[1][2]:match("^mg_sticky=([^;]+)")
        local retry = kit.request({ headers = { Cookie = "mg_sticky=" .. cookie }, tried = { t } })
        local other = sticky.pick(st, retry)
        assert.are_not.equal(t, other)
        assert.equal(1, #retry.response_headers)
        local gone = sticky.new({ ts[t == ts[1] and 2 or 1] }, {})
        local r2 = kit.request({ headers = { Cookie = "mg_sticky=" .. cookie } })
        assert.are_not.equal(t, sticky.pick(gone, r2))
    end)
end)
