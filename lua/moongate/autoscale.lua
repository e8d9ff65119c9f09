-- The autoscaler, on the control plane (main thread). For every service
-- with `autoscale` settings (from its config or from labels), every
-- `interval` seconds it builds the service's figures from the gateway's own
-- gateway-wide counters over a sliding window, asks the service's
-- autoscaler plugin (default autoscale_target) for a number of replicas,
-- logs the decision with its inputs, and has an actuator (Compose or Swarm,
-- on the Docker Engine API) make it so. See docs/autoscaling.md.
--
-- An autoscaler plugin: { type = "autoscaler", decide = function(service, metrics, state) }
--   service  the settings: min, max, target, scale_down_window, policy, opts, name
--   metrics  see metrics() below; state: a table kept per service across ticks
--   returns  the replicas wanted (clamped to min..max here), and a reason
local plugins = require("moongate.plugins")
local schema = require("moongate.schema")
local mg = require("moongate")
local internal = require("moongate.internal")
local ffi = require("ffi")
-- its C surface (core/lua_stats.c) is declared with the rest in moongate.ffi
local C = require("moongate.ffi").C
local NCOUNTERS = 22 -- requests, status x6, connect_errors, timeouts, 12 buckets, lat_sum_us
local LAT_BOUNDS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.huge }

local _M = {}

-- Logs as [autoscale], whichever plugin's coroutine ran last.
local log = {}
for _, level in ipairs({ "debug", "info", "warn", "err" }) do
    log[level] = function(...)
        local saved = internal.plugin
        internal.plugin = "autoscale"
        mg.log[level](...)
        internal.plugin = saved
    end
end
_M.log = log

-- "60", 60, "60s", "500ms", "2m" -> seconds
local function seconds(v)
    if type(v) == "number" then return v end
    local n, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
    local mult = ({ [""] = 1, s = 1, ms = 0.001, m = 60 })[unit or "?"]
    return n and mult and tonumber(n) * mult
end
_M.seconds = seconds

local SETTINGS = {
    min = { type = "integer", default = 1, min = 0 },
    max = { type = "integer", default = 10, min = 1 },
    target = { type = "number", default = 10 },
    policy = { type = "string", default = "autoscale_target" },
    scale_down_window = { type = "number", default = 60, min = 0 },
    interval = { type = "number", default = 1, min = 0.1 },
    window = { type = "number", default = 10, min = 1 },       -- rates and latency
    inflight_window = { type = "number", default = 0, min = 0 }, -- in-flight: the mean over it (0: the last tick)
    drain_timeout = { type = "number", default = 30, min = 0 },
    opts = { type = "map" },                                   -- for the policy
    compose = { type = "map" },                                -- { project, service }
    swarm = { type = "map" },                                  -- { service = id or name }
    endpoint = { type = "string", default = "unix:///var/run/docker.sock" },
}

-- Validates a service's autoscale settings (at config load). dir: the
-- plugins folder the policy is looked up in; false: no lookup (the caller
-- checks the policy once it knows the folder).
function _M.settings(conf, dir)
    if type(conf) ~= "table" then return nil, "expected a table of settings" end
    local c = {}
    for k, v in pairs(conf) do c[k] = v end
    if c.scale_down_window ~= nil then
        c.scale_down_window = seconds(c.scale_down_window)
        if not c.scale_down_window then return nil, "scale_down_window: expected a duration like 60 or 60s" end
    end
    local s, err = schema.validate(SETTINGS, c)
    if not s then return nil, err end
    if s.target <= 0 then return nil, "target: expected a number > 0" end
    if s.min > s.max then return nil, "min (" .. s.min .. ") is above max (" .. s.max .. ")" end
    if s.compose and (type(s.compose.project) ~= "string" or type(s.compose.service) ~= "string") then
        return nil, "compose: expected { project = '...', service = '...' }"
    end
    if s.swarm and type(s.swarm.service) ~= "string" then
        return nil, "swarm: expected { service = 'id or name' }"
    end
    if dir == false then return s end
    local ok, perr = plugins.check(s.policy, dir, "autoscaler")
    if not ok then return nil, "policy: " .. perr end
    s.plugins_dir = dir
    return s
