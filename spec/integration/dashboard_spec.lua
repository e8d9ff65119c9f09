-- The dashboard in a real browser: headless Chromium, driven over the
-- DevTools protocol (--remote-debugging-pipe), loads the admin page while
-- real traffic goes through the gateway to real backends; we read what the
-- page rendered and measure its layout at 1400 and 800 px.
local h = require("spec.helpers")
local cjson = require("cjson")
local unistd = require("posix.unistd")
local fcntl = require("posix.fcntl")
local poll = require("posix.poll")
local wait = require("posix.sys.wait")
local signal = require("posix.signal")
local socket = require("socket")

local function chromium()
    for _, name in ipairs({ "chromium", "chromium-browser" }) do
        local f = io.popen("command -v " .. name .. " 2>/dev/null")
        local path = f:read("*l")
        f:close()
        if path and path ~= "" then return path end
    end
end

-- ---- a DevTools client over a pipe ------------------------------------
-- Chromium reads commands on fd 3 and writes answers and events on fd 4,
-- one JSON message per NUL-terminated frame.
local Browser = {}
Browser.__index = Browser

local function high_fd(fd)
    local d = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    unistd.close(fd)
    return d
end

local function launch(path)
    local profile = h.tmpdir()
    local to_r, to_w = unistd.pipe()     -- our commands: chromium's fd 3
    local from_r, from_w = unistd.pipe() -- its answers: chromium's fd 4
    to_r, to_w, from_r, from_w = high_fd(to_r), high_fd(to_w), high_fd(from_r), high_fd(from_w)
    local pid = assert(unistd.fork())
    if pid == 0 then
        unistd.dup2(to_r, 3)
        unistd.dup2(from_w, 4)
        for _, fd in ipairs({ to_r, to_w, from_r, from_w }) do unistd.close(fd) end
        local null = fcntl.open("/dev/null", fcntl.O_RDWR)
        unistd.dup2(null, 0)
        unistd.dup2(null, 1)
        unistd.dup2(null, 2)
        unistd.execp(path, { "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-pipe", "--user-data-dir=" .. profile, "about:blank" })
        unistd._exit(127)
    end
    unistd.close(to_r)
    unistd.close(from_w)
    -- later children (backends, gateways) must not inherit our ends
    fcntl.fcntl(to_w, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    fcntl.fcntl(from_r, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    return setmetatable({ pid = pid, w = to_w, r = from_r, buf = "", id = 0, profile = profile }, Browser)
end

-- Sends a command and returns its result; raises on a protocol error or
-- when no answer comes within the timeout.
function Browser:call(method, params, session, timeout)
    self.id = self.id + 1
    local id = self.id
    -- an empty Lua table encodes as {}, which is what a command without parameters takes
    local data = cjson.encode({ id = id, method = method, params = params or {}, sessionId = session }) .. "\0"
    while #data > 0 do
        local n = assert(unistd.write(self.w, data))
        data = data:sub(n + 1)
    end
    local deadline = socket.gettime() + (timeout or 20) * h.slow
    while true do
        local z = self.buf:find("\0", 1, true)
        if z then
            local m = cjson.decode(self.buf:sub(1, z - 1))
            self.buf = self.buf:sub(z + 1)
            if m.id == id then
                if m.error then error(method .. ": " .. cjson.encode(m.error), 2) end
                return m.result
            end
        else
            local left = deadline - socket.gettime()
            if left <= 0 then error(method .. ": no answer from chromium", 2) end
            if poll.rpoll(self.r, math.ceil(left * 1000)) == 1 then
                local d = unistd.read(self.r, 65536)
                if not d or #d == 0 then error(method .. ": chromium went away", 2) end
                self.buf = self.buf .. d
            end
        end
    end
end

-- Opens url in a new tab of the given size; returns the tab's session.
function Browser:open(url, width, height)
    local target = self:call("Target.createTarget", { url = "about:blank" })
    local s = self:call("Target.attachToTarget", { targetId = target.targetId, flatten = true }).sessionId
    self:call("Emulation.setDeviceMetricsOverride",
        { width = width, height = height, deviceScaleFactor = 1, mobile = false }, s)
    self:call("Page.navigate", { url = url }, s)
    return s
end

-- Runs a JS expression in the page; returns its value (JSON-able).
function Browser:eval(s, js)
    local r = self:call("Runtime.evaluate", { expression = js, returnByValue = true, awaitPromise = true }, s)
    if r.exceptionDetails then error("page: " .. cjson.encode(r.exceptionDetails), 2) end
    return r.result.value
end

-- As eval, but nil while the page throws (not loaded yet): for waits.
function Browser:try(s, js)
    local r = self:call("Runtime.evaluate", { expression = js, returnByValue = true, awaitPromise = true }, s)
    if not r.exceptionDetails then return r.result.value end
end

function Browser:screenshot(s, path)
    local r = self:call("Page.captureScreenshot", { format = "png", captureBeyondViewport = true }, s)
    local mime = require("mime") -- luasocket's base64
    local f = assert(io.open(path, "wb"))
    f:write((mime.unb64(r.data)))
    f:close()
end

function Browser:close()
    pcall(self.call, self, "Browser.close", nil, nil, 5)
    unistd.close(self.w)
    unistd.close(self.r)
    local deadline = socket.gettime() + 10
    while socket.gettime() < deadline do
        if wait.wait(self.pid, wait.WNOHANG) == self.pid then
            os.execute("rm -rf " .. self.profile)
            return
        end
        socket.sleep(0.05)
    end
    signal.kill(self.pid, signal.SIGKILL)
    wait.wait(self.pid)
    os.execute("rm -rf " .. self.profile)
end

-- ---- what the page shows -------------------------------------------------

-- Every instance row of the page: its name, state, counts, chart and text.
local ROWS = [[JSON.stringify([...document.querySelectorAll("section.service tbody.inst")].map(r => ({
  service: r.closest("section").dataset.service, id: r.dataset.id, state: r.dataset.state,
  requests: +r.dataset.requests, title: r.querySelector("td.name").title, text: r.innerText,
  name: r.querySelector("b").textContent,
  points: (r.querySelector("polyline.rq") || { getAttribute: () => "" }).getAttribute("points") })))]]

-- Layout problems: horizontal overflow of the document, and any card,
-- table or chart wider than the box that holds it (clipped columns).
local OVERFLOW = [[JSON.stringify((() => {
  const bad = [], vw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > vw) bad.push("document " + document.documentElement.scrollWidth + " > " + vw);
  for (const el of document.querySelectorAll("section, table, svg, #tl, ol")) {
    const box = el.parentElement.getBoundingClientRect(), r = el.getBoundingClientRect();
    if (r.right > box.right + 1 || r.left < box.left - 1)
      bad.push(el.tagName + (el.id ? "#" + el.id : "") + " sticks out of its box: " + r.left + ".." + r.right + " in " + box.left + ".." + box.right);
    if (el.tagName === "SECTION" && el.scrollWidth > el.clientWidth + 1)
      bad.push("section " + (el.dataset.service || el.id) + " clips its content: " + el.scrollWidth + " > " + el.clientWidth);
  }
  return bad;
})())]]

local function rows(b, s)
    local list = cjson.decode(b:try(s, ROWS) or "[]")
    local by = {}
    for _, r in ipairs(list) do by[r.service .. "/" .. r.id] = r end
    return by, list
end

describe("dashboard", function()
    local browser

    after_each(function()
        if browser then browser:close() end
        browser = nil
        h.cleanup()
    end)

    local function need_browser()
        local path = chromium()
        if not path then
            pending("chromium is not installed (make deps installs it)")
            return false
        end
        browser = launch(path)
        return true
    end

    -- Three services: web (two named instances), flaky (one answers 503
    -- and gets ejected by passive checks), idle (no instances at all).
    local function world()
        local w1, w2 = h.start_backend({ name = "w1" }), h.start_backend({ name = "w2" })
        local bad = h.start_raw_backend({ response = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nfail" })
        local f2 = h.start_backend({ name = "f2" })
        local config = {
            middlewares = { tag = { plugin = "headers", response = { ["X-Tag"] = "1" } } },
            services = {
                web = { targets = { { address = w1.address, id = "web-1" }, { address = w2.address, id = "web-2" } } },
                flaky = { targets = { { address = bad.address, id = "flaky-1" }, { address = f2.address, id = "flaky-2" } },
                          health = { active = false, passive_failures = 2, passive_cooldown = 60 } },
                idle = { targets = {} },
            },
            routes = {
                { rule = "Host(`flaky.localhost`)", service = "flaky" },
                { rule = "PathPrefix(`/`)", service = "web", middlewares = { "tag", { plugin = "strip_prefix", prefixes = { "/web" } } } },
            },
        }
        local gw = h.start_gateway({ config = config })
        return { gw = gw, config = config, w1 = w1, w2 = w2, bad = bad, f2 = f2,
                 url = "http://127.0.0.1:" .. gw.admin_port .. "/" }
    end

    local function traffic(w, n, host)
        for _ = 1, n do h.request(w.gw.port, { host = host }) end
    end

    local function eject_flaky(w)
        traffic(w, 6, "flaky.localhost")
        h.wait_until(function()
            for _, s in ipairs(cjson.decode(h.request(w.gw.admin_port, { path = "/api/services" }).body)) do
                for _, t in ipairs(s.targets) do
                    if t.id == "flaky-1" and t.state == "ejected" then return true end
                end
            end
        end, 3, "flaky-1 to be ejected")
    end

    local function remove_web2(w)
        w.config.services.web.targets = { { address = w.w1.address, id = "web-1" } }
        h.write_file(w.gw.config_path, "return " .. h.serialize(w.config))
        assert.equal(200, h.request(w.gw.admin_port, { method = "POST", path = "/api/reload" }).status)
    end

    -- Waits until fn(rows) returns a value, reading the page each time.
    local function until_page(s, fn, what, timeout)
        return h.wait_until(function() return fn(rows(browser, s)) end, timeout or 5, what)
    end

    it("names instances as Compose does, with the address on hover", function()
        if not need_browser() then return end
        local w = world()
        local s = browser:open(w.url, 1400, 900)
        local r = until_page(s, function(by) return by["web/web-1"] and by end, "the web instances")
        assert.equal("web-1", r["web/web-1"].name)
        assert.equal("web-2", r["web/web-2"].name)
        assert.truthy(r["web/web-1"].title:find(w.w1.address, 1, true), r["web/web-1"].title)
        assert.truthy(r["web/web-2"].title:find(w.w2.address, 1, true))
        assert.equal("up", r["web/web-1"].state)
        -- the page updates in place: the cell under the pointer outlives the
        -- next refreshes, so its tooltip stays up
        browser:eval(s, [[document.querySelector('tbody[data-id="web-1"] td.name').dataset.probe = "kept"]])
        local polls = 0
        local last = browser:eval(s, [[document.getElementById("updated").textContent]])
        h.wait_until(function()
            traffic(w, 2)
            local now = browser:eval(s, [[document.getElementById("updated").textContent]])
            if now ~= last then polls, last = polls + 1, now end
            return polls >= 2
        end, 6, "two refreshes of the page")
        assert.equal("kept", browser:eval(s, [[document.querySelector('tbody[data-id="web-1"] td.name').dataset.probe]]))
    end)

    for _, size in ipairs({ { 1400, 900 }, { 800, 1000 } }) do
        it("fits " .. size[1] .. " px without horizontal overflow or clipped columns", function()
            if not need_browser() then return end
            local w = world()
            traffic(w, 10)
            eject_flaky(w)
            remove_web2(w)
            local s = browser:open(w.url, size[1], size[2])
            until_page(s, function(by)
                return by["web/web-2"] and by["web/web-2"].state == "removed" and by["flaky/flaky-1"].state == "ejected"
            end, "the page to show the removal and the ejection")
            assert.equal(size[1], browser:eval(s, "window.innerWidth"))
            assert.same({}, cjson.decode(browser:eval(s, OVERFLOW)))
            os.execute("mkdir -p build")
            browser:screenshot(s, "build/dashboard-" .. size[1] .. ".png")
            local png = assert(io.open("build/dashboard-" .. size[1] .. ".png", "rb"))
            assert.equal("\137PNG", png:read(4))
            png:close()
        end)
    end

    it("moves the charts under load", function()
        if not need_browser() then return end
        local w = world()
        local s = browser:open(w.url, 1400, 900)
        until_page(s, function(by) return by["web/web-1"] end, "the page")
        -- real traffic for a while, then two readings of the page a second or more apart
        local function load_until(pred, what)
            return h.wait_until(function()
                traffic(w, 10)
                local by = rows(browser, s)
                return pred(by["web/web-1"]) and by["web/web-1"]
            end, 10, what)
        end
        local first = load_until(function(r) return r.requests > 0 and r.points:find(",") end, "a first chart")
        local t0 = socket.gettime()
        local second = load_until(function(r)
            return socket.gettime() - t0 >= 1.2 and r.requests > first.requests and r.points ~= first.points
        end, "the chart to move")
        assert.is_true(second.requests > first.requests)
        assert.are_not.equal(first.points, second.points)
        -- the newest point is above the baseline: requests per second > 0
        local last_y = tonumber(second.points:match("([%d%.]+)$"))
        assert.is_true(last_y < 28, second.points)
        local rate = tonumber(browser:eval(s, [[document.querySelector('tbody.inst[data-id="web-1"] td.num').textContent]]))
        assert.is_true(rate > 0)
    end)

    it("shows an ejected instance as ejected, with the reason", function()
        if not need_browser() then return end
        local w = world()
        eject_flaky(w)
        local s = browser:open(w.url, 1400, 900)
        local r = until_page(s, function(by) return by["flaky/flaky-1"] end, "flaky-1")
        assert.equal("ejected", r.state)
        assert.truthy(r.text:find("2 consecutive failures", 1, true), r.text)
        assert.truthy(r.text:find("ejected", 1, true))
        assert.truthy(r.text:find("for %d+ s"), r.text) -- since when
        assert.equal("up", rows(browser, s)["flaky/flaky-2"].state)
    end)

    it("keeps a removed instance listed with its counts", function()
        if not need_browser() then return end
        local w = world()
        traffic(w, 10)
        local s = browser:open(w.url, 1400, 900)
        until_page(s, function(by) return by["web/web-2"] and by["web/web-2"].requests == 5 end, "web-2 with 5 requests")
        remove_web2(w)
        local r = until_page(s, function(by)
            return by["web/web-2"] and by["web/web-2"].state == "removed" and by["web/web-2"]
        end, "web-2 to show as removed")
        assert.equal(5, r.requests)
        assert.truthy(r.text:find("removed", 1, true))
        assert.equal("up", rows(browser, s)["web/web-1"].state)
        local meta = browser:eval(s, [[document.querySelector('section[data-service="web"] .meta').textContent]])
        assert.truthy(meta:find("1 instance (1 serving)", 1, true), meta)
        assert.truthy(meta:find("1 removed", 1, true), meta)
    end)

    it("draws scale events and reloads on the timeline", function()
        if not need_browser() then return end
        local w = world()
        local s = browser:open(w.url, 1400, 900)
        until_page(s, function(by) return by["web/web-1"] end, "the page")
        remove_web2(w)
        h.write_file(w.gw.config_path, "return { listen = 5 }")
        assert.equal(500, h.request(w.gw.admin_port, { method = "POST", path = "/api/reload" }).status)
        local kinds = h.wait_until(function()
            local k = cjson.decode(browser:try(s, [[JSON.stringify({
              list: [...document.querySelectorAll("#events li")].map(li => li.dataset.kind + " " + li.textContent),
              marks: [...document.querySelectorAll("#tl .mark")].map(m => m.dataset.kind) })]]) or '{"list":[],"marks":[]}')
            local text = table.concat(k.list, "\n")
            return text:find("reload failed", 1, true) and k
        end, 5, "the failed reload on the timeline")
        local text = table.concat(kinds.list, "\n")
        assert.truthy(text:find("web: 2 → 1 target (-web-2)", 1, true), text)
        assert.truthy(text:find("listen", 1, true), text)
        local marks = table.concat(kinds.marks, " ")
        assert.truthy(marks:find("scale", 1, true), marks)
        assert.truthy(marks:find("reload", 1, true), marks)
    end)

    it("lists routes with their middlewares", function()
        if not need_browser() then return end
        local w = world()
        local s = browser:open(w.url, 1400, 900)
        local routes = h.wait_until(function()
            local v = cjson.decode(browser:try(s, [[JSON.stringify([...document.querySelectorAll("#routelist tr")].slice(1)
              .map(tr => [...tr.querySelectorAll("td")].map(td => td.textContent)))]]) or "[]")
            return #v == 2 and v
        end, 5, "two routes")
        assert.same({ "Host(`flaky.localhost`)", "flaky", "none" }, routes[1])
        assert.same({ "PathPrefix(`/`)", "web", "tagstrip_prefix" }, routes[2])
    end)

    it("lists recent errors by instance", function()
        if not need_browser() then return end
        local w = world()
        eject_flaky(w)
        local s = browser:open(w.url, 1400, 900)
        local text = h.wait_until(function()
            local t = browser:try(s, [[document.getElementById("errorlist").textContent]])
            return t and t:find("flaky flaky-1", 1, true) and t
        end, 5, "flaky-1's errors")
        assert.truthy(text:find("× 5xx", 1, true), text)
    end)

    it("shows a service without instances", function()
        if not need_browser() then return end
        local w = world()
        local s = browser:open(w.url, 800, 1000)
        local text = h.wait_until(function()
            return browser:try(s, [[document.querySelector('section[data-service="idle"]').textContent]])
        end, 5, "the idle service")
        assert.truthy(text:find("0 instances", 1, true), text)
        assert.truthy(text:find("No instances", 1, true), text)
        assert.truthy(browser:eval(s, [[document.getElementById("summary").textContent]]):find("3 services", 1, true))
    end)
end)
