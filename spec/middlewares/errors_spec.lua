-- errors through the real gateway: a real backend answers errors, a real
-- page service (the spec backend's /page/<code>) gives the pages.
local h = require("spec.helpers")

local function gateway(mw, opts)
    opts = opts or {}
    local b = opts.backend or h.start_backend({ name = "api" })
    local pages = opts.pages or h.start_backend({ name = "pages" })
    mw.plugin = "errors"
    mw.service = mw.service or "pages"
    local gw = h.start_gateway({ config = {
        middlewares = { pages = mw },
        services = { api = { targets = { b.address } }, pages = { targets = { pages.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { "pages" } } },
    } })
    return gw, b, pages
end

describe("errors", function()
    after_each(h.cleanup)

    it("replaces a 502 and a 404 with the page, keeping the status and both connections", function()
        local gw, b = gateway({ status = { "500-599", "404" }, query = "/page/{status}?u={url}" })
        local c = assert(h.connect(gw.port))
        c:send_request({ path = "/status/502" })
        local res = assert(c:read_response({}))
        assert.equal(502, res.status)
        assert.equal("text/html; charset=utf-8", res.headers["content-type"])
        assert.equal("<h1>page for 502</h1><p>u=%2Fstatus%2F502</p>\n", res.body)
        assert.is_nil(res.headers["x-backend"]) -- the backend's head is gone with its body
        -- the same client connection goes on
        c:send_request({ path = "/status/404?a=1" })
        res = assert(c:read_response({}))
        assert.equal(404, res.status)
        assert.equal("<h1>page for 404</h1><p>u=%2Fstatus%2F404%3Fa%3D1</p>\n", res.body)
        c:send_request({ path = "/status/503" })
        assert.equal(503, assert(c:read_response({})).status)
        c:close()
        -- the backend's connection was kept: one for the three answers (and one for /stats)
        local stats = h.json(h.request(b.port, { path = "/stats" }))
        assert.equal(4, stats.requests)
        assert.is_true(stats.open_connections <= 2, "open connections: " .. stats.open_connections)
        gw:wait_access(3)
        local log = table.concat(gw:access_log(), "\n")
        assert.truthy(log:find('"GET /status/502 HTTP/1.1" 502', 1, true), log)
        assert.truthy(log:find('"GET /status/404?a=1 HTTP/1.1" 404', 1, true), log)
    end)

    it("leaves other statuses alone", function()
        local gw = gateway({ status = { "502" }, query = "/page/{status}" })
        local res = h.request(gw.port, { path = "/status/500" })
        assert.equal(500, res.status)
        assert.equal("status\n", res.body)
        assert.equal("api", res.headers["x-backend"])
        res = h.request(gw.port, { path = "/" })
        assert.equal(200, res.status)
        assert.equal("/", h.json(res).path)
        assert.equal(204, h.request(gw.port, { path = "/nocontent" }).status)
    end)

    it("keeps the backend's answer when the page service is down", function()
        local port = h.free_port()
        local gw = gateway({ status = { "500-599" }, query = "/page/{status}" },
                           { pages = { address = "127.0.0.1:" .. port } })
        local res = h.request(gw.port, { path = "/status/503" })
        assert.equal(503, res.status)
        assert.equal("status\n", res.body)
        assert.equal("api", res.headers["x-backend"])
        gw:wait_log("error page for 503 from pages: .*connect failed.*the backend's answer goes on")
        assert.equal(200, h.request(gw.port, { path = "/" }).status)
    end)

    it("drops a chunked error body and one that ends with the connection", function()
        local chunked = h.start_raw_backend({ response = "HTTP/1.1 503 Service Unavailable\r\n"
            .. "Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nbusy!\r\n0\r\n\r\n" })
        local gw = gateway({ status = { "503" }, query = "/page/{status}" }, { backend = chunked })
        local c = assert(h.connect(gw.port))
        for _ = 1, 2 do
            c:send_request({ path = "/x" })
            local res = assert(c:read_response({}))
            assert.equal(503, res.status)
            assert.equal("<h1>page for 503</h1><p></p>\n", res.body)
        end
        c:close()
        local closing = h.start_raw_backend({ close = true,
            response = "HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nsomething broke" })
        local gw2 = gateway({ status = { "500" }, query = "/page/{status}" }, { backend = closing })
        local res = h.request(gw2.port, { path = "/y" })
        assert.equal(500, res.status)
        assert.equal("<h1>page for 500</h1><p></p>\n", res.body)
    end)

    it("is configured by Traefik's labels", function()
        local lm = require("moongate.label_middlewares")
        local out = assert(lm.for_container({
            ["traefik.http.routers.r.middlewares"] = "oops",
            ["traefik.http.middlewares.oops.errors.status"] = "500-599,404",
            ["traefik.http.middlewares.oops.errors.service"] = "pages@docker",
            ["traefik.http.middlewares.oops.errors.query"] = "/{status}.html",
        }))
        assert.same({ { plugin = "errors", status = { "500-599", "404" }, service = "pages",
                        query = "/{status}.html" } }, out)
    end)
end)