end

-- moongate.autoscale.* labels -> settings to validate, or nil when the
-- labels do not opt in (no moongate.autoscale.max nor .min).
function _M.from_labels(labels)
    local p = "moongate.autoscale."
    if not labels[p .. "max"] and not labels[p .. "min"] then return nil end
    local out = {}
    for _, k in ipairs({ "min", "max", "target", "interval", "window" }) do
        local v = labels[p .. k]
        if v ~= nil then out[k] = tonumber(v) or v end
    end
    out.policy = labels[p .. "policy"]
    out.scale_down_window = labels[p .. "scale_down_window"]
    return out
end

-- ---- one decision (shared with moongate.test.autoscale_kit) --------------

-- Asks policy for the replicas of service (settings) given metrics; keeps
-- its state in st.policy_state. Returns the clamped replicas and a reason.
function _M.decide(settings, policy, metrics, st)
    st.policy_state = st.policy_state or {}
    local ok, want, why = pcall(policy.decide, settings, metrics, st.policy_state)
    if not ok or type(want) ~= "number" or want ~= want then
        return metrics.desired or metrics.replicas, "policy failed: " .. tostring(ok and ("returned " .. tostring(want)) or want)
    end
    want = math.floor(want + 0.5)
    return math.max(settings.min, math.min(settings.max, want)), why
end

-- ---- figures -------------------------------------------------------------

local buf = ffi.new("double[?]", NCOUNTERS)

local function read_counters(suid)
    if not mg.in_gateway then return nil end
    local n = C.mg_ffi_target_counters(suid, buf, NCOUNTERS)
    if n < NCOUNTERS then return nil end
    local t = {}
    for i = 0, NCOUNTERS - 1 do t[i + 1] = buf[i] end
    return t
end

-- The q-quantile of a histogram of counts per LAT_BOUNDS bucket,
-- interpolated within its bucket (the last one reads as its lower bound).
local function quantile(counts, total, q)
    if total <= 0 then return 0 end
    local want, seen, lower = q * total, 0, 0
    for i, n in ipairs(counts) do
        if seen + n >= want and n > 0 then
            local upper = LAT_BOUNDS[i]
            if upper == math.huge then return lower end
            return lower + (upper - lower) * (want - seen) / n
        end
        seen = seen + n
        lower = LAT_BOUNDS[i]
    end
    return lower
end
_M.quantile = quantile

