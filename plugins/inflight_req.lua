-- Caps the requests in flight per source (Traefik's inFlightReq): past
-- `amount` at once from one source, a request is answered 429.
--   { plugin = "inflight_req", amount = 10,
--     key = "ip" | "header" | "host", header = "X-Api-Key", depth = 0, excluded_ips = {...} }
-- The source is the client address (with depth / excluded_ips read from
-- X-Forwarded-For, as ip_allowlist), a header's value, or the Host.
-- Counts live in each worker (a worker sees the connections the kernel
-- gave it); gateway = true counts one total for all sources across every
-- worker instead (mg.counter).
local mg = require("moongate")
local ipnet = require("moongate.ipnet")

local _M = {
    type = "middleware",
    priority = 1050,
    schema = {
        amount = { type = "integer", required = true, min = 1 },
        key = { type = "string", default = "ip", one_of = { "ip", "header", "host" } },
        header = { type = "string", default = "X-Api-Key" },
        depth = { type = "integer", default = 0, min = 0 },
        excluded_ips = { type = "array", check = function(v)
            local ok, err = ipnet.set(v)
            return ok and true, err
        end },
        gateway = { type = "boolean", default = false },
    },
}

local instances = 0

function _M.init(conf)
    local crit = { depth = conf.depth, excluded = conf.excluded_ips and assert(ipnet.set(conf.excluded_ips)),
                   header = conf.key == "header" and conf.header or nil, host = conf.key == "host" or nil }
    instances = instances + 1
    local c = { amount = conf.amount, crit = crit, counts = {}, id = "inflight_req" .. instances }
    if conf.gateway then
        -- one name per option set: two middlewares alike share the count
        c.shared = mg.counter("inflight_req:" .. mg.hash(require("moongate.plugins").serialize(conf)))
    end
    return c
end

function _M.on_request(conf, req)
    if conf.shared then
        if conf.shared:add(1) > conf.amount then
            conf.shared:add(-1)
            return req:respond(429, "Too Many Requests\n", { ["Retry-After"] = "1" })
        end
        req.ctx[conf.id] = true
        return
    end
    local key = ipnet.key(req, conf.crit) or "-"
    local n = (conf.counts[key] or 0) + 1
    if n > conf.amount then
        return req:respond(429, "Too Many Requests\n", { ["Retry-After"] = "1" })
    end
    conf.counts[key] = n
    req.ctx[conf.id] = key
end

function _M.on_log(conf, req)
    local key = req.ctx[conf.id]
    if key == nil then return end
    req.ctx[conf.id] = nil
    if conf.shared then conf.shared:add(-1); return end
    local n = conf.counts[key] - 1
    conf.counts[key] = n > 0 and n or nil
end

return _M
