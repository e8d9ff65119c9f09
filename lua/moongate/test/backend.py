#!/usr/bin/env python3
"""A real HTTP/1.1 backend for moongate's specs (stdlib only).

Every response carries X-Backend: <name>. Endpoints:
  /                     JSON: backend, method, path, query, headers, body_len, body_sha1
  /echo                 echoes the request body
  /status/<code>        answers that status
  /delay/<ms>           sleeps, then 200
  /chunked?n=&size=&trailer=1   chunked response (trailer X-Checksum)
  /close?bytes=N        body delimited by closing the connection
  /big?bytes=N          Content-Length body written in pieces
  /slowbody?n=&ms=      body pieces with pauses
  /nocontent            204
  /notmodified          304 with an ETag
  /interim              103 Early Hints, then 200
  /ws                   WebSocket echo
  /stats                {"requests": n, "open_connections": n}
  /auth?delay=ms        an auth service: "Authorization: Bearer good" gets 200 with
                        X-Auth-User, X-Auth-Role, X-Auth-Saw-<header> for each X-Forwarded-*
                        header it got, two Set-Cookie; anything else 401 with
                        WWW-Authenticate and a body
  /page/<code>          an error page: 200, text/html, names the code and the query
Expect: 100-continue is answered with 100 Continue before the body is read.
"""
import argparse
import base64
import hashlib
import json
import socketserver
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STATS = {"requests": 0, "open_connections": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "spec-backend"

    def setup(self):
        super().setup()
        with LOCK:
            STATS["open_connections"] += 1

    def finish(self):
        try:
            super().finish()
        finally:
            with LOCK:
                STATS["open_connections"] -= 1

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.server.name, fmt % args))

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_simple(self, status, body, ctype="text/plain", extra=None):
        self.send_response(status)
        self.send_header("X-Backend", self.server.name)
        self.send_header("Content-Type", ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        with LOCK:
            STATS["requests"] += 1
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        path = url.path
        arg = lambda k, d: int(q.get(k, [d])[0])
        if path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        body = self.read_body()
        if path == "/echo":
            return self.send_simple(200, body, "application/octet-stream")
        if path.startswith("/status/"):
            return self.send_simple(int(path.split("/")[2]), b"status\n")
        if path.startswith("/delay/"):
            time.sleep(int(path.split("/")[2]) / 1000.0)
            return self.send_simple(200, b"delayed\n")
        if path == "/chunked":
            n, size = arg("n", 3), arg("size", 10)
            self.send_response(200)
            self.send_header("X-Backend", self.server.name)
            self.send_header("Transfer-Encoding", "chunked")
            if "trailer" in q:
                self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            h = hashlib.sha1()
            for i in range(n):
                piece = bytes([97 + i % 26]) * size
                h.update(piece)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n")
            if "trailer" in q:
                self.wfile.write(b"X-Checksum: %s\r\n" % h.hexdigest().encode())
            self.wfile.write(b"\r\n")
            return
        if path == "/close":
            self.send_response(200)
            self.send_header("X-Backend", self.server.name)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"c" * arg("bytes", 100))
            self.close_connection = True
            return
        if path == "/big":
            n = arg("bytes", 1 << 20)
            self.send_response(200)
            self.send_header("X-Backend", self.server.name)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command == "HEAD":
                return
            piece = b"b" * 65536
            while n > 0:
                self.wfile.write(piece[: min(n, len(piece))])
                n -= len(piece)
            return
        if path == "/slowbody":
            n, ms = arg("n", 10), arg("ms", 100)
            self.send_response(200)
            self.send_header("X-Backend", self.server.name)
            self.send_header("Content-Length", str(n * 10))
            self.end_headers()
            for _ in range(n):
                self.wfile.write(b"s" * 10)
                self.wfile.flush()
                time.sleep(ms / 1000.0)
            return
        if path == "/nocontent":
            self.send_response(204)
            self.send_header("X-Backend", self.server.name)
            self.end_headers()
            return
        if path == "/notmodified":
            self.send_response(304)
            self.send_header("X-Backend", self.server.name)
            self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        if path == "/interim":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            return self.send_simple(200, b"after hints\n")
        if path == "/auth":
            time.sleep(arg("delay", 0) / 1000.0)
            if self.headers.get("Authorization") == "Bearer good":
                extra = [("X-Auth-User", "alice"), ("X-Auth-Role", "admin"), ("X-Other", "not copied"),
                         ("Set-Cookie", "session=abc; Path=/"), ("Set-Cookie", "other=1")]
                for k, v in self.headers.items():
                    if k.lower().startswith("x-forwarded-"):
                        extra.append(("X-Auth-Saw-" + k[len("x-forwarded-"):], v))
                if self.headers.get("X-Client-Header"):
                    extra.append(("X-Auth-Saw-Client-Header", self.headers["X-Client-Header"]))
                self.send_response(200)
                self.send_header("X-Backend", self.server.name)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")
                return
            body = b"denied by auth\n"
            self.send_response(401)
            self.send_header("X-Backend", self.server.name)
            self.send_header("WWW-Authenticate", 'Bearer realm="spec"')
            self.send_header("Set-Cookie", "tried=1")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path.startswith("/page/"):
            code = path.split("/")[2]
            page = ("<h1>page for %s</h1><p>%s</p>\n" % (code, url.query)).encode()
            return self.send_simple(200, page, "text/html; charset=utf-8")
        if path == "/stats":
            with LOCK:
                data = json.dumps(STATS).encode()
            return self.send_simple(200, data, "application/json")
        headers = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        info = {
            "backend": self.server.name, "method": self.command, "path": path,
            "query": url.query, "headers": {k: (v[0] if len(v) == 1 else v) for k, v in headers.items()},
            "body_len": len(body), "body_sha1": hashlib.sha1(body).hexdigest(),
        }
        self.send_simple(200, json.dumps(info).encode(), "application/json")

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            hdr = self.rfile.read(2)
            if len(hdr) < 2:
                return
            opcode, ln = hdr[0] & 0x0F, hdr[1] & 0x7F
            masked = hdr[1] & 0x80
            if ln == 126:
                ln = struct.unpack("!H", self.rfile.read(2))[0]
            elif ln == 127:
                ln = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if masked else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(ln)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                return
            out = bytes([0x80 | opcode])
            if len(data) < 126:
                out += bytes([len(data)])
            else:
                out += bytes([126]) + struct.pack("!H", len(data))
            self.wfile.write(out + data)
            self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_TRACE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="backend")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--backlog", type=int, default=1024)
    a = ap.parse_args()
    Server.request_queue_size = a.backlog
    srv = Server((a.host, a.port), Handler)
    srv.name, srv.verbose = a.name, a.verbose
    srv.serve_forever()


if __name__ == "__main__":
    main()
