-- The TLS engine and the certificate store, unit-tested in C
-- (spec/tls/engine_test.c, built next to the moongate binary under test):
-- a client and a server engine handshake in memory.
local h = require("spec.helpers")

describe("the TLS engine", function()
    it("passes its in-memory handshake tests", function()
        local dir = h.bin:match("^(.*)/[^/]+$") or "."
        local bin = dir .. "/tls_engine_test"
        assert(io.open(bin), bin .. " is missing: `make test` builds it (make " .. bin .. ")")
        local f = assert(io.popen(bin .. " 2>&1"))
        local out = f:read("*a")
        f:close()
        local passed, failed = out:match("(%d+) passed, (%d+) failed")
        assert(passed, "no summary from tls_engine_test:\n" .. out)
        assert.equal(0, tonumber(failed), out)
        assert.falsy(out:find("Sanitizer", 1, true) or out:find("runtime error:", 1, true), out)
        assert.is_true(tonumber(passed) >= 14, out)
    end)
end)
