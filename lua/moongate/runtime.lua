-- The worker side of the plugin runtime: holds each service's balancer
-- state and each route's middleware chain for the snapshots the worker has
-- adopted, and answers the core's calls (core/lua_bridge.c). Plugins never
-- call this module; they see require("moongate").
local plugins = require("moongate.plugins")
local request = require("moongate.request")
local mg = require("moongate")
local internal = require("moongate.internal")

local _M = {}

local core = require("moongate.ffi")
local busy_plugin = core.in_gateway and core.C.mg_ffi_busy_plugin or function() end
-- Tells the core that this request now has state here (a ctx table made
-- outside on_request), so it must call on_log at the end to forget it.
_M.want_log = core.in_gateway and core.C.mg_ffi_want_log or function() end

local select, error, pairs = select, error, pairs
local req, res = request.req, request.res
local co_create, co_resume, co_status, co_running = coroutine.create, coroutine.resume,
    coroutine.status, coroutine.running
local traceback = debug.traceback
local C = core.C

local KEEP_VERSIONS = 4   -- requests pin their snapshot; older balancer states are dropped
local versions = {}       -- snapshot version -> { services = {...}, chains = {...} }
local version_order = {}
local loaded = {}         -- "kind:name" -> plugin table, for the current plugin generation
local instances = {}      -- "plugin|options" -> middleware instance, for the current generation
local plugins_dir

-- An empty, read-only `tried` shared by every first try.
local NONE = setmetatable({}, {
    __newindex = function() error("req.tried is read-only", 2) end,
})

