#!/usr/bin/env python3
"""The autoscale e2e backend: GET /slow?ms=N answers after N ms (default
1000, at most 10000) with the container that served it; anything else at
once. Threaded, so a replica holds many slow requests at a time."""
import json
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INSTANCE = socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        u = urlsplit(self.path)
        if u.path.endswith("/slow"):
            ms = int(parse_qs(u.query).get("ms", ["1000"])[0])
            time.sleep(min(ms, 10000) / 1000.0)
        body = json.dumps({"instance": INSTANCE, "path": self.path}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


# PID 1 in its container: stop at once on docker stop (the gateway drained it)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
Server(("0.0.0.0", 8000), Handler).serve_forever()
