-- Async I/O for control-plane plugins (discovery, health checks) and for
-- the request hooks of `async` middlewares in workers (forward_auth,
-- errors): straight-line code that waits without blocking. Every function
-- here must run in a coroutine (mg.spawn, or the one the worker runs an
-- async middleware chain in); it yields to the event loop and is resumed
-- with the result. Errors are return values: nil, "reason".
local internal = require("moongate.internal")

local _M = {}

local io_c = package.loaded["moongate.c.io"] -- core/lua_io.c
local co_running, co_create, co_resume = coroutine.running, coroutine.create, coroutine.resume
local raw_yield = coroutine.yield

local function resumed(...)
    local after = internal.after_wait -- the worker's runtime: names the request again
    if after then after() end
    return ...
end

-- Every wait yields here, so that a worker's runtime knows a request's
-- chain waits on I/O and which request runs again when it is resumed.
local function co_yield()
    local before = internal.before_wait
    if before then before() end
    return resumed(raw_yield())
end

local function need_co(what)
    local co = co_running()
    if not co then
        if _M.in_worker then
            error(what .. " in a request hook needs a middleware that may wait (async = true in its plugin)", 3)
        end
        error(what .. " must run in a coroutine (use mg.spawn)", 3)
    end
    if not io_c then error(what .. " needs the moongate binary", 3) end
    return co
end

local function is_ip(host)
    return host:match("^%d+%.%d+%.%d+%.%d+$") or host:find(":", 1, true)
end

-- "http://127.0.0.1:8080/path?q", "https://acme.example:14000/dir" or
-- "unix:///var/run/docker.sock:/path"
function _M.parse_url(url)
    local sock, path = url:match("^unix://(/[^:]+):(/.*)$")
    if sock then return { unix = sock, path = path, host = "localhost" } end
    local scheme, host, port, rest = url:match("^(https?)://%[([%x:%.]+)%]:?(%d*)(.*)$")
    if not host then scheme, host, port, rest = url:match("^(https?)://([^/:]+):?(%d*)(.*)$") end
    if not host then return nil, "unsupported URL " .. tostring(url) end
    local tls = scheme == "https"
    local u = { ip = host, port = tonumber(port) or (tls and 443 or 80), path = rest ~= "" and rest or "/",
                host = host, tls = tls }
    if host == "localhost" then
        u.ip = "127.0.0.1"
        if not tls then u.host = "127.0.0.1" end
    end
    return u
end

