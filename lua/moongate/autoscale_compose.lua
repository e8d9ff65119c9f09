-- The Compose actuator: does on the Docker Engine API what
-- `docker compose up --scale SERVICE=N` does, for one service of one
-- project (settings.compose = { project, service }).
--   up:   starts stopped replicas first (lowest numbers: a replica parked
--         at zero), then creates the rest from an existing replica's
--         configuration (image, command, environment, labels with the next
--         com.docker.compose.container-number, host config, networks and
--         their aliases), named like the ones there (PROJECT_SERVICE_N for
--         Compose v1, PROJECT-SERVICE-N for v2), and starts them, so
--         `docker compose ps` lists them.
--   down: the highest numbers go first, each drained before it is stopped
--         (out of discovery, its requests in flight finished), then
--         removed; at zero the last one is stopped and kept, so a cold
--         start is a `docker start`, and the configuration stays.
local mg = require("moongate")
local log = require("moongate.autoscale").log

local _M = {}

local function urlencode(s)
    return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function base_url(endpoint)
    local sock = endpoint:match("^unix://(/.+)$")
    if sock then return "unix://" .. sock .. ":" end
    return (endpoint:gsub("^tcp://", "http://"):gsub("/$", ""))
end

-- An Engine API call: the decoded answer (true when it has no body; its
-- text when raw), or nil and an error naming the call. body: a table to
-- encode, or JSON text sent as it is.
local function engine(api, method, path, body, raw)
    local res, err = mg.http.request({ url = api.base .. api.prefix .. path, method = method, timeout = 30,
        body = type(body) == "string" and body or body and mg.json.encode(body) or nil,
        headers = body and { ["Content-Type"] = "application/json" } or nil })
    if not res then return nil, method .. " " .. path .. ": " .. tostring(err) end
    if res.status < 200 or res.status > 299 then
        if res.status == 304 then return true end -- already started or stopped
        return nil, string.format("%s %s: status %d %s", method, path, res.status, (res.body or ""):sub(1, 200))
    end
    if not res.body or res.body == "" then return true end
    if raw then return res.body end
    return mg.json.decode(res.body)
end
_M.engine = engine

function _M.connect(endpoint)
    local api = { base = base_url(endpoint or "unix:///var/run/docker.sock"), prefix = "" }
    local ping, err = mg.http.request({ url = api.base .. "/_ping", timeout = 5 })
    if not ping then return nil, "docker: " .. tostring(err) end
    api.prefix = "/v" .. (ping.headers["api-version"] or "1.41")
    return api
end

-- Drops empty tables and nulls: Lua cannot tell [] from {}, and the Engine
-- takes an absent field for its empty default.
local function prune(v)
    if type(v) ~= "table" then return v end
    if v == mg.json.null then return nil end
    local out, any = {}, false
    for k, x in pairs(v) do
        local p = prune(x)
        if p ~= nil then out[k], any = p, true end
    end
    return any and out or nil
end
_M.prune = prune

-- The replicas of the service: { id, name, number, running }, by number.
function _M.replicas(api, project, service)
    local filters = urlencode(mg.json.encode({ label = {
        "com.docker.compose.project=" .. project, "com.docker.compose.service=" .. service } }))
    local list, err = engine(api, "GET", "/containers/json?all=1&filters=" .. filters)
    if not list then return nil, err end
    local out = {}
    for _, c in ipairs(list) do
        local labels = c.Labels or {}
        if labels["com.docker.compose.oneoff"] ~= "True" then
            out[#out + 1] = { id = c.Id, name = ((c.Names or {})[1] or ""):gsub("^/", ""),
                              number = tonumber(labels["com.docker.compose.container-number"]) or 0,
                              running = c.State == "running" }
        end
    end
    table.sort(out, function(a, b) return a.number < b.number end)
    return out
end

