-- Helpers for specs that drive the real gateway: start backends and the
-- moongate binary as real processes on loopback, talk HTTP to them over
-- real sockets, read their logs, and stop everything afterwards.
-- Documented in docs/testing.md.
local socket = require("socket")
local unistd = require("posix.unistd")
local wait = require("posix.sys.wait")
local signal = require("posix.signal")
local fcntl = require("posix.fcntl")
local stdlib = require("posix.stdlib")
local stat = require("posix.sys.stat")

local _M = {}

_M.bin = os.getenv("MOONGATE_BIN") or "build/moongate"
_M.sanitized = os.getenv("MG_SANITIZED") == "1"
-- Sanitized builds start and run slower: stretch waits, never assertions.
_M.slow = _M.sanitized and 4 or 1

local procs = {}

local function sleep(s) socket.sleep(s) end
_M.sleep = sleep

function _M.wait_until(fn, timeout, what)
    local deadline = socket.gettime() + (timeout or 5) * _M.slow
    repeat
        local v = fn()
        if v then return v end
        sleep(0.02)
    until socket.gettime() > deadline
    error("timed out waiting" .. (what and (" for " .. what) or ""), 2)
end

function _M.free_port()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

function _M.tmpdir()
    local dir = assert(stdlib.mkdtemp("/tmp/moongate-spec-XXXXXX"))
    return dir
end

local function write_file(path, data)
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
end
_M.write_file = write_file

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local d = f:read("*a")
    f:close()
    return d
end
_M.read_file = read_file

