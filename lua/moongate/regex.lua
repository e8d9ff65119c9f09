-- Regexes with capture groups for middlewares (redirect_regex,
-- replace_path_regex): glibc's POSIX extended regexes through the FFI.
-- Traefik's options are Go (RE2) regexes; the common subset is the same in
-- POSIX ERE, and the usual Go-only forms are translated: \d \w \s (and
-- \D \W \S), (?:...) groups and a leading (?i). Anything else Go-only
-- (lookarounds do not exist in either; named groups, \b, lazy
-- quantifiers) is refused at load with a reason, never silently different.
--   local re = assert(regex.new("^/api/(.*)"))
--   re:match("/api/x")               --> true, { "/api/x", "x" }
--   re:replace("/api/x", "/v2/$1")   --> "/v2/x"  (Go's ReplaceAllString)
local ffi = require("ffi")

ffi.cdef([[
typedef struct { int rm_so; int rm_eo; } mg_regmatch_t;
int regcomp(void *preg, const char *regex, int cflags);
int regexec(const void *preg, const char *string, size_t nmatch, mg_regmatch_t *pmatch, int eflags);
void regfree(void *preg);
size_t regerror(int errcode, const void *preg, char *errbuf, size_t errbuf_size);
]])

local C = ffi.C
local REG_EXTENDED, REG_ICASE, REG_NOTBOL = 1, 2, 1
local REGEX_T_SIZE = 256 -- glibc's regex_t is 64 bytes on 64-bit; room to spare
local MAX_GROUPS = 10

local _M = {}
local Re = {}
Re.__index = Re

local CLASS = { d = "[0-9]", D = "[^0-9]", w = "[A-Za-z0-9_]", W = "[^A-Za-z0-9_]",
                s = "[[:space:]]", S = "[^[:space:]]" }
local IN_BRACKET = { d = "0-9", w = "A-Za-z0-9_", s = "[:space:]" }

-- Go syntax -> POSIX ERE, or nil and why.
function _M.translate(src)
    local icase = false
    if src:sub(1, 4) == "(?i)" then icase, src = true, src:sub(5) end
    local out, i, n, in_br = {}, 1, #src, false
    while i <= n do
        local c = src:sub(i, i)
        if c == "\\" then
            local e = src:sub(i + 1, i + 1)
            if e == "" then return nil, "trailing backslash" end
            if in_br then
                if IN_BRACKET[e] then out[#out + 1] = IN_BRACKET[e]
                elseif e:match("%p") then
                    -- POSIX takes a backslash in brackets literally
                    if e == "]" or e == "^" or e == "-" then
                        return nil, "escaped " .. e .. " inside brackets is not supported"
                    end
                    out[#out + 1] = e
                else return nil, "unsupported escape \\" .. e .. " inside brackets" end
            elseif CLASS[e] then out[#out + 1] = CLASS[e]
            elseif e:match("%p") then out[#out + 1] = "\\" .. e
            else return nil, "unsupported escape \\" .. e .. " (POSIX regex)" end
            i = i + 2
        elseif in_br then
            if c == "]" then in_br = false end
            out[#out + 1] = c
            i = i + 1
        elseif c == "[" then
            in_br = true
            out[#out + 1] = c
            i = i + 1
            -- a leading ^ and ] belong to the bracket
            if src:sub(i, i) == "^" then out[#out + 1] = "^"; i = i + 1 end
            if src:sub(i, i) == "]" then out[#out + 1] = "]"; i = i + 1 end
        elseif c == "(" and src:sub(i + 1, i + 2) == "?:" then
            out[#out + 1] = "("
            i = i + 3
        elseif c == "(" and src:sub(i + 1, i + 1) == "?" then
            return nil, "unsupported group (?" .. src:sub(i + 2, i + 2) .. " (POSIX regex)"
        elseif (c == "?" or c == "+" or c == "*" or c == "}") and src:sub(i + 1, i + 1) == "?" then
            return nil, "lazy quantifiers (" .. c .. "?) are not supported (POSIX regex)"
        else
            out[#out + 1] = c
            i = i + 1
        end
    end
    if in_br then return nil, "missing ]" end
    return table.concat(out), icase
end

-- Compiles a Go-style regex; nil and why when it cannot.
function _M.new(src)
    if type(src) ~= "string" then return nil, "expected a regex string" end
    local ere, icase = _M.translate(src)
    if not ere then return nil, icase end
    local buf = ffi.new("char[?]", REGEX_T_SIZE)
    local rc = C.regcomp(buf, ere, REG_EXTENDED + (icase and REG_ICASE or 0))
    if rc ~= 0 then
        local msg = ffi.new("char[128]")
        C.regerror(rc, buf, msg, 128)
        return nil, ffi.string(msg)
    end
    ffi.gc(buf, C.regfree)
    return setmetatable({ re = buf, src = src, m = ffi.new("mg_regmatch_t[?]", MAX_GROUPS) }, Re)
end

-- A checker for schemas: check = regex.check.
function _M.check(v)
    local re, err = _M.new(v)
    if not re then return nil, err end
    return true
end

-- Matches s from offset init (1-based); returns start, stop (inclusive) and
-- the groups (group 0 is the whole match; an unset group is "").
local function exec(self, s, init, notbol)
    local sub = init > 1 and s:sub(init) or s
    if C.regexec(self.re, sub, MAX_GROUPS, self.m, notbol and REG_NOTBOL or 0) ~= 0 then return nil end
    local groups = {}
    for g = 0, MAX_GROUPS - 1 do
        local so, eo = self.m[g].rm_so, self.m[g].rm_eo
        groups[g] = so >= 0 and sub:sub(so + 1, eo) or ""
    end
    return init + self.m[0].rm_so, init + self.m[0].rm_eo - 1, groups
end

function Re:match(s)
    local a, _, groups = exec(self, s, 1, false)
    if not a then return false end
    local list = {}
    for g = 0, MAX_GROUPS - 1 do list[g + 1] = groups[g] end
    return true, list
end

-- Go's Expand: $1 and ${1} are groups, $$ is a dollar; as in Go, $name
-- takes the longest run of letters, digits and _ ("$1x" is the group
-- named 1x, empty: write ${1}x), and names moongate has no groups for read
-- as empty.
local function expand(template, groups)
    local out, i, n = {}, 1, #template
    while i <= n do
        local d = template:find("$", i, true)
        if not d then out[#out + 1] = template:sub(i); break end
        out[#out + 1] = template:sub(i, d - 1)
        local nxt = template:sub(d + 1, d + 1)
        if nxt == "$" then
            out[#out + 1] = "$"
            i = d + 2
        else
            local name, stop
            if nxt == "{" then
                local close = template:find("}", d + 2, true)
                if close then name, stop = template:sub(d + 2, close - 1), close end
            else
                local s, e = template:find("^[%w_]+", d + 1)
                if s then name, stop = template:sub(s, e), e end
            end
            if name then
                out[#out + 1] = groups[tonumber(name:match("^%d+$") or "")] or ""
                i = stop + 1
            else
                out[#out + 1] = "$"
                i = d + 1
            end
        end
    end
    return table.concat(out)
end

-- Go's ReplaceAllString: every non-overlapping match replaced.
function Re:replace(s, template)
    local out, pos, n = {}, 1, #s
    while pos <= n + 1 do
        local a, b, groups = exec(self, s, pos, pos > 1)
        if not a then break end
        out[#out + 1] = s:sub(pos, a - 1)
        out[#out + 1] = expand(template, groups)
        if b < a then -- an empty match: step over one byte
            if a > n then pos = n + 2; break end
            out[#out + 1] = s:sub(a, a)
            pos = a + 1
        else
            pos = b + 1
        end
    end
    if pos <= n then out[#out + 1] = s:sub(pos) end
    return table.concat(out)
end

return _M
