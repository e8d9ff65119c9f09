-- The path and redirect middlewares through the real gateway:
-- redirect_regex, add_prefix, replace_path, replace_path_regex.
local h = require("spec.helpers")
local regex = require("moongate.regex")

local function stats(b) return h.json(h.request(b.port, { path = "/stats" })).requests end

local function gateway(mw)
    local b = h.start_backend({ name = "api" })
    local gw = h.start_gateway({ config = {
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { mw } } },
    } })
    return gw, b
end

describe("moongate.regex", function()
    it("replaces with groups as Go's ReplaceAllString does", function()
        local re = assert(regex.new([[^/api/(\d+)/(.*)]]))
        assert.equal("/v2/42-x/y", re:replace("/api/42/x/y", "/v2/${1}-$2"))
        assert.equal("bonono", assert(regex.new("a")):replace("banana", "o"))
        assert.equal("-a-b-c-", assert(regex.new("x*")):replace("abc", "-"))
        assert.equal("$1", assert(regex.new("(a)")):replace("a", "$$1"))
    end)

    it("refuses Go syntax it cannot honour", function()
        assert.is_nil(regex.new("(?P<id>a)"))
        assert.is_nil(regex.new("a+?"))
        assert.is_nil(regex.new("[a"))
    end)
end)

describe("redirect_regex", function()
    after_each(h.cleanup)

    it("redirects a matching URL with its groups, without contacting the backend", function()
        local gw, b = gateway({ plugin = "redirect_regex", regex = [[^http://old\.test(:\d+)?/(.*)]],
                                replacement = "https://new.test/${2}", permanent = true })
        local r = h.request(gw.port, { path = "/a/b?c=1", host = "old.test" })
        assert.equal(301, r.status)
        assert.equal("Moved Permanently", r.reason)
        assert.equal("https://new.test/a/b?c=1", r.headers["location"])
        local post = h.request(gw.port, { method = "POST", path = "/p", host = "old.test", body = "x" })
        assert.equal(308, post.status)
        assert.equal("Permanent Redirect", post.reason)
        assert.equal(1, stats(b))
    end)

    it("answers 302 and 307 when not permanent, and passes a URL that does not match", function()
        local gw, b = gateway({ plugin = "redirect_regex", regex = "^http://old.test/(.*)",
                                replacement = "http://new.test/$1" })
        local r = h.request(gw.port, { path = "/x", host = "old.test" })
        assert.equal(302, r.status)
        assert.equal("Found", r.reason)
        assert.equal(307, h.request(gw.port, { method = "DELETE", path = "/x", host = "old.test" }).status)
        local through = h.request(gw.port, { path = "/x", host = "other.test" })
        assert.equal(200, through.status)
        assert.equal("api", through.headers["x-backend"])
        assert.equal(2, stats(b))
    end)
end)

describe("add_prefix", function()
    after_each(h.cleanup)

    it("puts the prefix in front of the path and keeps the query", function()
        local gw = gateway({ plugin = "add_prefix", prefix = "/api" })
        local info = h.json(h.request(gw.port, { path = "/users?x=1" }))
        assert.equal("/api/users", info.path)
        assert.equal("x=1", info.query)
    end)
end)

describe("replace_path", function()
    after_each(h.cleanup)

    it("replaces the path, keeps the query and passes the old path on", function()
        local gw = gateway({ plugin = "replace_path", path = "/health" })
        local info = h.json(h.request(gw.port, { path = "/any/thing?q=2" }))
        assert.equal("/health", info.path)
        assert.equal("q=2", info.query)
        assert.equal("/any/thing", info.headers["x-replaced-path"])
    end)
end)

describe("replace_path_regex", function()
    after_each(h.cleanup)

    it("rewrites a matching path with its groups", function()
        local gw = gateway({ plugin = "replace_path_regex", regex = "^/api/v1/(.*)", replacement = "/v2/$1" })
        local info = h.json(h.request(gw.port, { path = "/api/v1/users/7?full=1" }))
        assert.equal("/v2/users/7", info.path)
        assert.equal("full=1", info.query)
        assert.equal("/api/v1/users/7", info.headers["x-replaced-path"])
        local other = h.json(h.request(gw.port, { path = "/else" }))
        assert.equal("/else", other.path)
        assert.is_nil(other.headers["x-replaced-path"])
    end)

    it("reports an unsupported regex when the config loads", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/moongate.lua", [[
return {
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api",
      middlewares = { { plugin = "replace_path_regex", regex = "(?P<x>a)", replacement = "/" } } } },
}]])
        local f = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1")
        local out = f:read("*a")
        f:close()
        assert.truthy(out:find("regex: unsupported group", 1, true), out)
    end)
end)
