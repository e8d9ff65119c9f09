#!/usr/bin/env python3
"""The autoscale e2e backend: GET /slow?ms=N answers after N ms (default
1000, at most 10000) with the container that served it; anything else at
once. Threaded, so a replica holds many slow requests at a time.

On SIGTERM it exits at once (Compose: the gateway drained the replica
before stopping it), or with ON_SIGTERM=finish (Swarm, which stops the
tasks it removes itself) it stops accepting connections, answers what
still comes on open ones with Connection: close for at least 2 s, exits
once no request is in flight (at most 8 s), and says on stdout (and in
REPORT_DIR/HOSTNAME) how many requests were in flight at SIGTERM, how
many came after it, and how long before it the last one came."""
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INSTANCE = socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        with lock:
            state["active"] += 1
            if state["term_at"]:
                state["late"] += 1
            else:
                state["last_at"] = time.time()
        try:
            u = urlsplit(self.path)
            if u.path.endswith("/slow"):
                ms = int(parse_qs(u.query).get("ms", ["1000"])[0])
                time.sleep(min(ms, 10000) / 1000.0)
            body = json.dumps({"instance": INSTANCE, "path": self.path}).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if state["term_at"]:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
        finally:
            with lock:
                state["active"] -= 1

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


lock = threading.Lock()
state = {"active": 0, "term_at": None, "late": 0, "inflight_at_term": 0, "last_at": None}
server = Server(("0.0.0.0", 8000), Handler)


def finish(*_):
    with lock:
        state["term_at"] = time.time()
        state["inflight_at_term"] = state["active"]
    threading.Thread(target=server.shutdown, daemon=True).start()


if os.environ.get("ON_SIGTERM") == "finish":
    signal.signal(signal.SIGTERM, finish)
    server.serve_forever()
    server.socket.close()  # new connections are refused: the gateway tries another task
    while time.time() < state["term_at"] + 8:
        with lock:
            busy = state["active"]
        if not busy and time.time() >= state["term_at"] + 2:
            break
        time.sleep(0.05)
    # read by e2e/autoscale_swarm_test.sh: did the gateway stop sending first?
    # (Swarm deletes a removed task's logs with it: REPORT_DIR keeps them)
    line = "slow.py: SIGTERM with %d in flight; %d requests came after it; the last before it came %.2f s before\n" % (
        state["inflight_at_term"], state["late"], state["term_at"] - (state["last_at"] or state["term_at"]))
    sys.stdout.write(line)
    if os.environ.get("REPORT_DIR"):
        with open(os.path.join(os.environ["REPORT_DIR"], INSTANCE), "w") as f:
            f.write(line)
    sys.exit(0)
# PID 1 in its container: stop at once on docker stop (the gateway drained it)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.serve_forever()
