-- Sticky sessions by cookie: the first answer sets a cookie naming the
-- target (by a hash of its id, not its address); later requests carrying it
-- go to the same target while it exists and has not failed this request.
-- Otherwise: smooth weighted round robin, and a new cookie.
--   balancer_opts = { cookie = "mg_sticky", max_age = 3600 }
local mg = require("moongate")

local _M = { type = "balancer" }

local function fnv(s)
    return string.format("%08x", mg.hash(s))
end

function _M.new(targets, opts)
    opts = opts or {}
    local by_token, token_of, current = {}, {}, {}
    for i, t in ipairs(targets) do
        local tok = fnv(t.id)
        by_token[tok] = t
        token_of[t] = tok
        current[i] = 0
    end
    return { targets = targets, by_token = by_token, token_of = token_of, current = current,
             cookie = opts.cookie or "mg_sticky", max_age = opts.max_age }
end

function _M.pick(state, req)
    local tried = req.tried
    local pinned = state.by_token[req:cookie(state.cookie) or ""]
    if pinned and not tried[pinned] then return pinned end
    local best = mg.smooth_pick(state.targets, state.current, tried)
    local t = best and state.targets[best]
    if t then
        local v = state.cookie .. "=" .. state.token_of[t] .. "; Path=/; HttpOnly"
        if state.max_age then v = v .. "; Max-Age=" .. state.max_age end
        req:add_response_header("Set-Cookie", v)
    end
    return t
end

return _M
