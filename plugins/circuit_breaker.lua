-- Traefik's circuitBreaker: watches the answers of this route and, when
-- `expression` holds, answers `response_code` (503) itself for
-- `fallback_duration`, then lets a growing share of requests through for
-- `recovery_duration` before it closes again (tripping again if the
-- expression holds meanwhile).
--   { plugin = "circuit_breaker", expression = "NetworkErrorRatio() > 0.5",
--     check_period = 0.1, fallback_duration = 10, recovery_duration = 10, response_code = 503 }
-- Metrics are over the last 10 seconds, per worker. A network error is a
-- request the gateway answered itself because no backend answered (502,
-- 504); it also counts as that status for ResponseCodeRatio.
local mg = require("moongate")
local expr = require("moongate.breaker_expr")

local _M = {
    type = "middleware",
    priority = 1040,
    schema = {
        expression = { type = "string", required = true, check = function(v)
            local f, err = expr.compile(v)
            return f and true, err
        end },
        check_period = { type = "number", default = 0.1, min = 0 },
        fallback_duration = { type = "number", default = 10, min = 0 },
        recovery_duration = { type = "number", default = 10, min = 0 },
        response_code = { type = "integer", default = 503, min = 200, max = 599 },
    },
}

local floor = math.floor
local BUCKETS, WIDTH = 10, 1 -- seconds
local MAX_SAMPLES = 512      -- latencies kept per bucket

-- A rolling window of per-second buckets.
local Metrics = {}
Metrics.__index = Metrics

local function new_bucket() return { n = 0, neterr = 0, codes = {}, lat = {} } end

local function new_metrics()
    local m = setmetatable({ buckets = {}, at = {} }, Metrics)
    for i = 1, BUCKETS do m.buckets[i], m.at[i] = new_bucket(), -1 end
    return m
end

function Metrics:bucket(now)
    local slot = floor(now / WIDTH)
    local i = slot % BUCKETS + 1
    if self.at[i] ~= slot then self.buckets[i], self.at[i] = new_bucket(), slot end
    return self.buckets[i]
end

function Metrics:record(now, status, neterr, latency)
    local b = self:bucket(now)
    b.n = b.n + 1
    if neterr then b.neterr = b.neterr + 1 end
    b.codes[status] = (b.codes[status] or 0) + 1
    if #b.lat < MAX_SAMPLES then b.lat[#b.lat + 1] = latency end
end

function Metrics:each(fn)
    local newest = floor(self.now / WIDTH)
    for i = 1, BUCKETS do
        if self.at[i] > newest - BUCKETS then fn(self.buckets[i]) end
    end
end

function Metrics:network_error_ratio()
    local n, e = 0, 0
    self:each(function(b) n, e = n + b.n, e + b.neterr end)
    return n > 0 and e / n or 0
end

-- Share of answers with codes in [from, to) among those in [dfrom, dto).
function Metrics:response_code_ratio(from, to, dfrom, dto)
    local num, den = 0, 0
    self:each(function(b)
        for code, k in pairs(b.codes) do
            if code >= from and code < to then num = num + k end
            if code >= dfrom and code < dto then den = den + k end
        end
    end)
    return den > 0 and num / den or 0
end

function Metrics:latency_at_quantile_ms(q)
    local all = {}
    self:each(function(b) for _, v in ipairs(b.lat) do all[#all + 1] = v end end)
    if #all == 0 then return 0 end
    table.sort(all)
    local i = math.max(1, math.min(#all, math.ceil(#all * q / 100)))
    return all[i] * 1000
end

local instances = 0

function _M.init(conf)
    instances = instances + 1
    local c = {}
    for k, v in pairs(conf) do c[k] = v end
    c.trips = assert(expr.compile(conf.expression))
    c.metrics = new_metrics()
    c.state, c.since, c.checked = "closed", 0, -math.huge
    c.id = "circuit_breaker" .. instances
    c.tried, c.let = 0, 0
    return c
end

local function trip(conf, now)
    conf.state, conf.since = "open", now
    conf.metrics = new_metrics() -- recovery is judged on what comes after
    mg.log.warn("circuit breaker open: ", conf.expression)
end

-- Moves between states with time; returns whether this request may pass.
local function allow(conf, now)
    if conf.state == "open" then
        if now - conf.since < conf.fallback_duration then return false end
        conf.state, conf.since, conf.tried, conf.let = "recovering", now, 0, 0
    end
    if conf.state == "recovering" then
        local share = conf.recovery_duration > 0 and (now - conf.since) / conf.recovery_duration or 1
        if share >= 1 then
            conf.state = "closed"
            mg.log.info("circuit breaker closed: ", conf.expression)
            return true
        end
        conf.tried = conf.tried + 1
        -- at least one probe, then the share grows linearly with time
        if conf.let == 0 or conf.let < conf.tried * share then
            conf.let = conf.let + 1
            return true
        end
        return false
    end
    return true
end

function _M.on_request(conf, req)
    local now = mg.now()
    if not allow(conf, now) then
        return req:respond(conf.response_code, "Service Unavailable\n", { ["Content-Type"] = "text/plain" })
    end
    req.ctx[conf.id] = now
end

function _M.on_response(conf, req)
    if req.ctx[conf.id] then req.ctx[conf.id .. "r"] = true end
end

function _M.on_log(conf, req, res)
    local started = req.ctx[conf.id]
    if not started then return end
    local now = mg.now()
    local status = res.status
    local neterr = not req.ctx[conf.id .. "r"] and status >= 500
    conf.metrics:record(now, status, neterr, now - started)
    if conf.state ~= "open" and now - conf.checked >= conf.check_period then
        conf.checked = now
        conf.metrics.now = now
        if conf.trips(conf.metrics) then trip(conf, now) end
    end
end

return _M
