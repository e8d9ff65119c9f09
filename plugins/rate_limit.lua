-- Token-bucket rate limiting per key (the client IP by default, a header,
-- or the Host), or one bucket for the whole gateway.
--   { plugin = "rate_limit", rate = 10, burst = 20, key = "ip" | "header" | "host",
--     header = "X-Api-Key", depth = 0, excluded_ips = {...}, bucket = "api-total" }
-- rate: tokens added per second; burst: bucket size. Over the limit: 429
-- with Retry-After. Per-key buckets live in each worker: with N workers, a
-- client whose connections land on different workers can get up to N
-- times the rate (as Kong's "local" policy). bucket = "NAME" makes one
-- bucket for every request through this middleware, shared by all workers
-- (gateway-wide counters, exact): a cap on what reaches the backend.
local mg = require("moongate")
local ipnet = require("moongate.ipnet")

local _M = {
    type = "middleware",
    priority = 1100,
    schema = {
        rate = { type = "number", required = true, min = 0.001 },
        burst = { type = "number", default = 0 },
        key = { type = "string", default = "ip", one_of = { "ip", "header", "host" } },
        header = { type = "string", default = "X-Api-Key" },
        depth = { type = "integer", default = 0, min = 0 },
        excluded_ips = { type = "array", check = function(v)
            local ok, err = ipnet.set(v)
            return ok and true, err
        end },
        max_keys = { type = "integer", default = 100000, min = 1 },
        bucket = { type = "string" },
    },
}

local floor, ceil = math.floor, math.ceil
local MILLI = 1000 -- the shared bucket counts thousandths of a token

function _M.init(conf)
    local state = {}
    for k, v in pairs(conf) do state[k] = v end
    if state.burst <= 0 then state.burst = math.max(1, state.rate) end
    state.crit = { depth = conf.depth, excluded = conf.excluded_ips and assert(ipnet.set(conf.excluded_ips)),
                   header = conf.key == "header" and conf.header or nil, host = conf.key == "host" or nil }
    state.buckets = {}
    state.nkeys = 0
    if conf.bucket then
        -- rate and burst in the name: a reload with other numbers starts afresh
        local name = "rate_limit:" .. conf.bucket .. ":" .. state.rate .. ":" .. state.burst
        state.taken = mg.counter(name)
        state.lock = mg.counter(name .. ":lock")
    end
    return state
end

-- One bucket for all workers, with atomic adds only. `taken` counts the
-- milli-tokens handed out since the monotonic clock's zero; the tokens
-- made by now are rate * now. A request may take one while taken stays
-- at or below that; a full bucket (idle time) moves `taken` up to
-- made - burst, and only the worker holding the try-lock does that.
local function shared_take(conf)
    local made = floor(mg.now() * conf.rate * MILLI)
    local floor_taken = made - floor(conf.burst * MILLI)
    if conf.taken:get() < floor_taken then
        if conf.lock:add(1) == 1 then
            local t = conf.taken:get()
            if t < floor_taken then conf.taken:add(floor_taken - t) end
        end
        conf.lock:add(-1)
    end
    local after = conf.taken:add(MILLI)
    if after <= made then return true end
    conf.taken:add(-MILLI)
    return false, (after - made) / (conf.rate * MILLI)
end

local function local_take(conf, key)
    local now = mg.now()
    local b = conf.buckets[key]
    if not b then
        if conf.nkeys >= conf.max_keys then
            conf.buckets, conf.nkeys = {}, 0 -- a flood of keys: start over rather than grow
        end
        b = { tokens = conf.burst, at = now }
        conf.buckets[key] = b
        conf.nkeys = conf.nkeys + 1
    end
    b.tokens = math.min(conf.burst, b.tokens + (now - b.at) * conf.rate)
    b.at = now
    if b.tokens < 1 then return false, (1 - b.tokens) / conf.rate end
    b.tokens = b.tokens - 1
    return true
end

function _M.on_request(conf, req)
    local ok, wait
    if conf.taken then
        ok, wait = shared_take(conf)
    else
        ok, wait = local_take(conf, ipnet.key(req, conf.crit) or "-")
    end
    if not ok then
        req:respond(429, "too many requests\n", { ["Retry-After"] = tostring(math.max(1, ceil(wait))) })
    end
end

return _M
