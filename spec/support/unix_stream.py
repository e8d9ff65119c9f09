#!/usr/bin/env python3
"""An HTTP server on a unix socket, for the HTTP client's specs. GET /events
answers a chunked stream of newline-delimited JSON without Content-Length,
as Docker's /events does: one line per --interval, --count lines, split
across chunks at odd places; GET /_ping answers "OK"."""
import argparse
import json
import os
import socket
import threading
import time


def handle(conn, args):
    f = conn.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            conn.close()
            return
        head += line
    path = head.split(b" ")[1].decode()
    if path.startswith("/_ping"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.41\r\n\r\nOK")
        conn.close()
        return
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    data = b""
    for i in range(args.count):
        data += json.dumps({"seq": i, "Action": "start", "id": "c%d" % i}).encode() + b"\n"
    # cut the stream at arbitrary places: chunks do not follow lines
    pos, size = 0, 7
    while pos < len(data):
        piece = data[pos:pos + size]
        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
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
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.socket)
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn, args), daemon=True).start()


if __name__ == "__main__":
    main()
