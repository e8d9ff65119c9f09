-- Path normalisation before routing: the rule sees the path the backend
-- will act on, so "/public/../admin" cannot slip past a rule on /admin.
local h = require("spec.helpers")
local cjson = require("cjson")

local function raw_get(port, target)
    local c = assert(h.connect(port))
    c:send_raw("GET " .. target .. " HTTP/1.1\r\nHost: x\r\n\r\n")
    local res = assert(c:read_response())
    c:close()
    return res
end

describe("path normalisation", function()
    local public, admin, gw

    setup(function()
        public = h.start_backend({ name = "public" })
        admin = h.start_backend({ name = "admin" })
        gw = h.start_gateway({ config = {
            services = { public = { targets = { public.address } }, admin = { targets = { admin.address } } },
            routes = {
                { rule = "PathPrefix(`/admin`)", service = "admin" },
                { rule = "PathPrefix(`/`)", service = "public" },
            },
        } })
    end)
    teardown(h.cleanup)

    local cases = {
        { "/public/../admin", "admin", "/admin" },
        { "/%2e%2e/admin", "admin", "/admin" },
        { "/public/%2E%2E/admin/x", "admin", "/admin/x" },
        { "//admin", "admin", "/admin" },
        { "/./admin", "admin", "/admin" },
        { "/%61dmin", "admin", "/admin" },
        { "/a/b/../../admin/", "admin", "/admin/" },
        { "/..", "public", "/" },
        { "/a/./b//c/", "public", "/a/b/c/" },
        { "/a/%7e%5b", "public", "/a/~%5B" },
    }
    for _, case in ipairs(cases) do
        it(string.format("routes %s to %s as %s", case[1], case[2], case[3]), function()
            local res = raw_get(gw.port, case[1])
            assert.equal(200, res.status)
            local info = cjson.decode(res.body)
            assert.equal(case[2], info.backend)
            assert.equal(case[3], info.path)
        end)
    end

    it("keeps the query as sent", function()
        local info = cjson.decode(raw_get(gw.port, "/x/../admin?a=%2e%2e/b&c").body)
        assert.equal("admin", info.backend)
        assert.equal("/admin", info.path)
        assert.equal("a=%2e%2e/b&c", info.query)
    end)

    it("answers 400 to an encoded slash, backslash or NUL by default", function()
        for _, p in ipairs({ "/public/..%2fadmin", "/a%2Fb", "/a%5cb", "/a%00b" }) do
            local res = raw_get(gw.port, p)
            assert.equal(400, res.status, p)
        end
        gw:wait_log("encoded slash in the path")
    end)
end)

describe("path normalisation with paths.encoded_slash = \"keep\"", function()
    teardown(h.cleanup)

    it("forwards an encoded slash encoded, never as a separator", function()
        local public = h.start_backend({ name = "public" })
        local admin = h.start_backend({ name = "admin" })
        local gw = h.start_gateway({ config = {
            paths = { encoded_slash = "keep" },
            services = { public = { targets = { public.address } }, admin = { targets = { admin.address } } },
            routes = {
                { rule = "PathPrefix(`/admin`)", service = "admin" },
                { rule = "PathPrefix(`/`)", service = "public" },
            },
        } })
        local c = assert(h.connect(gw.port))
        c:send_raw("GET /public/..%2fadmin HTTP/1.1\r\nHost: x\r\n\r\n")
        local res = assert(c:read_response())
        c:close()
        assert.equal(200, res.status)
        assert.equal("public", cjson.decode(res.body).backend)
        assert.equal(400, raw_get(gw.port, "/a%00b").status)
    end)
end)

describe("path normalisation turned off", function()
    teardown(h.cleanup)

    it("forwards the path as sent", function()
        local b = h.start_backend({ name = "b" })
        local gw = h.start_gateway({ config = {
            paths = { normalize = false },
            services = { s = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "s" } },
        } })
        local c = assert(h.connect(gw.port))
        c:send_raw("GET /a/../b HTTP/1.1\r\nHost: x\r\n\r\n")
        local res = assert(c:read_response())
        c:close()
        -- Python's server reports the path it was sent
        assert.equal("/a/../b", cjson.decode(res.body).path)
    end)
end)