local function build(opts, u)
    local method = opts.method or "GET"
    local lines = { method .. " " .. u.path .. " HTTP/1.1" }
    local headers = opts.headers or {}
    local has = {}
    for k in pairs(headers) do has[k:lower()] = true end
    local default_port = u.tls and 443 or 80
    local hosthdr = u.host:find(":", 1, true) and ("[" .. u.host .. "]") or u.host
    if not has.host then lines[#lines + 1] = "Host: " .. (u.port and u.port ~= default_port and (hosthdr .. ":" .. u.port) or hosthdr) end
    if not has["user-agent"] then lines[#lines + 1] = "User-Agent: moongate" end
    for k, v in pairs(headers) do
        if tostring(v):find("[\r\n]") or tostring(k):find("[\r\n:]") then
            return nil, "header " .. tostring(k) .. " has CR, LF or a colon"
        end
        lines[#lines + 1] = k .. ": " .. tostring(v)
    end
    local body = opts.body
    if body then lines[#lines + 1] = "Content-Length: " .. #body end
    if not has.connection then lines[#lines + 1] = "Connection: close" end
    return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- A worker's hooks ask the same few names (an auth service) for every
-- request: answers are kept RESOLVE_TTL seconds there, so a request does
-- not wait for the thread pool each time. The control plane asks afresh.
local RESOLVE_TTL = 5
local resolved = {} -- host -> { ip, until }

local function resolve_one(host)
    local now = _M.in_worker and internal.now()
    local hit = now and resolved[host]
    if hit and hit[2] > now then return hit[1] end
    local addrs, rerr = _M.resolve(host)
    if not addrs or not addrs[1] then return nil, "cannot resolve " .. host .. ": " .. tostring(rerr) end
    if now then resolved[host] = { addrs[1], now + RESOLVE_TTL } end
    return addrs[1]
end

local function start(opts, stream)
    local co = need_co("mg.http")
    if type(opts) == "string" then opts = { url = opts } end
    local u, err = _M.parse_url(opts.url or "")
    if not u then return nil, err end
    local req
    req, err = build(opts, u)
    if not req then return nil, err end
    local timeout = (opts.timeout or (stream and 0 or 10)) * 1000
    if not u.unix and not is_ip(u.ip) then
        local ip, rerr = resolve_one(u.ip)
        if not ip then return nil, rerr end
        u.ip = ip
    end
    local tls
    if u.tls then
        -- verified by default: against opts.ca_file, else the system CA store
        tls = { server_name = opts.server_name or u.host, verify = opts.verify ~= false, ca_file = opts.ca_file }
    end
    local handle, serr = io_c.http(co, u.unix, u.ip, u.port, req, timeout, stream, tls)
    if not handle then return nil, serr end
    return handle, co_yield()
end

-- mg.http.request{ method, url, headers, body, timeout, ca_file, verify, server_name }
--   -> res | nil, err
-- https:// URLs are verified against ca_file (PEM) or the system CA store
-- unless verify = false; server_name overrides the name sent as SNI and checked.
-- res = { status = 200, headers = { ["content-type"] = ... }, body = "..." }
-- res.header_list = { { "set-cookie", "a=1" }, ... }: every header in
-- arrival order (headers keeps the last value of a repeated name).
function _M.request(opts)
    local handle, status, headers, list, body = start(opts, false)
    if not handle then return nil, status end
    if not status then return nil, headers end
    return { status = status, headers = headers, body = body, header_list = list }
end

local Stream = {}
Stream.__index = Stream

-- The next piece of the body as it arrives; nil at the end (or nil, err).
function Stream:read()
    if self.closed then return nil, "closed" end
    local co = need_co("stream:read")
    local piece, err = io_c.read(co, self.handle)
    if piece == true then piece, err = co_yield() end
    return piece, err
end

-- Iterates over complete lines (without "\n"), for newline-delimited
-- streams such as Docker's /events.
function Stream:lines()
    return function()
        while true do
            local nl = self.buf:find("\n", 1, true)
            if nl then
                local line = self.buf:sub(1, nl - 1):gsub("\r$", "")
                self.buf = self.buf:sub(nl + 1)
                return line
            end
            local piece, err = self:read()
            if not piece then
                self.err = err
                if self.buf ~= "" then
                    local rest = self.buf
                    self.buf = ""
                    return rest
                end
                return nil
            end
            self.buf = self.buf .. piece
        end
    end
end

function Stream:close()
    if not self.closed then
        self.closed = true
        io_c.close(self.handle)
    end
end

-- mg.http.stream{ ... } -> stream | nil, err; stream.status, stream.headers
function _M.stream(opts)
    local handle, status, headers, list = start(opts, true)
    if not handle then return nil, status end
    if not status then
        io_c.close(handle)
        return nil, headers
    end
    return setmetatable({ handle = handle, status = status, headers = headers, header_list = list, buf = "" },
        Stream)
end

-- Resolves a host name to a list of addresses (libuv's thread pool), or
-- nil, err.
function _M.resolve(host)
    local co = need_co("mg.resolve")
    local started, err = io_c.resolve(co, host)
    if not started then return nil, err end
    return co_yield()
end

-- Does a TCP connect to host:port succeed within timeout seconds (default
-- 1)? true, or nil, reason ("connection refused", "timed out"). The
-- connection is closed at once; nothing is sent.
function _M.tcp_probe(host, port, timeout)
    local co = need_co("mg.tcp_probe")
    if type(host) ~= "string" then error("mg.tcp_probe: host must be a string", 2) end
    port = tonumber(port)
    if not port then error("mg.tcp_probe: port must be a number", 2) end
    if not is_ip(host) then
        local addrs, rerr = _M.resolve(host)
        if not addrs or not addrs[1] then return nil, "cannot resolve " .. host .. ": " .. tostring(rerr) end
        host = addrs[1]
    end
    local started, err = io_c.tcp_probe(co, host, port, (timeout or 1) * 1000)
    if not started then return nil, err end
    return co_yield()
end

function _M.sleep(seconds)
    local co = need_co("mg.sleep")
    io_c.sleep(co, seconds * 1000)
    co_yield()
end

-- Runs fn(...) as a coroutine now; errors are logged, not raised.
function _M.spawn(fn, ...)
    local co = co_create(fn)
    local ok, err = co_resume(co, ...)
    if not ok then
        local mg = require("moongate")
        mg.log.err("spawned function failed: ", debug.traceback(co, tostring(err)))
    end
    return co
end

-- Specs and scripts: turn the event loop for up to `seconds` (the gateway's
-- control thread turns it by itself).
function _M.run(seconds)
    if io_c then io_c.run(seconds or 10) end
end

return _M
