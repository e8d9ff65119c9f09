-- HTTP/2 from clients through the real gateway to real HTTP/1.1 backends:
-- h2 over TLS chosen by ALPN, h2c with prior knowledge, streams as
-- requests (routing, balancing), bodies both ways with flow control, and
-- bounded memory for clients that do not read. Clients: curl, nghttp,
-- h2load (Debian's nghttp2-client) and spec/support/h2raw.py.
local h = require("spec.helpers")
local t = require("spec.tls.support")
local cjson = require("cjson")

local RAW = "spec/support/h2raw.py"

local function rss_kb(pid)
    local s = h.read_file("/proc/" .. pid .. "/status") or ""
    return tonumber(s:match("VmRSS:%s+(%d+)")) or 0
end

-- A gateway with a plain and a TLS listener before backends A and B
-- (round robin), and the extra config in opts.
local function setup(opts)
    opts = opts or {}
    local dir = h.tmpdir()
    local cert, key = t.make_cert(dir, "site", { names = { "localhost" } })
    local a = h.start_backend({ name = "A" })
    local b = opts.one_backend and a or h.start_backend({ name = "B" })
    local plain, tls = h.free_port(), h.free_port()
    local cfg = {
        listen = { { address = "127.0.0.1:" .. plain, http2 = opts.plain_http2 },
                   { address = "127.0.0.1:" .. tls, tls = true, http2 = opts.tls_http2 } },
        tls = { certificates = { { cert = cert, key = key } } },
        services = { api = { targets = opts.one_backend and { a.address } or { a.address, b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        http2 = opts.http2,
        access_log = "json",
    }
    local gw = h.start_gateway({ config = cfg })
    local s = { gw = gw, a = a, b = b, plain = plain, tls = tls, cert = cert, dir = dir }
    s.https = "https://localhost:" .. tls
    s.http = "http://127.0.0.1:" .. plain
    return s
end

-- curl: returns status, body, HTTP version.
local function curl(args)
    local parts = { "curl -sS --max-time 20 -o - -w '\\n%{http_code} %{http_version}'" }
    for _, a in ipairs(args) do parts[#parts + 1] = t.q(a) end
    local out = t.sh(table.concat(parts, " "))
    local body, code, ver = out:match("^(.*)\n(%d+) ([%d.]+)$")
    return tonumber(code), body or out, ver
end

local function raw(port, ...)
    local out = t.sh("timeout 30 python3 " .. RAW .. " " .. port .. " " .. table.concat({ ... }, " "))
    local ok, v = pcall(cjson.decode, out:match("{.*}") or "")
    assert(ok, out)
    return v
end

describe("HTTP/2 from clients", function()
    after_each(h.cleanup)

    it("is chosen by ALPN h2 on a TLS listener and by the preface on a plain one", function()
        local s = setup()
        local code, body, ver = curl({ "--http2", "--cacert", s.cert, s.https .. "/over-tls?x=1" })
        assert.equal(200, code, body)
        assert.equal("2", ver)
        local j = cjson.decode(body)
        assert.equal("/over-tls", j.path)
        assert.equal("localhost:" .. s.tls, j.headers.host) -- :authority became Host
        assert.equal("https", j.headers["x-forwarded-proto"])
        code, body, ver = curl({ "--http2-prior-knowledge", s.http .. "/h2c" })
        assert.equal(200, code, body)
        assert.equal("2", ver)
        assert.equal("/h2c", cjson.decode(body).path)
        -- HTTP/1.1 still answers on both listeners
        code, body, ver = curl({ "--http1.1", "--cacert", s.cert, s.https .. "/one" })
        assert.equal(200, code, body)
        assert.equal("1.1", ver)
        code, body, ver = curl({ s.http .. "/one" })
        assert.equal(200, code, body)
        assert.equal("1.1", ver)
        s.gw:wait_access(4)
        local log = s.gw:access_log()
        local first = cjson.decode(log[1])
        assert.equal("HTTP/2.0", first.protocol)
        assert.equal(1, first.stream)
        assert.equal("HTTP/1.1", cjson.decode(log[4]).protocol)
    end)

    it("can be turned off per listener and for the whole gateway", function()
        local s = setup({ plain_http2 = false, tls_http2 = false })
        local code, body, ver = curl({ "--http2", "--cacert", s.cert, s.https .. "/" })
        assert.equal(200, code, body)
        assert.equal("1.1", ver) -- ALPN fell back to http/1.1
        -- a preface on a plain HTTP/1 listener is a malformed HTTP/1 request
        code = curl({ "--http2-prior-knowledge", s.http .. "/" })
        assert.is_not.equal(200, code)
        h.cleanup()
        s = setup({ http2 = { enabled = false } })
        code, body, ver = curl({ "--http2", "--cacert", s.cert, s.https .. "/" })
        assert.equal("1.1", ver)
    end)

    it("maps response heads without connection-specific fields and passes trailers", function()
        local s = setup({ one_backend = true })
        local out = t.sh("timeout 10 nghttp -v " .. s.http .. "/chunked?n=3\\&size=10\\&trailer=1")
        assert.truthy(out:find(":status: 200", 1, true), out)
        assert.truthy(out:find("x-backend: A", 1, true), out)
        assert.falsy(out:find("transfer-encoding", 1, true), out)
        assert.falsy(out:find("connection:", 1, true), out)
        -- the trailer comes in a HEADERS frame after the DATA
        assert.truthy(out:find("recv HEADERS frame.-x%-checksum: ") , out)
        local code, _, ver = curl({ "--http2-prior-knowledge", "-I", s.http .. "/nocontent" })
        assert.equal(204, code)
        assert.equal("2", ver)
    end)

    it("balances many concurrent streams of few connections over the targets", function()
        local s = setup()
        local out = t.sh("timeout 60 h2load -n 400 -c 4 -m 50 " .. s.http .. "/")
        assert.truthy(out:find("400 succeeded", 1, true), out)
        out = t.sh("timeout 60 h2load -n 400 -c 2 -m 100 " .. s.https .. "/")
        assert.truthy(out:find("400 succeeded", 1, true), out)
        assert.truthy(out:find("Application protocol: h2", 1, true), out)
        -- one connection, 20 streams at once: both backends answered, alternately
        out = t.sh("timeout 30 nghttp -n -m 20 -v " .. s.http .. "/ 2>&1 | grep -c 'x-backend: A'; " ..
                   "timeout 30 nghttp -m 20 " .. s.http .. "/")
        local a_count = tonumber(out:match("^(%d+)"))
        assert.equal(10, a_count, out)
        local _, nb = out:gsub('"backend": "B"', "")
        assert.equal(10, nb, out)
        local sa = cjson.decode((t.sh("curl -s http://" .. s.a.address .. "/stats")))
        local sb = cjson.decode((t.sh("curl -s http://" .. s.b.address .. "/stats")))
        -- 820 requests (and the /stats calls): a fair share each
        assert.is_true(sa.requests + sb.requests >= 822, cjson.encode({ sa, sb }))
        assert.is_true(sa.requests >= 350 and sb.requests >= 350, cjson.encode({ sa, sb }))
    end)

    it("streams a POST body larger than every window, over TLS and h2c", function()
        local s = setup({ one_backend = true })
        local file = s.dir .. "/up.bin"
        t.sh("head -c 6000000 /dev/urandom > " .. file)
        local sum = t.sh("sha1sum " .. file):match("^(%x+)")
        local code, body = curl({ "--http2", "--cacert", s.cert, "--data-binary", "@" .. file, s.https .. "/" })
        assert.equal(200, code, body)
        local j = cjson.decode(body)
        assert.equal(6000000, j.body_len)
        assert.equal(sum, j.body_sha1)
        -- echoed back: both directions at once on one stream
        local out = t.sh("curl -sS --max-time 20 --http2-prior-knowledge --data-binary @" .. file ..
                         " -H 'Content-Type: application/octet-stream' " .. s.http .. "/echo | sha1sum")
        assert.equal(sum, out:match("^(%x+)"))
    end)

    it("downloads 64 MiB with bounded memory", function()
        local s = setup({ one_backend = true })
        local before = rss_kb(s.gw:pid())
        local out = t.sh("curl -sS --max-time 60 --http2-prior-knowledge -o /dev/null " ..
                         "-w '%{size_download} %{http_version}' " .. s.http .. "/big?bytes=67108864")
        assert.equal("67108864 2", out)
        assert.is_true(rss_kb(s.gw:pid()) - before < 16 * 1024, "RSS grew by more than 16 MiB")
        -- with 64 KiB windows the client sends thousands of WINDOW_UPDATEs: not a flood
        out = t.sh("timeout 60 h2load -n 2 -c 1 -w 16 -W 16 " .. s.http .. "/big?bytes=67108864")
        assert.truthy(out:find("2 succeeded", 1, true), out)
    end)

    it("holds a client that never reads, or never opens its window, in bounded memory", function()
        local s = setup({ one_backend = true })
        local before = rss_kb(s.gw:pid())
        local path = "/big?bytes=67108864"
        local stall0 = h.spawn({ "python3", RAW, tostring(s.plain), "stall0", path, "3" },
                               { stdout = s.dir .. "/stall0.out" })
        local stalltcp = h.spawn({ "python3", RAW, tostring(s.plain), "stalltcp", path, "3" },
                                 { stdout = s.dir .. "/stalltcp.out" })
        local peak = 0
        h.wait_until(function()
            peak = math.max(peak, rss_kb(s.gw:pid()))
            return h.reap(stall0, 0) and h.reap(stalltcp, 0)
        end, 15, "the stalling clients to give up")
        assert.equal(4, cjson.decode(h.read_file(s.dir .. "/stall0.out")).heads)
        -- 8 streams of 64 MiB each: without flow control this would be 512 MiB
        assert.is_true(peak - before < 24 * 1024, "RSS grew by " .. (peak - before) .. " KiB")
        -- and the gateway still answers
        local code = curl({ "--http2-prior-knowledge", s.http .. "/" })
        assert.equal(200, code)
    end)
end)
