-- An HTTP/1.1 client on luasocket for specs: exact bytes on the wire
-- (raw requests, chunked bodies, pipelining), responses parsed strictly
-- enough to catch a gateway's framing mistakes. Part of moongate.test.
local socket = require("socket")

local _M = {}

-- Sanitized builds run slower: stretch timeouts, never assertions.
_M.slow = os.getenv("MG_SANITIZED") == "1" and 4 or 1

local Conn = {}
Conn.__index = Conn

function _M.connect(port, timeout)
    local s = socket.tcp()
    s:settimeout(timeout or 5 * _M.slow)
    local ok, err = s:connect("127.0.0.1", port)
    if not ok then return nil, err end
    s:setoption("tcp-nodelay", true)
    return setmetatable({ sock = s, buf = "", timeout = timeout or 5 * _M.slow }, Conn)
end

local function header_list(headers)
    local list = {}
    if not headers then return list end
    if headers[1] then
        for _, h in ipairs(headers) do list[#list + 1] = h end
    else
        local keys = {}
        for k in pairs(headers) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do list[#list + 1] = { k, headers[k] } end
    end
    return list
end

function _M.format_request(req)
    local method = req.method or "GET"
    local parts = { string.format("%s %s HTTP/%s\r\n", method, req.path or "/", req.version or "1.1") }
    local hs = header_list(req.headers)
    local has = {}
    for _, h in ipairs(hs) do has[h[1]:lower()] = true end
    if not has.host and req.host ~= false then parts[#parts + 1] = "Host: " .. (req.host or "localhost") .. "\r\n" end
    for _, h in ipairs(hs) do parts[#parts + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
    local body = req.body
    if type(body) == "table" then
        if not has["transfer-encoding"] then parts[#parts + 1] = "Transfer-Encoding: chunked\r\n" end
        parts[#parts + 1] = "\r\n"
        for _, c in ipairs(body) do parts[#parts + 1] = string.format("%x\r\n%s\r\n", #c, c) end
        parts[#parts + 1] = "0\r\n\r\n"
    else
        if body and not has["content-length"] then parts[#parts + 1] = "Content-Length: " .. #body .. "\r\n" end
        parts[#parts + 1] = "\r\n"
        parts[#parts + 1] = body or ""
    end
    return table.concat(parts)
end

function Conn:send_raw(data)
    local ok, err = self.sock:send(data)
    assert(ok, err)
end

function Conn:send_request(req)
    self:send_raw(_M.format_request(req))
end

-- Returns whatever bytes arrive next (luasocket's receive(n) would wait
-- for all n), or nil and "timeout"/"closed".
function Conn:recv_some(timeout)
    timeout = timeout or self.timeout
    -- select() only takes descriptors below FD_SETSIZE; poll beyond that
    local ok, readable = pcall(socket.select, { self.sock }, nil, timeout)
    if ok and #readable == 0 then return nil, "timeout" end
    local deadline = socket.gettime() + timeout
    while true do
        self.sock:settimeout(ok and 0 or 0.01)
        local d, err, partial = self.sock:receive(65536)
        self.sock:settimeout(self.timeout)
        d = d or partial
        if d and #d > 0 then return d end
        if err ~= "timeout" then return nil, err end
        if ok then return nil, "closed" end
        if socket.gettime() > deadline then return nil, "timeout" end
    end
end

-- Reads until n bytes are buffered; returns false on close/timeout.
function Conn:fill(n)
    while #self.buf < n do
        local d, err = self:recv_some()
        if not d then return false, err end
        self.buf = self.buf .. d
    end
    return true
end

function Conn:read_line()
    while true do
        local i = self.buf:find("\r\n", 1, true)
        if i then
            local line = self.buf:sub(1, i - 1)
            self.buf = self.buf:sub(i + 2)
            return line
        end
        local ok, err = self:fill(#self.buf + 1)
        if not ok then return nil, err end
    end
end

function Conn:take(n)
    assert(self:fill(n))
    local d = self.buf:sub(1, n)
    self.buf = self.buf:sub(n + 1)
    return d
end

local function read_headers(self, res)
    while true do
        local line, err = self:read_line()
        if not line then return nil, err end
        if line == "" then return true end
        local k, v = line:match("^([^:]+):%s*(.-)%s*$")
        if k then
            res.list[#res.list + 1] = { k, v }
            local lk = k:lower()
            res.headers[lk] = res.headers[lk] and (res.headers[lk] .. ", " .. v) or v
        end
    end
end

-- Reads one response (interim 1xx ones are returned in res.interim).
function Conn:read_response(opts)
    opts = opts or {}
    local res = { interim = {} }
    while true do
        local line, err = self:read_line()
        if not line then return nil, err end
        res.status_line = line
        res.version, res.status, res.reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
        if not res.status then return nil, "bad status line: " .. line end
        res.status = tonumber(res.status)
        res.headers, res.list = {}, {}
        local ok, herr = read_headers(self, res)
        if not ok then return nil, herr end
        if res.status >= 200 or res.status == 101 then break end
        res.interim[#res.interim + 1] = { status = res.status, headers = res.headers }
    end
    local h = res.headers
    if opts.method == "HEAD" or res.status == 204 or res.status == 304 or res.status == 101 then
        res.body = ""
    elseif h["transfer-encoding"] and h["transfer-encoding"]:lower():find("chunked") then
        local parts = {}
        while true do
            local size = tonumber((self:read_line() or ""):match("^%x+"), 16)
            if not size then return nil, "bad chunk size" end
            if size == 0 then break end
            parts[#parts + 1] = self:take(size)
            self:read_line()
        end
        res.trailers, res.trailer_list = {}, {}
        local t = { headers = res.trailers, list = res.trailer_list }
        read_headers(self, t)
        res.body = table.concat(parts)
    elseif h["content-length"] then
        res.body = self:take(tonumber(h["content-length"]))
    else
        local parts = { self.buf }
        self.buf = ""
        while true do
            local d = self:recv_some()
            if not d then break end
            parts[#parts + 1] = d
        end
        res.body = table.concat(parts)
        res.until_close = true
    end
    return res
end

-- Returns the bytes that arrive within timeout (one read, plus the buffer).
function Conn:read_raw(timeout)
    local out = self.buf
    self.buf = ""
    local d = self:recv_some(timeout or 1)
    return out .. (d or "")
end

-- Reads everything until the peer closes (or timeout); returns data, closed.
function Conn:read_all(timeout)
    local parts = { self.buf }
    self.buf = ""
    local deadline = socket.gettime() + (timeout or 2)
    local closed = false
    while true do
        local left = deadline - socket.gettime()
        if left <= 0 then break end
        local d, err = self:recv_some(left)
        if d then
            parts[#parts + 1] = d
        else
            closed = err == "closed"
            break
        end
    end
    return table.concat(parts), closed
end

function Conn:closed(timeout)
    local _, closed = self:read_all(timeout or 1)
    return closed
end

function Conn:close() self.sock:close() end

-- One request on a fresh connection.
function _M.request(port, req)
    req = req or {}
    local c = assert(_M.connect(port))
    c:send_request(req)
    local res, err = c:read_response({ method = req.method })
    c:close()
    return res, err
end

function _M.json(res)
    return require("cjson").decode(res.body)
end

-- Runs curl; returns status, body.
function _M.curl(...)
    local args = { ... }
    local cmd = { "curl -s -o - -w '\\n%{http_code}'" }
    for _, a in ipairs(args) do cmd[#cmd + 1] = "'" .. tostring(a):gsub("'", "'\\''") .. "'" end
    local f = io.popen(table.concat(cmd, " "))
    local out = f:read("*a")
    f:close()
    local body, code = out:match("^(.*)\n(%d+)$")
    return tonumber(code), body
end


return _M