-- Appends one sample of the service's counters to st.samples.
local function sample(svc, st, now)
    local s = { at = now, requests = 0, s5xx = 0, connect = 0, lat = {}, inflight = 0 }
    for i = 1, #LAT_BOUNDS do s.lat[i] = 0 end
    local prev = st.counters or {}
    local counters = {}
    for _, t in ipairs(svc.targets) do
        local c = read_counters(t.suid)
        if c then
            counters[t.suid] = c
            local p = prev[t.suid]
            if p then
                s.requests = s.requests + c[1] - p[1]
                s.s5xx = s.s5xx + c[7] - p[7]
                s.connect = s.connect + c[8] - p[8]
                for i = 1, #LAT_BOUNDS do s.lat[i] = s.lat[i] + c[9 + i] - p[9 + i] end
            end
        end
    end
    s.inflight = st.acc_n and st.acc_n > 0 and st.acc_inflight / st.acc_n or 0
    st.acc_inflight, st.acc_n = 0, 0
    st.counters = counters
    s.queued = mg.in_gateway and C.mg_ffi_held(svc.name) or 0
    local list = st.samples
    list[#list + 1] = s
    while #list > 1 and list[1].at < now - svc.autoscale.window do table.remove(list, 1) end
end

-- What a policy sees of a service. Rates are over the samples of the last
-- `window` seconds; in-flight is the mean of the samples of the last
-- `inflight_window` seconds (each sample is itself the mean of the 100 ms
-- readings of its tick), the last tick's by default.
function _M.metrics(samples, opts)
    local now = opts.now
    local m = { now = now, replicas = opts.replicas, desired = opts.desired,
                since_change = opts.since_change, min = opts.min, max = opts.max }
    local req, s5xx, conn, lat = 0, 0, 0, {}
    for i = 1, #LAT_BOUNDS do lat[i] = 0 end
    local first, inflight, nin = nil, 0, 0
    for _, s in ipairs(samples) do
        first = first or s.at
        req, s5xx, conn = req + s.requests, s5xx + s.s5xx, conn + s.connect
        for i = 1, #LAT_BOUNDS do lat[i] = lat[i] + s.lat[i] end
        if s.at > now - math.max(opts.inflight_window or 0, opts.interval or 1) + 1e-9 then inflight, nin = inflight + s.inflight, nin + 1 end
    end
    local last = samples[#samples] or {}
    local span = math.max(opts.interval or 1, first and (now - first + (opts.interval or 1)) or 1)
    m.rps = req / span
    m.inflight = nin > 0 and inflight / nin or 0
    m.inflight_now = last.inflight or 0
    m.queued = last.queued or 0
    m.inflight_per_replica = (m.inflight + m.queued) / math.max(m.replicas, 1)
    m.p50 = quantile(lat, req, 0.5)
    m.p95 = quantile(lat, req, 0.95)
    m.error_rate = req > 0 and s5xx / req or 0
    m.connect_failure_rate = (req + conn) > 0 and conn / (req + conn) or 0
    return m
end

-- ---- the controller ------------------------------------------------------

local services = {}  -- name -> { name, autoscale, targets, st }
local states = {}    -- name -> state kept across reloads
local generation = 0
local actuators = {}
_M.services = services

local function actuator_for(a)
    local kind = a.swarm and "swarm" or a.compose and "compose"
    if not kind then return nil end
    actuators[kind] = actuators[kind] or require("moongate.autoscale_" .. kind)
    return actuators[kind]
end

-- Adds one reading of the service's requests in flight (every 100 ms).
local function read_inflight(svc, st)
    if not mg.in_gateway then return end
    local n = 0
    for _, t in ipairs(svc.targets) do n = n + C.mg_ffi_inflight(t.uid) end
    st.acc_inflight, st.acc_n = (st.acc_inflight or 0) + n, (st.acc_n or 0) + 1
end

local function note(svc, st, m)
    if not mg.in_gateway then return end
    local a = svc.autoscale
    local v = ffi.new("double[12]", { st.desired, m.replicas, a.min, a.max, m.rps, m.inflight,
        m.inflight_per_replica, m.queued, m.p50, m.p95, m.error_rate, m.connect_failure_rate })
    C.mg_ffi_autoscale_note(svc.name, v, 12, mg.json.encode(st.decisions))
end

local function fmt(m)
    return string.format("replicas %d, in-flight %.1f (%.1f per replica), queued %d, %.1f req/s, "
        .. "p50 %.0f ms, p95 %.0f ms, 5xx %.1f%%, connect failures %.1f%%, %.0f s since the last change",
        m.replicas, m.inflight, m.inflight_per_replica, m.queued, m.rps, m.p50 * 1000, m.p95 * 1000,
        m.error_rate * 100, m.connect_failure_rate * 100, m.since_change)
end

-- Starts the actuator when the replicas differ from the decision (again
-- every 5 s while they still do: a container may have failed to start).
local function actuate(svc, st, now)
    local act = actuator_for(svc.autoscale)
    if not act or st.acting then return end
    local stale = now - (st.applied_at or -1e9) > 5
    if st.applied == st.desired and (#svc.targets == st.desired or not stale) then return end
    st.acting, st.applied, st.applied_at = true, st.desired, now
    local gen = generation
    mg.spawn(function()
        local ok, err = pcall(act.apply, svc, st.desired, _M.env)
        st.acting = false
        st.applied_at = mg.now()
        if not ok or err then
            log.err("service ", svc.name, ": ", tostring(err))
            if gen == generation then st.applied = nil end
        end
    end)
end

local function tick(svc, now)
    local st = svc.st
    local a = svc.autoscale
    sample(svc, st, now)
    local replicas = #svc.targets
    st.desired = st.desired or math.max(a.min, math.min(a.max, replicas))
    st.changed_at = st.changed_at or now
    local m = _M.metrics(st.samples, { now = now, replicas = replicas, desired = st.desired,
        since_change = now - st.changed_at, inflight_window = a.inflight_window,
        interval = a.interval, min = a.min, max = a.max })
    local want, why = _M.decide(a, svc.policy, m, st)
    local inputs = fmt(m)
    if want ~= st.desired then
        log.info("service ", svc.name, ": ", st.desired, " -> ", want, " replicas (",
            tostring(why or "policy"), "): ", inputs)
        table.insert(st.decisions, 1, { at = os.time(), from = st.desired, to = want,
            reason = tostring(why or ""), inputs = inputs })
        while #st.decisions > 10 do table.remove(st.decisions) end
        st.desired, st.changed_at = want, now
    else
        log.debug("service ", svc.name, ": keeps ", want, " replicas: ", inputs)
    end
    note(svc, st, m)
    actuate(svc, st, now)
end

-- services: the control plane's view of the newest snapshot (core/control.c):
-- { { name, autoscale = settings | nil, targets = { { id, address, suid, uid } } } }
function _M.configure(list)
    generation = generation + 1
    local gen = generation
    local seen = {}
    for k in pairs(services) do services[k] = nil end
    for _, s in ipairs(list) do
        if s.autoscale then
            local policy, err = plugins.load(s.autoscale.policy, s.autoscale.plugins_dir, "autoscaler")
            if not policy then
                log.err("service ", s.name, ": autoscale policy: ", err)
            else
                local st = states[s.name] or { samples = {}, decisions = {} }
                states[s.name] = st
                s.autoscale.name = s.name
                services[s.name] = { name = s.name, autoscale = s.autoscale, targets = s.targets,
                                     policy = policy, st = st }
                seen[s.name] = true
            end
        end
    end
    for name in pairs(states) do
        if not seen[name] then
            states[name] = nil
            if mg.in_gateway then C.mg_ffi_autoscale_note(name, ffi.new("double[1]", -1), 1, nil) end
        end
    end
    if not next(services) then return end
    mg.spawn(function()
        -- a short step, so that a service at zero wakes on its first held request
        while gen == generation do
            local now = mg.now()
            for _, svc in pairs(services) do
                local st = svc.st
                read_inflight(svc, st)
                local waking = st.desired == 0 and mg.in_gateway and C.mg_ffi_held(svc.name) > 0
                if now >= (st.next_tick or 0) or waking then
                    st.next_tick = now + svc.autoscale.interval
                    local ok, err = pcall(tick, svc, now)
                    if not ok then log.err("service ", svc.name, ": ", tostring(err)) end
                end
            end
            mg.sleep(0.1)
        end
    end)
end

function _M.stop()
    generation = generation + 1
end

-- ---- what actuators may use ----------------------------------------------

-- Takes the target with id out of discovery (no new requests), waits until
-- its requests in flight are done (up to timeout s). Returns true when idle.
local function drain(service, id, timeout)
    local discovery = require("moongate.discovery")
    discovery.exclude(id, true)
    local deadline = mg.now() + (timeout or 30)
    local uid
    for _, t in ipairs((services[service] or {}).targets or {}) do
        if t.id == id then uid = t.uid end
    end
    while mg.now() < deadline do
        local present = false
        for _, t in ipairs((services[service] or {}).targets or {}) do
            if t.id == id then present = true end
        end
        if not present and (not uid or not mg.in_gateway or C.mg_ffi_inflight(uid) == 0) then return true end
        mg.sleep(0.1)
    end
    return false
end

_M.env = {
    drain = drain,
    forget = function(id) require("moongate.discovery").exclude(id, nil) end,
}

return _M
