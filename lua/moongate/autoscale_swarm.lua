-- The Swarm actuator: sets a replicated service's replicas with
-- POST /services/{id}/update?version=N, sending back the spec it read with
-- only Mode.Replicated.Replicas changed (settings.swarm = { service = id
-- or name }). The version makes the update fail rather than overwrite a
-- change made meanwhile (a `docker service update` by a person): the next
-- tick reads the new spec and tries again. Swarm stops the tasks it
-- removes; the discovery provider drops a task's target on its stop event.
local compose = require("moongate.autoscale_compose")
local log = require("moongate.autoscale").log

local _M = {}

local function urlencode(s)
    return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Returns nil on success, or an error.
function _M.apply(svc, desired)
    local a = svc.autoscale
    local api, err = compose.connect(a.endpoint)
    if not api then return err end
    local s
    s, err = compose.engine(api, "GET", "/services/" .. urlencode(a.swarm.service))
    if not s then return err end
    local spec = s.Spec or {}
    local rep = spec.Mode and spec.Mode.Replicated
    if not rep then return "swarm service " .. a.swarm.service .. " is not replicated" end
    if rep.Replicas == desired then return nil end
    local before = rep.Replicas
    rep.Replicas = desired
    -- Lua cannot tell [] from {}: empty fields go, the Engine reads their defaults
    local body = compose.prune(spec) or {}
    body.Mode = { Replicated = { Replicas = desired } }
    local ok
    ok, err = compose.engine(api, "POST", "/services/" .. s.ID .. "/update?version=" .. s.Version.Index, body)
    if not ok then return err end
    log.info("service ", svc.name, ": swarm service ", spec.Name or a.swarm.service, " ", tostring(before),
        " -> ", desired, " replicas (version ", s.Version.Index, ")")
    return nil
end

return _M
