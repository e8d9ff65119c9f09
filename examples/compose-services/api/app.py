#!/usr/bin/env python3
"""A tiny JSON API for the compose demo: every answer says which container
(instance) served it, so balancing is visible from the outside."""
import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INSTANCE = socket.gethostname()
PORT = int(os.environ.get("PORT", "8000"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
            ctype = "text/plain"
        else:
            body = json.dumps({"service": "api", "instance": INSTANCE, "path": self.path}).encode() + b"\n"
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Instance", INSTANCE)
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True


Server(("0.0.0.0", PORT), Handler).serve_forever()
