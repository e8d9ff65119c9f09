-- Docker labels -> a route's TLS settings and entry points: Traefik's
--   traefik.http.routers.NAME.tls=true
--   traefik.http.routers.NAME.tls.certresolver=le
--   traefik.http.routers.NAME.tls.domains[0].main=example.com
--   traefik.http.routers.NAME.tls.domains[0].sans=a.example.com,b.example.com
--   traefik.http.routers.NAME.entrypoints=websecure
-- and moongate's own, with the same powers:
--   moongate.tls=true, moongate.tls.resolver=le (or .certresolver),
--   moongate.tls.domains[0].main / .sans, moongate.entrypoints=websecure
-- A pure function (no I/O), called by the Docker discovery plugin for each
-- container; entry point names are the `name`s of moongate's listeners.
local _M = {}

local function truthy(v)
    v = tostring(v):lower()
    return v == "true" or v == "1" or v == "yes"
end

local function split(v)
    local out = {}
    for part in tostring(v):gmatch("[^,%s]+") do out[#out + 1] = part end
    return out
end

-- Collects the TLS labels under one prefix ("traefik.http.routers.web." or
-- "moongate."): returns a table of what it found, or nil if none.
local function collect(labels, prefix)
    local found, domains = nil, {}
    local function f() found = found or {}; return found end
    for k, v in pairs(labels) do
        if k:sub(1, #prefix) == prefix then
            local rest = k:sub(#prefix + 1)
            if rest == "tls" then
                f().tls = truthy(v)
            elseif rest == "tls.certresolver" or rest == "tls.resolver" then
                f().resolver = v
            elseif rest == "entrypoints" then
                f().entrypoints = split(v)
            else
                local i, field = rest:match("^tls%.domains%[(%d+)%]%.(%a+)$")
                if i then
                    i = tonumber(i) + 1
                    domains[i] = domains[i] or {}
                    if field == "main" then
                        domains[i].main = v:lower()
                    elseif field == "sans" then
                        domains[i].sans = split(v:lower())
                    else
                        return nil, "unknown label " .. k
                    end
                    f().domains = domains
                end
            end
        end
    end
    return found
end

-- The names of Traefik routers that have labels, sorted.
function _M.routers(labels)
    local set, out = {}, {}
    for k in pairs(labels) do
        local r = k:match("^traefik%.http%.routers%.([^.]+)%.")
        if r and not set[r] then set[r] = true; out[#out + 1] = r end
    end
    table.sort(out)
    return out
end

-- Returns { tls = true | { resolver, domains } | nil, entrypoints = {...} | nil }
-- for a container's labels (router: the Traefik router to read; by default
-- the first that has TLS labels, in name order), or nil, err for labels
-- that cannot be understood. moongate.* labels win over traefik.* ones.
function _M.route_tls(labels, router)
    local t, err
    local routers = router and { router } or _M.routers(labels)
    for _, r in ipairs(routers) do
        t, err = collect(labels, "traefik.http.routers." .. r .. ".")
        if err then return nil, err end
        if t then break end
    end
    local m
    m, err = collect(labels, "moongate.")
    if err then return nil, err end
    if not t and not m then return {} end
    local merged = {}
    for _, src in ipairs({ t or {}, m or {} }) do
        for k, v in pairs(src) do merged[k] = v end
    end
    local domains
    if merged.domains then
        domains = {}
        for i = 1, table.maxn(merged.domains) do
            local d = merged.domains[i]
            if not d or not d.main then return nil, "tls.domains[" .. (i - 1) .. "] has no main" end
            domains[#domains + 1] = { main = d.main, sans = d.sans or {} }
        end
    end
    local out = { entrypoints = merged.entrypoints }
    if merged.resolver or domains then
        if merged.tls == false then return nil, "tls=false with a certresolver or domains" end
        out.tls = { resolver = merged.resolver, domains = domains }
    elseif merged.tls then
        out.tls = true
    end
    return out
end

return _M
