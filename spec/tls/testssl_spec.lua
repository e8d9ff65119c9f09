-- testssl.sh (Debian's `testssl`) against a TLS listener with an ECDSA and
-- an RSA certificate: no SSLv2/3, TLS 1.0/1.1, weak or NULL ciphers, and no
-- vulnerability it knows. About a minute.
local h = require("spec.helpers")
local t = require("spec.tls.support")

describe("testssl.sh", function()
    after_each(h.cleanup)

    it("finds nothing weak or vulnerable on a TLS listener", function()
        local dir = h.tmpdir()
        local ec_cert, ec_key = t.make_cert(dir, "ec", { names = { "localhost" } })
        local rsa_cert, rsa_key = t.make_cert(dir, "rsa", { names = { "localhost" }, type = "rsa" })
        local port = h.free_port()
        t.start_server({ listen = { { address = "127.0.0.1:" .. port, tls = true } },
                         tls = { certificates = { { cert = ec_cert, key = ec_key }, { cert = rsa_cert, key = rsa_key } } } },
            dir)
        local out = t.sh(string.format("timeout 900 testssl --quiet --color 0 --warnings off -p -s -f -U 127.0.0.1:%d", port))
        local function line(label) return out:match("\n%s*" .. label:gsub("%p", "%%%0") .. "[^\n]*") or "" end
        for _, p in ipairs({ "SSLv2", "SSLv3", "TLS 1 ", "TLS 1.1" }) do
            assert.truthy(line(p):find("not offered", 1, true), p .. ": " .. line(p) .. "\n" .. out)
        end
        assert.truthy(line("TLS 1.2"):find("offered (OK)", 1, true), out)
        assert.truthy(line("TLS 1.3"):find("offered (OK)", 1, true), out)
        for _, c in ipairs({ "NULL ciphers", "Anonymous NULL Ciphers", "Export ciphers", "LOW: 64 Bit",
                             "Triple DES Ciphers", "Obsolete CBC ciphers" }) do
            assert.truthy(line(c):find("not offered", 1, true), c .. ": " .. line(c))
        end
        assert.truthy(line("PFS is offered"):find("OK", 1, true), out)
        assert.truthy(out:find("Heartbleed", 1, true), out) -- the vulnerability tests ran
        assert.falsy(out:find("VULNERABLE", 1, true), out)
        assert.falsy(out:lower():find("potentially vulnerable", 1, true), out)
    end)
end)
