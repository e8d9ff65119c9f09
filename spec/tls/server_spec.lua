-- TLS listeners of the real gateway with real clients (openssl s_client,
-- curl).
local h = require("spec.helpers")
local t = require("spec.tls.support")
local cjson = require("cjson")

local function setup(extra_listen)
    local dir = h.tmpdir()
    local c = {}
    c.default_cert, c.default_key = t.make_cert(dir, "default", { names = { "default.test" } })
    c.site_cert, c.site_key = t.make_cert(dir, "site", { names = { "site.test", "www.site.test" } })
    c.site_rsa_cert, c.site_rsa_key = t.make_cert(dir, "site-rsa", { names = { "site.test" }, type = "rsa" })
    c.wild_cert, c.wild_key = t.make_cert(dir, "wild", { names = { "*.apps.test" } })
    local port, http_port = h.free_port(), h.free_port()
    local listen = { { address = "127.0.0.1:" .. port, tls = true, name = "websecure" },
                     { address = "127.0.0.1:" .. http_port, name = "web" } }
    for k, v in pairs(extra_listen or {}) do listen[2][k] = v end
    local cfg = {
        listen = listen,
        tls = { certificates = {
            { cert = c.default_cert, key = c.default_key },
            { cert = c.site_cert, key = c.site_key },
            { cert = c.site_rsa_cert, key = c.site_rsa_key },
            { cert = c.wild_cert, key = c.wild_key },
        } },
    }
    c.cfg, c.dir, c.port, c.http_port = cfg, dir, port, http_port
    return c
end

local function subject(out)
    local pem = t.peer_cert(out)
    return pem and t.cert_subject_serial(pem):match("subject=CN = ([^\n]+)")
end

describe("a TLS listener", function()
    after_each(h.cleanup)

    it("chooses the certificate by SNI, with wildcards, and the first as the default", function()
        local c = setup()
        t.start_server(c.cfg, c.dir)
        assert.equal("site.test", subject(t.s_client(c.port, "-servername site.test")))
        assert.equal("site.test", subject(t.s_client(c.port, "-servername www.site.test")))
        assert.equal("*.apps.test", subject(t.s_client(c.port, "-servername shop.apps.test")))
        assert.equal("default.test", subject(t.s_client(c.port, "-servername a.b.apps.test")))
        assert.equal("default.test", subject(t.s_client(c.port, "-servername unknown.test")))
        assert.equal("default.test", subject(t.s_client(c.port, "-noservername")))
    end)

    it("serves the ECDSA or the RSA certificate of a name by what the client accepts", function()
        local c = setup()
        t.start_server(c.cfg, c.dir)
        local ec = t.s_client(c.port, "-servername site.test -sigalgs ECDSA+SHA256")
        local rsa = t.s_client(c.port, "-servername site.test -sigalgs RSA-PSS+SHA256:RSA+SHA256")
        assert.truthy(ec:find("Peer signature type: ECDSA", 1, true), ec)
        assert.truthy(rsa:find("Peer signature type: RSA", 1, true), rsa)
    end)

    it("answers curl over TLS 1.3 with ALPN http/1.1 and shows the SNI name", function()
        local c = setup()
        t.start_server(c.cfg, c.dir)
        local code, body = t.curl({ "--http1.1", "--cacert", c.site_cert, "--resolve",
                                    "site.test:" .. c.port .. ":127.0.0.1", "https://site.test:" .. c.port .. "/hello" })
        assert.equal(200, code, body)
        local info = cjson.decode(body)
        assert.equal("site.test", info.sni)
        assert.equal("TLSv1.3", info.version)
        assert.equal("http/1.1", info.alpn)
        assert.equal("/hello", info.path)
    end)

    it("negotiates ALPN from the listener's list and refuses protocols it does not have", function()
        local c = setup()
        t.start_server(c.cfg, c.dir)
        assert.truthy(t.s_client(c.port, "-alpn h2,http/1.1"):find("ALPN protocol: h2", 1, true))
        assert.truthy(t.s_client(c.port, "-alpn http/1.1"):find("ALPN protocol: http/1.1", 1, true))
        assert.truthy(t.s_client(c.port, "-alpn h3"):find("No ALPN negotiated", 1, true))
    end)

    it("offers only http/1.1 on a listener with http2 = false", function()
        local c = setup()
        c.cfg.listen[1].http2 = false
        t.start_server(c.cfg, c.dir)
        assert.truthy(t.s_client(c.port, "-alpn h2,http/1.1"):find("ALPN protocol: http/1.1", 1, true))
        assert.truthy(t.s_client(c.port, "-alpn h2"):find("No ALPN negotiated", 1, true))
    end)

    it("refuses TLS 1.0 and 1.1 and, with min_version 1.3, TLS 1.2", function()
        local c = setup()
        local s = t.start_server(c.cfg, c.dir)
        for _, v in ipairs({ "-tls1", "-tls1_1" }) do
            local out = t.s_client(c.port, v .. " -cipher DEFAULT@SECLEVEL=0")
            assert.falsy(out:find("Cipher is ECDHE", 1, true), out)
        end
        s:wait_log("TLS handshake: unsupported protocol")
        assert.truthy(t.s_client(c.port, "-tls1_2"):find("New, TLSv1.2", 1, true))
        s:stop()
        c.cfg.tls.min_version = "1.3"
        t.start_server(c.cfg, c.dir)
        assert.falsy(t.s_client(c.port, "-tls1_2"):find("New, TLSv1.2", 1, true))
        assert.truthy(t.s_client(c.port, "-tls1_3"):find("New, TLSv1.3", 1, true))
    end)

    for _, v in ipairs({ "-tls1_2", "-tls1_3" }) do
        it("resumes " .. v:sub(2) .. " sessions from tickets", function()
            local c = setup()
            t.start_server(c.cfg, c.dir)
            local sess = c.dir .. "/session" .. v
            local req = "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n"
            local first = t.s_client(c.port, v .. " -servername site.test -ign_eof -sess_out " .. sess, req)
            assert.truthy(first:find("New, TLS", 1, true), first)
            local again = t.s_client(c.port, v .. " -servername site.test -ign_eof -sess_in " .. sess, req)
            assert.truthy(again:find("Reused, TLS", 1, true), again)
            assert.truthy(again:find('"resumed":true', 1, true), again)
        end)
    end
end)

