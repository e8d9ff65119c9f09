-- Helpers for the TLS specs: test certificates made with the openssl CLI
-- at test time (nothing secret is committed), the real gateway with a
-- middleware that answers with its TLS connection's facts, openssl s_client
-- and curl runs, and Debian's pebble ACME test CA with pebble-challtestsrv
-- as its DNS, all on loopback.
local h = require("spec.helpers")

local _M = {}

-- Runs a shell command; returns its output (stdout and stderr) and exit code.
local function sh(cmd)
    local f = io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"")
    local out = f:read("*a")
    f:close()
    local body, code = out:match("^(.*)__rc=(%d+)%s*$")
    return body or out, tonumber(code) or 1
end
_M.sh = sh

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
_M.q = q

-- A self-signed certificate and key in dir: opts.names (SANs; the first is
-- the CN), opts.type "ec" | "rsa", opts.days, opts.ip (an IP SAN), opts.ca
-- (a CA certificate). Returns cert_path, key_path.
function _M.make_cert(dir, base, opts)
    opts = opts or {}
    local names = opts.names or { "localhost" }
    local san = {}
    for _, n in ipairs(names) do san[#san + 1] = "DNS:" .. n end
    if opts.ip then san[#san + 1] = "IP:" .. opts.ip end
    local cert, key = dir .. "/" .. base .. ".pem", dir .. "/" .. base .. ".key"
    local newkey = opts.type == "rsa" and "-newkey rsa:2048" or "-newkey ec -pkeyopt ec_paramgen_curve:P-256"
    local ext = "-addext " .. q("subjectAltName=" .. table.concat(san, ","))
    if opts.ca then ext = ext .. " -addext basicConstraints=critical,CA:TRUE" end
    local out, code = sh(string.format("openssl req -x509 %s -nodes -keyout %s -out %s -days %d -subj %s %s",
        newkey, q(key), q(cert), opts.days or 2, q("/CN=" .. names[1]), ext))
    assert(code == 0, out)
    return cert, key
end

-- The facts openssl prints about a certificate file or PEM text.
function _M.cert_subject_serial(pem)
    local f = os.tmpname()
    h.write_file(f, pem)
    local out = sh("openssl x509 -noout -subject -issuer -serial -in " .. q(f))
    os.remove(f)
    return out
end

-- Runs openssl s_client against 127.0.0.1:port; args are extra flags.
-- Returns the whole output (handshake summary and the peer certificate).
function _M.s_client(port, args, input)
    local cmd = string.format("printf %s | timeout 10 openssl s_client -connect 127.0.0.1:%d -showcerts %s",
        q(input or ""), port, args or "")
    return sh(cmd)
end

-- The leaf certificate (PEM) s_client received.
function _M.peer_cert(out)
    return out:match("(%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-)")
end

-- curl with its status and body; args is a list of arguments.
function _M.curl(args)
    local parts = { "curl -sS --max-time 10 -o - -w '\\n%{http_code}'" }
    for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
    local out = sh(table.concat(parts, " "))
    local body, code = out:match("^(.*)\n(%d+)$")
    return tonumber(code), body or out
end

-- A middleware answering every request with what the gateway knows of
-- its connection, as JSON: the specs read SNI, version, ALPN from it.
local INFO_PLUGIN = [[
local mg = require("moongate")
return {
    type = "middleware",
    on_request = function(conf, req)
        req:respond(200, mg.json.encode({
            sni = req.sni, version = req.tls_version, alpn = req.tls_alpn,
            resumed = req.tls_resumed, scheme = req.scheme, path = req.path, host = req.host,
        }), { ["Content-Type"] = "application/json" })
    end,
}
]]

-- Starts the real gateway on config: every route (and a catch-all, added
-- when missing) answers with the connection info above. Returns
-- { proc, dir, err, error_log(), stop(), wait_log(pattern) }.
function _M.start_server(config, dir)
    dir = dir or h.tmpdir()
    local path = dir .. "/moongate.lua"
    config.admin = false
    config.workers = config.workers or 1
    config.plugins_dir = dir .. "/plugins"
    require("posix.sys.stat").mkdir(dir .. "/plugins")
    h.write_file(dir .. "/plugins/tls_info.lua", INFO_PLUGIN)
    config.services = config.services or {}
    config.routes = config.routes or {}
    if not config.services.info then config.services.info = { targets = { "127.0.0.1:9" } } end
    for _, r in ipairs(config.routes) do r.middlewares = { { plugin = "tls_info" } } end
    config.routes[#config.routes + 1] = { rule = "PathPrefix(`/`)", service = "info", priority = 1,
                                         middlewares = { { plugin = "tls_info" } } }
    h.write_file(path, "return " .. h.serialize(config) .. "\n")
    local bin = h.bin
    if bin:sub(1, 1) ~= "/" then bin = require("posix.unistd").getcwd() .. "/" .. bin end
    local s = { dir = dir, config_path = path, err = dir .. "/server.log" }
    s.proc = h.spawn({ bin, "-c", path }, { stderr = s.err, stdout = dir .. "/server.out" })
    function s:error_log() return h.read_file(self.err) end
    function s:wait_log(pattern, timeout)
        return h.wait_until(function() return self:error_log():find(pattern) end, timeout or 5,
            "log line matching " .. pattern .. " in:\n" .. self:error_log())
    end
    function s:stop() return h.kill(self.proc, nil, 10 * h.slow) end
    for _, l in ipairs(config.listen) do
        local port = tonumber(tostring(type(l) == "table" and l.address or l):match(":(%d+)$"))
        h.wait_until(function()
            if h.reap(s.proc, 0) then error("moongate exited:\n" .. s:error_log(), 0) end
            return h.port_open(port)
        end, 5, "moongate on port " .. port)
    end
    return s
end

-- Starts pebble-challtestsrv (DNS only: every name is 127.0.0.1) and
-- pebble, validating challenges for real (PEBBLE_VA_ALWAYS_VALID is never
-- set) against http_port and tls_port on 127.0.0.1. Returns
-- { directory, ca_file (trusts pebble's HTTPS listener), root() (the
-- issuing root, PEM), dir }.
function _M.start_pebble(http_port, tls_port)
    local dir = h.tmpdir()
    local cert, key = _M.make_cert(dir, "pebble-listener", { names = { "localhost" }, ip = "127.0.0.1", days = 2 })
    local dns_port, chall_mgmt = h.free_port(), h.free_port()
    local acme_port, mgmt_port = h.free_port(), h.free_port()
    local dns = h.spawn({ "pebble-challtestsrv", "-dns01", "127.0.0.1:" .. dns_port, "-http01", "",
                          "-https01", "", "-tlsalpn01", "", "-management", "127.0.0.1:" .. chall_mgmt,
                          "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "" },
        { stderr = dir .. "/challtestsrv.log", stdout = dir .. "/challtestsrv.out" })
    h.write_file(dir .. "/pebble.json", require("cjson").encode({ pebble = {
        listenAddress = "127.0.0.1:" .. acme_port, managementListenAddress = "127.0.0.1:" .. mgmt_port,
        certificate = cert, privateKey = key, httpPort = http_port, tlsPort = tls_port,
        ocspResponderURL = "", externalAccountBindingRequired = false } }))
    -- PEBBLE_VA_NOSLEEP only skips pebble's random pause before validating;
    -- validation itself is real. Nonces are still rejected 5% of the time.
    local p = h.spawn({ "pebble", "-config", dir .. "/pebble.json", "-dnsserver", "127.0.0.1:" .. dns_port },
        { stderr = dir .. "/pebble.log", stdout = dir .. "/pebble.out", env = { PEBBLE_VA_NOSLEEP = "1",
                                                                               PEBBLE_VA_ALWAYS_VALID = "0" } })
    h.wait_until(function()
        if h.reap(p, 0) then error("pebble exited: " .. h.read_file(dir .. "/pebble.out") .. h.read_file(dir .. "/pebble.log"), 0) end
        return h.port_open(acme_port) and h.port_open(mgmt_port) and h.port_open(chall_mgmt)
    end, 10, "pebble")
    local pb = { dir = dir, ca_file = cert, proc = p, dns = dns,
                 directory = "https://127.0.0.1:" .. acme_port .. "/dir" }
    function pb.root()
        local code, body = _M.curl({ "--cacert", cert, "https://127.0.0.1:" .. mgmt_port .. "/roots/0" })
        assert(code == 200, body)
        return body
    end
    function pb.log() return h.read_file(dir .. "/pebble.out") .. h.read_file(dir .. "/pebble.log") end
    return pb
end

return _M
