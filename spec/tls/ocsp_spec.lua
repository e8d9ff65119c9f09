-- OCSP stapling against a real responder (openssl ocsp on loopback) and a
-- test CA made at test time: the gateway asks the responder its leaf
-- names, checks the answer and staples it to handshakes that ask for a
-- status (openssl s_client -status).
local h = require("spec.helpers")
local t = require("spec.tls.support")

-- A CA, and a leaf for site.test it issued that names the responder on
-- ocsp_port. status: "V" (good) or "R" (revoked) in the responder's index.
local function pki(dir, ocsp_port, status)
    local function run(cmd)
        local out, code = t.sh(cmd)
        assert(code == 0, cmd .. "\n" .. out)
    end
    local ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    run(string.format("openssl req -x509 %s -keyout %s/ca.key -out %s/ca.pem -days 2 -subj /CN=OCSP-Test-CA " ..
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ec, dir, dir))
    run(string.format("openssl req %s -keyout %s/site.key -out %s/site.csr -subj /CN=site.test", ec, dir, dir))
    h.write_file(dir .. "/ext.cnf", "subjectAltName=DNS:site.test\n" ..
        "authorityInfoAccess=OCSP;URI:http://127.0.0.1:" .. ocsp_port .. "/\n")
    run(string.format("openssl x509 -req -in %s/site.csr -CA %s/ca.pem -CAkey %s/ca.key -set_serial 0x1001 " ..
        "-days 1 -extfile %s/ext.cnf -out %s/site.crt", dir, dir, dir, dir, dir))
    -- the chain the gateway serves: the leaf, then its issuer
    h.write_file(dir .. "/chain.pem", h.read_file(dir .. "/site.crt") .. h.read_file(dir .. "/ca.pem"))
    local revoked = status == "R" and "261201000000Z" or ""
    h.write_file(dir .. "/index.txt", string.format("%s\t301231000000Z\t%s\t1001\tunknown\t/CN=site.test\n",
        status, revoked))
    h.write_file(dir .. "/index.txt.attr", "unique_subject = no\n")
end

local function start_responder(dir, port)
    local p = h.spawn({ "openssl", "ocsp", "-index", dir .. "/index.txt", "-port", tostring(port),
                        "-rsigner", dir .. "/ca.pem", "-rkey", dir .. "/ca.key", "-CA", dir .. "/ca.pem",
                        "-ndays", "1" }, { stderr = dir .. "/ocsp.log", stdout = dir .. "/ocsp.out" })
    -- (not a probe connection: the responder serves one connection at a
    -- time and would wait on it)
    h.wait_until(function()
        return (h.read_file(dir .. "/ocsp.log") or ""):find("waiting for OCSP client connections", 1, true)
    end, 5, "openssl ocsp on port " .. port)
    return p
end

local function gateway(dir, extra)
    local port = h.free_port()
    local cfg = {
        listen = { { address = "127.0.0.1:" .. port, tls = true } },
        tls = { certificates = { { cert = dir .. "/chain.pem", key = dir .. "/site.key" } } },
    }
    for k, v in pairs(extra or {}) do cfg.tls[k] = v end
    local s = t.start_server(cfg)
    s.port = port
    return s
end

local function status_of(port)
    return (t.s_client(port, "-servername site.test -status", "Q\n"))
end

describe("OCSP stapling", function()
    after_each(h.cleanup)

    it("staples the responder's good status to handshakes that ask for it", function()
        local dir, ocsp_port = h.tmpdir(), h.free_port()
        pki(dir, ocsp_port, "V")
        start_responder(dir, ocsp_port)
        local s = gateway(dir)
        local out
        h.wait_until(function()
            out = status_of(s.port)
            return out:find("OCSP Response Status: successful", 1, true)
        end, 10 * h.slow, "a stapled OCSP response")
        assert.truthy(out:find("Cert Status: good", 1, true), out)
        assert.truthy(out:find("Responder Id: CN = OCSP-Test-CA", 1, true), out)
        s:wait_log("ocsp: stapled the status of site%.test")
        -- a client that does not ask gets none
        local plain = t.s_client(s.port, "-servername site.test", "Q\n")
        assert.falsy(plain:find("OCSP Response Status", 1, true))
    end)

    it("staples nothing for a revoked certificate, and says so in the log", function()
        local dir, ocsp_port = h.tmpdir(), h.free_port()
        pki(dir, ocsp_port, "R")
        start_responder(dir, ocsp_port)
        local s = gateway(dir)
        s:wait_log("ocsp: site%.test .-revoked", 10 * h.slow)
        local out = status_of(s.port)
        assert.truthy(out:find("OCSP response: no response sent", 1, true), out)
        assert.truthy(out:find("Verify return code", 1, true), out) -- the handshake itself went on
    end)

    it("keeps serving without a staple while the responder is down, then staples", function()
        local dir, ocsp_port = h.tmpdir(), h.free_port()
        pki(dir, ocsp_port, "V")
        local s = gateway(dir)
        s:wait_log("ocsp: site%.test .-responder http://127%.0%.0%.1:" .. ocsp_port, 10 * h.slow)
        assert.truthy(status_of(s.port):find("OCSP response: no response sent", 1, true))
        start_responder(dir, ocsp_port)
        -- the retry comes 10 s after the first failure
        h.wait_until(function()
            return status_of(s.port):find("Cert Status: good", 1, true)
        end, 20 * h.slow, "a staple once the responder is up")
    end)

    it("is off with tls.ocsp_stapling = false", function()
        local dir, ocsp_port = h.tmpdir(), h.free_port()
        pki(dir, ocsp_port, "V")
        start_responder(dir, ocsp_port)
        local s = gateway(dir, { ocsp_stapling = false })
        assert.truthy(t.s_client(s.port, "-servername site.test", "Q\n"):find("Verify return code", 1, true))
        h.sleep(1.5) -- a pass would have run by now: nothing may have asked
        assert.truthy(status_of(s.port):find("OCSP response: no response sent", 1, true))
        assert.falsy(h.read_file(dir .. "/ocsp.log"):find("Received request", 1, true))
        assert.falsy(s:error_log():find("ocsp:", 1, true))
    end)
end)
