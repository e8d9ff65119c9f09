-- Error pages from a service (Traefik's errors middleware).
--   { plugin = "errors", status = { "500-599", "404" }, service = "pages",
--     query = "/{status}.html" }
-- When the backend answers with a status in one of the ranges, the page is
-- fetched with a GET from a target of `service` (a service of the config:
-- its targets in the gateway's current snapshot, in turn) at `query`, where
-- {status} is the backend's status and {url} the request's path and query,
-- escaped. The client then gets the page's body and Content-Type with the
-- backend's status; the backend's body is read and dropped (its connection
-- kept for the next request). When the page cannot be had (the service is
-- down, has no target, answers other than 2xx, or not within timeout) the
-- backend's own answer goes on untouched. The head waits for the page
-- without blocking the worker: this middleware is async.
-- For HTTP/1 backends; answers of HTTP/2 backends (protocol h2c, h2) pass.
local mg = require("moongate")
local internal = require("moongate.internal")

local function parse_range(s)
    s = tostring(s)
    local a, b = s:match("^%s*(%d%d%d)%s*%-%s*(%d%d%d)%s*$")
    if not a then a = s:match("^%s*(%d%d%d)%s*$"); b = a end
    a, b = tonumber(a), tonumber(b)
    if not a or a > b or a < 100 or b > 599 then return nil end
    return { a, b }
end

local function check_ranges(v)
    if #v == 0 then return nil, "needs at least one status or range" end
    for i, s in ipairs(v) do
        if not parse_range(s) then return nil, "[" .. i .. "]: expected a status (404) or a range (500-599)" end
    end
    return true
end

local _M = {
    type = "middleware",
    priority = 1030, -- its on_response runs before compress and headers change the answer
    async = true,    -- on_response waits for the page
    schema = {
        status = { type = "array", required = true, check = check_ranges },
        service = { type = "string", required = true },
        query = { type = "string", default = "/", check = function(v)
            return v:sub(1, 1) == "/" or nil, "must start with /"
        end },
        timeout = { type = "number", default = 10, min = 0.001 },
    },
}

function _M.init(conf)
    local ranges = {}
    for i, s in ipairs(conf.status) do ranges[i] = parse_range(s) end
    return { ranges = ranges, service = conf.service, query = conf.query, timeout = conf.timeout, turn = 0 }
end

local function matches(ranges, status)
    for i = 1, #ranges do
        if status >= ranges[i][1] and status <= ranges[i][2] then return true end
    end
    return false
end

local function escape(s)
    return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Headers of the client's request sent along for the page (a page may
-- depend on the language the client asked for), never the framing ones.
local SKIP = {
    host = true, connection = true, ["keep-alive"] = true, te = true, trailer = true,
    ["transfer-encoding"] = true, upgrade = true, ["content-length"] = true, expect = true,
}

local function page_headers(req)
    local out = {}
    for _, h in ipairs(req:headers()) do
        local lname = h[1]:lower()
        if not SKIP[lname] then
            out[h[1]] = out[h[1]] and (out[h[1]] .. ", " .. h[2]) or h[2]
        end
    end
    out.Host = req:header("Host") or req.host
    return out
end

local function fetch(conf, req, status)
    local targets = internal.service_targets and internal.service_targets(conf.service)
    if not targets or #targets == 0 then return nil, "service " .. conf.service .. " has no target" end
    conf.turn = conf.turn + 1
    local t = targets[(conf.turn - 1) % #targets + 1]
    local path = conf.query:gsub("{status}", tostring(status)):gsub("{url}", function()
        return escape(req.target or req.path or "/")
    end)
    local host = t.host:find(":", 1, true) and ("[" .. t.host .. "]") or t.host
    local ok, page, err = pcall(mg.http.request, {
        url = "http://" .. host .. ":" .. t.port .. path, method = "GET",
        headers = page_headers(req), timeout = conf.timeout,
    })
    if not ok then return nil, page end -- cannot wait here (an HTTP/2 backend's answer)
    if not page then return nil, t.host .. ":" .. t.port .. path .. ": " .. tostring(err) end
    if page.status < 200 or page.status > 299 then
        return nil, t.host .. ":" .. t.port .. path .. " answered " .. page.status
    end
    return page
end

function _M.on_response(conf, req, res)
    local status = res.status
    if not matches(conf.ranges, status) or req.method == "HEAD" or status == 204 or status == 304 then return end
    local page, err = fetch(conf, req, status)
    if not page then
        mg.log.warn("error page for ", status, " from ", conf.service, ": ", tostring(err),
            "; the backend's answer goes on")
        return
    end
    res:replace(page.body, { ["Content-Type"] = page.headers["content-type"] or "text/html; charset=utf-8" })
end

return _M
