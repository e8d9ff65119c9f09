-- The dashboard in a real browser: headless Chromium loads the admin page,
-- runs its script against the live API, and we read what it rendered.
local h = require("spec.helpers")

local function chromium()
    for _, name in ipairs({ "chromium", "chromium-browser" }) do
        local f = io.popen("command -v " .. name .. " 2>/dev/null")
        local path = f:read("*l")
        f:close()
        if path and path ~= "" then return path end
    end
end

describe("dashboard", function()
    after_each(h.cleanup)

    it("lists the running services and their targets in a browser", function()
        local browser = chromium()
        if not browser then
            pending("chromium is not installed (make deps installs it)")
            return
        end
        local b = h.start_backend()
        local gw = h.start_gateway({ config = {
            services = { shop = { targets = { b.address } }, search = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "shop" } },
        } })
        h.request(gw.port, {})
        h.wait_until(function()
            return h.request(gw.admin_port, { path = "/api/services" }).body:find('"requests": 1', 1, true)
        end, 2, "the request to be counted")
        local url = "http://127.0.0.1:" .. gw.admin_port .. "/"
        local profile = h.tmpdir()
        local flags = "--headless --no-sandbox --disable-gpu --user-data-dir=" .. profile
            .. " --virtual-time-budget=3000 "
        local f = io.popen(browser .. " " .. flags .. "--dump-dom " .. url .. " 2>/dev/null")
        local dom = f:read("*a")
        f:close()
        assert.truthy(dom:find("<h2>shop</h2>", 1, true), dom)
        assert.truthy(dom:find("<h2>search</h2>", 1, true))
        assert.truthy(dom:find(b.address, 1, true))
        assert.truthy(dom:find("2 services", 1, true))
        -- statistics are per service: the shared backend's request counts once, for shop
        assert.truthy(dom:find("shop</h2><div class=\"meta\">balancer roundrobin · 1 target · 1 requests", 1, true), dom)
        assert.truthy(dom:find("search</h2><div class=\"meta\">balancer roundrobin · 1 target · 0 requests", 1, true), dom)
        os.execute("mkdir -p build")
        os.execute(browser .. " " .. flags .. "--window-size=1000,700 --screenshot=build/dashboard.png "
            .. url .. " >/dev/null 2>&1")
        local png = io.open("build/dashboard.png", "rb")
        assert.truthy(png, "no screenshot")
        assert.equal("\137PNG", png:read(4))
        png:close()
        os.execute("rm -rf " .. profile)
    end)
end)
