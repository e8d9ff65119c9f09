-- HTTP Basic authentication.
--   { plugin = "basic_auth", realm = "moongate", users = { alice = "secret" } }
-- On success the user name is passed upstream in X-Authenticated-User and
-- the Authorization header is removed (remove_header = false keeps it).
local _M = {
    type = "middleware",
    priority = 1200,
    schema = {
        users = { type = "map", required = true },
        realm = { type = "string", default = "moongate" },
        remove_header = { type = "boolean", default = true },
    },
}

local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local decode_map = {}
for i = 1, #b64 do decode_map[b64:byte(i)] = i - 1 end

local function base64_decode(s)
    local out, bits, nbits = {}, 0, 0
    for i = 1, #s do
        local c = s:byte(i)
        if c == 61 then break end -- "="
        local v = decode_map[c]
        if not v then return nil end
        bits = bits * 64 + v
        nbits = nbits + 6
        if nbits >= 8 then
            nbits = nbits - 8
            local byte = math.floor(bits / 2 ^ nbits)
            out[#out + 1] = string.char(byte)
            bits = bits - byte * 2 ^ nbits
        end
    end
    return table.concat(out)
end

-- Compares without stopping at the first difference.
local function same(a, b)
    if #a ~= #b then return false end
    local diff = 0
    for i = 1, #a do
        if a:byte(i) ~= b:byte(i) then diff = diff + 1 end
    end
    return diff == 0
end

function _M.on_request(conf, req)
    local auth = req:header("Authorization")
    local creds = auth and auth:match("^[Bb]asic%s+(%S+)$")
    local decoded = creds and base64_decode(creds)
    local user, pass = nil, nil
    if decoded then user, pass = decoded:match("^([^:]*):(.*)$") end
    local expected = user and conf.users[user]
    if not (expected and same(pass, expected)) then
        req:respond(401, "authentication required\n",
            { ["WWW-Authenticate"] = 'Basic realm="' .. conf.realm .. '"' })
        return
    end
    if conf.remove_header then req:remove_header("Authorization") end
    req:set_header("X-Authenticated-User", user)
end

return _M
