-- plugins/redirect_scheme.lua: HTTP -> HTTPS as a middleware.
local kit = require("spec.helpers.balancer_kit")
local schema = require("moongate.schema")
local plugin = dofile("plugins/redirect_scheme.lua")

local function run(opts, req_opts)
    local conf = assert(schema.validate(plugin.schema, opts))
    local req = kit.request(req_opts)
    req.target = req_opts.target
    req.scheme = req_opts.scheme
    local answered
    function req:respond(status, body, headers) answered = { status = status, headers = headers } end
    plugin.on_request(conf, req)
    return answered
end

describe("redirect_scheme", function()
    it("sends plain HTTP requests to HTTPS with the host, path and query", function()
        local a = run({}, { host = "shop.example.com", target = "/cart?x=1", method = "GET" })
        assert.equal(301, a.status)
        assert.equal("https://shop.example.com/cart?x=1", a.headers.Location)
    end)

    it("keeps the method of a POST with 308, and uses 302/307 when not permanent", function()
        assert.equal(308, run({}, { host = "a", target = "/", method = "POST" }).status)
        assert.equal(302, run({ permanent = false }, { host = "a", target = "/", method = "GET" }).status)
        assert.equal(307, run({ permanent = false }, { host = "a", target = "/", method = "PUT" }).status)
    end)

    it("adds a port that is not the scheme's default", function()
        assert.equal("https://a.test:8443/", run({ port = 8443 }, { host = "a.test", target = "/" }).headers.Location)
        assert.equal("https://a.test/", run({ port = 443 }, { host = "a.test", target = "/" }).headers.Location)
    end)

    it("lets requests through that already arrived over HTTPS", function()
        assert.is_nil(run({}, { host = "a", target = "/", scheme = "https" }))
    end)

    it("rejects a scheme it does not know", function()
        local conf, err = schema.validate(plugin.schema, { scheme = "ftp" })
        assert.is_nil(conf)
        assert.truthy(err:find("one of", 1, true))
    end)
end)
