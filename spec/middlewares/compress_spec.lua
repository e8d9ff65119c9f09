-- compress through the real gateway: gzip and brotli on the wire, decoded
-- by curl (zlib, libbrotlidec), Accept-Encoding q-values, sizes, types,
-- streaming.
local h = require("spec.helpers")
local socket = require("socket")
local compress = require("moongate.compress")

local function gateway(opts, extra_mws)
    local b = h.start_backend({ name = "api" })
    local mw = { plugin = "compress" }
    for k, v in pairs(opts or {}) do mw[k] = v end
    local mws = { mw }
    for _, m in ipairs(extra_mws or {}) do mws[#mws + 1] = m end
    local gw = h.start_gateway({ config = {
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = mws } },
    } })
    return gw, b
end

-- curl decodes what it is sent; returns status, body, the response head
local function curl(port, path, encoding)
    local dir = h.tmpdir()
    local status, body = h.curl("--compressed", "-H", "Accept-Encoding: " .. encoding, "-D", dir .. "/head",
                                "http://127.0.0.1:" .. port .. path)
    return status, body, h.read_file(dir .. "/head"):lower()
end

describe("moongate.compress", function()
    it("negotiates by q-value, with * and refusals", function()
        local pref = { "br", "gzip" }
        assert.equal("br", compress.negotiate("gzip, br", pref))
        assert.equal("gzip", compress.negotiate("gzip;q=1, br;q=0.5", pref))
        assert.equal("gzip", compress.negotiate("br;q=0, *", pref))
        assert.is_nil(compress.negotiate("br;q=0, gzip;q=0", pref))
        assert.is_nil(compress.negotiate("identity", pref))
        assert.equal("gzip", compress.negotiate("x-gzip", pref))
        assert.is_nil(compress.negotiate(nil, pref))
    end)
end)

describe("compress", function()
    after_each(h.cleanup)

    it("gzips a large answer, chunked, and curl decodes it to the same bytes", function()
        local gw = gateway()
        local r = h.request(gw.port, { path = "/big?bytes=200000", headers = { ["Accept-Encoding"] = "gzip" } })
        assert.equal(200, r.status)
        assert.equal("gzip", r.headers["content-encoding"])
        assert.equal("chunked", r.headers["transfer-encoding"])
        assert.is_nil(r.headers["content-length"])
        assert.equal("Accept-Encoding", r.headers["vary"])
        assert.equal("\31\139", r.body:sub(1, 2))
        assert.truthy(#r.body < 2000, #r.body)
        local status, body, head = curl(gw.port, "/big?bytes=200000", "gzip")
        assert.equal(200, status)
        assert.truthy(head:find("content-encoding: gzip", 1, true))
        assert.equal(string.rep("b", 200000), body)
    end)

    it("prefers brotli when the client takes both, and curl decodes it", function()
        local gw = gateway()
        local status, body, head = curl(gw.port, "/big?bytes=100000", "gzip, br")
        assert.equal(200, status)
        assert.truthy(head:find("content-encoding: br", 1, true), head)
        assert.equal(string.rep("b", 100000), body)
        local r = h.request(gw.port, { path = "/big?bytes=100000", headers = { ["Accept-Encoding"] = "gzip, br" } })
        assert.truthy(#r.body < 1000, #r.body)
    end)

    it("honours q-values and refusals", function()
        local gw = gateway()
        local function enc(accept)
            return h.request(gw.port, { path = "/big?bytes=5000", headers = { ["Accept-Encoding"] = accept } })
                .headers["content-encoding"]
        end
        assert.equal("gzip", enc("br;q=0.4, gzip;q=0.9"))
        assert.equal("br", enc("gzip;q=0.4, br;q=0.9"))
        assert.is_nil(enc("gzip;q=0, br;q=0"))
        assert.is_nil(enc("identity"))
        local plain = h.request(gw.port, { path = "/big?bytes=5000" })
        assert.is_nil(plain.headers["content-encoding"])
        assert.equal("5000", plain.headers["content-length"])
    end)

    it("leaves small answers, HEAD, already-compressed types and encoded answers alone", function()
        local gw = gateway({ min_response_body_bytes = 1000 }, {
            { plugin = "headers", custom_response_headers = { ["Content-Type"] = "image/png" } } })
        local function get(path, method)
            return h.request(gw.port, { path = path, method = method, headers = { ["Accept-Encoding"] = "gzip" } })
        end
        local png = get("/big?bytes=5000")
        assert.is_nil(png.headers["content-encoding"])
        assert.equal(5000, #png.body)
        local gw2 = gateway({ min_response_body_bytes = 1000 })
        local small = h.request(gw2.port, { path = "/big?bytes=999", headers = { ["Accept-Encoding"] = "gzip" } })
        assert.is_nil(small.headers["content-encoding"])
        assert.equal(999, #small.body)
        local head = h.request(gw2.port, { method = "HEAD", path = "/big?bytes=5000",
                                           headers = { ["Accept-Encoding"] = "gzip" } })
        assert.equal(200, head.status)
        assert.is_nil(head.headers["content-encoding"])
        local gw3 = gateway({}, { { plugin = "headers", custom_response_headers = { ["Content-Encoding"] = "zstd" } } })
        local enc = h.request(gw3.port, { path = "/big?bytes=5000", headers = { ["Accept-Encoding"] = "gzip" } })
        assert.equal("zstd", enc.headers["content-encoding"])
        assert.equal(5000, #enc.body)
        local gw4 = gateway({}, { { plugin = "headers", custom_response_headers = { ["Cache-Control"] = "no-transform" } } })
        local nt = h.request(gw4.port, { path = "/big?bytes=5000", headers = { ["Accept-Encoding"] = "gzip" } })
        assert.is_nil(nt.headers["content-encoding"])
    end)

    it("compresses a chunked answer and keeps the connection usable", function()
        local gw = gateway({ min_response_body_bytes = 0 })
        local c = assert(h.connect(gw.port))
        for _ = 1, 2 do
            c:send_request({ path = "/chunked?n=4&size=3000", headers = { ["Accept-Encoding"] = "gzip" } })
            local r = assert(c:read_response())
            assert.equal(200, r.status)
            assert.equal("gzip", r.headers["content-encoding"])
        end
        c:close()
        local status, body = curl(gw.port, "/chunked?n=4&size=3000", "gzip")
        assert.equal(200, status)
        assert.equal(string.rep("a", 3000) .. string.rep("b", 3000) .. string.rep("c", 3000) .. string.rep("d", 3000), body)
    end)

    it("streams: compressed bytes of the first piece arrive before the backend is done", function()
        local gw = gateway({ min_response_body_bytes = 0 })
        local s = assert(socket.connect("127.0.0.1", gw.port))
        s:send("GET /slowbody?n=5&ms=300 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        s:settimeout(0.05)
        local t0, got, first_body_at = socket.gettime(), "", nil
        while socket.gettime() - t0 < 5 do
            local data, err, partial = s:receive(65536)
            got = got .. (data or partial or "")
            local head_end = got:find("\r\n\r\n", 1, true)
            -- the head, then a chunk that holds gzip's header and the first flushed piece
            if head_end and #got > head_end + 20 then
                first_body_at = socket.gettime() - t0
                break
            end
            if err == "closed" then break end
        end
        s:close()
        assert.truthy(got:lower():find("content-encoding: gzip", 1, true), got)
        assert.truthy(first_body_at and first_body_at < 1.0, "first compressed bytes after " .. tostring(first_body_at))
    end)
end)
