-- Addresses and CIDR ranges for middlewares (ip_allowlist, inflight_req,
-- rate_limit): IPv4 and IPv6 parsed into 16-byte strings (IPv4 as
-- ::ffff:a.b.c.d, so "10.0.0.0/8" also matches ::ffff:10.1.2.3), and the
-- client address a request is judged by (Traefik's ipStrategy).
local _M = {}

local byte, char, sub, find = string.byte, string.char, string.sub, string.find
local floor = math.floor

local V4_PREFIX = string.rep("\0", 10) .. "\255\255"

local function parse_v4(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    if not (a and a < 256 and b < 256 and c < 256 and d < 256) then return nil end
    return char(a, b, c, d)
end

local function parse_v6(s)
    if s:find("%%") then s = s:match("^([^%%]*)") end -- a zone id
    local tail4
    local last = s:match(":([%d%.]+)$")
    if last and last:find(".", 1, true) then
        tail4 = parse_v4(last)
        if not tail4 then return nil end
        s = s:sub(1, #s - #last) .. "0:0"
    end
    local head, rest = s, nil
    local dbl = find(s, "::", 1, true)
    if dbl then
        head, rest = sub(s, 1, dbl - 1), sub(s, dbl + 2)
        if find(rest, "::", 1, true) then return nil end
    end
    local function groups(part)
        local out = {}
        if part == "" then return out end
        for g in (part .. ":"):gmatch("([^:]*):") do
            if not g:match("^%x%x?%x?%x?$") then return nil end
            out[#out + 1] = tonumber(g, 16)
        end
        return out
    end
    local h, r = groups(head), groups(rest or "")
    if not h or not r then return nil end
    local n = #h + #r
    if (dbl and n > 7) or (not dbl and n ~= 8) then return nil end
    local all = {}
    for _, g in ipairs(h) do all[#all + 1] = g end
    for _ = 1, 8 - n do all[#all + 1] = 0 end
    for _, g in ipairs(r) do all[#all + 1] = g end
    local bytes = {}
    for i = 1, 8 do
        bytes[#bytes + 1] = char(floor(all[i] / 256), all[i] % 256)
    end
    local out = table.concat(bytes)
    if tail4 then out = sub(out, 1, 12) .. tail4 end
    return out
end

-- "10.1.2.3", "::1", "[::1]", "10.1.2.3:80", "[::1]:80" -> 16 bytes, or nil.
function _M.parse(s)
    if type(s) ~= "string" then return nil end
    s = s:match("^%s*(.-)%s*$")
    local bracket = s:match("^%[([^%]]+)%]")
    if bracket then s = bracket end
    local v4 = parse_v4(s) or parse_v4(s:match("^([%d%.]+):%d+$") or "")
    if v4 then return V4_PREFIX .. v4 end
    if s:find(":", 1, true) then return parse_v6(s) end
    return nil
end

-- "10.0.0.0/8", "2001:db8::/32", or a single address -> a range, or nil, err.
function _M.cidr(s)
    if type(s) ~= "string" then return nil, "expected a CIDR string" end
    local addr, bits = s:match("^%s*([^/%s]+)/(%d+)%s*$")
    if not addr then addr = s end
    local a = _M.parse(addr)
    if not a then return nil, "not an address or CIDR: " .. s end
    local is4 = sub(a, 1, 12) == V4_PREFIX and not addr:find(":", 1, true)
    local max = is4 and 32 or 128
    bits = bits and tonumber(bits) or max
    if bits > max then return nil, "prefix length too long: " .. s end
    return { addr = a, bits = is4 and bits + 96 or bits, text = s }
end

local function in_range(a, r)
    local full = floor(r.bits / 8)
    if sub(a, 1, full) ~= sub(r.addr, 1, full) then return false end
    local rem = r.bits % 8
    if rem == 0 then return true end
    local shift = 2 ^ (8 - rem)
    return floor(byte(a, full + 1) / shift) == floor(byte(r.addr, full + 1) / shift)
end

-- A list of CIDR strings -> a matcher set, or nil, err.
function _M.set(list)
    local ranges = {}
    for i, s in ipairs(list or {}) do
        local r, err = _M.cidr(s)
        if not r then return nil, "[" .. i .. "]: " .. err end
        ranges[#ranges + 1] = r
    end
    return ranges
end

-- Whether the address (a string in any form parse takes) is in the set.
function _M.contains(set, ip)
    local a = _M.parse(ip)
    if not a then return false end
    for i = 1, #set do
        if in_range(a, set[i]) then return true end
    end
    return false
end

-- The address a request is judged by (Traefik's ipStrategy):
--   depth = N (> 0): the Nth address of X-Forwarded-For counted from the
--   right; nil when the header has fewer (the request is then refused).
--   excluded (a set): the rightmost X-Forwarded-For address not in it.
--   neither: the connection's peer (req.client_ip).
-- X-Forwarded-For is read as the client sent it: use depth and excluded
-- only when every client reaches the gateway through proxies that set it.
function _M.source(req, depth, excluded)
    if (depth and depth > 0) or excluded then
        local list = {}
        for _, v in ipairs(req:header_values("X-Forwarded-For")) do
            for part in v:gmatch("[^,]+") do
                local p = part:match("^%s*(.-)%s*$")
                if p ~= "" then list[#list + 1] = p end
            end
        end
        if depth and depth > 0 then return list[#list - depth + 1] end
        for i = #list, 1, -1 do
            if not _M.contains(excluded, list[i]) then return list[i] end
        end
        return req.client_ip
    end
    return req.client_ip
end

-- What a request is counted by (Traefik's sourceCriterion), for
-- inflight_req and rate_limit: crit.header (a request header's value, "-"
-- when absent), crit.host (the Host), else the address ipnet.source picks
-- with crit.depth and crit.excluded. Returns nil when depth finds none.
function _M.key(req, crit)
    if crit.header then return req:header(crit.header) or "-" end
    if crit.host then return req.host or "-" end
    return _M.source(req, crit.depth, crit.excluded)
end

return _M
