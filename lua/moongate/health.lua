-- Active health checks, run by the control plane (main thread). For every
-- service with `health` settings, each target is probed at once and then
-- every `interval` seconds by the service's health plugin (default
-- health_http); `unhealthy` consecutive failures mark it down, `healthy`
-- consecutive successes mark it up again. Workers skip targets marked down
-- unless all of a service's targets are down (panic mode). State is kept
-- per (service, target) across reloads.
local plugins = require("moongate.plugins")
local schema = require("moongate.schema")
local mg = require("moongate")
local core = require("moongate.ffi")
local internal = require("moongate.internal")

-- the reason and the time of a change are shown by the admin API
local set_health = core.in_gateway and core.C.mg_ffi_set_health or function() end

local _M = {}

local SETTINGS = {
    plugin = { type = "string", default = "health_http" },
    path = { type = "string", default = "/" },
    method = { type = "string", default = "GET" },
    host = { type = "string" },
    statuses = { type = "array", default = {} },
    interval = { type = "number", default = 5, min = 0.05 },
    timeout = { type = "number", default = 2, min = 0.01 },
    healthy = { type = "integer", default = 2, min = 1 },
    unhealthy = { type = "integer", default = 3, min = 1 },
    active = { type = "boolean", default = true },
    -- passive: eject a target after this many consecutive failures seen by
    -- the workers (5xx, timeouts, connect errors); 0 turns it off
    passive_failures = { type = "integer", default = 3, min = 0 },
    passive_cooldown = { type = "number", default = 5, min = 0.1 },
}

-- Validates a service's health settings (control side, at config load).
function _M.settings(conf, dir)
    local s, err = schema.validate(SETTINGS, conf)
    if not s then return nil, err end
    local ok, perr = plugins.check(s.plugin, dir, "health")
    if not ok then return nil, perr end
    s.plugins_dir = dir
    return s
end

local state = {}     -- suid -> { up = bool|nil, ok = n, fail = n, reason = "..." }
local generation = 0
_M.state = state

local function service_all_down(svc)
    for _, t in ipairs(svc.targets) do
        local st = state[t.suid]
        if not st or st.up ~= false then return false end
    end
    return true
end

local function record(svc, t, ok, reason, hc)
    local st = state[t.suid]
    if not st then
        st = { ok = 0, fail = 0 }
        state[t.suid] = st
    end
    if ok then
        st.ok, st.fail = st.ok + 1, 0
        -- a target never checked before is up at its first success
        if st.up ~= true and (st.up == nil or st.ok >= hc.healthy) then
            st.up = true
            set_health(t.suid, 1, nil)
            mg.log.info("service ", svc.name, ": target ", t.address, " is up")
        end
    else
        st.fail, st.ok = st.fail + 1, 0
        st.reason = reason
        if st.up ~= false and st.fail >= hc.unhealthy then
            st.up = false
            set_health(t.suid, 2, tostring(reason))
            mg.log.warn("service ", svc.name, ": target ", t.address, " is down: ", tostring(reason))
            if service_all_down(svc) then
                mg.log.warn("service ", svc.name, ": every target is down; sending traffic to all of them (panic mode)")
            end
        end
    end
end

-- services: { { name, health = settings | nil, targets = { { address, ip, port, suid, id, host } } } }
function _M.configure(services)
    generation = generation + 1
    local gen = generation
    for _, svc in ipairs(services) do
        local hc = svc.health
        if not hc or not hc.active then
            for _, t in ipairs(svc.targets) do
                state[t.suid] = nil
                set_health(t.suid, 0, nil)
            end
        else
            local plugin, err = plugins.load(hc.plugin, hc.plugins_dir, "health")
            if not plugin then
                mg.log.err("service ", svc.name, ": health plugin: ", err)
            else
                for _, t in ipairs(svc.targets) do
                    mg.spawn(function()
                        while gen == generation do
                            internal.plugin = plugin.name -- its log lines and timers
                            local ok, why = plugin.check(t, hc)
                            if gen ~= generation then return end
                            record(svc, t, ok, why, hc)
                            mg.sleep(hc.interval)
                        end
                    end)
                end
            end
        end
    end
end

function _M.stop()
    generation = generation + 1
end

return _M
