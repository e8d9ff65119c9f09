-- forward_auth through the real gateway, with a real auth service (the
-- spec backend's /auth: "Bearer good" passes, anything else gets 401).
local h = require("spec.helpers")
local socket = require("socket")

local GOOD = { Authorization = "Bearer good" }

-- A gateway whose route runs forward_auth (options in mw) in front of a
-- backend; returns gateway, backend, auth service.
local function gateway(mw, opts)
    opts = opts or {}
    local b = h.start_backend({ name = "api" })
    local auth = opts.auth or h.start_backend({ name = "auth" })
    mw.plugin = "forward_auth"
    mw.address = mw.address or ("http://127.0.0.1:" .. auth.port .. "/auth")
    local gw = h.start_gateway({ config = {
        workers = opts.workers,
        middlewares = { fa = mw },
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { "fa" } } },
    } })
    return gw, b, auth
end

local function backend_requests(b)
    return h.json(h.request(b.port, { path = "/stats" })).requests - 1 -- this /stats itself
end

local gauge = require("spec.support.metrics").sum

local function settled(gw)
    return gauge(gw, "moongate_hook_waits") == 0 and gauge(gw, "moongate_lua_io_waits") == 0
        and gauge(gw, "moongate_lua_requests_pending") == 0
end

describe("forward_auth", function()
    after_each(h.cleanup)

    it("lets an authenticated request through with the auth service's headers", function()
        local gw, b = gateway({ auth_response_headers = { "X-Auth-User" },
                                auth_response_headers_regex = "^X-Auth-Saw-",
                                add_auth_cookies_to_response = { "session" } })
        local res = h.request(gw.port, { path = "/app/x?q=1", host = "app.test",
            headers = { Authorization = "Bearer good", ["X-Forwarded-Uri"] = "/forged",
                        ["X-Auth-User"] = "mallory", ["X-Client-Header"] = "hi" } })
        assert.equal(200, res.status)
        local seen = h.json(res).headers
        assert.equal("alice", seen["x-auth-user"]) -- replaced, not the client's
        assert.is_nil(seen["x-auth-role"])          -- not asked for
        assert.is_nil(seen["x-other"])
        -- what the auth service got, copied by the regex
        assert.equal("/app/x?q=1", seen["x-auth-saw-uri"]) -- the client's own X-Forwarded-Uri is not trusted
        assert.equal("GET", seen["x-auth-saw-method"])
        assert.equal("app.test", seen["x-auth-saw-host"])
        assert.equal("http", seen["x-auth-saw-proto"])
        assert.equal("127.0.0.1", seen["x-auth-saw-for"])
        assert.equal("hi", seen["x-auth-saw-client-header"]) -- client headers go to the auth service
        -- only the cookie asked for reaches the client
        local cookies = {}
        for _, hd in ipairs(res.list) do
            if hd[1]:lower() == "set-cookie" then cookies[#cookies + 1] = hd[2] end
        end
        assert.same({ "session=abc; Path=/" }, cookies)
        assert.equal(1, backend_requests(b))
    end)

    it("sends only auth_request_headers and keeps trusted X-Forwarded-* headers", function()
        local gw = gateway({ auth_request_headers = { "Authorization" }, trust_forward_header = true,
                             auth_response_headers_regex = "^X-Auth-Saw-" })
        local res = h.request(gw.port, { path = "/y", headers = {
            Authorization = "Bearer good", ["X-Client-Header"] = "hi", ["X-Forwarded-For"] = "192.0.2.7" } })
        assert.equal(200, res.status)
        local seen = h.json(res).headers
        assert.is_nil(seen["x-auth-saw-client-header"])
        assert.equal("192.0.2.7, 127.0.0.1", seen["x-auth-saw-for"])
    end)

    it("answers with the auth service's denial and never reaches the backend", function()
        local gw, b = gateway({})
        local res = h.request(gw.port, { path = "/private" })
        assert.equal(401, res.status)
        assert.equal("denied by auth\n", res.body)
        assert.equal('Bearer realm="spec"', res.headers["www-authenticate"])
        assert.equal("tried=1", res.headers["set-cookie"])
        assert.equal("text/plain", res.headers["content-type"])
        assert.equal(0, backend_requests(b))
        -- the client connection stays usable after a denial
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/a" })
        assert.equal(401, c:read_response({}).status)
        c:send_request({ path = "/b", headers = GOOD })
        assert.equal(200, c:read_response({}).status)
        c:close()
    end)

    it("answers 502 when the auth service is down, and logs why", function()
        local port = h.free_port() -- nothing listens
        local gw, b = gateway({ address = "http://127.0.0.1:" .. port .. "/auth" }, { auth = { port = port } })
        local res = h.request(gw.port, { headers = GOOD })
        assert.equal(502, res.status)
        assert.truthy(res.body:find("authentication service", 1, true), res.body)
        gw:wait_log("authentication service http://127%.0%.0%.1:" .. port .. "/auth: connect failed")
        assert.equal(0, backend_requests(b))
    end)

    it("answers 504 when the auth service is too slow, and the worker serves on meanwhile", function()
        local auth = h.start_backend({ name = "auth" })
        local b = h.start_backend({ name = "api" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = {
                { rule = "PathPrefix(`/slow`)", service = "api", middlewares = { { plugin = "forward_auth",
                    address = "http://127.0.0.1:" .. auth.port .. "/auth?delay=3000", timeout = 0.5 } } },
                { rule = "PathPrefix(`/`)", service = "api" },
            },
        } })
        local t0 = socket.gettime()
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/slow", headers = GOOD })
        -- one worker: a plain request is answered while the other waits
        assert.equal(200, h.request(gw.port, { path = "/plain" }).status)
        assert.is_true(socket.gettime() - t0 < 0.4 * h.slow, "the plain request did not wait")
        local res = assert(c:read_response({}))
        c:close()
        assert.equal(504, res.status)
        assert.is_true(socket.gettime() - t0 < 2 * h.slow)
        gw:wait_log("authentication service .*: timed out; answering 504")
    end)

    it("frees a request whose client goes away while the auth service thinks", function()
        local auth = h.start_backend({ name = "auth" })
        local gw, b = gateway({ address = "http://127.0.0.1:" .. auth.port .. "/auth?delay=600" }, { auth = auth })
        -- a GET whose client closes, and a POST whose body never comes
        local c1 = assert(h.connect(gw.port))
        c1:send_raw("GET /gone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n\r\n")
        local c2 = assert(h.connect(gw.port))
        c2:send_raw("POST /gone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nContent-Length: 100\r\n\r\nabc")
        h.wait_until(function() return gauge(gw, "moongate_hook_waits") == 2 end, 3, "two waiting requests")
        c1.sock:setoption("linger", { on = true, timeout = 0 }) -- a reset, not a half-close
        c1:close()
        c2:close()
        h.wait_until(function() return settled(gw) end, 5, "waits and runtime state back to 0")
        assert.equal(200, h.request(gw.port, { headers = GOOD }).status)
        h.wait_until(function() return settled(gw) end, 5, "back to 0 after a normal request")
        local log = gw:error_log()
        assert.is_nil(log:find("failed", 1, true), log)
        local _ = b
    end)

    it("cancels the waits of a worker that stops, and exits cleanly", function()
        local auth = h.start_backend({ name = "auth" })
        local b = h.start_backend({ name = "api" })
        local gw = h.start_gateway({ config = {
            workers = 2,
            timeouts = { grace = 0.3 },
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { { plugin = "forward_auth",
                address = "http://127.0.0.1:" .. auth.port .. "/auth?delay=5000", timeout = 30 } } } },
        } })
        local conns = {}
        for i = 1, 6 do
            conns[i] = assert(h.connect(gw.port))
            conns[i]:send_request({ path = "/stop/" .. i, headers = GOOD })
        end
        h.wait_until(function() return gauge(gw, "moongate_hook_waits") == 6 end, 3, "six waiting requests")
        local t0 = socket.gettime()
        assert.equal(0, gw:stop()) -- a sanitizer build also reports leaks here
        assert.is_true(socket.gettime() - t0 < 4 * h.slow, "the stop did not wait for the auth service")
        for _, c in ipairs(conns) do c:close() end
    end)

    it("holds many requests at once without blocking the worker", function()
        local auth = h.start_backend({ name = "auth" })
        local gw = gateway({ address = "http://127.0.0.1:" .. auth.port .. "/auth?delay=400" }, { auth = auth })
        local n = 40
        local conns = {}
        local t0 = socket.gettime()
        for i = 1, n do
            conns[i] = assert(h.connect(gw.port))
            conns[i]:send_request({ path = "/many/" .. i, headers = GOOD })
        end
        h.wait_until(function() return gauge(gw, "moongate_hook_waits") >= n / 2 end, 3, "requests waiting at once")
        for i = 1, n do
            local res = assert(conns[i]:read_response({}))
            assert.equal(200, res.status)
            assert.equal("/many/" .. i, h.json(res).path)
            conns[i]:close()
        end
        -- 40 waits of 0.4 s one after another would take 16 s
        assert.is_true(socket.gettime() - t0 < 8 * h.slow, "the waits overlapped")
        h.wait_until(function() return settled(gw) end, 5, "waits back to 0")
    end)

    it("passes a POST body on once the auth service said yes", function()
        local auth = h.start_backend({ name = "auth" })
        local gw = gateway({ address = "http://127.0.0.1:" .. auth.port .. "/auth?delay=100" }, { auth = auth })
        local body = string.rep("0123456789abcdef", 16384) -- 256 KiB, more than the socket buffers take at once
        local res = h.request(gw.port, { method = "POST", path = "/echo", body = body, headers = GOOD })
        assert.equal(200, res.status)
        assert.equal(#body, #res.body)
        assert.is_true(res.body == body)
        local chunked = h.request(gw.port, { method = "POST", path = "/echo", body = { "abc", "def" }, headers = GOOD })
        assert.equal("abcdef", chunked.body)
        assert.equal(401, h.request(gw.port, { method = "POST", path = "/echo", body = "x" }).status)
    end)

    it("holds an HTTP/2 request and its body the same way", function()
        local auth = h.start_backend({ name = "auth" })
        local gw = gateway({ address = "http://127.0.0.1:" .. auth.port .. "/auth?delay=100" }, { auth = auth })
        local dir = h.tmpdir()
        local body = string.rep("h2 body ", 20000)
        h.write_file(dir .. "/body", body)
        local url = "http://127.0.0.1:" .. gw.port .. "/echo"
        local code, out = h.curl("--http2-prior-knowledge", "-H", "Authorization: Bearer good",
                                 "--data-binary", "@" .. dir .. "/body", url)
        assert.equal(200, code)
        assert.is_true(out == body, "the body came back changed")
        code, out = h.curl("--http2-prior-knowledge", url)
        assert.equal(401, code)
        assert.equal("denied by auth\n", out)
    end)

    it("asks an HTTPS auth service, verified against tls.ca or not at all", function()
        local t = require("spec.tls.support")
        local dir = h.tmpdir()
        local cert, key = t.make_cert(dir, "auth", { names = { "localhost" }, ip = "127.0.0.1" })
        local port = h.free_port()
        h.spawn({ "openssl", "s_server", "-accept", "127.0.0.1:" .. port, "-cert", cert, "-key", key, "-www", "-quiet" })
        h.wait_until(function() return h.port_open(port) end, 5, "openssl s_server")
        local b = h.start_backend({ name = "api" })
        local url = "https://localhost:" .. port .. "/"
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = {
                { rule = "PathPrefix(`/ca`)", service = "api",
                  middlewares = { { plugin = "forward_auth", address = url, tls = { ca = cert } } } },
                { rule = "PathPrefix(`/skip`)", service = "api",
                  middlewares = { { plugin = "forward_auth", address = url, tls = { insecure_skip_verify = true } } } },
                { rule = "PathPrefix(`/system`)", service = "api",
                  middlewares = { { plugin = "forward_auth", address = url } } },
            },
        } })
        assert.equal(200, h.request(gw.port, { path = "/ca" }).status)
        assert.equal(200, h.request(gw.port, { path = "/skip" }).status)
        assert.equal(502, h.request(gw.port, { path = "/system" }).status)
        gw:wait_log("certificate verify failed")
    end)

    it("is configured by Traefik's labels", function()
        local lm = require("moongate.label_middlewares")
        local out = assert(lm.for_container({
            ["traefik.http.routers.r.middlewares"] = "fa@docker",
            ["traefik.http.middlewares.fa.forwardauth.address"] = "https://auth:9000/check",
            ["traefik.http.middlewares.fa.forwardauth.trustForwardHeader"] = "true",
            ["traefik.http.middlewares.fa.forwardauth.authResponseHeaders"] = "X-User,X-Role",
            ["traefik.http.middlewares.fa.forwardauth.authResponseHeadersRegex"] = "^X-Auth-",
            ["traefik.http.middlewares.fa.forwardauth.authRequestHeaders"] = "Cookie,Authorization",
            ["traefik.http.middlewares.fa.forwardauth.addAuthCookiesToResponse"] = "session",
            ["traefik.http.middlewares.fa.forwardauth.tls.ca"] = "/etc/ca.pem",
            ["traefik.http.middlewares.fa.forwardauth.tls.insecureSkipVerify"] = "true",
        }))
        assert.same({ { plugin = "forward_auth", address = "https://auth:9000/check", trust_forward_header = true,
                        auth_response_headers = { "X-User", "X-Role" }, auth_response_headers_regex = "^X-Auth-",
                        auth_request_headers = { "Cookie", "Authorization" },
                        add_auth_cookies_to_response = { "session" },
                        tls = { ca = "/etc/ca.pem", insecure_skip_verify = true } } }, out)
        local own = assert(lm.for_container({
            ["moongate.middlewares"] = '["fa"]',
            ["moongate.middlewares.fa.plugin"] = "forward_auth",
            ["moongate.middlewares.fa.address"] = "http://auth:9000/",
            ["moongate.middlewares.fa.timeout"] = "2",
        }, { "fa" }))
        assert.same({ { plugin = "forward_auth", address = "http://auth:9000/", timeout = 2 } }, own)
    end)

    it("runs the label form through the gateway's config check", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/moongate.lua", [[
return {
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api",
      middlewares = { { plugin = "forward_auth", address = "ftp://x", tls = { cert = "/c.pem" } } } } },
}]])
        local f = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1")
        local out = f:read("*a")
        f:close()
        assert.truthy(out:find("must be an http:// or https:// URL", 1, true), out)
    end)
end)
