-- TLS on the control plane: require("moongate").tls. Certificate source
-- plugins (the ACME client, a Vault fetcher, a folder of certificates)
-- hand what they obtain to the gateway's certificate store here; the store
-- is rebuilt and published to the workers at once.
--
-- A certificate source plugin:
--   return { type = "certificates", start = function(ctx) ... end }
-- start runs as a coroutine (mg.http, mg.sleep work in it) for as long as
-- its tls.acme entry is configured:
--   ctx.name                 the entry's name ("le")
--   ctx.opts                 its settings (directory, email, storage, ...)
--   ctx.domains              { { main = "shop.example.com", sans = { ... } }, ... }:
--                            one certificate per entry, from the routes naming it
--   ctx.alive()              false once the entry changed or went away
--   ctx.set_certificate(id, cert_pem, key_pem)   serve it (id: unique within the source)
--   ctx.remove_certificate(id)
--   ctx.set_http01(token, key_authorization | nil)        ACME HTTP-01 answers
--   ctx.set_alpn01(name, cert_pem | nil, key_pem)         ACME TLS-ALPN-01 certificates
local plugins = require("moongate.plugins")
local internal = require("moongate.internal")
local t = package.loaded["moongate.c.tls"]

local _M = {}

local function need()
    if not t then error("mg.tls needs the moongate binary's control plane", 3) end
end

function _M.set_certificate(id, cert_pem, key_pem)
    need()
    if type(id) ~= "string" or type(cert_pem) ~= "string" or type(key_pem) ~= "string" then
        error("set_certificate(id, cert_pem, key_pem) takes three strings", 2)
    end
    return t.set_certificate(id, cert_pem, key_pem)
end

function _M.remove_certificate(id) need(); return t.remove_certificate(id) end

function _M.set_http01(token, key_authorization)
    need()
    if type(token) ~= "string" or not token:match("^[%w_%-]+$") then
        error("an HTTP-01 token is base64url", 2)
    end
    return t.set_http01(token, key_authorization)
end

function _M.set_alpn01(name, cert_pem, key_pem) need(); return t.set_alpn01(name, cert_pem, key_pem) end

-- What a handshake for name (nil: no SNI) is served: a list of
-- { origin, key_type, names, not_after }; nil when TLS is not in use.
function _M.served(name) need(); return t.served(name) end
function _M.certificates() need(); return t.certificates() end
-- The key authorization the data plane answers for an HTTP-01 token now.
function _M.http01(token) need(); return t.http01(token) end
function _M.rotate_ticket_keys() need(); return t.rotate_tickets() end

-- ---- certificate sources ---------------------------------------------------

local running = {}   -- name -> { literal, gen, ids = { id = true } }
local generation = 0

local function source_ctx(name, conf, domains, state)
    local mg = require("moongate")
    local gen = state.gen
    local ctx = { name = name, opts = conf, domains = domains }
    local function alive() return running[name] == state and state.gen == gen end
    local function check()
        if not alive() then error("certificate source " .. name .. " was stopped", 3) end
    end
    ctx.alive = alive
    function ctx.set_certificate(id, cert, key)
        check()
        local full = name .. ":" .. id
        local ok, err = _M.set_certificate(full, cert, key)
        if ok then state.ids[full] = true else mg.log.err("certificate ", full, ": ", err) end
        return ok, err
    end
    function ctx.remove_certificate(id)
        check()
        local full = name .. ":" .. id
        state.ids[full] = nil
        return _M.remove_certificate(full)
    end
    function ctx.set_http01(token, ka) check(); return _M.set_http01(token, ka) end
    function ctx.set_alpn01(n, cert, key) check(); return _M.set_alpn01(n, cert, key) end
    return ctx
end

-- Starts, restarts or stops sources for a config: literal is
-- { resolvers = { name = settings }, domains = { name = { ... } } } (core/config.c).
local stapling -- whether the OCSP stapling loop runs (moongate.ocsp)

function _M.start_sources(literal, dir)
    local mg = require("moongate")
    local conf = literal and plugins.deserialize(literal) or { resolvers = {}, domains = {} }
    local want_stapling = t ~= nil and literal ~= nil and conf.ocsp_stapling ~= false
    if want_stapling ~= stapling then
        stapling = want_stapling
        require("moongate.ocsp").run(t, stapling)
    end
    local want = {}
    for name, r in pairs(conf.resolvers or {}) do
        want[name] = plugins.serialize({ r, conf.domains and conf.domains[name] or {} })
    end
    for name, st in pairs(running) do
        if want[name] ~= st.literal then
            running[name] = nil
            if not want[name] then
                for id in pairs(st.ids) do _M.remove_certificate(id) end
            else
                want[name .. "\0old"] = st
            end
        end
    end
    for name, lit in pairs(want) do
        if not name:find("\0", 1, true) and not running[name] then
            local r = conf.resolvers[name]
            local plugin, err = plugins.load(r.plugin or "acme", dir, "certificates")
            local old = want[name .. "\0old"]
            if not plugin then
                mg.log.err("tls.acme.", name, ": ", err)
            else
                generation = generation + 1
                local st = { literal = lit, gen = generation, ids = {} }
                running[name] = st
                local ctx = source_ctx(name, r, conf.domains and conf.domains[name] or {}, st)
                mg.spawn(function()
                    internal.plugin = plugin.name or r.plugin or "acme"
                    local ok, perr = pcall(plugin.start, ctx)
                    if not ok and running[name] == st then
                        mg.log.err("certificate source ", name, " stopped: ", tostring(perr))
                    end
                end)
                -- what the previous generation served and this one did not set again
                if old then
                    for id in pairs(old.ids) do
                        if not st.ids[id] then _M.remove_certificate(id) end
                    end
                end
            end
        end
    end
end

function _M.stop_sources()
    running = {}
    if stapling then require("moongate.ocsp").run(t, false) end
    stapling = nil
end

return _M
