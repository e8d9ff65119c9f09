-- The Swarm actuator: sets a replicated service's replicas with
-- POST /services/{id}/update?version=N (settings.swarm = { service = id
-- or name }). The version makes the update fail rather than overwrite a
-- change made meanwhile (a `docker service update` by a person): the next
-- tick reads the new spec and tries again.
--
-- The spec goes back as the JSON the engine gave, with only
-- Mode.Replicated.Replicas rewritten (mg.json.edit, on jansson's tree): Lua
-- tables cannot tell [] from {} nor keep a null, and a spec that differs in anything else (an empty
-- Resources or Placement left out) makes Swarm replace every task of the
-- service, a rolling update on each scaling step.
--
-- Swarm picks the tasks it removes and stops them itself (SIGTERM, then
-- SIGKILL after stop_grace_period): the swarm provider takes a task out
-- of discovery as soon as its desired state leaves running, and the
-- requests already in flight are the task's to finish on SIGTERM.
local compose = require("moongate.autoscale_compose")
local log = require("moongate.autoscale").log

local _M = {}

local function urlencode(s)
    return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- raw: the text of GET /services/{id}. Returns the text of its Spec with
-- Mode.Replicated.Replicas set to n and nothing else changed, or nil, err.
function _M.with_replicas(raw, n)
    local json = require("moongate").json
    local spec = json.member(raw, { "Spec" })
    if not spec then return nil, "no Spec in the service" end
    if not json.member(spec, { "Mode", "Replicated" }) then return nil, "the service is not replicated" end
    return json.edit(spec, { "Mode", "Replicated", "Replicas" }, n)
end

-- Returns nil on success, or an error.
function _M.apply(svc, desired)
    local a = svc.autoscale
    local api, err = compose.connect(a.endpoint)
    if not api then return err end
    local raw
    raw, err = compose.engine(api, "GET", "/services/" .. urlencode(a.swarm.service), nil, true)
    if not raw then return err end
    local s = require("moongate").json.decode(raw)
    local spec = type(s) == "table" and s.Spec or {}
    local rep = spec.Mode and spec.Mode.Replicated
    if not rep then return "swarm service " .. a.swarm.service .. " is not replicated" end
    if rep.Replicas == desired then return nil end
    local body
    body, err = _M.with_replicas(raw, desired)
    if not body then return "swarm service " .. a.swarm.service .. ": " .. err end
    local ok
    ok, err = compose.engine(api, "POST", "/services/" .. s.ID .. "/update?version=" .. s.Version.Index, body)
    if not ok then return err end
    log.info("service ", svc.name, ": swarm service ", spec.Name or a.swarm.service, " ", tostring(rep.Replicas),
        " -> ", desired, " replicas (version ", s.Version.Index, ")")
    return nil
end

return _M
