-- Token-bucket rate limiting per key (the client IP by default, or a header).
--   { plugin = "rate_limit", rate = 10, burst = 20, key = "ip" | "header", header = "X-Api-Key" }
-- rate: tokens added per second; burst: bucket size. Over the limit: 429
-- with Retry-After. Buckets live in each worker: with N workers, a client
-- whose connections land on different workers can get up to N times the
-- rate (as Kong's "local" policy); use workers = 1 for an exact limit.
local mg = require("moongate")

local _M = {
    type = "middleware",
    priority = 1100,
    schema = {
        rate = { type = "number", required = true, min = 0.001 },
        burst = { type = "number", default = 0 },
        key = { type = "string", default = "ip", one_of = { "ip", "header" } },
        header = { type = "string", default = "X-Api-Key" },
        max_keys = { type = "integer", default = 100000, min = 1 },
    },
}

function _M.init(conf)
    local state = {}
    for k, v in pairs(conf) do state[k] = v end
    if state.burst <= 0 then state.burst = math.max(1, state.rate) end
    state.buckets = {}
    state.nkeys = 0
    return state
end

function _M.on_request(conf, req)
    local key = conf.key == "ip" and req.client_ip or (req:header(conf.header) or "-")
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
    if b.tokens < 1 then
        local wait = math.ceil((1 - b.tokens) / conf.rate)
        req:respond(429, "too many requests\n", { ["Retry-After"] = tostring(wait) })
        return
    end
    b.tokens = b.tokens - 1
end

return _M
