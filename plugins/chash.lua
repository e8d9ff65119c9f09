-- Consistent hashing: the same key goes to the same target, and adding or
-- removing a target moves only about 1/n of the keys. The key is the client
-- IP (default), a header (hash_on = "header", header = "X-User") or a
-- cookie (hash_on = "cookie", cookie = "session"). A ring holds `points`
-- virtual nodes (default 160) per unit of weight; a tried target is
-- skipped by walking the ring to the next one.
local mg = require("moongate")

local _M = { type = "balancer" }

local hash = mg.hash

function _M.new(targets, opts)
    opts = opts or {}
    local points = opts.points or 160
    local ring = {}
    for _, t in ipairs(targets) do
        for k = 1, points * t.weight do
            ring[#ring + 1] = { h = hash(t.id .. "#" .. k), t = t }
        end
    end
    table.sort(ring, function(a, b) return a.h < b.h end)
    return { ring = ring, hash_on = opts.hash_on or "ip", header = opts.header, cookie = opts.cookie,
             ntargets = #targets }
end

local function key_of(state, req)
    if state.hash_on == "header" then return req:header(state.header or "X-Hash-Key") end
    if state.hash_on == "cookie" then return req:cookie(state.cookie or "session") end
    return req.client_ip
end

-- First ring position whose hash is >= h (binary search).
local function find(ring, h)
    local lo, hi = 1, #ring
    if h > ring[hi].h then return 1 end
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if ring[mid].h < h then lo = mid + 1 else hi = mid end
    end
    return lo
end

function _M.pick(state, req)
    local ring = state.ring
    if #ring == 0 then return nil end
    local pos = find(ring, hash(key_of(state, req) or ""))
    local tried = req.tried
    for k = 0, #ring - 1 do
        local t = ring[(pos - 1 + k) % #ring + 1].t
        if not tried[t] then return t end
    end
    return nil
end

return _M
