-- HTTP Basic authentication (Traefik's basicAuth).
--   { plugin = "basic_auth", realm = "moongate",
--     users = { alice = "s3cret", bob = "$2y$05$..." },   -- or { "alice:$apr1$...", ... }
--     users_file = "/etc/moongate/htpasswd" }
-- Passwords may be stored as htpasswd writes them: bcrypt ($2y$, $2b$,
-- $2a$), Apache MD5 ($apr1$), {SHA}, crypt ($1$ $5$ $6$), or plain text
-- (see moongate.htpasswd). users_file is read when the config loads; users
-- in both take the entry from `users`. On success the user name is passed
-- upstream in header_field (X-Authenticated-User) and the Authorization
-- header is removed (remove_header = false keeps it). A good password is
-- remembered (a SHA-256 of it, per worker) so bcrypt's cost is paid once.
local htpasswd = require("moongate.htpasswd")

local function read_users(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local text = f:read("*a")
    f:close()
    return htpasswd.parse(text)
end

local function users_list(v)
    if #v == 0 then return true end
    for i, line in ipairs(v) do
        if type(line) ~= "string" or not line:find("^[^:]+:.") then
            return nil, "[" .. i .. "]: expected \"user:hash\""
        end
    end
    return true
end

local _M = {
    type = "middleware",
    priority = 1200,
    schema = {
        users = { type = "table", default = {}, check = users_list },
        users_file = { type = "string", check = function(p)
            local ok, err = read_users(p)
            return ok and true, err
        end },
        realm = { type = "string", default = "moongate" },
        remove_header = { type = "boolean", default = true },
        header_field = { type = "string", default = "X-Authenticated-User" },
    },
}

local MAX_REMEMBERED = 4096

function _M.init(conf)
    local users = {}
    if conf.users_file then users = assert(read_users(conf.users_file)) end
    if #conf.users > 0 then
        for _, line in ipairs(conf.users) do
            local u, hash = line:match("^([^:]+):(.+)$")
            users[u] = hash
        end
    else
        for u, pw in pairs(conf.users) do users[u] = pw end
    end
    return { users = users, realm = conf.realm, remove_header = conf.remove_header,
             header_field = conf.header_field, good = {}, ngood = 0 }
end

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

local function check(conf, user, pass)
    local stored = user and conf.users[user]
    if not stored then return false end
    local kind = htpasswd.kind(stored)
    if kind == "plain" or kind == "sha" then return htpasswd.verify(pass, stored) end
    local key = htpasswd.digest("sha256", user .. "\0" .. pass .. "\0" .. stored)
    if conf.good[key] then return true end
    if not htpasswd.verify(pass, stored) then return false end
    if conf.ngood >= MAX_REMEMBERED then conf.good, conf.ngood = {}, 0 end
    conf.good[key] = true
    conf.ngood = conf.ngood + 1
    return true
end

function _M.on_request(conf, req)
    local auth = req:header("Authorization")
    local creds = auth and auth:match("^[Bb]asic%s+(%S+)$")
    local decoded = creds and base64_decode(creds)
    local user, pass = nil, nil
    if decoded then user, pass = decoded:match("^([^:]*):(.*)$") end
    if not check(conf, user, pass) then
        req:respond(401, "authentication required\n",
            { ["WWW-Authenticate"] = 'Basic realm="' .. conf.realm .. '"' })
        return
    end
    if conf.remove_header then req:remove_header("Authorization") end
    if conf.header_field ~= "" then req:set_header(conf.header_field, user) end
end

return _M
