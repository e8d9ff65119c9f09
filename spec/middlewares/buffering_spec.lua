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
