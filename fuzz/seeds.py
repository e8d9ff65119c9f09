#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ (run from the repo root;
the files are committed, this is how they were made). Requests, responses
and rules come from RFC 9112 and RFC 9110 examples, docs/routing.md and
spec/integration/desync_spec.lua; configs from docs/config.md and
examples/. The fuzzer starts from these and mutates them. Files named
found-* are inputs that crashed a harness (or their neighbours), kept
after the fix; this script does not write them."""
import os

def write(harness, name, data):
    d = os.path.join("fuzz", "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode("latin-1") if isinstance(data, str) else data)

SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

# ---- requests: byte 0 is the harness's control byte ----------------------
requests = {
    "get": "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "get-headers": "GET /index.html?a=1&b=%20 HTTP/1.1\r\nHost: www.example.org:8080\r\n"
                   "User-Agent: curl/7.88\r\nAccept: */*\r\nCookie: a=b; c=d\r\n"
                   "X-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive\r\n\r\n",
    "http10": "GET /old HTTP/1.0\r\n\r\n",
    "http10-keepalive": "GET /old HTTP/1.0\r\nConnection: keep-alive\r\nHost: a\r\n\r\n",
    "head": "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
    "post-cl": "POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               "Content-Length: 13\r\n\r\nname=moongate",
    "post-chunked": CHUNKED + "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n",
    "post-trailers": CHUNKED + "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n",
    "expect": "PUT /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "pipelined": "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                 "HEAD /3 HTTP/1.1\r\nHost: a\r\n\r\n" + CHUNKED + "1\r\nz\r\n0\r\n\r\n"
                 "DELETE /5 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    "pipelined-close": "GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    "leading-crlf": "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute": "GET http://example.com:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
    "absolute-nopath": "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n",
    "options-star": "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "options-abs": "OPTIONS http://h HTTP/1.1\r\nHost: h\r\n\r\n",
    "connect": "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    "trace": "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
    "upgrade": "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "h2c": "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    "normalize": "GET /public/../admin//x/%2e%2e/%7euser?x=%2F HTTP/1.1\r\nHost: a\r\n\r\n",
    "encoded-slash": "GET /a%2Fb%5c%00 HTTP/1.1\r\nHost: a\r\n\r\n",
    "ipv6-host": "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
    "hop-by-hop": "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Drop, close\r\nX-Drop: 1\r\nKeep-Alive: 5\r\n"
                  "TE: trailers\r\nProxy-Authorization: Basic YTpi\r\nProxy-Connection: x\r\n\r\n",
    "te-cl": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "cl-cl": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "te-gzip": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-http10": "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-hosts": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "no-host": "GET / HTTP/1.1\r\n\r\n",
    "obs-fold": "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
    "space-name": "GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",
    "big-chunk": CHUNKED + "ffffffffffffffff\r\nab\r\n",
    "version": "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
}
desync = [
    CHUNKED + "0\n\r\n" + SMUGGLED, CHUNKED + "0\r\n\n" + SMUGGLED,
    CHUNKED + "0\r\nX-T: 1\n\r\n" + SMUGGLED, CHUNKED + "2\r\rhi\r\n0\r\n\r\n" + SMUGGLED,
    CHUNKED + "2\rhi\r\n0\r\n\r\n" + SMUGGLED, CHUNKED + "2;a=b\nhi\r\n0\r\n\r\n" + SMUGGLED,
    CHUNKED + "2;a=\x01\r\nhi\r\n0\r\n\r\n" + SMUGGLED, CHUNKED + "0\r\nX-T: 1\rY\r\n\r\n" + SMUGGLED,
    CHUNKED + "2\r\nhiXX0\r\n\r\n" + SMUGGLED, CHUNKED + "2 ;a\r\nhi\r\n0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n\rZ: y\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r" + SMUGGLED,
    "GET /\rX HTTP/1.1\r\nHost: x\r\n\r\n", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /a\\b HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: foo/bar\r\n\r\n", "GET / HTTP/1.1\r\nHost: user@h\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h, other\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n Host: b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\nHost: a\n\n",
]
for i, (name, req) in enumerate(sorted(requests.items())):
    write("request", name, "01ab"[i % 4] + req)
for i, req in enumerate(desync):
    write("request", "desync-%02d" % i, "0b"[i % 2] + req)

# ---- responses: byte 0 picks the request (0 GET, 1 HEAD, 2 WebSocket, 3 POST)
responses = {
    "cl": "0HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    "cl-split": "pHTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A: 1\r\n\r\nhello world!",
    "created": "0HTTP/1.1 201 Created\r\nLocation: /x/1\r\nContent-Length: 0\r\n\r\n",
    "chunked": "0HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
    "chunked-trailers": "pHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                        "3;e=1\r\nabc\r\n0\r\nX-Sum: 9\r\n\r\n",
    "close-delimited": "0HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>body until close</html>",
    "http10": "0HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "bare-lf": "0HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nok",
    "bare-lf-chunked": "pHTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\nX-T: 1\n\n",
    "no-reason": "0HTTP/1.1 204 \r\n\r\n",
    "304": "0HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n",
    "head": "1HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
    "head-chunked": "1HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "continue": "3HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "early-hints": "0HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                   "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "1xx-body": "0HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n\r\n",
    "switching": "2HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello",
    "switching-refused": "2HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno",
    "101-unasked": "0HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "hop-by-hop": "0HTTP/1.1 200 OK\r\nConnection: X-Drop, keep-alive\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\n"
                  "Content-Length: 0\r\n\r\n",
    "set-cookie": "0HTTP/1.1 302 Found\r\nLocation: /\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
    "extra-bytes": "0HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
    "te-cl": "0HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bare-cr": "0HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
    "chunk-crcr": "0HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\rhi\r\n0\r\n\r\n",
    "status-999": "0HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
    "http2": "0HTTP/2 200\r\n\r\n",
    "post-500": "3HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops",
    "truncated": "sHTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    "long-reason": "0HTTP/1.1 418 I'm a teapot and this reason phrase is longer than forty-eight bytes\r\n"
                   "Content-Length: 0\r\n\r\n",
}
for name, resp in sorted(responses.items()):
    write("response", name, resp)

# ---- rules: rules, an empty line, then method, host, path, query, headers
rules = [
    ("host", "Host(`example.com`)", "GET\nexample.com:8080\n/\n"),
    ("host-wild", "Host(`{sub:[a-z]+}.example.com`) || Host(`*.example.org`)", "GET\napi.example.com\n/\n"),
    ("hostregexp", "HostRegexp(`^.+\\.example\\.com$`)", "GET\nA.Example.COM\n/x\n"),
    ("path", "Path(`/health`)", "GET\nh\n/health\n"),
    ("pathprefix", "PathPrefix(`/api`) && !PathPrefix(`/api/admin`)", "POST\nh\n/api/v1/users\nx=1\n"),
    ("pathregexp", "PathRegexp(`^/users/[0-9]+$`)", "GET\nh\n/users/42\n"),
    ("v2-path", "Path(`/users/{id:[0-9]+}`)", "GET\nh\n/users/7\n"),
    ("method", "Method(`GET`, `HEAD`) && PathPrefix(`/`)", "HEAD\nh\n/\n"),
    ("header", "Header(`X-Canary`, `true`) && Host(`a`)", "GET\na\n/\n\nX-Canary: true\n"),
    ("headerregexp", "HeaderRegexp(`User-Agent`, `(?i)curl/.*`)", "GET\nh\n/\n\nUser-Agent: curl/8.0\n"),
    ("query", "Query(`mobile`, `true`) || Query(`debug`)", "GET\nh\n/\nmobile=true&debug\n"),
    ("queryregexp", "QueryRegexp(`id`, `^[0-9]+$`)", "GET\nh\n/\nid=12&id=x\n"),
    ("clientip", "ClientIP(`10.0.0.0/8`, `::1`) || ClientIP(`2001:db8::/32`)", "GET\nh\n/\n"),
    ("operators", "(Host(`a`) || Host(`b`)) && !(Path(`/x`) || Method(`POST`))", "GET\nb\n/y\n"),
    ("strings", "Path(\"/double\") || Path('/single') || Path(`/back`)", "GET\nh\n/single\n"),
    ("escaped", "PathPrefix(`/caf%C3%A9`) || Path(`/a+b`)", "GET\nh\n/caf%c3%a9/x\n"),
    ("many", "Host(`a`)\nHost(`b`) && PathPrefix(`/p`)\nPathPrefix(`/`)\nMethod(`PUT`)", "PUT\nb\n/p/q\n"),
    ("errors", "Host(`a`\nPathPrefix(/x)\nNope(`a`)\nHost(``)\nPath(`x`)", "GET\na\n/\n"),
    ("v2-hosts", "Host(`a.com`, `b.com`) && PathPrefix(`/x`, `/y`)", "GET\nb.com\n/y/z\n"),
    ("nested", "!!(((Host(`a`))))", "GET\na\n/\n"),
]
for name, rule, req in rules:
    write("router", name, rule + "\n\n" + req)

# ---- configs: Lua config files -----------------------------------------
configs = {
    "minimal": 'return {\n  services = { web = { targets = { "127.0.0.1:9001" } } },\n'
               '  routes = { { rule = "PathPrefix(`/`)", service = "web" } },\n}\n',
    "full": '''return {
  listen = { "127.0.0.1:8080", { address = "[::1]:8081", name = "v6" } },
  workers = 2,
  log_level = "info",
  access_log = "json",
  timeouts = { client_header = 10, client_idle = 60, upstream_connect = 3,
               upstream_response = 60, grace = 10 },
  limits = { max_header_size = 32768, max_headers = 100 },
  upstream = { keepalive = 64, keepalive_timeout = 60, retries = 2 },
  trusted_proxies = { "10.0.0.0/8", "::1" },
  paths = { normalize = true, encoded_slash = "keep" },
  services = {
    api = {
      balancer = "least_conn",
      targets = { "127.0.0.1:9001", { host = "127.0.0.1", port = 9002, weight = 3 } },
      health = { path = "/health", interval = 2 },
    },
    web = { balancer = "roundrobin", targets = { "127.0.0.1:9003" } },
  },
  routes = {
    { rule = "Host(`api.example.com`) && PathPrefix(`/v1`)", service = "api", priority = 10 },
    { rule = "PathPrefix(`/`)", service = "web" },
  },
}
''',
    "balancers": '''local targets = { "127.0.0.1:9001", "127.0.0.1:9002" }
return {
  services = {
    a = { balancer = "ewma", targets = targets },
    b = { balancer = "chash", balancer_opts = { key = "header:X-User" }, targets = targets },
    c = { balancer = "p2c", targets = targets },
    d = { balancer = "sticky", targets = targets },
  },
  routes = {
    { rule = "PathPrefix(`/a`)", service = "a" },
    { rule = "PathPrefix(`/b`)", service = "b" },
    { rule = "PathPrefix(`/c`)", service = "c" },
    { rule = "PathPrefix(`/d`)", service = "d", allow_trace = true },
  },
}
''',
    "middlewares": '''return {
  services = { web = { targets = { "127.0.0.1:9001" } } },
  middlewares = {
    auth = { plugin = "basic_auth", users = { alice = "s3cret" } },
    strip = { plugin = "strip_prefix", prefixes = { "/api" } },
    limit = { plugin = "rate_limit", rate = 10, burst = 20 },
  },
  routes = { { rule = "PathPrefix(`/api`)", service = "web", middlewares = { "auth", "strip", "limit" } } },
}
''',
    "computed": '''local n = tonumber(os.getenv("MG_FUZZ_N") or "3")
local targets = {}
for i = 1, n do targets[#targets + 1] = string.format("127.0.0.1:%d", 9000 + i) end
return { services = { web = { targets = targets } },
         routes = { { rule = "Host(`" .. ("x"):rep(3) .. "`)", service = "web" } } }
''',
    "bad-type": 'return { services = 3 }\n',
    "bad-key": 'return {\n  servics = {},\n}\n',
    "bad-route": 'return {\n  services = { web = { targets = { "127.0.0.1:1" } } },\n'
                 '  routes = { { rule = "Host(`a`", service = "web" } },\n}\n',
    "unknown-service": 'return { routes = { { rule = "PathPrefix(`/`)", service = "nope" } } }\n',
    "syntax": 'return {\n  services = {\n',
    "runtime-error": 'local t = nil\nreturn t.x\n',
    "error-table": 'error({ "not a string" })\n',
    "error-level0": 'error("no position", 0)\n',
    "not-a-table": 'return 42\n',
    "tls": '''return {
  listen = { { address = ":8443", tls = true, name = "websecure" }, { address = ":8080", redirect = "https", redirect_port = 8443 } },
  tls = { certificates = { { cert = "/nonexistent.pem", key = "/nonexistent.key" } }, min_version = "1.3" },
  services = { web = { targets = { "https://127.0.0.1:9443" }, tls = { verify = false } } },
  routes = { { rule = "Host(`a`)", service = "web" } },
}
''',
    "providers": 'return { providers = { docker = { endpoint = "unix:///nonexistent.sock" } } }\n',
    "empty": '',
    "empty-table": 'return {}\n',
}
for name, text in sorted(configs.items()):
    write("config", name + ".lua", text)