describe("certificate files", function()
    after_each(h.cleanup)

    local function serial(c, name)
        local pem = t.peer_cert(t.s_client(c.port, "-servername " .. name))
        return pem and t.cert_subject_serial(pem):match("serial=(%x+)")
    end

    local function file_serial(path)
        return t.cert_subject_serial(h.read_file(path)):match("serial=(%x+)")
    end

    it("are served within 2 s once renewed on disk, with no request failing meanwhile", function()
        local c = setup()
        t.start_server(c.cfg, c.dir)
        local old = serial(c, "site.test")
        assert.equal(file_serial(c.site_cert), old)
        -- a renewed pair, written next to the old one and renamed over it
        local new_cert, new_key = t.make_cert(c.dir, "renewed", { names = { "site.test", "www.site.test" } })
        local trust = c.dir .. "/trust.pem"
        h.write_file(trust, h.read_file(c.site_cert) .. h.read_file(new_cert))
        local codes = c.dir .. "/codes"
        local load = h.spawn({ "sh", "-c", string.format(
            "for i in $(seq 1 150); do curl -s --max-time 5 -o /dev/null -w '%%{http_code}\\n' --cacert %s " ..
            "--resolve site.test:%d:127.0.0.1 https://site.test:%d/; done > %s", t.q(trust), c.port, c.port, t.q(codes)) })
        h.wait_until(function() return #h.read_file(codes) > 40 end, 20, "requests before the renewal")
        assert(os.rename(new_key, c.site_key))
        assert(os.rename(new_cert, c.site_cert))
        local want = file_serial(c.site_cert)
        h.wait_until(function() return serial(c, "site.test") == want end, 2, "the renewed certificate")
        assert.equal(0, h.reap(load, 60 * h.slow))
        local n, bad = 0, {}
        for code in h.read_file(codes):gmatch("%d+") do
            n = n + 1
            if code ~= "200" then bad[#bad + 1] = code end
        end
        assert.equal(150, n)
        assert.same({}, bad)
    end)

    it("that break keep the last good certificate serving, and the log names the file", function()
        local c = setup()
        local s = t.start_server(c.cfg, c.dir)
        local old = serial(c, "site.test")
        h.write_file(c.site_cert, "not a certificate\n")
        s:wait_log(c.site_cert:gsub("%p", "%%%0") .. ": no PEM certificate in it.*previous certificate keeps serving")
        assert.equal(old, serial(c, "site.test"))
        -- a valid certificate with another pair's key: mismatched
        h.write_file(c.site_cert, h.read_file(c.wild_cert))
        s:wait_log(c.site_key:gsub("%p", "%%%0") .. ": the private key does not match the certificate in")
        assert.equal(old, serial(c, "site.test"))
    end)

    it("that are missing or mismatched at start are a config error naming the file and line", function()
        local c = setup()
        c.cfg.tls.certificates[2].key = c.wild_key
        local path = c.dir .. "/bad.lua"
        c.cfg.admin = false
        h.write_file(path, "return " .. h.serialize(c.cfg) .. "\n")
        local out, code = t.sh(h.bin .. " check -c " .. t.q(path))
        assert.equal(1, code)
        assert.truthy(out:find("bad.lua:%d+: tls.certificates%[2%]: .*wild.key: the private key does not match"), out)
        c.cfg.tls.certificates[2].key = c.dir .. "/missing.key"
        h.write_file(path, "return " .. h.serialize(c.cfg) .. "\n")
        out, code = t.sh(h.bin .. " check -c " .. t.q(path))
        assert.equal(1, code)
        assert.truthy(out:find("missing.key: cannot read: No such file or directory", 1, true), out)
    end)
end)

describe("a plain listener", function()
    after_each(h.cleanup)

    it("with redirect = \"https\" sends every request to the TLS listener", function()
        local c = setup({ redirect = "https" })
        t.start_server(c.cfg, c.dir)
        local res = h.request(c.http_port, { path = "/cart?x=1", host = "site.test" })
        assert.equal(301, res.status)
        assert.equal("https://site.test:" .. c.port .. "/cart?x=1", res.headers.location)
    end)

    it("answers ACME HTTP-01 challenges before redirecting (and 404 for unknown tokens)", function()
        local c = setup({ redirect = "websecure" })
        t.start_server(c.cfg, c.dir)
        local res = h.request(c.http_port, { path = "/.well-known/acme-challenge/nope", host = "site.test" })
        assert.equal(404, res.status)
    end)
end)
