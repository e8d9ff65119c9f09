#!/usr/bin/env python3
"""An HTTP server on a unix socket, for the HTTP client's specs. GET /events
answers a chunked stream of newline-delimited JSON without Content-Length,
as Docker's /events does: one line per --interval, --count lines, split
across chunks at odd places; GET /_ping answers "OK"."""
import argparse
import json
import time

from unix_http import CHUNKED_JSON, chunk, read_head, request_target, serve


def handle(conn, args):
    head, f = read_head(conn)
    if head is None:
        return
    path = request_target(head)
    if path.startswith("/_ping"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.41\r\n\r\nOK")
        conn.close()
        return
    conn.sendall(CHUNKED_JSON)
    data = b""
    for i in range(args.count):
        data += json.dumps({"seq": i, "Action": "start", "id": "c%d" % i}).encode() + b"\n"
    # cut the stream at arbitrary places: chunks do not follow lines
    pos, size = 0, 7
    while pos < len(data):
        piece = data[pos:pos + size]
        chunk(conn, piece)
        pos += size
        size = size * 2 + 3
        time.sleep(args.interval)
    conn.sendall(b"0\r\n\r\n")
    conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    serve(args.socket, lambda conn: handle(conn, args))


if __name__ == "__main__":
    main()
