-- Compresses response bodies with gzip or brotli as the client accepts
-- them (Traefik's compress), streaming: each piece of the body is
-- compressed and flushed as it passes (res:filter_body / on_body).
--   { plugin = "compress", encodings = { "br", "gzip" }, min_response_body_bytes = 1024,
--     excluded_content_types = {...}, included_content_types = {...},
--     gzip_level = 6, brotli_quality = 5 }
-- Skipped: HEAD requests, 1xx/204/206/304, answers that already carry a
-- Content-Encoding or say Cache-Control: no-transform, a Content-Length under min_response_body_bytes, and
-- content types that are already compressed (images but SVG, audio, video,
-- archives, fonts, PDFs) or excluded. An answer of unknown length is
-- compressed (its size is not known when the head goes out).
local compress = require("moongate.compress")

local ALREADY = {
    "image/", "audio/", "video/", "application/zip", "application/gzip", "application/x-gzip",
    "application/zstd", "application/x-bzip2", "application/x-xz", "application/x-7z-compressed",
    "application/x-rar-compressed", "application/vnd.rar", "application/pdf", "font/woff",
    "font/woff2", "application/wasm", "application/grpc",
}

local _M = {
    type = "middleware",
    priority = 400, -- after headers (500): it sees the final Content-Type
    schema = {
        encodings = { type = "array", default = { "br", "gzip" }, check = function(v)
            for _, e in ipairs(v) do
                if e ~= "gzip" and e ~= "br" then return nil, "only gzip and br are offered, not " .. tostring(e) end
            end
            return true
        end },
        min_response_body_bytes = { type = "integer", default = 1024, min = 0 },
        excluded_content_types = { type = "array" },
        included_content_types = { type = "array" },
        default_encoding = { type = "string", one_of = { "gzip", "br" } },
        gzip_level = { type = "integer", default = 6, min = 1, max = 9 },
        brotli_quality = { type = "integer", default = 5, min = 0, max = 11 },
    },
}

function _M.init(conf)
    local c = {}
    for k, v in pairs(conf) do c[k] = v end
    c.supported = {}
    for _, e in ipairs(conf.encodings) do
        if compress.available(e) then c.supported[#c.supported + 1] = e end
    end
    return c
end

local function media_type(ct)
    local mt = (ct or ""):match("^%s*([^;%s]+)")
    return mt and mt:lower() or ""
end

local function listed(list, mt)
    for _, p in ipairs(list) do
        p = p:lower()
        if mt == p or (p:sub(-1) == "/" and mt:sub(1, #p) == p) then return true end
    end
    return false
end

local function compressible(conf, mt)
    if conf.included_content_types then return listed(conf.included_content_types, mt) end
    if conf.excluded_content_types and listed(conf.excluded_content_types, mt) then return false end
    if mt:find("^image/svg") then return true end
    return not listed(ALREADY, mt)
end

function _M.on_response(conf, req, res)
    if req.method == "HEAD" then return end
    local status = res.status
    if status < 200 or status == 204 or status == 206 or status == 304 then return end
    if res:header("Content-Encoding") then return end
    if (res:header("Cache-Control") or ""):lower():find("no-transform", 1, true) then return end
    local len = tonumber(res:header("Content-Length") or "")
    if len and len < conf.min_response_body_bytes then return end
    if not compressible(conf, media_type(res:header("Content-Type"))) then return end
    local accept = req:header("Accept-Encoding")
    local enc = compress.negotiate(accept, conf.supported)
    if not enc and not accept and conf.default_encoding then enc = conf.default_encoding end
    res:add_header("Vary", "Accept-Encoding")
    if not enc then return end
    req.ctx.compress = compress.encoder(enc, enc == "gzip" and conf.gzip_level or conf.brotli_quality)
    res:set_header("Content-Encoding", enc)
    res:remove_header("Content-Length")
    local etag = res:header("ETag")
    if etag and etag:sub(1, 2) ~= "W/" then res:set_header("ETag", "W/" .. etag) end
    res:filter_body()
end

function _M.on_body(conf, req, res, chunk, last)
    local enc = req.ctx.compress
    local out = chunk ~= "" and enc:write(chunk) or ""
    if last then
        out = out .. enc:finish()
        req.ctx.compress = nil
    end
    return out
end

return _M
