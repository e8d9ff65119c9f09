-- HTTP/2 conformance: h2spec (github.com/summerwind/h2spec, a Go module:
-- installed in build/tools by make deps when Go is on the machine) against a
-- TLS listener and an h2c listener of the real gateway. Pending when
-- h2spec is not installed. The cases allowed to fail are listed with why
-- (docs/http2.md).
local h = require("spec.helpers")
local t = require("spec.tls.support")

local KNOWN = {
    -- nghttp2 ignores a HEADERS on a lower stream id it never saw (it cannot
    -- tell it from trailers for a stream it reset), where RFC 9113 5.1.1
    -- wants a connection error
    ["5.1.1/2"] = true,
}
local KNOWN_H2C = {
    -- a plain listener speaks HTTP/1 too: a connection that does not open
    -- with the preface is HTTP/1 and gets a 400, not a closed connection
    ["3.5/2"] = true,
}

local function h2spec_bin()
    -- make deps installs it in build/tools when Go is there (tools/go-tools.sh)
    for _, p in ipairs({ "build/tools/h2spec", "h2spec", (os.getenv("HOME") or "/root") .. "/go/bin/h2spec" }) do
        local _, code = t.sh("command -v " .. p)
        if code == 0 then return p end
    end
end

-- The ids of the failed cases ("5.1.1/2") in h2spec's output.
local function failures(out)
    local section, list = nil, {}
    local tail = out:match("Failures:(.*)$") or ""
    for line in tail:gmatch("[^\n]+") do
        local sec = line:match("^%s+(%d+%.[%d.]*%d)%.? ")
        if sec then section = sec end
        local n = line:match("^%s+× (%d+):")
        if n and section then list[#list + 1] = section .. "/" .. n end
    end
    return list
end

describe("h2spec", function()
    after_each(h.cleanup)
    local bin = h2spec_bin()
    if not bin then
        pending("h2spec is not installed (go install github.com/summerwind/h2spec/cmd/h2spec@latest)")
        return
    end

    it("passes against a TLS listener and an h2c listener, but for the known cases", function()
        local dir = h.tmpdir()
        local cert, key = t.make_cert(dir, "site", { names = { "localhost" } })
        local b = h.start_backend({ name = "A" })
        local plain, tls = h.free_port(), h.free_port()
        h.start_gateway({ config = {
            listen = { "127.0.0.1:" .. plain, { address = "127.0.0.1:" .. tls, tls = true } },
            tls = { certificates = { { cert = cert, key = key } } },
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        for _, run in ipairs({ { "-t -k -p " .. tls, KNOWN }, { "-p " .. plain, KNOWN_H2C } }) do
            local out = t.sh("timeout 120 " .. bin .. " -h 127.0.0.1 -o 5 " .. run[1])
            assert.truthy(out:find("145 tests", 1, true), out)
            for _, id in ipairs(failures(out)) do
                assert.is_true(KNOWN[id] or run[2][id] or false, "h2spec " .. run[1] .. ": " .. id .. " failed:\n" .. out)
            end
        end
    end)
end)
