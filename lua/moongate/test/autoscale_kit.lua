-- Drives an autoscaler plugin with synthetic figures on the test clock, so
-- a policy has busted specs without a gateway or an engine:
--
--   local kit = require("moongate.test.autoscale_kit")
--   local policy = kit.load("plugins/autoscale_target.lua")
--   local run = kit.run(policy, { min = 1, max = 4, target = 4, scale_down_window = 10 })
--   run:load(5, { inflight = 16 })   -- 5 s of 16 requests in flight
--   assert.equal(4, run.desired)
--   run:load(30, { inflight = 0 })
--   assert.same({ 4, 1 }, run:changes())
--
-- Every tick (settings.interval, default 1 s) the kit advances mg's test
-- clock, builds the metrics a policy gets in the gateway (the same code:
-- moongate.autoscale.metrics) and calls decide through the same wrapper
-- (clamping to min..max). The replicas follow the decision after
-- `start_delay` seconds (default 0), as an actuator would.
local mg = require("moongate")
local autoscale = require("moongate.autoscale")
local schema_defaults = {
    min = 1, max = 10, target = 10, scale_down_window = 60, interval = 1, window = 10,
    inflight_window = 0, opts = {},
}

local _M = {}

-- Loads a policy file the way the gateway does (its own globals table).
function _M.load(path)
    local fn = assert(loadfile(path))
    setfenv(fn, require("moongate.plugin_env").new()) -- as the gateway loads it
    local p = fn()
    assert(type(p) == "table" and p.type == "autoscaler" and type(p.decide) == "function",
        path .. ": not an autoscaler plugin")
    return p
end

-- Settings with the gateway's defaults filled in.
function _M.settings(s)
    local out = { name = "spec" }
    for k, v in pairs(schema_defaults) do out[k] = v end
    for k, v in pairs(s or {}) do out[k] = v end
    return out
end

-- A full metrics table for one decide call: fields not given get neutral
-- values (nothing in flight, no errors, replicas = desired = 1).
function _M.metrics(m)
    local out = { now = mg.now(), replicas = 1, rps = 0, inflight = 0, inflight_now = 0, queued = 0,
                  p50 = 0, p95 = 0, error_rate = 0, connect_failure_rate = 0, since_change = 0 }
    for k, v in pairs(m or {}) do out[k] = v end
    out.desired = out.desired or out.replicas
    out.inflight_per_replica = out.inflight_per_replica
        or (out.inflight + out.queued) / math.max(out.replicas, 1)
    return out
end

local Run = {}
Run.__index = Run

-- A simulated service. opts: replicas (start, default settings.min),
-- start_delay (s before a new replica counts, default 0), clock (the test
-- clock is set to it, default 1000).
function _M.run(policy, settings, opts)
    opts = opts or {}
    mg.set_test_clock(opts.clock or 1000) -- specs reset it: mg.set_test_clock(nil)
    local s = _M.settings(settings)
    local replicas = opts.replicas or s.min
    return setmetatable({ policy = policy, settings = s, replicas = replicas, desired = replicas,
                          st = {}, samples = {}, changed_at = mg.now(), pending = {},
                          start_delay = opts.start_delay or 0, trace = {} }, Run)
end

-- One tick with figures f: inflight (total, spread over the replicas),
-- queued, rps, latency (seconds, taken as p50 and p95 unless p95 is
-- given), p95, errors (5xx fraction), connect_failures.
function Run:tick(f)
    f = f or {}
    local s = self.settings
    mg.advance(s.interval)
    local now = mg.now()
    -- replicas asked for earlier arrive after the start delay
    for i = #self.pending, 1, -1 do
        if self.pending[i].at <= now then
            self.replicas = self.pending[i].replicas
            table.remove(self.pending, i)
        end
    end
    local rps = f.rps or 0
    local lat = {}
    for i = 1, 12 do lat[i] = 0 end
    self.samples[#self.samples + 1] = { at = now, requests = rps * s.interval, s5xx = rps * s.interval * (f.errors or 0),
        connect = rps * s.interval * (f.connect_failures or 0), lat = lat,
        inflight = self.replicas > 0 and (f.inflight or 0) or 0, queued = f.queued or 0 }
    while #self.samples > 1 and self.samples[1].at < now - s.window do table.remove(self.samples, 1) end
    local m = autoscale.metrics(self.samples, { now = now, replicas = self.replicas, desired = self.desired,
        since_change = now - self.changed_at, inflight_window = s.inflight_window, interval = s.interval,
        min = s.min, max = s.max })
    if f.latency or f.p95 then
        m.p50 = f.latency or f.p95
        m.p95 = f.p95 or f.latency
    end
    local want, why = autoscale.decide(s, self.policy, m, self.st)
    if want ~= self.desired then
        self.desired, self.changed_at = want, now
        if self.start_delay > 0 and want > self.replicas then
            self.pending[#self.pending + 1] = { at = now + self.start_delay, replicas = want }
        else
            self.replicas = want
        end
    end
    self.trace[#self.trace + 1] = { at = now, desired = want, replicas = self.replicas, reason = why, metrics = m }
    return want, why
end

-- Ticks for `seconds` with the same figures; returns the last decision.
function Run:load(seconds, f)
    local want
    for _ = 1, math.max(1, math.floor(seconds / self.settings.interval + 0.5)) do want = self:tick(f) end
    return want
end

-- The successive distinct decisions since the start, as a list.
function Run:changes()
    local out, last = {}, nil
    for _, t in ipairs(self.trace) do
        if t.desired ~= last then out[#out + 1] = t.desired end
        last = t.desired
    end
    return out
end

-- Seconds from the start of the run until the decision first reached n
-- (nil if never).
function Run:time_to(n)
    local start = self.trace[1] and self.trace[1].at - self.settings.interval
    for _, t in ipairs(self.trace) do
        if t.desired == n then return t.at - start end
    end
end

return _M
