-- Streaming gzip (Debian's zlib, libz.so.1) and brotli (libbrotlienc.so.1)
-- through the FFI, and Accept-Encoding negotiation, for the compress
-- middleware.
--   local enc = compress.encoder("gzip" | "br", level)
--   enc:write(bytes) --> compressed bytes so far (flushed: a reader sees
--                        everything written, as a stream needs)
--   enc:finish()     --> the rest; the encoder is freed
--   compress.negotiate("gzip;q=0.5, br", { "br", "gzip" }) --> "br"
local ffi = require("ffi")

ffi.cdef([[
typedef struct mg_z_stream {
    const unsigned char *next_in; unsigned int avail_in; unsigned long total_in;
    unsigned char *next_out; unsigned int avail_out; unsigned long total_out;
    const char *msg; void *state;
    void *zalloc; void *zfree; void *opaque;
    int data_type; unsigned long adler; unsigned long reserved;
} mg_z_stream;
const char *zlibVersion(void);
int deflateInit2_(mg_z_stream *strm, int level, int method, int windowBits, int memLevel,
                  int strategy, const char *version, int stream_size);
int deflate(mg_z_stream *strm, int flush);
int deflateEnd(mg_z_stream *strm);

typedef struct BrotliEncoderStateStruct BrotliEncoderState;
BrotliEncoderState *BrotliEncoderCreateInstance(void *alloc, void *free, void *opaque);
int BrotliEncoderSetParameter(BrotliEncoderState *s, int param, uint32_t value);
int BrotliEncoderCompressStream(BrotliEncoderState *s, int op, size_t *available_in,
                                const uint8_t **next_in, size_t *available_out,
                                uint8_t **next_out, size_t *total_out);
int BrotliEncoderHasMoreOutput(BrotliEncoderState *s);
void BrotliEncoderDestroyInstance(BrotliEncoderState *s);
]])

local _M = {}

local zlib, brotli
local function lib(which)
    if which == "gzip" then
        zlib = zlib or ffi.load("libz.so.1")
        return zlib
    end
    brotli = brotli or ffi.load("libbrotlienc.so.1")
    return brotli
end

-- Whether the codec's library loads on this machine.
function _M.available(name)
    return (pcall(lib, name))
end

local OUT = 65536
local outbuf = ffi.new("uint8_t[?]", OUT)

local Z_SYNC_FLUSH, Z_FINISH, Z_STREAM_END, Z_BUF_ERROR = 2, 4, 1, -5
local BR_FLUSH, BR_FINISH, BR_QUALITY, BR_LGWIN = 1, 2, 1, 2

local Gzip = {}
Gzip.__index = Gzip

local function gzip_new(level)
    local z = lib("gzip")
    local strm = ffi.new("mg_z_stream")
    -- windowBits 15 + 16: a gzip wrapper; memLevel 8, default strategy
    if z.deflateInit2_(strm, level or 6, 8, 31, 8, 0, z.zlibVersion(), ffi.sizeof("mg_z_stream")) ~= 0 then
        error("deflateInit2 failed")
    end
    ffi.gc(strm, z.deflateEnd)
    return setmetatable({ z = z, strm = strm }, Gzip)
end

function Gzip:run(data, flush)
    local strm, z = self.strm, self.z
    strm.next_in = data
    strm.avail_in = #data
    local out = {}
    repeat
        strm.next_out = outbuf
        strm.avail_out = OUT
        local rc = z.deflate(strm, flush)
        if rc < 0 and rc ~= Z_BUF_ERROR then error("deflate failed: " .. rc) end
        local n = OUT - strm.avail_out
        if n > 0 then out[#out + 1] = ffi.string(outbuf, n) end
    until strm.avail_out ~= 0 or rc == Z_STREAM_END
    return table.concat(out)
end

function Gzip:write(data) return self:run(data, Z_SYNC_FLUSH) end

function Gzip:finish()
    local rest = self:run("", Z_FINISH)
    ffi.gc(self.strm, nil)
    self.z.deflateEnd(self.strm)
    return rest
end

local Br = {}
Br.__index = Br

local avail_in = ffi.new("size_t[1]")
local next_in = ffi.new("const uint8_t *[1]")
local avail_out = ffi.new("size_t[1]")
local next_out = ffi.new("uint8_t *[1]")

local function br_new(quality)
    local b = lib("br")
    local s = b.BrotliEncoderCreateInstance(nil, nil, nil)
    if s == nil then error("BrotliEncoderCreateInstance failed") end
    ffi.gc(s, b.BrotliEncoderDestroyInstance)
    b.BrotliEncoderSetParameter(s, BR_QUALITY, quality or 5)
    b.BrotliEncoderSetParameter(s, BR_LGWIN, 22)
    return setmetatable({ b = b, s = s }, Br)
end

function Br:run(data, op)
    local b, s = self.b, self.s
    avail_in[0] = #data
    next_in[0] = ffi.cast("const uint8_t *", data)
    local out = {}
    repeat
        avail_out[0] = OUT
        next_out[0] = outbuf
        if b.BrotliEncoderCompressStream(s, op, avail_in, next_in, avail_out, next_out, nil) == 0 then
            error("BrotliEncoderCompressStream failed")
        end
        local n = OUT - tonumber(avail_out[0])
        if n > 0 then out[#out + 1] = ffi.string(outbuf, n) end
    until avail_in[0] == 0 and b.BrotliEncoderHasMoreOutput(s) == 0
    return table.concat(out)
end

function Br:write(data) return self:run(data, BR_FLUSH) end

function Br:finish()
    local rest = self:run("", BR_FINISH)
    ffi.gc(self.s, nil)
    self.b.BrotliEncoderDestroyInstance(self.s)
    return rest
end

-- A streaming encoder for "gzip" or "br" (level: zlib's 1-9, brotli's 0-11).
function _M.encoder(name, level)
    if name == "gzip" then return gzip_new(level) end
    if name == "br" then return br_new(level) end
    error("unknown encoding " .. tostring(name), 2)
end

-- Accept-Encoding -> { coding = q } (RFC 9110 12.5.3); codings lowercased.
function _M.parse_accept(header)
    local q = {}
    for item in (header or ""):gmatch("[^,]+") do
        local coding, params = item:match("^%s*([^;%s]+)%s*(.*)$")
        if coding then
            local weight = 1
            local qv = params:match(";%s*[qQ]%s*=%s*([%d%.]+)")
            if qv then weight = tonumber(qv) or 0 end
            q[coding:lower()] = math.min(weight, 1)
        end
    end
    return q
end

-- The coding to use among `supported` (in order of preference, which breaks
-- ties), or nil for none. "x-gzip" counts as gzip; "*" covers codings not
-- named; q=0 refuses.
function _M.negotiate(header, supported)
    if not header then return nil end
    local q = _M.parse_accept(header)
    if q["x-gzip"] and not q.gzip then q.gzip = q["x-gzip"] end
    local best, bestq = nil, 0
    for _, coding in ipairs(supported) do
        local w = q[coding]
        if w == nil then w = q["*"] end
        if w and w > bestq then best, bestq = coding, w end
    end
    return best
end

return _M
