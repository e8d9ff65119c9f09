-- Helpers for specs that drive the real gateway: start backends and the
-- moongate binary as real processes on loopback, talk HTTP to them over
-- real sockets, read their logs, and stop everything afterwards.
--
--   local h = require("moongate.test")
--
-- Everything they need ships inside the binary (this module, the HTTP
-- client, the backends' scripts), so `moongate test` works from any folder:
-- the backends are written to a temporary folder when first started. Needs
-- Debian's lua-socket, lua-posix and python3. Documented in docs/testing.md.
local socket = require("socket")
local unistd = require("posix.unistd")
local wait = require("posix.sys.wait")
local signal = require("posix.signal")
local fcntl = require("posix.fcntl")
local stdlib = require("posix.stdlib")
local stat = require("posix.sys.stat")
local dirent = require("posix.dirent")
local client = require("moongate.test.client")

local _M = {}

for k, v in pairs(client) do _M[k] = v end

-- The binary under test: $MOONGATE_BIN, else the moongate running this spec.
local function self_exe()
    if not require("moongate").in_gateway then return nil end
    return unistd.readlink("/proc/self/exe")
end
-- Absolute, so that it still names the binary from another folder.
local function absolute(path)
    return stdlib.realpath(path) or path
end
_M.bin = absolute(os.getenv("MOONGATE_BIN") or self_exe() or "build/moongate")
_M.sanitized = os.getenv("MG_SANITIZED") == "1"
-- Sanitized builds start and run slower: stretch waits, never assertions.
_M.slow = client.slow

local procs = {}
local dirs = {}

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

-- The kernel may hand the same free port out twice in a row: never give a
-- spec the same one twice.
local given_ports = {}

function _M.free_port()
    for _ = 1, 20 do
        local s = assert(socket.bind("127.0.0.1", 0))
        local _, port = s:getsockname()
        s:close()
        port = tonumber(port)
        if not given_ports[port] then
            given_ports[port] = true
            return port
        end
    end
    error("no fresh free port", 2)
end

-- A fresh directory under /tmp, removed by cleanup().
function _M.tmpdir()
    local dir = assert(stdlib.mkdtemp("/tmp/moongate-spec-XXXXXX"))
    dirs[#dirs + 1] = dir
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

local function remove_tree(path)
    local st = stat.lstat(path)
    if not st then return end
    if stat.S_ISDIR(st.st_mode) ~= 0 then
        for name in dirent.files(path) do
            if name ~= "." and name ~= ".." then remove_tree(path .. "/" .. name) end
        end
        unistd.rmdir(path)
    else
        os.remove(path)
    end
end

-- Starts argv with stdout/stderr to files (stderr defaults to a temporary
-- file, so a failure can say why); returns a process handle.
function _M.spawn(argv, opts)
    opts = opts or {}
    local errfile = opts.stderr or (_M.tmpdir() .. "/stderr")
    local pid = assert(unistd.fork())
    if pid == 0 then
        if opts.cwd then unistd.chdir(opts.cwd) end
        local out = fcntl.open(opts.stdout or "/dev/null", fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC, 420)
        local err = fcntl.open(errfile, fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC, 420)
        local null = fcntl.open("/dev/null", fcntl.O_RDONLY)
        unistd.dup2(null, 0)
        unistd.dup2(out, 1)
        unistd.dup2(err, 2)
        for k, v in pairs(opts.env or {}) do stdlib.setenv(k, v) end
        local _, why = unistd.execp(argv[1], { select(2, unpack(argv)) })
        unistd.write(2, "cannot run " .. argv[1] .. ": " .. tostring(why) .. "\n")
        unistd._exit(127)
    end
    local p = { pid = pid, argv = argv, errfile = errfile }
    procs[#procs + 1] = p
    return p
end

-- Waits for a process to exit; returns its exit code (or nil on timeout).
-- A process killed by signal N reads 128 + N; p.how says which it was.
function _M.reap(p, timeout)
    if p.code then return p.code end
    local deadline = socket.gettime() + (timeout or 5)
    repeat
        local pid, how, code = wait.wait(p.pid, wait.WNOHANG)
        if pid == p.pid then
            p.how = how
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

-- Stops everything the helpers started and removes their temporary
-- folders. Call from after_each or finally.
function _M.cleanup()
    local bad
    for i = #procs, 1, -1 do
        _M.kill(procs[i], signal.SIGTERM, 5 * _M.slow)
        local ok, err = pcall(check_sanitizer, procs[i])
        if not ok then bad = err end
        procs[i] = nil
    end
    for i = #dirs, 1, -1 do
        remove_tree(dirs[i])
        dirs[i] = nil
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

-- Why a process is not serving: how it ended (or that it still runs) and
-- the tail of its stderr.
local function why_not(p)
    local state
    if _M.reap(p, 0) then
        state = p.how == "exited" and ("exited with status " .. p.code)
            or ("killed by signal " .. (p.code - 128))
    else
        state = "still running but not listening"
    end
    local err = p.errfile and read_file(p.errfile) or ""
    if #err > 4000 then err = "..." .. err:sub(-4000) end
    return state .. (err ~= "" and ("; its stderr:\n" .. err) or "; nothing on its stderr")
end
_M.why_not = why_not

local function wait_port(port, p, what, host)
    local deadline = socket.gettime() + 5 * _M.slow
    while socket.gettime() < deadline do
        if _M.port_open(port, host) then return end
        if _M.reap(p, 0) then break end
        sleep(0.02)
    end
    error(string.format("%s did not start on %s:%d: %s", what, host or "127.0.0.1", port, why_not(p)), 3)
end

-- The backends' scripts, embedded in the binary. In a source tree the
-- copy on disk wins, as lua/ does, so edits need no rebuild.
local scripts = {}

local function script(name)
    local path = scripts[name]
    if path and stat.stat(path) then return path end
    local rel = "lua/moongate/test/" .. name
    local src = stat.stat(rel) and read_file(rel)
    if not src or src == "" then
        local embedded = package.loaded["moongate.c.embedded"]
        src = embedded and embedded(rel)
    end
    if not src then error("no " .. rel .. " on disk or in this binary (run the specs with moongate test)", 3) end
    path = _M.tmpdir() .. "/" .. name
    write_file(path, src)
    scripts[name] = path
    return path
end

-- A real HTTP/1.1 backend (backend.py): every answer carries
-- X-Backend: name; see docs/testing.md for its endpoints.
function _M.start_backend(opts)
    opts = opts or {}
    local port = opts.port or _M.free_port()
    local name = opts.name or ("b" .. port)
    local host = opts.host or "127.0.0.1"
    local argv = { "python3", script("backend.py"), "--name", name, "--port", tostring(port),
                   "--host", host }
    -- a small listen backlog, as Python's http.server has by default (5)
    if opts.backlog then argv[#argv + 1] = "--backlog"; argv[#argv + 1] = tostring(opts.backlog) end
    local p = _M.spawn(argv)
    wait_port(port, p, "backend " .. name, host)
    return { port = port, name = name, proc = p, address = host .. ":" .. port,
             stop = function() return _M.kill(p) end }
end

-- A backend answering every request with the bytes in opts.response.
function _M.start_raw_backend(opts)
    local port = opts.port or _M.free_port()
    local dir = _M.tmpdir()
    write_file(dir .. "/response", opts.response)
    local argv = { "python3", script("raw_backend.py"), "--port", tostring(port),
                   "--response-file", dir .. "/response" }
    if opts.close then argv[#argv + 1] = "--close" end
    if opts.delay then argv[#argv + 1] = "--delay"; argv[#argv + 1] = tostring(opts.delay) end
    if opts.idle_close then argv[#argv + 1] = "--idle-close"; argv[#argv + 1] = tostring(opts.idle_close) end
    if opts.answers then argv[#argv + 1] = "--answers"; argv[#argv + 1] = tostring(opts.answers) end
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
    if port then wait_port(port, gw.proc, "moongate") end
    -- the admin API starts after the workers listen: wait for it too
    if admin_port then wait_port(admin_port, gw.proc, "moongate's admin API") end
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

return _M