-- The create body for replica number n, from the inspected template c.
function _M.create_body(c, n, service)
    local cfg = c.Config or {}
    local labels = {}
    for k, v in pairs(cfg.Labels or {}) do labels[k] = v end
    labels["com.docker.compose.container-number"] = tostring(n)
    local nets, first = {}, nil
    for name in pairs((c.NetworkSettings or {}).Networks or {}) do nets[#nets + 1] = name end
    table.sort(nets)
    first = nets[1]
    local body = prune({
        Image = cfg.Image, Cmd = cfg.Cmd, Entrypoint = cfg.Entrypoint, Env = cfg.Env,
        WorkingDir = cfg.WorkingDir, User = cfg.User,
        Healthcheck = cfg.Healthcheck, StopSignal = cfg.StopSignal, StopTimeout = cfg.StopTimeout,
        Tty = cfg.Tty, OpenStdin = cfg.OpenStdin,
        HostConfig = c.HostConfig,
    }) or {}
    -- sets whose members map to {}: kept whole ({} encodes as an object)
    if type(cfg.ExposedPorts) == "table" and next(cfg.ExposedPorts) then body.ExposedPorts = cfg.ExposedPorts end
    if type(cfg.Volumes) == "table" and next(cfg.Volumes) then body.Volumes = cfg.Volumes end
    body.Labels = labels
    if first then
        body.NetworkingConfig = { EndpointsConfig = { [first] = { Aliases = { service } } } }
    end
    return body, nets
end

-- "proj_api_1" -> "proj_api_" (v1) or "proj-api-1" -> "proj-api-"
local function name_prefix(name, project, service)
    local prefix = name:match("^(.-[_-])%d+$")
    return prefix or (project .. "-" .. service .. "-")
end

local function start_new(api, template, n, service, prefix)
    local body, nets = _M.create_body(template, n, service)
    local name = prefix .. n
    local made, err = engine(api, "POST", "/containers/create?name=" .. urlencode(name), body)
    if not made then return nil, err end
    -- the Engine before API 1.44 takes one network at create: join the others
    for i = 2, #nets do
        local ok, cerr = engine(api, "POST", "/networks/" .. urlencode(nets[i]) .. "/connect",
            { Container = made.Id, EndpointConfig = { Aliases = { service } } })
        if not ok then return nil, cerr end
    end
    local ok, serr = engine(api, "POST", "/containers/" .. made.Id .. "/start")
    if not ok then return nil, serr end
    log.info("compose service ", service, ": started ", name)
    return true
end

-- Runs fns concurrently and waits for all; returns the first error.
local function all(fns)
    local left, first_err = #fns, nil
    for _, fn in ipairs(fns) do
        mg.spawn(function()
            local ok, a, b = pcall(fn)
            if not ok then first_err = first_err or tostring(a)
            elseif not a then first_err = first_err or tostring(b) end
            left = left - 1
        end)
    end
    while left > 0 do mg.sleep(0.05) end
    return first_err
end

-- Makes `desired` replicas run. Returns nil on success, or an error.
function _M.apply(svc, desired, env)
    local a = svc.autoscale
    local project, service = a.compose.project, a.compose.service
    local api, err = _M.connect(a.endpoint)
    if not api then return err end
    local reps
    reps, err = _M.replicas(api, project, service)
    if not reps then return err end
    local running, stopped = {}, {}
    for _, r in ipairs(reps) do (r.running and running or stopped)[#(r.running and running or stopped) + 1] = r end
    local jobs = {}
    if #running < desired then
        local need = desired - #running
        for _, r in ipairs(stopped) do
            if need == 0 then break end
            need = need - 1
            jobs[#jobs + 1] = function()
                log.info("service ", svc.name, ": starting ", r.name)
                return engine(api, "POST", "/containers/" .. r.id .. "/start")
            end
        end
        if need > 0 then
            local from = running[#running] or stopped[#stopped]
            if not from then return "no replica of " .. project .. "/" .. service .. " to copy" end
            local template
            template, err = engine(api, "GET", "/containers/" .. from.id .. "/json")
            if not template then return err end
            local prefix = name_prefix(from.name, project, service)
            local n = reps[#reps].number
            for _ = 1, need do
                n = n + 1
                local num = n
                jobs[#jobs + 1] = function() return start_new(api, template, num, service, prefix) end
            end
        end
    elseif #running > desired then
        for i = #running, desired + 1, -1 do
            local r = running[i]
            local park = i == 1 -- the last one stays, stopped, at zero
            jobs[#jobs + 1] = function()
                local idle = env.drain(svc.name, r.name, a.drain_timeout)
                log.info("service ", svc.name, ": stopping ", r.name,
                    idle and " (drained)" or " (drain timed out)")
                local ok, serr = engine(api, "POST", "/containers/" .. r.id .. "/stop?t=10")
                if ok and not park then ok, serr = engine(api, "DELETE", "/containers/" .. r.id .. "?v=1&force=1") end
                env.forget(r.name)
                return ok, serr
            end
        end
    end
    return all(jobs)
end

return _M