local current_id = 0
local ctxs = {}           -- request id -> ctx table
local req_chain = {}      -- request id -> the chain it started with
local body_hooks = {}     -- request id -> the middlewares that filter its response body
local current_mw          -- the middleware whose on_response runs
request.wants_body = function()
    local m = current_mw
    if not m or not m.mod.on_body then error("res:filter_body() needs the plugin to have on_body", 3) end
    local list = body_hooks[current_id]
    if not list then
        list = {}
        body_hooks[current_id] = list
    end
    list[#list + 1] = m
end
request.ctx_of = function()
    local c = ctxs[current_id]
    if not c then
        c = {}
        ctxs[current_id] = c
        _M.want_log()
    end
    return c
end

-- Chains that wait on I/O. A route whose chain has a middleware with
-- `async = true` runs its on_request (and, if one of them has it, its
-- on_response) as a coroutine; every other chain runs plain, as before.
-- When the coroutine yields in mg.http/mg.sleep, the core holds the
-- request (mg_ffi_hook_wait gives a slot); each resume names it again
-- (mg_ffi_hook_resume, from io.lua's after_wait); at the end the core
-- is told (mg_ffi_hook_done) and goes on with the request from its loop.
local waits = {}   -- coroutine -> its run: { id, slot, chain, phase, mw, ... }
local waiting = {} -- request id -> run, while the core holds the request

internal.before_wait = function()
    local st = waits[co_running()]
    if not st then return end
    st.io_wait = true
    st.responded = request.responded
end

internal.after_wait = function()
    local st = waits[co_running()]
    if not st then return end
    st.io_wait = false
    if st.slot then C.mg_ffi_hook_resume(st.slot, st.id) end
    current_id = st.id
    request.responded = st.responded
    local m = st.mw
    if m then
        internal.plugin = m.mod.name
        busy_plugin(m.name, #m.name)
        if st.phase == 2 then current_mw = m end
    end
end

-- The targets ({ host, port, ... }) of the service called name in the
-- newest snapshot, or nil: for middlewares that fetch from a configured
-- service themselves (errors).
internal.service_targets = function(name)
    local e = versions[version_order[#version_order]]
    if not e then return nil end
    for _, s in pairs(e.services) do
        if s.name == name then return s.targets end
    end
    return nil
end

-- How many requests have state here; 0 between requests. For specs.
function _M.pending()
    local n = 0
    for _ in pairs(req_chain) do n = n + 1 end
    for _ in pairs(ctxs) do n = n + 1 end
    for _ in pairs(body_hooks) do n = n + 1 end
    for _ in pairs(waiting) do n = n + 1 end
    return n
end

function _M.init(worker_id, dir)
    _M.worker_id = worker_id
    mg.worker_id = worker_id
    if package.loaded["moongate.c.io"] then require("moongate.io").in_worker = true end
    plugins_dir = dir
end

-- A new plugin generation (a file changed): load modules afresh.
function _M.new_generation(dir)
    for _, mod in pairs(loaded) do internal.cancel_timers(mod.name) end
    for _, inst in pairs(instances) do
        if inst.mod.destroy then pcall(inst.mod.destroy, inst.conf) end
    end
    instances = {}
    loaded = {}
    if dir then plugins_dir = dir end
    -- Compiled traces hold constants (functions, upvalues, tables) of the
    -- modules they ran through, so old traces would keep every earlier
    -- generation alive: RSS grew ~60 KB per reload under load. Reloads are
    -- rare; the hot paths re-record within milliseconds.
    if jit then jit.flush() end
end

local function load(name, kind)
    local key = kind .. ":" .. name
    local mod = loaded[key]
    if mod then return mod end
    local err
    mod, err = plugins.load(name, plugins_dir, kind)
    if not mod then error(err, 0) end
    loaded[key] = mod
    return mod
end

local function version_entry(v)
    local e = versions[v]
    if not e then
        e = { services = {}, chains = {}, instances = {} }
        versions[v] = e
        version_order[#version_order + 1] = v
        while #version_order > KEEP_VERSIONS do
            local old = table.remove(version_order, 1)
            versions[old] = nil
        end
    end
    return e
end

-- Returns true when the balancer has a report function.
function _M.set_service(version, idx, name, balancer, opts_literal, targets)
    local e = version_entry(version)
    e.services[idx] = nil
    local mod = load(balancer, "balancer")
    local index_of = {}
    for i = 1, #targets do index_of[targets[i]] = i end
    internal.plugin = mod.name
    local state = mod.new(targets, plugins.deserialize(opts_literal), { name = name })
    internal.plugin = nil
    e.services[idx] = {
        name = name, mod = mod, pick = mod.pick, report = mod.report, state = state,
        targets = targets, index_of = index_of,
    }
    return mod.report ~= nil
end

-- chains literal: { [route index] = { { plugin = "headers", conf = {...}, name = "..." }, ... } }
function _M.set_chains(version, literal)
    local e = version_entry(version)
    local spec = plugins.deserialize(literal)
    for route, list in pairs(spec) do
        local chain = {}
        for i, m in ipairs(list) do
            -- the same middleware with the same options keeps its instance
            -- (and its state) across membership changes
            local key = m.plugin .. "|" .. (m.name or "") .. "|" .. plugins.serialize(m.conf or {})
            local shared = instances[key]
            if not shared then
                local mod = load(m.plugin, "middleware")
                local conf = m.conf or {}
                if mod.init then
                    internal.plugin = mod.name
                    local v = mod.init(conf)
                    internal.plugin = nil
                    if v ~= nil then conf = v end
                end
                shared = { mod = mod, conf = conf }
                instances[key] = shared
            end
            chain[#chain + 1] = { mod = shared.mod, conf = shared.conf, name = m.name or m.plugin,
                                  order = i, priority = shared.mod.priority or 0 }
        end
        table.sort(chain, function(a, b)
            if a.priority ~= b.priority then return a.priority > b.priority end
            return a.order < b.order
        end)
        for _, inst in ipairs(chain) do
            if inst.mod.on_response then chain.has_response = true end
            if inst.mod.on_log then chain.has_log = true end
            if inst.mod.async then
                chain.async = true
                if inst.mod.on_response then chain.async_response = true end
            end
        end
        e.chains[route] = chain
    end
end

-- Returns the 0-based index of the picked target, -1 when the balancer
-- returned nothing, -2 when the service has no working balancer.
function _M.pick(version, idx, id, ntried, ...)
    local e = versions[version]
    local s = e and e.services[idx]
    if not s then return -2 end
    current_id = id
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
    req.tried = NONE
    if t == nil then return -1 end
    local i = s.index_of[t]
    if not i then
        error("balancer '" .. s.mod.name .. "' returned a value that is not one of its targets", 0)
    end
    return i - 1
end

local outcome = {}
function _M.report(version, idx, target, status, latency, err)
    local e = versions[version]
    local s = e and e.services[idx]
    if not s or not s.report then return end
    outcome.status = status > 0 and status or nil
    outcome.latency = latency
    outcome.error = err
    s.report(s.state, s.targets[target + 1], outcome)
end

-- What the core must call later for this request: 1 = on_response, 2 =
-- on_log, which also forgets the chain and the ctx: so 2 whenever either
-- is kept, even for a chain without on_log (the response may never come).
-- 0 saves both calls.
local function flags_for(chain, id)
    local flags = (chain.has_response and 1 or 0) + ((chain.has_response or chain.has_log or ctxs[id]) and 2 or 0)
    if flags ~= 0 then req_chain[id] = chain end
    return flags
end

-- The hooks of one phase (1: on_request, 2: on_response), in chain order.
local function run_chain(st, chain, phase)
    for i = 1, #chain do
        local m = chain[i]
        local f
        if phase == 1 then f = m.mod.on_request else f = m.mod.on_response end
        if f then
            internal.plugin = m.mod.name
            busy_plugin(m.name, #m.name)
            if st then st.mw = m end
            if phase == 1 then
                f(m.conf, req)
                internal.plugin = nil
                if request.responded then break end
            else
                current_mw = m
                f(m.conf, req, res)
                current_mw = nil
                internal.plugin = nil
            end
        end
    end
end

local function on_error(err) return traceback(tostring(err), 2) end

-- The body of a chain's coroutine: errors are caught here, and a run that
-- waited tells the core it ended.
local function chain_body(st)
    local ok, err = xpcall(run_chain, on_error, st, st.chain, st.phase)
    internal.plugin = nil
    current_mw = nil
    st.ok, st.err = ok, err
    waits[st.co] = nil
    if not st.slot then return end -- ended without waiting: on_request/on_response say it
    waiting[st.id] = nil
    local flags = -1
    if st.phase == 1 then
        flags = ok and flags_for(st.chain, st.id) or 2
        if not ok then req_chain[st.id] = st.chain end
    end
    if not ok then
        mg.log.err(st.phase == 1 and "on_request: " or "on_response: ", tostring(err))
    end
    C.mg_ffi_hook_done(st.slot, st.id, flags, ok and 0 or 1)
end

-- Runs a chain that may wait. Returns true when it waits (the core holds
-- the request), false when it ended at once; raises its error.
local function run_async(chain, id, phase)
    local st = { id = id, chain = chain, phase = phase }
    local co = co_create(chain_body)
    st.co = co
    waits[co] = st
    local ok, err = co_resume(co, st)
    if not ok then
        waits[co] = nil
        error(err, 0)
    end
    if co_status(co) ~= "suspended" then
        if not st.ok then error(st.err, 0) end
        return false
    end
    if not st.io_wait then
        waits[co] = nil
        error("a " .. (phase == 1 and "on_request" or "on_response") .. " hook of " .. tostring(st.mw and st.mw.name)
            .. " yielded outside mg.http/mg.sleep: nothing would resume it", 0)
    end
    local slot = C.mg_ffi_hook_wait()
    if slot < 0 then
        waits[co] = nil
        error("cannot hold the request while a hook waits (code " .. tostring(slot) .. ")", 0)
    end
    st.slot = slot
    waiting[id] = st
    internal.plugin = nil
    current_mw = nil
    return true
end

-- Returns the flags above (flags_for); a chain that waits returns 0 and
-- hands its flags over when it ends (mg_ffi_hook_done).
function _M.on_request(version, route, id)
    local e = versions[version]
    local chain = e and e.chains[route]
    if not chain then return 0 end
    current_id = id
    request.responded = false
    if chain.async then
        if run_async(chain, id, 1) then return 0 end
    else
        run_chain(nil, chain, 1)
    end
    return flags_for(chain, id)
end

-- may_wait: the core can hold this response's head (an HTTP/1 upstream).
function _M.on_response(id, may_wait)
    local chain = req_chain[id]
    if not chain then return end
    current_id = id
    if chain.async_response and may_wait then
        run_async(chain, id, 2)
    else
        run_chain(nil, chain, 2)
    end
end

-- A piece of the response body through the on_body hooks of the
-- middlewares that asked for it (res:filter_body), in chain order; each
-- returns the bytes to pass on (nil: none). last: the body ends here.
function _M.on_body(id, chunk, last)
    local list = body_hooks[id]
    if not list then return chunk end
    current_id = id
    for i = 1, #list do
        local m = list[i]
        internal.plugin = m.mod.name
        busy_plugin(m.name, #m.name)
        local out = m.mod.on_body(m.conf, req, res, chunk, last)
        internal.plugin = nil
        if out == nil then
            out = ""
        elseif type(out) ~= "string" then
            error("on_body of " .. m.name .. " returned a " .. type(out) .. ", not a string", 0)
        end
        chunk = out
    end
    return chunk
end

-- Runs on_log hooks (each protected: a failing logger does not stop the
-- others) and forgets the request.
function _M.on_log(id)
    local chain = req_chain[id]
    current_id = id
    if chain then
        for i = 1, #chain do
            local m = chain[i]
            local f = m.mod.on_log
            if f then
                internal.plugin = m.mod.name
                local ok, err = pcall(f, m.conf, req, res)
                internal.plugin = nil
                if not ok then mg.log.err("on_log of ", m.name, " failed: ", tostring(err)) end
            end
        end
    end
    req_chain[id] = nil
    ctxs[id] = nil
    body_hooks[id] = nil
end

-- The worker's tick (every 100 ms): plugin timers.
function _M.tick()
    internal.run_timers()
end

return _M
