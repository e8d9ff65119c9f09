-- HTTP/2 limits and abuse, with frames written by hand (spec/support/h2raw.py)
-- over real sockets to the real gateway: the SETTINGS it announces,
-- refused streams, HPACK bombs, rapid reset (CVE-2023-44487), CONTINUATION,
-- PING and SETTINGS floods, and GOAWAY on shutdown and on a reload that
-- changes the listener.
local h = require("spec.helpers")
local t = require("spec.tls.support")
local cjson = require("cjson")

local RAW = "spec/support/h2raw.py"
local ENHANCE_YOUR_CALM, NO_ERROR = 11, 0

local function rss_kb(pid)
    local s = h.read_file("/proc/" .. pid .. "/status") or ""
    return tonumber(s:match("VmRSS:%s+(%d+)")) or 0
end

local function raw(port, ...)
    local out = t.sh("timeout 60 python3 " .. RAW .. " " .. port .. " " .. table.concat({ ... }, " "))
    local ok, v = pcall(cjson.decode, out:match("{.*}") or "")
    assert(ok, out)
    return v
end

local function setup(extra)
    local b = h.start_backend({ name = "A" })
    local cfg = {
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api" } },
    }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    local gw = h.start_gateway({ config = cfg })
    return gw, b
end

local function backend_requests(b)
    return cjson.decode((t.sh("curl -s http://" .. b.address .. "/stats"))).requests
end

local function still_answers(gw)
    assert.equal(200, raw(gw.port, "get", "/").status)
end

describe("HTTP/2 limits", function()
    after_each(h.cleanup)

    it("announces max concurrent streams and the header list size, and refuses streams past it", function()
        local gw = setup({ http2 = { max_concurrent_streams = 10 }, limits = { max_header_size = 8192 } })
        local out = t.sh("timeout 10 nghttp -nv http://127.0.0.1:" .. gw.port .. "/")
        assert.truthy(out:find("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):10", 1, true), out)
        assert.truthy(out:find("SETTINGS_MAX_HEADER_LIST_SIZE(0x06):8192", 1, true), out)
        local r = raw(gw.port, "streams", "50")
        assert.equal(40, r.refused)
        still_answers(gw)
    end)

    it("answers 431 to a head over limits.max_header_size, however it was compressed", function()
        local gw = setup()
        local code = t.sh("curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge -H 'X-Big: " ..
                          string.rep("a", 40000) .. "' http://127.0.0.1:" .. gw.port .. "/")
        assert.equal("431", code)
        -- an HPACK bomb: 4000 bytes indexed once, referenced 60000 times (240 MB decoded)
        local before = rss_kb(gw:pid())
        local t0 = os.time()
        local r = raw(gw.port, "hpack_bomb", "60000")
        assert.equal(431, r.status)
        assert.is_true(os.time() - t0 < 10)
        assert.is_true(rss_kb(gw:pid()) - before < 8 * 1024)
        still_answers(gw)
    end)

    it("ends a rapid reset flood with ENHANCE_YOUR_CALM before the backend sees it", function()
        local gw, b = setup()
        local r = raw(gw.port, "rapid_reset", "20000")
        assert.equal(ENHANCE_YOUR_CALM, r.goaway)
        assert.is_true(r.sent < 20000)
        assert.is_true(backend_requests(b) < 300, "the backend got " .. backend_requests(b))
        still_answers(gw)
    end)

    it("ends CONTINUATION, PING and SETTINGS floods with ENHANCE_YOUR_CALM", function()
        local gw = setup()
        local before = rss_kb(gw:pid())
        for _, mode in ipairs({ "continuation", "ping", "settings" }) do
            local r = raw(gw.port, mode, "50000")
            assert.equal(ENHANCE_YOUR_CALM, r.goaway, mode)
            assert.is_true(r.sent < 50000, mode)
        end
        assert.is_true(rss_kb(gw:pid()) - before < 8 * 1024)
        still_answers(gw)
    end)
end)

describe("HTTP/2 GOAWAY", function()
    after_each(h.cleanup)

    it("is sent on a graceful stop, and the stream in flight still completes", function()
        local gw, b = setup()
        local dir = h.tmpdir()
        local p = h.spawn({ "python3", RAW, tostring(gw.port), "inflight", "/delay/1500" },
                          { stdout = dir .. "/out" })
        local polls = 0
        h.wait_until(function()
            polls = polls + 1
            return backend_requests(b) > polls -- /stats counts itself
        end, 5, "the request at the backend")
        gw:stop()
        h.wait_until(function() return h.reap(p, 0) end, 15, "the client to see the end")
        local r = cjson.decode(h.read_file(dir .. "/out"))
        assert.equal(200, r.status)
        assert.equal(NO_ERROR, r.goaway)
        assert.is_true(r.closed)
    end)

    it("is sent when a reload turns HTTP/2 off on the listener", function()
        local gw = setup()
        local dir = h.tmpdir()
        local p = h.spawn({ "python3", RAW, tostring(gw.port), "idle", "15" }, { stdout = dir .. "/out" })
        h.wait_until(function() return (h.read_file(dir .. "/out") or ""):find("ready") end, 5,
            "the client connected")
        local src = h.read_file(gw.config_path)
        local listen = src:match('\n  listen = "([^"]+)"') -- the top level's, not admin.listen
        src = src:gsub('\n  listen = "[^"]+"', '\n  listen = { { address = "' .. listen .. '", http2 = false } }')
        h.write_file(gw.config_path, src)
        h.wait_until(function() return h.reap(p, 0) end, 10, "the client to get GOAWAY")
        local r = cjson.decode(h.read_file(dir .. "/out"):match("[^\n]+\n$"))
        assert.equal(NO_ERROR, r.goaway)
        gw:wait_log("reloaded")
        -- new connections speak HTTP/1 only on that listener
        local ver = t.sh("curl -s -o /dev/null -w '%{http_version}' --http2 http://" .. listen .. "/")
        assert.equal("1.1", ver)
    end)
end)
