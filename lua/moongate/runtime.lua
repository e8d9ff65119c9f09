-- The worker side of the plugin runtime: holds each service's balancer
-- state for the current snapshot and answers the core's pick calls.
-- Called from C (core/lua_bridge.c) only.
local plugins = require("moongate.plugins")

local _M = {}

local select, error = select, error
local services = {}   -- C service index (0-based) -> { pick, state, targets, index_of }
local loaded = {}     -- balancer name -> plugin table
local plugins_dir

-- An empty, read-only `tried` shared by every first try.
local NONE = setmetatable({}, {
    __newindex = function() error("req.tried is read-only", 2) end,
})

-- The request as a balancer sees it. One table per worker, valid only
-- during the pick call; the fields a balancer may read are documented in
-- docs/plugins.md.
local req = { tried = NONE }

function _M.init(worker_id, dir)
    _M.worker_id = worker_id
    plugins_dir = dir
end

function _M.set_service(idx, name, balancer, opts_literal, targets)
    local mod = loaded[balancer]
    if not mod then
        local err
        mod, err = plugins.load(balancer, plugins_dir, "balancer")
        if not mod then
            services[idx] = nil
            error(err, 0)
        end
        loaded[balancer] = mod
    end
    local index_of = {}
    for i = 1, #targets do index_of[targets[i]] = i end
    services[idx] = nil
    local state = mod.new(targets, plugins.deserialize(opts_literal), { name = name })
    services[idx] = {
        name = name, mod = mod, pick = mod.pick, state = state,
        targets = targets, index_of = index_of,
    }
end

function _M.clear_from(n)
    for k in pairs(services) do
        if k >= n then services[k] = nil end
    end
end

-- Returns the 0-based index of the picked target, -1 when the balancer
-- returned nothing, -2 when the service has no working balancer.
function _M.pick(idx, ntried, ...)
    local s = services[idx]
    if not s then return -2 end
    local tried = NONE
    if ntried > 0 then
        tried = {}
        local targets = s.targets
        for i = 1, ntried do
            local t = targets[select(i, ...) + 1]
            tried[i] = t
            tried[t] = true
        end
    end
    req.tried = tried
    local t = s.pick(s.state, req)
    if t == nil then return -1 end
    local i = s.index_of[t]
    if not i then
        error("balancer '" .. s.mod.name .. "' returned a value that is not one of its targets", 0)
    end
    return i - 1
end

return _M
