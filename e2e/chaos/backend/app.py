#!/usr/bin/env python3
"""The chaos suite's backend: a small HTTP/1.1 server that behaves like a
real app under a gateway.

- keep-alive and pipelining on every connection;
- every answer names the instance (the container's hostname) in an
  X-Instance header, and the plain ones echo the request path, so the load
  driver can tell which replica served what and spot a mixed-up response;
- GET /stream?chunks=N&ms=M: a chunked response of N lines, one every M ms,
  ending with "end INSTANCE N";
- GET /ws (Upgrade: websocket): echoes every text/binary message, answers
  pings and the close handshake (RFC 6455, no extensions);
- POST: reads the body and answers its length;
- GET /healthz: "ok".

On SIGTERM it does what a well-behaved app does: it closes its listening
socket first (new connects are refused), closes connections that sit idle
between requests, lets requests, streams and WebSocket sessions in flight
finish (answering them with "Connection: close"), and exits once none is
left, or after GRACE seconds (default 8, below Docker's 10 s stop timeout).
"""
import base64
import hashlib
import os
import signal
import socket
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

INSTANCE = socket.gethostname()
PORT = int(os.environ.get("PORT", "8000"))
GRACE = float(os.environ.get("GRACE", "8"))
IDLE_TIMEOUT = float(os.environ.get("IDLE_TIMEOUT", "30"))
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
MAX_HEAD = 16384
MAX_BODY = 1 << 20

lock = threading.Lock()
conns = {}  # socket -> "idle" | "busy"
draining = threading.Event()
done = threading.Event()


def log(*parts):
    sys.stdout.write("%.3f %s %s\n" % (time.time(), INSTANCE, " ".join(str(p) for p in parts)))
    sys.stdout.flush()


class Closed(Exception):
    pass


class Conn:
    """One client connection: a buffered reader and the request loop."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if len(self.buf) > MAX_HEAD:
                raise Closed()
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def set_state(self, state):
        with lock:
            if self.sock in conns:
                conns[self.sock] = state

    def send(self, data):
        self.sock.sendall(data)

    def respond(self, status, reason, body, headers=(), head_only=False):
        close = draining.is_set()
        lines = ["HTTP/1.1 %d %s" % (status, reason), "Content-Length: %d" % len(body),
                 "X-Instance: " + INSTANCE]
        lines += ["%s: %s" % h for h in headers]
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.send(head if head_only else head + body)
        return not close

    def serve(self):
        while True:
            if not self.buf:
                # idle between requests: a drain may close it from here on
                self.set_state("idle")
                if draining.is_set():
                    return
                self.fill()  # blocks until the next request (or the idle timeout)
            self.set_state("busy")
            line = self.read_line()
            if not line:
                continue  # a stray CRLF between requests
            try:
                method, target, version = line.decode("latin-1").split(" ")
            except ValueError:
                self.respond(400, "Bad Request", b"bad request line\n")
                return
            headers = {}
            while True:
                h = self.read_line()
                if not h:
                    break
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if not self.handle(method, target, version, headers):
                return

    def handle(self, method, target, version, headers):
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        url = urlsplit(target)
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY or "transfer-encoding" in headers:
            self.respond(413, "Payload Too Large", b"body too large or chunked\n")
            return False
        body = self.read_exact(length) if length else b""
        if url.path == "/healthz":
            return self.respond(200, "OK", b"ok\n", head_only=method == "HEAD") and keep
        if url.path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
            self.websocket(headers)
            return False
        if url.path == "/stream" and method == "GET":
            return self.stream(parse_qs(url.query)) and keep
        if method == "POST":
            out = ("instance=%s path=%s length=%d\n" % (INSTANCE, url.path, len(body))).encode()
            return self.respond(200, "OK", out) and keep
        if method in ("GET", "HEAD"):
            out = ("instance=%s path=%s\n" % (INSTANCE, target)).encode()
            return self.respond(200, "OK", out, head_only=method == "HEAD") and keep
        self.respond(405, "Method Not Allowed", b"method not allowed\n")
        return False

    def stream(self, q):
        chunks = min(int(q.get("chunks", ["10"])[0]), 1000)
        delay = min(int(q.get("ms", ["100"])[0]), 5000) / 1000.0
        head = ["HTTP/1.1 200 OK", "Content-Type: text/plain", "Transfer-Encoding: chunked",
                "X-Instance: " + INSTANCE]
        close = draining.is_set()
        if close:
            head.append("Connection: close")
        self.send(("\r\n".join(head) + "\r\n\r\n").encode())
        for i in range(chunks):
            self.chunk(("%s %d\n" % (INSTANCE, i)).encode())
            time.sleep(delay)
        self.chunk(("end %s %d\n" % (INSTANCE, chunks)).encode())
        self.send(b"0\r\n\r\n")
        return not close and not draining.is_set()

    def chunk(self, data):
        self.send(b"%x\r\n%s\r\n" % (len(data), data))

    def websocket(self, headers):
        key = headers.get("sec-websocket-key", "")
        if "upgrade" not in headers.get("connection", "").lower() or not key:
            self.respond(400, "Bad Request", b"not a websocket handshake\n")
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        self.send(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\nX-Instance: %s\r\n\r\n" % (accept, INSTANCE)).encode())
        while True:
            opcode, payload = self.ws_read()
            if opcode in (1, 2):
                self.ws_send(opcode, payload)
            elif opcode == 9:
                self.ws_send(10, payload)
            elif opcode == 8:
                self.ws_send(8, payload[:2])
                return

    def ws_read(self):
        b0, b1 = self.read_exact(2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self.read_exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self.read_exact(8), "big")
        if n > MAX_BODY:
            raise Closed()
        mask = self.read_exact(4) if b1 & 0x80 else b"\0\0\0\0"
        data = self.read_exact(n)
        return opcode, bytes(c ^ mask[i % 4] for i, c in enumerate(data))

    def ws_send(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
        self.send(head + payload)


def run_conn(sock):
    try:
        sock.settimeout(IDLE_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Conn(sock).serve()
    except (Closed, OSError, ValueError):
        pass
    finally:
        with lock:
            conns.pop(sock, None)
            left = len(conns)
        try:
            sock.close()
        except OSError:
            pass
        if draining.is_set() and left == 0:
            done.set()


def accept_loop(listener):
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return  # the listener was shut down (SIGTERM)
        with lock:
            if draining.is_set():
                sock.close()
                continue
            conns[sock] = "idle"
        threading.Thread(target=run_conn, args=(sock,), daemon=True).start()


def drain(listener):
    # close the listener first: the kernel refuses new connects from here on
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()
    with lock:
        draining.set()
        idle = [s for s, st in conns.items() if st == "idle"]
        busy = len(conns) - len(idle)
        if not conns:
            done.set()
    for s in idle:
        try:
            s.shutdown(socket.SHUT_RDWR)  # wakes its reader, which then closes it
        except OSError:
            pass
    log("SIGTERM: listener closed, %d idle connections closed, %d in flight" % (len(idle), busy))


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", PORT))
    listener.listen(512)
    term = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: term.set())
    signal.signal(signal.SIGINT, lambda *_: term.set())
    threading.Thread(target=accept_loop, args=(listener,), daemon=True).start()
    log("listening on :%d" % PORT)
    while not term.wait(0.5):
        pass
    t0 = time.time()
    drain(listener)
    finished = done.wait(GRACE)
    with lock:
        left = len(conns)
    log("exiting after %.2f s: %s" % (time.time() - t0, "drained" if finished else "%d still open" % left))


if __name__ == "__main__":
    main()
