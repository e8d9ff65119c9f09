-- The ACME client's pure parts: back-off, Retry-After, what is due.
local acme = dofile("plugins/acme.lua")

describe("the ACME client's schedule", function()
    it("backs off from a minute, doubling, up to a day", function()
        assert.equal(60, acme.backoff(1))
        assert.equal(120, acme.backoff(2))
        assert.equal(480, acme.backoff(4))
        assert.equal(86400, acme.backoff(30))
    end)

    it("waits as long as the CA's Retry-After when that is longer", function()
        assert.equal(3600, acme.backoff(1, 3600))
        assert.equal(120, acme.backoff(2, 30))
    end)

    it("reads Retry-After as seconds or as an HTTP date", function()
        assert.equal(120, acme.retry_after("120"))
        local now = os.time({ year = 2026, month = 12, day = 1, hour = 12, min = 0, sec = 0, isdst = false })
        local utc_now = now + (now - os.time(os.date("!*t", now)))
        local s = acme.retry_after(os.date("!%a, %d %b %Y %H:%M:%S GMT", utc_now + 90), utc_now)
        assert.is_true(math.abs(s - 90) <= 1, tostring(s))
        assert.is_nil(acme.retry_after(nil))
        assert.is_nil(acme.retry_after("soon"))
    end)

    it("renews within renew_before days of expiry, or when names are missing", function()
        local now = 1000000000
        local c = { cert = "x", names = { "a.test", "b.test" }, not_after = now + 40 * 86400 }
        assert.is_false(acme.due(c, { "a.test" }, now, 30))
        assert.is_true(acme.due(c, { "a.test" }, now + 11 * 86400, 30))
        assert.is_true(acme.due(c, { "a.test", "c.test" }, now, 30))
        assert.is_true(acme.due(nil, { "a.test" }, now, 30))
    end)

    it("orders a domain's names main first, without duplicates", function()
        assert.same({ "a.test", "www.a.test" }, acme.names({ main = "a.test", sans = { "www.a.test", "a.test" } }))
    end)
end)
