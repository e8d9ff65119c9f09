-- Crypto primitives for control-plane plugins (certificate sources such as
-- the ACME client): require("moongate").crypto. Keys and certificates are
-- PEM strings; byte strings are raw unless a name says base64url.
-- Runtime failures return nil, err; misuse raises.
local c = package.loaded["moongate.c.crypto"]
local json = package.loaded["moongate.c.json"] -- jansson (init.lua's mg.json; no require loop)

local _M = {}

local function need()
    if not c then error("mg.crypto needs the moongate binary's control plane", 3) end
end

-- A new private key (PEM): key("ec") is P-256, key("rsa", 2048|3072|4096).
function _M.key(kind, bits)
    need()
    if kind ~= "ec" and kind ~= "rsa" then error("key type must be \"ec\" or \"rsa\"", 2) end
    return c.keygen(kind, bits or 2048)
end

function _M.sha256(data) need(); return c.sha256(data) end
function _M.b64url(data) need(); return c.b64url(data) end
function _M.b64url_decode(s) need(); return c.b64url_decode(s) end

function _M.hex(bytes)
    return (bytes:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

-- The public JWK of a key (RFC 7517) and its JWS algorithm: ES256 or RS256.
function _M.jwk(key_pem)
    need()
    local kty, a, b, alg = c.jwk(key_pem)
    if not kty then return nil, a end
    if kty == "EC" then return { kty = "EC", crv = "P-256", x = a, y = b }, alg end
    return { kty = "RSA", n = a, e = b }, alg
end

-- RFC 7638 thumbprint (base64url of the SHA-256 of the canonical JWK).
function _M.thumbprint(jwk)
    local canon
    if jwk.kty == "EC" then
        canon = string.format('{"crv":"%s","kty":"EC","x":"%s","y":"%s"}', jwk.crv, jwk.x, jwk.y)
    elseif jwk.kty == "RSA" then
        canon = string.format('{"e":"%s","kty":"RSA","n":"%s"}', jwk.e, jwk.n)
    else
        error("unsupported JWK type " .. tostring(jwk.kty), 2)
    end
    return _M.b64url(_M.sha256(canon))
end

-- A JWS in flattened JSON serialization (RFC 7515 7.2.2), as a table ready
-- for mg.json.encode. protected: the header table (alg is filled in);
-- payload: a string (sent as is; "" for ACME's POST-as-GET) or a table
-- (JSON-encoded).
function _M.jws(key_pem, protected, payload)
    need()
    if not json then error("mg.crypto.jws needs the moongate binary", 2) end
    local kty, _, _, alg = c.jwk(key_pem)
    if not kty or not alg then return nil, "not a P-256 or RSA key" end
    local hdr = {}
    for k, v in pairs(protected) do hdr[k] = v end
    hdr.alg = alg
    local p64 = _M.b64url(json.encode(hdr))
    local body = type(payload) == "table" and json.encode(payload) or payload or ""
    local b64 = body == "" and "" or _M.b64url(body)
    local sig, err = c.sign(key_pem, p64 .. "." .. b64)
    if not sig then return nil, err end
    return { protected = p64, payload = b64, signature = _M.b64url(sig) }
end

-- A CSR (DER) for a list of names, signed by key_pem.
function _M.csr(key_pem, names)
    need()
    if type(names) ~= "table" or #names == 0 then error("csr needs a list of names", 2) end
    return c.csr(key_pem, names)
end

-- A self-signed certificate (PEM) for names, valid for days (default 7).
function _M.self_signed(key_pem, names, days)
    need()
    if type(names) ~= "table" or #names == 0 then error("self_signed needs a list of names", 2) end
    return c.self_signed(key_pem, names, days or 7)
end

-- The TLS-ALPN-01 challenge certificate for name (RFC 8737): a fresh key
-- and a self-signed certificate whose acmeIdentifier extension holds the
-- SHA-256 of the key authorization. Returns cert_pem, key_pem.
function _M.alpn_challenge_cert(name, key_authorization)
    need()
    local key, err = c.keygen("ec", 0)
    if not key then return nil, err end
    local cert
    cert, err = c.self_signed(key, { name }, 7, c.sha256(key_authorization))
    if not cert then return nil, err end
    return cert, key
end

-- { not_before, not_after (Unix seconds), serial (hex), subject, issuer (CNs),
--   names (DNS SANs) } of the first certificate in a PEM text.
function _M.cert_info(pem)
    need()
    if type(pem) ~= "string" then error("cert_info needs a PEM string", 2) end
    return c.cert_info(pem)
end

-- Writes a secret (a key, the ACME storage) to path: replaced atomically,
-- mode 0600. Returns true or nil, err.
function _M.write_secret(path, data)
    need()
    if type(path) ~= "string" or type(data) ~= "string" then error("write_secret(path, data)", 2) end
    return c.write_secret(path, data)
end

-- Splits a PEM bundle into its certificates (leaf first).
function _M.pem_certs(pem)
    local out = {}
    for block in pem:gmatch("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-") do
        out[#out + 1] = block .. "\n"
    end
    return out
end

-- DER bytes as a PEM block of the given label ("CERTIFICATE REQUEST", ...).
function _M.pem(der, label)
    need()
    local b64 = c.b64url(der):gsub("%-", "+"):gsub("_", "/")
    b64 = b64 .. string.rep("=", (4 - #b64 % 4) % 4)
    local lines = {}
    for i = 1, #b64, 64 do lines[#lines + 1] = b64:sub(i, i + 63) end
    return "-----BEGIN " .. label .. "-----\n" .. table.concat(lines, "\n") .. "\n-----END " .. label .. "-----\n"
end

return _M