-- Starts argv with stdout/stderr to files; returns a process handle.
function _M.spawn(argv, opts)
    opts = opts or {}
    local pid = assert(unistd.fork())
    if pid == 0 then
        if opts.cwd then unistd.chdir(opts.cwd) end
        local out = fcntl.open(opts.stdout or "/dev/null", fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC, 420)
        local err = fcntl.open(opts.stderr or "/dev/null", fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC, 420)
        local null = fcntl.open("/dev/null", fcntl.O_RDONLY)
        unistd.dup2(null, 0)
        unistd.dup2(out, 1)
        unistd.dup2(err, 2)
        for k, v in pairs(opts.env or {}) do stdlib.setenv(k, v) end
        unistd.execp(argv[1], { select(2, unpack(argv)) })
        unistd._exit(127)
    end
    local p = { pid = pid, argv = argv, errfile = opts.stderr }
    procs[#procs + 1] = p
    return p
end

-- Waits for a process to exit; returns its exit code (or nil on timeout).
function _M.reap(p, timeout)
    if p.code then return p.code end
    local deadline = socket.gettime() + (timeout or 5)
    repeat
        local pid, how, code = wait.wait(p.pid, wait.WNOHANG)
        if pid == p.pid then
            p.code = how == "exited" and code or (128 + (code or 0))
            return p.code
        end
        sleep(0.01)
    until socket.gettime() > deadline
    return nil
end

function _M.kill(p, sig, timeout)
    if p.code then return p.code end
    signal.kill(p.pid, sig or signal.SIGTERM)
    local code = _M.reap(p, timeout or 2)
    if not code then
        signal.kill(p.pid, signal.SIGKILL)
        code = _M.reap(p, 2)
    end
    return code
end

-- Stops everything the helpers started. Call from after_each/teardown.
local sanitizer_marks = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" }

-- Fails if a gateway's error log holds a sanitizer report (ASan builds).
local function check_sanitizer(p)
    if not p.errfile then return end
    local log = read_file(p.errfile)
    for _, mark in ipairs(sanitizer_marks) do
        if log:find(mark, 1, true) then
            error("sanitizer report from " .. p.argv[1] .. ":\n" .. log, 0)
        end
    end
end

function _M.cleanup()
    local bad
    for i = #procs, 1, -1 do
        _M.kill(procs[i], signal.SIGTERM, 5 * _M.slow)
        local ok, err = pcall(check_sanitizer, procs[i])
        if not ok then bad = err end
        procs[i] = nil
    end
    if bad then error(bad, 0) end
end

function _M.port_open(port, host)
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect(host or "127.0.0.1", port)
    c:close()
    return ok == 1
end

local function wait_port(port, p, what, errfile, host)
    local deadline = socket.gettime() + 5 * _M.slow
    while socket.gettime() < deadline do
        if _M.port_open(port, host) then return end
        if _M.reap(p, 0) then break end
        sleep(0.02)
    end
    error(string.format("%s did not start on port %d: %s", what, port, errfile and read_file(errfile) or ""), 3)
end

function _M.start_backend(opts)
    opts = opts or {}
    local port = opts.port or _M.free_port()
    local name = opts.name or ("b" .. port)
    local host = opts.host or "127.0.0.1"
    local p = _M.spawn({ "python3", "spec/support/backend.py", "--name", name, "--port", tostring(port),
                         "--host", host })
    wait_port(port, p, "backend " .. name, nil, host)
    return { port = port, name = name, proc = p, address = host .. ":" .. port,
             stop = function() return _M.kill(p) end }
end

-- A backend answering every request with the bytes in opts.response.
function _M.start_raw_backend(opts)
    local port = opts.port or _M.free_port()
    local dir = _M.tmpdir()
    write_file(dir .. "/response", opts.response)
    local argv = { "python3", "spec/support/raw_backend.py", "--port", tostring(port),
                   "--response-file", dir .. "/response" }
    if opts.close then argv[#argv + 1] = "--close" end
    if opts.delay then argv[#argv + 1] = "--delay"; argv[#argv + 1] = tostring(opts.delay) end
    if opts.idle_close then argv[#argv + 1] = "--idle-close"; argv[#argv + 1] = tostring(opts.idle_close) end
    local p = _M.spawn(argv)
    wait_port(port, p, "raw backend")
    local b = { port = port, proc = p, address = "127.0.0.1:" .. port,
                stop = function() return _M.kill(p) end }
    function b.stats()
        local r = _M.request(port, { path = "/__raw_stats" })
        return require("cjson").decode(r.body)
    end
    return b
end

-- Serializes plain Lua data as Lua source (for config files).
local function serialize(v, indent)
    indent = indent or ""
    local t = type(v)
    if t == "string" then return string.format("%q", v) end
    if t ~= "table" then return tostring(v) end
    local out, inner = { "{\n" }, indent .. "  "
    local n = #v
    for i = 1, n do out[#out + 1] = inner .. serialize(v[i], inner) .. ",\n" end
    local keys = {}
    for k in pairs(v) do
        if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
        local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. serialize(k) .. "]")
        out[#out + 1] = inner .. key .. " = " .. serialize(v[k], inner) .. ",\n"
    end
    out[#out + 1] = indent .. "}"
    return table.concat(out)
end
_M.serialize = serialize

-- Starts the gateway. opts.config: a table (listen defaults to a free
-- port, workers to 1) or Lua source; opts.plugins: { name = source }.
function _M.start_gateway(opts)
    opts = opts or {}
    local dir = _M.tmpdir()
    local port
    local src = opts.config
    local admin_port
    if type(src) == "table" then
        src.listen = src.listen or ("127.0.0.1:" .. _M.free_port())
        src.workers = src.workers or 1
        if src.admin == nil then
            admin_port = _M.free_port()
            src.admin = { listen = "127.0.0.1:" .. admin_port }
        elseif type(src.admin) == "table" and src.admin.listen then
            admin_port = tonumber(src.admin.listen:match(":(%d+)$"))
        end
        port = tonumber(tostring(type(src.listen) == "table" and src.listen[1] or src.listen):match(":(%d+)$"))
        src = "return " .. serialize(src) .. "\n"
    else
        port = opts.port or tonumber(src:match("listen%s*=%s*\"[^\"]*:(%d+)\""))
    end
    stat.mkdir(dir .. "/plugins")
    for name, code in pairs(opts.plugins or {}) do write_file(dir .. "/plugins/" .. name .. ".lua", code) end
    write_file(dir .. "/moongate.lua", src)
    local gw = { dir = dir, port = port, admin_port = admin_port, config_path = dir .. "/moongate.lua",
                 out = dir .. "/access.log", err = dir .. "/error.log" }
    local bin = _M.bin
    if bin:sub(1, 1) ~= "/" then bin = unistd.getcwd() .. "/" .. bin end
    gw.proc = _M.spawn({ bin, "-c", gw.config_path }, { stdout = gw.out, stderr = gw.err, env = opts.env })
    if port then wait_port(port, gw.proc, "moongate", gw.err) end
    -- the admin API listens a moment after the workers: wait for it too
    if admin_port then wait_port(admin_port, gw.proc, "moongate's admin API", gw.err) end
    function gw:access_log()
        local lines = {}
        for l in read_file(self.out):gmatch("[^\n]+") do lines[#lines + 1] = l end
        return lines
    end
    function gw:error_log() return read_file(self.err) end
    function gw:wait_log(pattern, timeout)
        return _M.wait_until(function()
            return self:error_log():find(pattern) or nil
        end, timeout or 3, "log line matching " .. pattern)
    end
    function gw:wait_access(n, timeout)
        return _M.wait_until(function() return #self:access_log() >= n end, timeout or 3,
            n .. " access log lines")
    end
    function gw:stop(sig)
        local code = _M.kill(self.proc, sig, 15 * _M.slow)
        check_sanitizer(self.proc)
        return code
    end
    function gw:pid() return self.proc.pid end
    return gw
end

-- ---- an HTTP/1.1 client on luasocket -------------------------------------

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
