-- The Swarm actuator: sets a replicated service's replicas with
-- POST /services/{id}/update?version=N (settings.swarm = { service = id
-- or name }). The version makes the update fail rather than overwrite a
-- change made meanwhile (a `docker service update` by a person): the next
-- tick reads the new spec and tries again.
--
-- The spec goes back as the very JSON text the engine gave, with only
-- Mode.Replicated.Replicas rewritten: Lua tables cannot tell [] from {} nor
-- keep a null, and a spec that differs in anything else (an empty
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

-- ---- editing one value in JSON text --------------------------------------

local function skip_ws(s, i) return s:find("[^ \t\r\n]", i) or #s + 1 end

-- s:sub(i, i) is '"': the index of its closing quote
local function string_end(s, i)
    local j = i + 1
    while true do
        local q = s:find('["\\]', j)
        if not q then return nil end
        if s:sub(q, q) == "\\" then j = q + 2 else return q end
    end
end

-- the index of the last character of the value that starts at i
local function value_end(s, i)
    local c = s:sub(i, i)
    if c == '"' then return string_end(s, i) end
    if c == "{" or c == "[" then
        local depth, j = 0, i
        while true do
            local k = s:find('[{}%[%]"]', j)
            if not k then return nil end
            local ch = s:sub(k, k)
            if ch == '"' then
                k = string_end(s, k)
                if not k then return nil end
            elseif ch == "{" or ch == "[" then
                depth = depth + 1
            else
                depth = depth - 1
                if depth == 0 then return k end
            end
            j = k + 1
        end
    end
    local k = s:find("[,}%]%s]", i)
    return k and k - 1 or #s
end

-- The span (first, last) of key's value in the object that starts at i.
local function member(s, i, key)
    if not i or s:sub(i, i) ~= "{" then return nil end
    local j = skip_ws(s, i + 1)
    while s:sub(j, j) == '"' do
        local ke = string_end(s, j)
        local colon = ke and s:find(":", ke + 1, true)
        if not colon then return nil end
        local v = skip_ws(s, colon + 1)
        local ve = value_end(s, v)
        if not ve then return nil end
        if s:sub(j + 1, ke - 1) == key then return v, ve end
        j = skip_ws(s, ve + 1)
        if s:sub(j, j) == "," then j = skip_ws(s, j + 1) end
    end
    return nil
end

-- raw: the text of GET /services/{id}. Returns the text of its Spec with
-- Mode.Replicated.Replicas set to n and nothing else changed, or nil, err.
function _M.with_replicas(raw, n)
    local ss, se = member(raw, skip_ws(raw, 1), "Spec")
    if not ss then return nil, "no Spec in the service" end
    local spec = raw:sub(ss, se)
    local rs = member(spec, (member(spec, 1, "Mode")), "Replicated")
    if not rs then return nil, "the service is not replicated" end
    local ns, ne = member(spec, rs, "Replicas")
    if ns then return spec:sub(1, ns - 1) .. n .. spec:sub(ne + 1) end
    local inner = skip_ws(spec, rs + 1)
    return spec:sub(1, rs) .. '"Replicas":' .. n .. (spec:sub(inner, inner) == "}" and "" or ",")
        .. spec:sub(rs + 1)
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
