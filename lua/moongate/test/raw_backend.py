#!/usr/bin/env python3
"""A backend that answers every request with fixed bytes, for specs about
broken or unusual upstream behaviour. It reads one request head (and its
Content-Length body), writes the response, then closes the connection if
--close, or keeps it open and silently closes it after --idle-close
seconds. With --answers N it answers N requests on a connection and closes
it, unanswered, on reading the next one: a backend shutting an idle
connection just as the gateway reuses it. GET /__raw_stats is answered
with JSON counts (connections accepted and open now, requests, dropped, and
the length of the last request body) instead."""
import argparse
import json
import socket
import threading
import time

COUNTS = {"connections": 0, "open": 0, "requests": 0, "dropped": 0, "last_body": 0}
LOCK = threading.Lock()


def read_request(f):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = f.read(length) if length else b""
    return head, body


def serve(conn, args, response):
    with LOCK:
        COUNTS["connections"] += 1
        COUNTS["open"] += 1
    f = conn.makefile("rb")
    answered = 0
    try:
        while True:
            conn.settimeout(args.idle_close if args.idle_close > 0 else None)
            try:
                got = read_request(f)
            except socket.timeout:
                return
            if got is None:
                return
            head, body = got
            if head.startswith(b"GET /__raw_stats"):
                body = json.dumps(COUNTS).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            if args.answers and answered >= args.answers:
                with LOCK:
                    COUNTS["dropped"] += 1
                return
            answered += 1
            with LOCK:
                COUNTS["requests"] += 1
                COUNTS["last_body"] = len(body)
            if args.delay:
                time.sleep(args.delay)
            conn.sendall(response)
            if args.close:
                return
    finally:
        conn.close()
        with LOCK:
            COUNTS["open"] -= 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--response-file", required=True)
    ap.add_argument("--close", action="store_true")
    ap.add_argument("--delay", type=float, default=0)
    ap.add_argument("--idle-close", type=float, default=0)
    ap.add_argument("--answers", type=int, default=0)
    args = ap.parse_args()
    with open(args.response_file, "rb") as fh:
        response = fh.read()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(256)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, args, response), daemon=True).start()


if __name__ == "__main__":
    main()
