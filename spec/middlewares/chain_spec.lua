-- chain: a named list of middlewares, through the real gateway.
local h = require("spec.helpers")

local function check(src)
    local dir = h.tmpdir()
    h.write_file(dir .. "/moongate.lua", src)
    local f = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1")
    local out = f:read("*a")
    f:close()
    return out
end

describe("chain", function()
    after_each(h.cleanup)

    it("runs every member, nested chains and inline members included", function()
        local b = h.start_backend({ name = "api" })
        local gw = h.start_gateway({ config = {
            middlewares = {
                auth = { plugin = "basic_auth", users = { alice = "s3cret" } },
                tag = { plugin = "headers", custom_request_headers = { ["X-Tag"] = "chained" } },
                inner = { plugin = "chain", middlewares = { "tag", { plugin = "add_prefix", prefix = "/v1" } } },
                secure = { plugin = "chain", middlewares = { "auth", "inner" } },
            },
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { "secure" } } },
        } })
        assert.equal(401, h.request(gw.port, { path = "/x" }).status)
        local r = h.request(gw.port, { path = "/x", headers = { Authorization = "Basic YWxpY2U6czNjcmV0" } })
        assert.equal(200, r.status)
        local info = h.json(r)
        assert.equal("/v1/x", info.path)
        assert.equal("chained", info.headers["x-tag"])
        assert.equal("alice", info.headers["x-authenticated-user"])
    end)

    it("refuses a chain that contains itself and names the place", function()
        local out = check([[
return {
  middlewares = {
    a = { plugin = "chain", middlewares = { "b" } },
    b = { plugin = "chain", middlewares = { "a" } },
  },
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { "a" } } },
}]])
        assert.truthy(out:find("chain 'a' contains itself", 1, true), out)
    end)

    it("refuses an unknown member and unknown options", function()
        assert.truthy(check([[
return {
  middlewares = { c = { plugin = "chain", middlewares = { "nope" } } },
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { "c" } } },
}]]):find("unknown middleware 'nope'", 1, true))
        assert.truthy(check([[
return {
  middlewares = { c = { plugin = "chain", middlewares = { }, extra = 1 } },
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api" } },
}]]):find("unknown option 'extra'", 1, true))
    end)
end)
