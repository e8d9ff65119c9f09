-- buffering (request side) through the real gateway.
local h = require("spec.helpers")

describe("buffering", function()
    after_each(h.cleanup)

    it("answers 413 to a body over max_request_body_bytes without sending it upstream", function()
        local b = h.start_backend({ name = "api" })
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api",
                         middlewares = { { plugin = "buffering", max_request_body_bytes = 1000 } } } },
        } })
        local ok = h.request(gw.port, { method = "POST", path = "/echo", body = string.rep("a", 1000) })
        assert.equal(200, ok.status)
        assert.equal(1000, #ok.body)
        local big = h.request(gw.port, { method = "POST", path = "/echo", body = string.rep("a", 1001) })
        assert.equal(413, big.status)
        assert.equal("Request Entity Too Large\n", big.body)
        assert.is_nil(big.headers["x-backend"])
        assert.equal(2, h.json(h.request(b.port, { path = "/stats" })).requests)
    end)
end)

describe("buffering of responses", function()
    after_each(h.cleanup)

    local function gateway(max)
        local b = h.start_backend({ name = "api" })
        return h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api",
                         middlewares = { { plugin = "buffering", max_response_body_bytes = max } } } },
        } })
    end

    it("turns an answer whose Content-Length is over the limit into a 500", function()
        local gw = gateway(10000)
        local ok = h.request(gw.port, { path = "/big?bytes=10000" })
        assert.equal(200, ok.status)
        assert.equal(10000, #ok.body)
        local big = h.request(gw.port, { path = "/big?bytes=10001" })
        assert.equal(500, big.status)
        assert.equal("Internal Server Error\n", big.body)
        -- the connection stays usable after the dropped body
        local c = assert(h.connect(gw.port))
        for _, path in ipairs({ "/big?bytes=20000", "/big?bytes=50" }) do
            c:send_request({ path = path })
            local r = assert(c:read_response())
            assert.equal(path == "/big?bytes=50" and 200 or 500, r.status)
        end
        c:close()
    end)

    it("cuts an answer of unknown length once it passes the limit", function()
        local gw = gateway(5000)
        local small = h.request(gw.port, { path = "/chunked?n=4&size=1000" })
        assert.equal(200, small.status)
        assert.equal(4000, #small.body)
        -- the client sees a chunked body that never ends: the connection closes mid-way
        local ok, r = pcall(h.request, gw.port, { path = "/chunked?n=8&size=1000" })
        assert.truthy(not ok or r == nil or #r.body < 8000, "the whole body went through")
        gw:wait_log("over max_response_body_bytes")
    end)
end)
