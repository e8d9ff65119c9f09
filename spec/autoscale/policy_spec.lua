-- The default autoscaler (plugins/autoscale_target.lua) on synthetic
-- figures and the test clock: target tracking on in-flight requests per
-- replica, min/max, a fast scale-up and a stabilised scale-down.
local kit = require("moongate.test.autoscale_kit")
local mg = require("moongate")

local policy = kit.load("plugins/autoscale_target.lua")
local function run(settings, opts)
    return kit.run(policy, settings or { min = 1, max = 4, target = 4, scale_down_window = 10 }, opts)
end

describe("autoscale_target", function()
    after_each(function() mg.set_test_clock(nil) end)

    it("computes desired = ceil(current * observed / target)", function()
        local s = kit.settings({ min = 1, max = 10, target = 4 })
        assert.equal(3, policy.decide(s, kit.metrics({ replicas = 2, inflight = 10 }), {}))
        assert.equal(5, policy.decide(s, kit.metrics({ replicas = 1, inflight = 17 }), {}))
    end)

    it("keeps the replicas for a ratio within 10 % of the target", function()
        local s = kit.settings({ min = 1, max = 10, target = 4 })
        assert.equal(2, policy.decide(s, kit.metrics({ replicas = 2, inflight = 8.6 }), {}))
        assert.equal(2, policy.decide(s, kit.metrics({ replicas = 2, inflight = 7.4 }), {}))
    end)

    it("scales up on a step of load at the first tick that sees it", function()
        local r = run()
        r:load(5, { inflight = 0 })
        assert.equal(1, r.desired)
        r:tick({ inflight = 16 })
        assert.equal(4, r.desired)
        assert.same({ 1, 4 }, r:changes())
        assert.equal(6, r:time_to(4))
    end)

    it("smooths a step over inflight_window when asked to", function()
        local r = run({ min = 1, max = 4, target = 4, inflight_window = 3 })
        r:load(5, { inflight = 0 })
        r:tick({ inflight = 16 }) -- the mean of 0, 0, 16
        assert.equal(2, r.desired)
        r:load(2, { inflight = 16 })
        assert.equal(4, r.desired)
    end)

    it("goes straight to max on a large step, never above it", function()
        local r = run({ min = 1, max = 4, target = 4, inflight_window = 0 })
        r:load(1, { inflight = 100 })
        assert.equal(4, r.desired)
        r:load(5, { inflight = 1000 })
        assert.equal(4, r.desired)
    end)

    it("scales down only after the window, to the highest recommendation in it", function()
        local r = run({ min = 1, max = 4, target = 4, scale_down_window = 10, inflight_window = 0 })
        r:load(3, { inflight = 16 })
        assert.equal(4, r.desired)
        r:load(3, { inflight = 8 }) -- asks for 2
        r:load(6, { inflight = 0 }) -- asks for 1
        assert.equal(4, r.desired) -- 16 was seen less than 10 s ago
        r:load(2, { inflight = 0 })
        assert.equal(2, r.desired) -- 16 left the window, 8 is still in it
        r:load(10, { inflight = 0 })
        assert.equal(1, r.desired)
        assert.same({ 4, 2, 1 }, r:changes())
    end)

    it("does not flap on noisy load around the target", function()
        local r = run({ min = 1, max = 10, target = 4, scale_down_window = 30 })
        r:load(10, { inflight = 12 })
        local before = r.desired
        for i = 1, 60 do r:tick({ inflight = 12 + (i % 2 == 0 and 3 or -3) }) end
        local changes = r:changes()
        -- once up, it only ever goes up: no down-and-up again
        for i = 2, #changes do assert.is_true(changes[i] >= changes[i - 1]) end
        assert.is_true(r.desired >= before)
        assert.is_true(#changes <= 4)
    end)

    it("respects min when idle and max under any load", function()
        local r = run({ min = 2, max = 3, target = 4, scale_down_window = 0 })
        r:load(5, { inflight = 0 })
        assert.equal(2, r.desired)
        r:load(5, { inflight = 400 })
        assert.equal(3, r.desired)
        r:load(5, { inflight = 0 })
        assert.equal(2, r.desired)
    end)

    it("wakes a service at zero on a queued request, and goes back to zero", function()
        local r = run({ min = 0, max = 2, target = 4, scale_down_window = 5 }, { replicas = 0 })
        r:load(3, { queued = 0 })
        assert.equal(0, r.desired)
        r:tick({ queued = 1 })
        assert.equal(1, r.desired) -- at once, on the first tick that sees it
        r:load(2, { inflight = 1 })
        r:load(10, { inflight = 0 })
        assert.equal(0, r.desired)
    end)

    it("keeps a decision while replicas are starting (no runaway scale-up)", function()
        local r = run({ min = 1, max = 8, target = 4, inflight_window = 0 }, { start_delay = 4 })
        r:load(1, { inflight = 16 })
        assert.equal(4, r.desired)
        r:load(3, { inflight = 16 }) -- replicas still 1: the policy tracks desired, not actual
        assert.equal(4, r.desired)
    end)
end)

describe("the autoscale wrapper", function()
    after_each(function() mg.set_test_clock(nil) end)

    it("clamps a policy's answer to min..max and survives a failing policy", function()
        local autoscale = require("moongate.autoscale")
        local s = kit.settings({ min = 1, max = 3 })
        assert.equal(3, (autoscale.decide(s, { decide = function() return 9 end }, kit.metrics(), {})))
        local n, why = autoscale.decide(s, { decide = function() error("boom") end },
            kit.metrics({ desired = 2, replicas = 2 }), {})
        assert.equal(2, n)
        assert.matches("policy failed", why)
    end)

    it("builds p50/p95 from the latency histogram", function()
        local autoscale = require("moongate.autoscale")
        local counts = { 0, 0, 0, 50, 45, 5, 0, 0, 0, 0, 0, 0 } -- 25-50 ms, 50-100 ms, 100-250 ms
        assert.near(0.05, autoscale.quantile(counts, 100, 0.5), 0.001)
        assert.near(0.1, autoscale.quantile(counts, 100, 0.95), 0.001)
    end)

    it("validates settings and reads labels", function()
        local autoscale = require("moongate.autoscale")
        local s = assert(autoscale.settings(autoscale.from_labels({
            ["moongate.autoscale.min"] = "0", ["moongate.autoscale.max"] = "4",
            ["moongate.autoscale.target"] = "4", ["moongate.autoscale.scale_down_window"] = "10s",
        }), "plugins"))
        assert.same({ 0, 4, 4, 10, "autoscale_target" }, { s.min, s.max, s.target, s.scale_down_window, s.policy })
        assert.is_nil(autoscale.from_labels({ ["moongate.rule"] = "PathPrefix(`/`)" }))
        local _, err = autoscale.settings({ min = 5, max = 2 }, "plugins")
        assert.matches("min %(5%) is above max %(2%)", err)
        _, err = autoscale.settings({ policy = "roundrobin" }, "plugins")
        assert.matches("expected autoscaler", err)
        _, err = autoscale.settings({ speed = 3 }, "plugins")
        assert.matches("speed", err)
    end)
end)

describe("examples/autoscale_p95.lua (docs/autoscaling.md)", function()
    after_each(function() mg.set_test_clock(nil) end)
    local p95 = kit.load("examples/autoscale_p95.lua")

    it("adds replicas while p95 is above the goal, and removes them once calm for the window", function()
        local r = kit.run(p95, { min = 1, max = 5, scale_down_window = 10, opts = { p95 = 0.2 } })
        r:load(5, { rps = 50, p95 = 0.05 })
        assert.equal(1, r.desired)
        r:load(12, { rps = 50, p95 = 0.5 })
        assert.equal(5, r.desired) -- one more every 3 s, up to max
        r:load(9, { rps = 50, p95 = 0.05 })
        assert.equal(5, r.desired) -- calm, not for the whole window yet
        r:load(2, { rps = 50, p95 = 0.05 })
        assert.equal(4, r.desired)
    end)

    it("wakes a service at zero on a queued request", function()
        local r = kit.run(p95, { min = 0, max = 2 }, { replicas = 0 })
        r:load(2, {})
        assert.equal(0, r.desired)
        r:tick({ queued = 3 })
        assert.equal(1, r.desired)
    end)
end)
