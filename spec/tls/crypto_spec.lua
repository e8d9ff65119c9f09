-- mg.crypto: the primitives certificate sources are built on, checked
-- against the openssl CLI and RFC test vectors.
local mg = require("moongate")
local h = require("spec.helpers")
local t = require("spec.tls.support")
local crypto = mg.crypto

local function tmp(data)
    local p = os.tmpname()
    h.write_file(p, data)
    return p
end

-- ES256's r||s as the DER SEQUENCE openssl verifies.
local function ecdsa_der(raw)
    local function int(b)
        b = b:gsub("^%z+", "")
        if b == "" or b:byte(1) >= 0x80 then b = "\0" .. b end
        return "\2" .. string.char(#b) .. b
    end
    local body = int(raw:sub(1, 32)) .. int(raw:sub(33, 64))
    return "\48" .. string.char(#body) .. body
end

local function verify(key_pem, data, sig)
    local key, pub = tmp(key_pem), os.tmpname()
    assert(select(2, t.sh("openssl pkey -in " .. key .. " -pubout -out " .. pub)) == 0)
    local d, s = tmp(data), tmp(sig)
    local out, code = t.sh(string.format("openssl dgst -sha256 -verify %s -signature %s %s", pub, s, d))
    for _, f in ipairs({ key, pub, d, s }) do os.remove(f) end
    return code == 0 and out:find("Verified OK", 1, true) ~= nil
end

describe("mg.crypto", function()
    it("encodes base64url without padding and decodes it back", function()
        assert.equal("", crypto.b64url(""))
        assert.equal("Zg", crypto.b64url("f"))
        assert.equal("-_8", crypto.b64url("\251\255"))
        assert.equal("\251\255", crypto.b64url_decode("-_8"))
        assert.equal("foobar", crypto.b64url_decode(crypto.b64url("foobar")))
        assert.is_nil(crypto.b64url_decode("a"))
    end)

    it("hashes with SHA-256", function()
        assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", crypto.hex(crypto.sha256("abc")))
    end)

    it("computes RFC 7638's thumbprint example", function()
        local jwk = { kty = "RSA", e = "AQAB", n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw" }
        assert.equal("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", crypto.thumbprint(jwk))
    end)

    it("makes P-256 keys whose JWK matches openssl's view of the key", function()
        local key = assert(crypto.key("ec"))
        local jwk, alg = crypto.jwk(key)
        assert.equal("ES256", alg)
        assert.equal("EC", jwk.kty)
        assert.equal("P-256", jwk.crv)
        local f = tmp(key)
        local out = t.sh("openssl pkey -in " .. f .. " -noout -text")
        os.remove(f)
        local hex = out:match("pub:%s*(.-)ASN1"):gsub("[%s:]", "")
        assert.equal("04" .. crypto.hex(crypto.b64url_decode(jwk.x)) .. crypto.hex(crypto.b64url_decode(jwk.y)), hex)
    end)

    it("signs JWS with ES256 and RS256 signatures that openssl verifies", function()
        for _, kind in ipairs({ "ec", "rsa" }) do
            local key = assert(crypto.key(kind, 2048))
            local jws = assert(crypto.jws(key, { nonce = "n1", url = "https://ca/x" }, { hello = "world" }))
            local protected = mg.json.decode(crypto.b64url_decode(jws.protected))
            assert.equal(kind == "ec" and "ES256" or "RS256", protected.alg)
            assert.equal("n1", protected.nonce)
            assert.equal("world", mg.json.decode(crypto.b64url_decode(jws.payload)).hello)
            local sig = crypto.b64url_decode(jws.signature)
            if kind == "ec" then
                assert.equal(64, #sig)
                sig = ecdsa_der(sig)
            end
            assert.is_true(verify(key, jws.protected .. "." .. jws.payload, sig))
        end
    end)

    it("signs POST-as-GET with an empty payload", function()
        local jws = crypto.jws(crypto.key("ec"), { nonce = "n", url = "u" }, "")
        assert.equal("", jws.payload)
    end)

    it("makes CSRs for a list of names that openssl reads and verifies", function()
        local key = crypto.key("ec")
        local csr = assert(crypto.csr(key, { "shop.example.test", "www.example.test" }))
        local f = tmp(csr)
        local out, code = t.sh("openssl req -inform der -in " .. f .. " -noout -text -verify")
        os.remove(f)
        assert.equal(0, code, out)
        assert.truthy(out:find("DNS:shop.example.test, DNS:www.example.test", 1, true), out)
        assert.truthy(out:find("CN = shop.example.test", 1, true), out)
        assert.is_nil((crypto.csr(key, { "bad name" })))
    end)

    it("builds the TLS-ALPN-01 certificate with a critical acmeIdentifier of the key authorization's digest", function()
        local cert, key = crypto.alpn_challenge_cert("shop.example.test", "token.thumb")
        assert.truthy(key:find("PRIVATE KEY", 1, true))
        local f = tmp(cert)
        local out = t.sh("openssl x509 -in " .. f .. " -noout -text")
        local der = t.sh("openssl x509 -in " .. f .. " -outform der | od -An -tx1 | tr -d ' \\n'")
        os.remove(f)
        assert.truthy(out:find("1.3.6.1.5.5.7.1.31: critical", 1, true), out)
        assert.truthy(out:find("DNS:shop.example.test", 1, true), out)
        -- the extension's value: OCTET STRING (34) { OCTET STRING (32) { sha256 } }
        assert.truthy(der:find("0422" .. "0420" .. crypto.hex(crypto.sha256("token.thumb")), 1, true))
    end)

    it("reads a certificate's expiry, serial and names", function()
        local dir = h.tmpdir()
        local cert = t.make_cert(dir, "c", { names = { "a.test", "b.test" }, days = 10 })
        local info = assert(crypto.cert_info(h.read_file(cert)))
        assert.same({ "a.test", "b.test" }, info.names)
        assert.equal("a.test", info.subject)
        assert.truthy(math.abs(info.not_after - os.time() - 10 * 86400) < 120)
        local serial = t.cert_subject_serial(h.read_file(cert)):match("serial=(%x+)"):lower()
        assert.equal(serial:gsub("^0+", ""), info.serial:gsub("^0+", ""))
        assert.is_nil((crypto.cert_info("junk")))
    end)

    it("writes secrets atomically with mode 0600", function()
        local dir = h.tmpdir()
        assert.is_true(crypto.write_secret(dir .. "/s.json", "{}"))
        assert.equal("{}", h.read_file(dir .. "/s.json"))
        local st = require("posix.sys.stat").stat(dir .. "/s.json")
        assert.equal(tonumber("600", 8), st.st_mode % 512)
        local ok, err = crypto.write_secret("/nonexistent/dir/s.json", "x")
        assert.is_nil(ok)
        assert.truthy(err:find("/nonexistent/dir", 1, true))
    end)
end)

describe("mg.tls", function()
    it("serves run-time certificates by SNI and answers HTTP-01 tokens", function()
        local key = crypto.key("ec")
        local cert = crypto.self_signed(key, { "runtime.test" })
        assert.is_true(mg.tls.set_certificate("spec:runtime", cert, key))
        local served = mg.tls.served("runtime.test")
        assert.equal("spec:runtime", served[1].origin)
        assert.same({ "runtime.test" }, served[1].names)
        assert.is_true(mg.tls.set_http01("tok123", "tok123.thumb"))
        assert.equal("tok123.thumb", mg.tls.http01("tok123"))
        assert.is_true(mg.tls.set_http01("tok123", nil))
        assert.is_nil(mg.tls.http01("tok123"))
        local ok, err = mg.tls.set_certificate("spec:bad", cert, crypto.key("ec"))
        assert.is_nil(ok)
        assert.truthy(err:find("does not match", 1, true))
        assert.is_true(mg.tls.remove_certificate("spec:runtime"))
    end)
end)
