-- The routing-rule engine (core/router.c), driven through the test hooks in
-- core/router_ffi.c: every rule below is compiled and matched by the same C
-- code the proxy runs.
local ffi = require("ffi")
local core = require("moongate.ffi") -- declares them
local C = core.C

local function headers_text(h)
    if type(h) ~= "table" then return h end
    local lines = {}
    for _, pair in ipairs(h) do lines[#lines + 1] = pair[1] .. ": " .. pair[2] end
    return table.concat(lines, "\n")
end

-- req: { method, host, path, query, headers = {{name, value}, ...}, ip }
local function matches(rule, req)
    req = req or {}
    local err = ffi.new("char[256]")
    local rc = C.mg_ffi_router_eval(rule, req.method, req.host, req.path, req.query,
                                headers_text(req.headers), req.ip, err, 256)
    if rc < 0 then error("rule did not compile: " .. ffi.string(err), 2) end
    return rc == 1
end

-- Returns nil for a valid rule, else the error message.
local function check(rule)
    local err = ffi.new("char[256]")
    if C.mg_ffi_rule_check(rule, err, 256) == 0 then return nil end
    return ffi.string(err)
end

-- routes: { {rule, priority?}, ... }; returns the 1-based winner or nil.
local function pick(routes, req)
    req = req or {}
    local n = #routes
    local rules = ffi.new("const char *[?]", n)
    local prios = ffi.new("int[?]", n)
    for i, r in ipairs(routes) do
        rules[i - 1] = r[1]
        prios[i - 1] = r[2] or -1
    end
    local err = ffi.new("char[256]")
    local rc = C.mg_ffi_router_pick(rules, prios, n, req.method, req.host, req.path, req.query,
                                headers_text(req.headers), req.ip, err, 256)
    if rc == core.INVALID then error(ffi.string(err), 2) end
    return rc >= 0 and rc + 1 or nil
end

describe("router", function()
    describe("Host", function()
        it("matches the exact host", function()
            assert.is_true(matches("Host(`a.com`)", { host = "a.com" }))
            assert.is_false(matches("Host(`a.com`)", { host = "b.com" }))
        end)

        it("does not match a longer or shorter name", function()
            assert.is_false(matches("Host(`a.com`)", { host = "xa.com" }))
            assert.is_false(matches("Host(`a.com`)", { host = "a.com.au" }))
            assert.is_false(matches("Host(`www.a.com`)", { host = "a.com" }))
        end)

        it("is case-insensitive on both sides", function()
            assert.is_true(matches("Host(`API.Example.com`)", { host = "api.EXAMPLE.com" }))
        end)

        it("ignores the port of the Host header", function()
            assert.is_true(matches("Host(`a.com`)", { host = "a.com:8080" }))
        end)

        it("ignores a trailing dot in the request and in the rule", function()
            assert.is_true(matches("Host(`a.com`)", { host = "a.com." }))
            assert.is_true(matches("Host(`a.com`)", { host = "a.com.:80" }))
            assert.is_true(matches("Host(`a.com.`)", { host = "a.com" }))
        end)

        it("never matches a request without a Host", function()
            assert.is_false(matches("Host(`a.com`)", { host = "" }))
        end)

        it("matches any of several names (v2 form)", function()
            local rule = "Host(`a.com`, `b.com`)"
            assert.is_true(matches(rule, { host = "a.com" }))
            assert.is_true(matches(rule, { host = "b.com" }))
            assert.is_false(matches(rule, { host = "c.com" }))
        end)

        it("matches IPv6 literals with or without brackets", function()
            assert.is_true(matches("Host(`::1`)", { host = "[::1]:8080" }))
            assert.is_true(matches("Host(`[::1]`)", { host = "[::1]" }))
            assert.is_false(matches("Host(`::1`)", { host = "[::2]" }))
        end)

        it("matches one or more labels in place of a leading *", function()
            local rule = "Host(`*.example.com`)"
            assert.is_true(matches(rule, { host = "a.example.com" }))
            assert.is_true(matches(rule, { host = "A.B.Example.com:443" }))
            assert.is_false(matches(rule, { host = "example.com" }))
            assert.is_false(matches(rule, { host = "aexample.com" }))
            assert.is_false(matches(rule, { host = "a.example.org" }))
        end)

        it("rejects empty names, ports and misplaced wildcards", function()
            assert.matches("Host expects a non%-empty name at column 6", check("Host(``)"))
            assert.matches("carry no port", check("Host(`a.com:80`)"))
            assert.matches("only allowed as the whole first label", check("Host(`a.*.com`)"))
            assert.matches("only allowed as the whole first label", check("Host(`*a.com`)"))
        end)

        it("understands HostHeader as Host (v2)", function()
            assert.is_true(matches("HostHeader(`a.com`)", { host = "A.com" }))
        end)
    end)

    describe("HostRegexp", function()
        local rule = "HostRegexp(`^[a-z]+\\.example\\.com$`)"

        it("matches the host (without its port) against a regex", function()
            assert.is_true(matches(rule, { host = "api.example.com" }))
            assert.is_true(matches(rule, { host = "api.example.com:8080" }))
            assert.is_false(matches(rule, { host = "api1.example.com" }))
            assert.is_false(matches(rule, { host = "example.com" }))
        end)

        it("is case-insensitive", function()
            assert.is_true(matches(rule, { host = "API.Example.COM" }))
        end)

        it("searches anywhere unless anchored, as Go's regexp does", function()
            assert.is_true(matches("HostRegexp(`example`)", { host = "www.example.org" }))
        end)

        it("translates Go's \\d", function()
            local r = "HostRegexp(`^v\\d+\\.example\\.com$`)"
            assert.is_true(matches(r, { host = "v12.example.com" }))
            assert.is_false(matches(r, { host = "vx.example.com" }))
        end)

        it("reads {2,3} as a repetition, not a v2 template", function()
            local r = "HostRegexp(`^[a-z]{2,3}\\.x\\.com$`)"
            assert.is_true(matches(r, { host = "ab.x.com" }))
            assert.is_false(matches(r, { host = "abcd.x.com" }))
        end)

        it("understands v2 templates {name:regex}", function()
            local r = "HostRegexp(`{sub:[a-z]+}.example.com`)"
            assert.is_true(matches(r, { host = "foo.example.com" }))
            assert.is_true(matches(r, { host = "FOO.example.com:81" }))
            assert.is_false(matches(r, { host = "foo1.example.com" }))
            assert.is_false(matches(r, { host = "foo.bar.example.com" }))
            assert.is_false(matches(r, { host = "fooxexample.com" }))
        end)

        it("understands v2 templates {name} as one label", function()
            local r = "HostRegexp(`{sub}.example.com`)"
            assert.is_true(matches(r, { host = "x-1.example.com" }))
            assert.is_false(matches(r, { host = "a.b.example.com" }))
        end)

        it("reports an invalid regex", function()
            assert.matches("invalid regular expression `%(`", check("HostRegexp(`(`)"))
        end)
    end)

    describe("Path", function()
        it("matches the exact path", function()
            assert.is_true(matches("Path(`/x`)", { path = "/x" }))
            assert.is_false(matches("Path(`/x`)", { path = "/x/" }))
            assert.is_false(matches("Path(`/x`)", { path = "/xy" }))
            assert.is_false(matches("Path(`/x`)", { path = "/" }))
        end)

        it("is case-sensitive", function()
            assert.is_false(matches("Path(`/x`)", { path = "/X" }))
        end)

        it("compares the percent-decoded path", function()
            assert.is_true(matches("Path(`/a b`)", { path = "/a%20b" }))
            assert.is_true(matches("Path(`/admin`)", { path = "/%61dmin" }))
            assert.is_true(matches("Path(`/100%`)", { path = "/100%" }))
            assert.is_false(matches("Path(`/a+b`)", { path = "/a%2Bc" }))
            assert.is_true(matches("Path(`/a+b`)", { path = "/a+b" })) -- '+' is no space here
        end)

        it("treats an empty path as /", function()
            assert.is_true(matches("Path(`/`)", { path = "" }))
        end)

        it("matches any of several paths (v2 form)", function()
            assert.is_true(matches("Path(`/a`, `/b`)", { path = "/b" }))
            assert.is_false(matches("Path(`/a`, `/b`)", { path = "/c" }))
        end)

        it("understands v2 templates", function()
            local r = "Path(`/users/{id:[0-9]+}`)"
            assert.is_true(matches(r, { path = "/users/42" }))
            assert.is_false(matches(r, { path = "/users/x" }))
            assert.is_false(matches(r, { path = "/users/42/x" }))
            assert.is_true(matches("Path(`/users/{id}`)", { path = "/users/abc" }))
            assert.is_false(matches("Path(`/users/{id}`)", { path = "/users/a/b" }))
        end)

        it("requires a leading /", function()
            assert.equals("Path expects a path starting with '/' at column 6", check("Path(`x`)"))
        end)
    end)

    describe("PathPrefix", function()
        it("is a plain string prefix, as in Traefik", function()
            local r = "PathPrefix(`/v1`)"
            assert.is_true(matches(r, { path = "/v1" }))
            assert.is_true(matches(r, { path = "/v1/users" }))
            assert.is_true(matches(r, { path = "/v1x" }))
            assert.is_false(matches(r, { path = "/v" }))
            assert.is_false(matches(r, { path = "/v2/users" }))
        end)

        it("matches everything with /", function()
            assert.is_true(matches("PathPrefix(`/`)", { path = "/anything" }))
            assert.is_true(matches("PathPrefix(`/`)", { path = "" }))
        end)

        it("compares the percent-decoded path", function()
            assert.is_true(matches("PathPrefix(`/api`)", { path = "/%61pi/x" }))
            assert.is_true(matches("PathPrefix(`/a/b`)", { path = "/a%2Fb/c" }))
            assert.is_false(matches("PathPrefix(`/api`)", { path = "/%62pi" }))
        end)

        it("understands v2 templates as a prefix", function()
            local r = "PathPrefix(`/t/{tenant:[a-z]+}/`)"
            assert.is_true(matches(r, { path = "/t/acme/orders" }))
            assert.is_false(matches(r, { path = "/t/ACME/orders" }))
        end)
    end)

    describe("PathRegexp", function()
        it("matches the path against a regex", function()
            local r = "PathRegexp(`^/v[0-9]+/`)"
            assert.is_true(matches(r, { path = "/v12/x" }))
            assert.is_false(matches(r, { path = "/vx/x" }))
        end)

        it("searches anywhere unless anchored", function()
            assert.is_true(matches("PathRegexp(`admin`)", { path = "/x/admin/y" }))
        end)

        it("translates Go syntax: \\d, \\w in brackets, (?:), (?i)", function()
            assert.is_true(matches("PathRegexp(`^/api/v\\d+$`)", { path = "/api/v2" }))
            assert.is_false(matches("PathRegexp(`^/api/v\\d+$`)", { path = "/api/vd" }))
            assert.is_true(matches("PathRegexp(`^/[\\w-]+$`)", { path = "/ab-c_d" }))
            assert.is_false(matches("PathRegexp(`^/[\\w-]+$`)", { path = "/a.b" }))
            assert.is_true(matches("PathRegexp(`^/(?:a|b)$`)", { path = "/b" }))
            assert.is_true(matches("PathRegexp(`(?i)^/ADMIN`)", { path = "/admin" }))
            assert.is_false(matches("PathRegexp(`^/ADMIN`)", { path = "/admin" }))
        end)

        it("reads escaped punctuation in brackets as Go does", function()
            assert.is_true(matches("PathRegexp(`^/a[\\.]b$`)", { path = "/a.b" }))
            assert.is_false(matches("PathRegexp(`^/a[\\.]b$`)", { path = "/a\\b" }))
            assert.is_true(matches("PathRegexp(`^/[\\^]$`)", { path = "/^" }))
            assert.is_false(matches("PathRegexp(`^/[^\\^]$`)", { path = "/^" }))
            assert.is_true(matches("PathRegexp(`^/[^\\^]$`)", { path = "/-" }))
            assert.is_true(matches("PathRegexp(`^/[a\\]]$`)", { path = "/]" }))
        end)

        it("matches the percent-decoded path", function()
            assert.is_true(matches("PathRegexp(`^/a b$`)", { path = "/a%20b" }))
        end)

        it("reads non-greedy repetitions as Go does (glibc would make a+? optional)", function()
            assert.is_true(matches("PathRegexp(`^/a+?b$`)", { path = "/aab" }))
            assert.is_false(matches("PathRegexp(`^/a+?b$`)", { path = "/b" }))
            assert.is_false(matches("PathRegexp(`^/a{2,3}?b$`)", { path = "/b" }))
            assert.is_true(matches("PathRegexp(`^/x.*?y$`)", { path = "/x123y" }))
        end)

        it("reads braces that are not a repetition literally, as Go does", function()
            assert.is_true(matches("PathRegexp(`^/x{y}$`)", { path = "/x{y}" }))
            assert.is_true(matches("PathRegexp(`^/a}$`)", { path = "/a}" }))
            assert.is_true(matches("PathRegexp(`^/a{2}$`)", { path = "/aa" }))
            assert.is_false(matches("PathRegexp(`^/a{2}$`)", { path = "/a{2}" }))
        end)

        it("keeps word boundaries and \\A \\z", function()
            assert.is_true(matches("PathRegexp(`\\bapi\\b`)", { path = "/v1/api/x" }))
            assert.is_false(matches("PathRegexp(`\\bapi\\b`)", { path = "/v1/apis" }))
            assert.is_true(matches("PathRegexp(`\\A/x\\z`)", { path = "/x" }))
            assert.is_false(matches("PathRegexp(`\\A/x\\z`)", { path = "/xy" }))
        end)

        it("refuses Go syntax it cannot translate", function()
            assert.matches("unsupported group", check("PathRegexp(`^/(?P<id>[0-9]+)$`)"))
            assert.matches("unsupported escape", check("PathRegexp(`^/\\pL$`)"))
            assert.matches("missing '%]'", check("PathRegexp(`^/[a-z`)"))
        end)

        -- glibc's regcomp copies repeated operands: stacked or nested
        -- repetitions from one label could take gigabytes to compile
        it("refuses repetitions that would compile to an enormous automaton", function()
            assert.matches("invalid nested repetition", check("PathRegexp(`^/h++$`)"))
            assert.matches("invalid nested repetition", check("PathRegexp(`^/x{1,}{1,}$`)"))
            assert.matches("invalid nested repetition", check("PathRegexp(`^/x*?*$`)"))
            assert.matches("over 1000", check("PathRegexp(`^/x{1001}$`)"))
            local nested = string.rep("(", 20) .. "a" .. string.rep(")+", 20)
            assert.matches("regex too large", check("PathRegexp(`^/" .. nested .. "$`)"))
            assert.matches("regex too large", check("PathRegexp(`^/a{100}b{100}$`)"))
        end)

        it("still takes ordinary repetitions", function()
            assert.is_nil(check("PathRegexp(`^/a+/b+/c+/[0-9]{1,6}$`)"))
            assert.is_true(matches("PathRegexp(`^/a+/b+/c+/[0-9]{1,6}$`)", { path = "/aa/b/ccc/123" }))
            assert.is_true(matches("PathRegexp(`^/x+?y$`)", { path = "/xxy" }))
        end)
    end)

    describe("Method", function()
        it("matches the method", function()
            assert.is_true(matches("Method(`POST`)", { method = "POST" }))
            assert.is_false(matches("Method(`POST`)", { method = "GET" }))
        end)

        it("accepts the rule's method in any case", function()
            assert.is_true(matches("Method(`delete`)", { method = "DELETE" }))
        end)

        it("matches any of several methods (v2 form)", function()
            assert.is_true(matches("Method(`GET`, `HEAD`)", { method = "HEAD" }))
            assert.is_false(matches("Method(`GET`, `HEAD`)", { method = "PUT" }))
        end)
    end)

    describe("Header", function()
        it("matches a header with exactly that value", function()
            local r = "Header(`X-Canary`, `yes`)"
            assert.is_true(matches(r, { headers = { { "X-Canary", "yes" } } }))
            assert.is_false(matches(r, { headers = { { "X-Canary", "yess" } } }))
            assert.is_false(matches(r, { headers = { { "X-Canary", "YES" } } }))
            assert.is_false(matches(r, { headers = { { "X-Other", "yes" } } }))
            assert.is_false(matches(r, {}))
        end)

        it("compares header names case-insensitively", function()
            assert.is_true(matches("Header(`x-canary`, `1`)", { headers = { { "X-CANARY", "1" } } }))
        end)

        it("matches any instance of a repeated header", function()
            local h = { { "Accept", "text/html" }, { "X-Tag", "a" }, { "x-tag", "b" } }
            assert.is_true(matches("Header(`X-Tag`, `b`)", { headers = h }))
            assert.is_false(matches("Header(`X-Tag`, `c`)", { headers = h }))
        end)

        it("with an empty value asks only that the header exists", function()
            assert.is_true(matches("Header(`X-Key`, ``)", { headers = { { "X-Key", "anything" } } }))
            assert.is_false(matches("Header(`X-Key`, ``)", { headers = { { "X-Other", "1" } } }))
        end)

        it("understands Headers (v2)", function()
            assert.is_true(matches("Headers(`X-A`, `1`)", { headers = { { "x-a", "1" } } }))
        end)

        it("wants two arguments", function()
            assert.equals("Header expects 2 arguments, got 1 at column 1", check("Header(`X`)"))
        end)
    end)

    describe("HeaderRegexp", function()
        it("matches a header value against a regex", function()
            local r = "HeaderRegexp(`User-Agent`, `^curl/[0-9.]+$`)"
            assert.is_true(matches(r, { headers = { { "user-agent", "curl/8.1.2" } } }))
            assert.is_false(matches(r, { headers = { { "user-agent", "Mozilla/5.0" } } }))
        end)

        it("tries every instance of the header", function()
            local h = { { "X-Id", "abc" }, { "X-Id", "123" } }
            assert.is_true(matches("HeaderRegexp(`x-id`, `^[0-9]+$`)", { headers = h }))
        end)

        it("understands HeadersRegexp (v2)", function()
            assert.is_true(matches("HeadersRegexp(`X-A`, `b`)", { headers = { { "X-A", "abc" } } }))
        end)
    end)

    describe("Query", function()
        it("matches a key with a value (v3)", function()
            local r = "Query(`debug`, `1`)"
            assert.is_true(matches(r, { query = "debug=1" }))
            assert.is_true(matches(r, { query = "a=2&debug=1&b" }))
            assert.is_false(matches(r, { query = "debug=10" }))
            assert.is_false(matches(r, { query = "xdebug=1" }))
            assert.is_false(matches(r, { query = "" }))
        end)

        it("matches any value of a repeated key", function()
            local r = "Query(`tag`, `b`)"
            assert.is_true(matches(r, { query = "tag=a&tag=b&tag=c" }))
            assert.is_false(matches(r, { query = "tag=a&tag=c" }))
        end)

        it("percent-decodes keys and values, with + as a space", function()
            assert.is_true(matches("Query(`q`, `a b`)", { query = "q=a+b" }))
            assert.is_true(matches("Query(`q`, `a b`)", { query = "q=a%20b" }))
            assert.is_true(matches("Query(`my key`, `x&y`)", { query = "my%20key=x%26y" }))
            assert.is_true(matches("Query(`q`, `a+b`)", { query = "q=a%2Bb" }))
            assert.is_false(matches("Query(`q`, `a+b`)", { query = "q=a+b" }))
        end)

        it("with one argument matches the key with an empty value (v3)", function()
            assert.is_true(matches("Query(`flag`)", { query = "flag" }))
            assert.is_true(matches("Query(`flag`)", { query = "x=1&flag=" }))
            assert.is_false(matches("Query(`flag`)", { query = "flag=1" }))
        end)

        it("ignores empty pairs", function()
            assert.is_true(matches("Query(`a`, `1`)", { query = "&&a=1&" }))
        end)

        it("understands `key=value` (v2)", function()
            assert.is_true(matches("Query(`debug=1`)", { query = "debug=1" }))
            assert.is_false(matches("Query(`debug=1`)", { query = "debug=2" }))
        end)

        it("wants every v2 pair, in any order", function()
            local r = "Query(`a=1`, `b=2`)"
            assert.is_true(matches(r, { query = "b=2&a=1" }))
            assert.is_false(matches(r, { query = "a=1" }))
        end)

        it("reads a v2 `key=` as the key with any value", function()
            assert.is_true(matches("Query(`a=`)", { query = "a=whatever" }))
            assert.is_false(matches("Query(`a=`)", { query = "b=1" }))
        end)
    end)

    describe("QueryRegexp", function()
        it("matches a value against a regex", function()
            local r = "QueryRegexp(`id`, `^[0-9]+$`)"
            assert.is_true(matches(r, { query = "id=42" }))
            assert.is_false(matches(r, { query = "id=4x" }))
            assert.is_true(matches(r, { query = "id=x&id=7" }))
        end)

        it("decodes the value before matching", function()
            assert.is_true(matches("QueryRegexp(`q`, `^a b$`)", { query = "q=a+b" }))
            assert.is_true(matches("QueryRegexp(`q`, `^a b$`)", { query = "q=a%20b" }))
        end)

        it("with one argument is Query with one argument", function()
            assert.is_true(matches("QueryRegexp(`flag`)", { query = "flag" }))
            assert.is_false(matches("QueryRegexp(`flag`)", { query = "flag=1" }))
        end)
    end)

    describe("ClientIP", function()
        it("matches one IPv4 address", function()
            assert.is_true(matches("ClientIP(`10.1.2.3`)", { ip = "10.1.2.3" }))
            assert.is_false(matches("ClientIP(`10.1.2.3`)", { ip = "10.1.2.4" }))
        end)

        it("matches IPv4 ranges, including prefixes not on a byte boundary", function()
            assert.is_true(matches("ClientIP(`10.0.0.0/8`)", { ip = "10.200.1.1" }))
            assert.is_false(matches("ClientIP(`10.0.0.0/8`)", { ip = "11.0.0.1" }))
            assert.is_true(matches("ClientIP(`10.16.0.0/12`)", { ip = "10.31.255.255" }))
            assert.is_false(matches("ClientIP(`10.16.0.0/12`)", { ip = "10.32.0.0" }))
            assert.is_false(matches("ClientIP(`10.16.0.0/12`)", { ip = "10.15.255.255" }))
            assert.is_true(matches("ClientIP(`0.0.0.0/0`)", { ip = "203.0.113.9" }))
        end)

        it("matches IPv6 addresses and ranges", function()
            assert.is_true(matches("ClientIP(`::1`)", { ip = "::1" }))
            assert.is_false(matches("ClientIP(`::1`)", { ip = "::2" }))
            assert.is_true(matches("ClientIP(`2001:db8::/32`)", { ip = "2001:db8:ffff::1" }))
            assert.is_false(matches("ClientIP(`2001:db8::/32`)", { ip = "2001:db9::1" }))
        end)

        it("matches IPv4-mapped IPv6 peers against IPv4 ranges", function()
            assert.is_true(matches("ClientIP(`10.0.0.0/8`)", { ip = "::ffff:10.1.2.3" }))
            assert.is_true(matches("ClientIP(`::ffff:10.0.0.0/104`)", { ip = "10.9.9.9" }))
        end)

        it("keeps the families apart", function()
            assert.is_false(matches("ClientIP(`0.0.0.0/0`)", { ip = "::1" }))
            assert.is_false(matches("ClientIP(`::/0`)", { ip = "127.0.0.1" }))
        end)

        it("matches any of several ranges", function()
            local r = "ClientIP(`192.168.0.0/16`, `::1`)"
            assert.is_true(matches(r, { ip = "::1" }))
            assert.is_true(matches(r, { ip = "192.168.7.7" }))
            assert.is_false(matches(r, { ip = "127.0.0.1" }))
        end)

        it("never matches without a peer address", function()
            assert.is_false(matches("ClientIP(`0.0.0.0/0`)", { ip = "" }))
        end)

        it("rejects what is not an address or range", function()
            assert.equals("invalid IP or CIDR 'banana' at column 10", check("ClientIP(`banana`)"))
            assert.matches("invalid IP or CIDR", check("ClientIP(`10.0.0.0/33`)"))
            assert.matches("invalid IP or CIDR", check("ClientIP(`::/129`)"))
            assert.matches("invalid IP or CIDR", check("ClientIP(`10.0.0.0/`)"))
        end)
    end)

    describe("operators", function()
        local req = { host = "a.com", path = "/v1/x", method = "GET" }

        it("&& wants both sides", function()
            assert.is_true(matches("Host(`a.com`) && PathPrefix(`/v1`)", req))
            assert.is_false(matches("Host(`a.com`) && PathPrefix(`/v2`)", req))
        end)

        it("|| wants either side", function()
            assert.is_true(matches("Host(`b.com`) || PathPrefix(`/v1`)", req))
            assert.is_false(matches("Host(`b.com`) || PathPrefix(`/v2`)", req))
        end)

        it("! negates", function()
            assert.is_false(matches("!Host(`a.com`)", req))
            assert.is_true(matches("!Host(`b.com`)", req))
            assert.is_true(matches("!!Host(`a.com`)", req))
        end)

        it("binds && tighter than ||", function()
            -- T || T && F  is  T || (T && F) = T; read left to right it would be F
            assert.is_true(matches("Method(`GET`) || Host(`a.com`) && Path(`/no`)", req))
            -- F || T && F = F
            assert.is_false(matches("Method(`PUT`) || Host(`a.com`) && Path(`/no`)", req))
            -- T && F || T = T
            assert.is_true(matches("Host(`a.com`) && Path(`/no`) || Method(`GET`)", req))
        end)

        it("binds ! tighter than &&", function()
            -- (!F) && F = F, whereas !(F && F) would be T
            assert.is_false(matches("!Host(`b.com`) && Method(`PUT`)", req))
            assert.is_true(matches("!Host(`b.com`) && Method(`GET`)", req))
        end)

        it("lets parentheses override precedence", function()
            assert.is_false(matches("(Method(`GET`) || Host(`a.com`)) && Path(`/no`)", req))
            assert.is_true(matches("!(Host(`b.com`) || Method(`PUT`))", req))
            assert.is_false(matches("!(Host(`a.com`) && Method(`GET`))", req))
        end)

        it("allows whitespace anywhere between tokens", function()
            local r = "  Host ( `a.com` ,\t`b.com` )\n&&\r\n( PathPrefix(`/v1`)||Path(`/`) )  "
            assert.is_true(matches(r, req))
        end)

        it("accepts double-quoted strings with Go escapes", function()
            assert.is_true(matches('Host("a.com") && PathPrefix("/v1")', req))
            assert.is_true(matches('Header("X-Q", "say \\"hi\\"")',
                                   { headers = { { "X-Q", 'say "hi"' } } }))
            assert.is_true(matches('PathRegexp("^/v\\\\d")', req)) -- "\\d" is \d
            assert.is_true(matches('Path("/\\x41")', { path = "/A" }))
        end)

        it("handles long chains without deep recursion", function()
            local parts = {}
            for i = 1, 300 do parts[i] = "!Path(`/nope" .. i .. "`)" end
            assert.is_true(matches(table.concat(parts, " && "), req))
            assert.is_true(matches(table.concat(parts, " || "), req))
            parts[300] = "Path(`/nope`)"
            assert.is_false(matches(table.concat(parts, " && "), req))
        end)
    end)

    describe("priority", function()
        local req = { host = "a.com", path = "/api/users" }

        it("defaults to the rule's length: the longer rule wins", function()
            assert.equals(2, pick({
                { "PathPrefix(`/`)" },
                { "Host(`a.com`) && PathPrefix(`/api`)" },
            }, req))
            assert.equals(1, pick({
                { "Host(`a.com`) && PathPrefix(`/api`)" },
                { "PathPrefix(`/`)" },
            }, req))
        end)

        it("uses an explicit priority over the length", function()
            assert.equals(1, pick({
                { "PathPrefix(`/`)", 100 },
                { "Host(`a.com`) && PathPrefix(`/api`)" },
            }, req))
            assert.equals(2, pick({
                { "Host(`a.com`) && PathPrefix(`/api`)", 0 },
                { "PathPrefix(`/`)", 1 },
            }, req))
        end)

        it("keeps insertion order between equal priorities", function()
            assert.equals(1, pick({ { "PathPrefix(`/a`)" }, { "PathPrefix(`/`)", 16 } }, req))
            assert.equals(2, pick({ { "Path(`/x`)" }, { "Host(`a.com`)", 5 }, { "PathPrefix(`/`)", 5 } },
                                  req))
            assert.equals(1, pick({ { "Host(`a.com`)", 7 }, { "PathPrefix(`/`)", 7 } }, req))
        end)

        it("skips rules that do not match and returns none when nothing does", function()
            assert.equals(3, pick({ { "Host(`b.com`)", 9 }, { "Path(`/x`)", 8 }, { "Host(`a.com`)", 1 } }, req))
            assert.is_nil(pick({ { "Host(`b.com`)" }, { "Path(`/x`)" } }, req))
        end)

        it("names the rule that failed to compile", function()
            local ok, err = pcall(pick, { { "Host(`a`)" }, { "Hots(`b`)" } }, req)
            assert.is_false(ok)
            assert.matches("rule 2: unknown matcher 'Hots' at column 1", err, 1, true)
        end)
    end)

    describe("errors", function()
        it("accept a valid rule", function()
            assert.is_nil(check("Host(`a.com`) && !PathPrefix(`/admin`)"))
        end)

        local cases = {
            { "Hots(`a.com`)", "unknown matcher 'Hots' at column 1" },
            { "Host(`a`) && host(`b`)", "unknown matcher 'host' (did you mean 'Host'?) at column 14" },
            { "PathPrefix(`/v1)", "unterminated string at column 12" },
            { 'Host("a.com)', "unterminated string at column 6" },
            { "Host()", "Host expects 1 or more arguments, got 0 at column 1" },
            { "Header(`a`, `b`, `c`)", "Header expects 2 arguments, got 3 at column 1" },
            { "QueryRegexp(`a`, `b`, `c`)", "QueryRegexp expects 1 or 2 arguments, got 3 at column 1" },
            { "Host(a.com)", "expected a string in backticks or double quotes at column 6" },
            { "Host(`a` `b`)", "expected ',' or ')' at column 10" },
            { "Host(`a`,)", "expected a string in backticks or double quotes at column 10" },
            { "Host", "expected '(' after Host at column 5" },
            { "Host(`a`) &&", "unexpected end of rule at column 13" },
            { "Host(`a`) & Path(`/`)", "expected '&&' or '||' at column 11" },
            { "Host(`a`) Path(`/`)", "expected '&&' or '||' before this at column 11" },
            { "(Host(`a`)", "unclosed '(' at column 1" },
            { "Host(`a`))", "unexpected ')' at column 10" },
            { "&& Host(`a`)", "expected a matcher such as Host or PathPrefix at column 1" },
            { "   ", "empty rule at column 4" },
            { "", "empty rule at column 1" },
            { 'PathRegexp("^/a\\.b")', "invalid escape '\\.' in a double-quoted string" },
            { "Query(`a`, `b`, `c`)", "Query expects (`key`, `value`) or `key=value` pairs at column 7" },
            { "Query(`a=1`, `b`)", "Query expects `key=value` pairs here at column 14" },
        }
        for _, c in ipairs(cases) do
            it("explain " .. c[1], function()
                local got = check(c[1])
                assert.is_not_nil(got)
                assert.equals(1, got:find(c[2], 1, true), "got: " .. got)
            end)
        end

        it("refuse nesting deeper than 64 levels", function()
            local deep = ("("):rep(100) .. "Host(`a`)" .. (")"):rep(100)
            assert.matches("nests deeper than 64 levels", check(deep))
            local ok = ("("):rep(60) .. "Host(`a`)" .. (")"):rep(60)
            assert.is_true(matches(ok, { host = "a" }))
            assert.matches("nests deeper", check(("!"):rep(65) .. "Host(`a`)"))
        end)

        it("are returned by mg_ffi_router_eval as MG_FFI_INVALID", function()
            local err = ffi.new("char[64]")
            assert.equals(core.INVALID, C.mg_ffi_router_eval("Nope(`x`)", nil, nil, nil, nil, nil, nil, err, 64))
            assert.equals("unknown matcher 'Nope' at column 1", ffi.string(err))
        end)

        it("fit a small buffer without overflowing it", function()
            local err = ffi.new("char[8]")
            assert.equals(core.INVALID, C.mg_ffi_rule_check("Hots(`a`)", err, 8))
            assert.equals("unknown", ffi.string(err))
        end)
    end)
end)
