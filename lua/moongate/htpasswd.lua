-- Password hashes as htpasswd writes them, for basic_auth:
--   $2y$ / $2b$ / $2a$ (bcrypt), $1$, $5$, $6$  -> libcrypt's crypt_r (Debian's libxcrypt)
--   $apr1$ (Apache's MD5)                      -> written here on libcrypto's MD5
--   {SHA}                                      -> base64 of libcrypto's SHA-1
-- anything else is a plain-text password (htpasswd -p).
--   htpasswd.verify(password, stored) --> true | false
--   htpasswd.parse(text)              --> { user = hash }, or nil, "line N: ..."
local ffi = require("ffi")

ffi.cdef([[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_md5(void);
const EVP_MD *EVP_sha1(void);
const EVP_MD *EVP_sha256(void);
int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const EVP_MD *type, void *impl);
char *crypt_r(const char *phrase, const char *setting, void *data);
]])

local _M = {}

-- The binary links libcrypto (ffi.C has it); plain luajit loads it.
local crypto = pcall(function() return ffi.C.EVP_md5 end) and ffi.C or ffi.load("libcrypto.so.3")
local libcrypt
local crypt_data -- struct crypt_data: 32 KiB in libxcrypt, zeroed before first use

local md = ffi.new("unsigned char[64]")
local mdlen = ffi.new("unsigned int[1]")

local function digest(kind, s)
    local t = kind == "md5" and crypto.EVP_md5() or kind == "sha1" and crypto.EVP_sha1() or crypto.EVP_sha256()
    if crypto.EVP_Digest(s, #s, md, mdlen, t, nil) ~= 1 then error("EVP_Digest failed") end
    return ffi.string(md, mdlen[0])
end
_M.digest = digest

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function _M.base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local chars = {}
        for k = 3, 0, -1 do
            local v = math.floor(n / 64 ^ k) % 64
            chars[#chars + 1] = B64:sub(v + 1, v + 1)
        end
        if not b then chars[3], chars[4] = "=", "=" elseif not c then chars[4] = "=" end
        out[#out + 1] = table.concat(chars)
    end
    return table.concat(out)
end

local ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
local function to64(v, n)
    local out = {}
    for _ = 1, n do
        local k = v % 64
        out[#out + 1] = ITOA64:sub(k + 1, k + 1)
        v = math.floor(v / 64)
    end
    return table.concat(out)
end

-- Poul-Henning Kamp's MD5-crypt with Apache's magic "$apr1$".
function _M.apr1(pw, salt)
    salt = salt:match("^([^$]*)"):sub(1, 8)
    local magic = "$apr1$"
    local final = digest("md5", pw .. salt .. pw)
    local ctx = { pw, magic, salt }
    local pl = #pw
    while pl > 0 do
        ctx[#ctx + 1] = final:sub(1, math.min(pl, 16))
        pl = pl - 16
    end
    local i = #pw
    while i > 0 do
        ctx[#ctx + 1] = (i % 2 == 1) and "\0" or pw:sub(1, 1)
        i = math.floor(i / 2)
    end
    final = digest("md5", table.concat(ctx))
    for r = 0, 999 do
        local odd = r % 2 == 1
        local parts = { odd and pw or final }
        if r % 3 ~= 0 then parts[#parts + 1] = salt end
        if r % 7 ~= 0 then parts[#parts + 1] = pw end
        parts[#parts + 1] = odd and final or pw
        final = digest("md5", table.concat(parts))
    end
    local f = { final:byte(1, 16) }
    local out = { magic, salt, "$" }
    for _, g in ipairs({ { 1, 7, 13 }, { 2, 8, 14 }, { 3, 9, 15 }, { 4, 10, 16 }, { 5, 11, 6 } }) do
        out[#out + 1] = to64(f[g[1]] * 65536 + f[g[2]] * 256 + f[g[3]], 4)
    end
    out[#out + 1] = to64(f[12], 2)
    return table.concat(out)
end

local function crypt(pw, setting)
    if not libcrypt then
        libcrypt = ffi.load("libcrypt.so.1")
        crypt_data = ffi.new("char[?]", 131072)
    end
    local r = libcrypt.crypt_r(pw, setting, crypt_data)
    return r ~= nil and ffi.string(r) or nil
end

-- Compares without stopping at the first difference.
local function same(a, b)
    if type(a) ~= "string" or #a ~= #b then return false end
    local diff = 0
    for i = 1, #a do
        if a:byte(i) ~= b:byte(i) then diff = diff + 1 end
    end
    return diff == 0
end
_M.same = same

-- What kind of hash a stored value is: "bcrypt", "crypt", "apr1", "sha", "plain".
function _M.kind(stored)
    if stored:match("^%$2[aby]%$%d%d%$") then return "bcrypt" end
    if stored:match("^%$[156]%$") then return "crypt" end
    if stored:sub(1, 6) == "$apr1$" then return "apr1" end
    if stored:sub(1, 5) == "{SHA}" then return "sha" end
    return "plain"
end

function _M.verify(pw, stored)
    local kind = _M.kind(stored)
    if kind == "bcrypt" or kind == "crypt" then return same(crypt(pw, stored), stored) end
    if kind == "apr1" then return same(_M.apr1(pw, stored:sub(7)), stored) end
    if kind == "sha" then return same("{SHA}" .. _M.base64(digest("sha1", pw)), stored) end
    return same(pw, stored)
end

-- "user:hash" lines (blank lines and # comments skipped) -> { user = hash }.
function _M.parse(text, into)
    local users = into or {}
    local n = 0
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        line = line:gsub("\r$", "")
        if line:match("%S") and not line:match("^%s*#") then
            local user, hash = line:match("^([^:]+):(.+)$")
            if not user then return nil, "line " .. n .. ": expected user:hash" end
            users[user] = hash
        end
    end
    return users
end

return _M
