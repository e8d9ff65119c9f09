#!/usr/bin/env python3
"""A tiny HTTP/2 client written frame by frame (stdlib only), to misbehave
on purpose against the real gateway over a real socket (h2c, prior
knowledge). Prints one JSON object: what the server answered.

Usage: h2raw.py PORT MODE [ARG]
  stall0 PATH SECS     SETTINGS_INITIAL_WINDOW_SIZE=0, GET PATH on 4 streams,
                       read the response heads, then hold SECS without ever
                       opening a window
  stalltcp PATH SECS   GET PATH on 4 streams and never read the socket
  rapid_reset N        N times: HEADERS then RST_STREAM at once
  continuation N       one HEADERS without END_HEADERS, then N CONTINUATION
  hpack_bomb N         a 4000-byte header indexed once, then referenced N times
  ping N               N PINGs in a row, reading what comes back
  settings N           N SETTINGS frames in a row
  streams N            N streams opened at once (no END_STREAM), count refusals
  get PATH             one GET; prints status and body length
  inflight PATH        one GET, then read until the server closes (GOAWAY on a
                       stop): prints status, body length and the GOAWAY code
  idle SECS            open the connection and read until it closes or SECS
"""
import json
import socket
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONT = range(10)
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0x7FFFFFFF) + payload


def hint(value, prefix_bits, first=0):
    """An HPACK integer with an N-bit prefix (RFC 7541 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def hstr(s):
    b = s.encode() if isinstance(s, str) else s
    return hint(len(b), 7) + b


def literal(name, value, index=False):
    """A literal field with a new name, indexed or not."""
    return (b"\x40" if index else b"\x00") + hstr(name) + hstr(value)


def request_block(path, method="GET", extra=()):
    block = literal(":method", method) + literal(":scheme", "http") + literal(":path", path)
    block += literal(":authority", "h2raw.test")
    for n, v in extra:
        block += literal(n, v)
    return block


class Conn:
    def __init__(self, port, settings=()):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        payload = b"".join(struct.pack(">HI", k, v) for k, v in settings)
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0, payload))
        self.buf = b""
        self.goaway = None
        self.closed = False
        self.frames = []

    def send(self, data):
        try:
            self.s.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def read_frames(self, until, timeout=5.0):
        """Reads frames until until(frame) is true, the peer closes, or timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            while len(self.buf) >= 9:
                n = (self.buf[0] << 16) | (self.buf[1] << 8) | self.buf[2]
                if len(self.buf) < 9 + n:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                payload = self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                f = (ftype, flags, sid, payload)
                self.frames.append(f)
                if ftype == GOAWAY:
                    self.goaway = struct.unpack(">II", payload[:8])[1]
                if ftype == SETTINGS and not flags & ACK:
                    self.send(frame(SETTINGS, ACK, 0))
                if until(f):
                    return f
            self.s.settimeout(max(0.01, deadline - time.time()))
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk
        return None

    def result(self, **extra):
        out = {"goaway": self.goaway, "closed": self.closed}
        out.update(extra)
        return out


def status_of(payload):
    # responses from the gateway start with an indexed or literal :status;
    # only the static-table statuses are decoded here (enough for 200/404/431/503)
    static = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}
    b = payload[0]
    if b & 0x80:
        return static.get(b & 0x7F)
    if b & 0x0F == 8 or b & 0x3F == 8:
        ln = payload[1] & 0x7F
        if not payload[1] & 0x80:
            return int(payload[2:2 + ln])
    return None


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else "1"
    if mode in ("stall0", "stalltcp"):
        secs = float(sys.argv[4])
        c = Conn(port, [(4, 0)] if mode == "stall0" else [])
        for i in range(4):
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i, request_block(arg)))
        heads = 0
        if mode == "stall0":
            while heads < 4 and c.read_frames(lambda f: f[0] == HEADERS, 5):
                heads += 1
        print(json.dumps(c.result(heads=heads)), flush=True)
        time.sleep(secs)
        return
    n = int(arg) if mode not in ("get", "inflight", "idle") else 0
    c = Conn(port)
    sent = 0
    if mode == "rapid_reset":
        for i in range(n):
            sid = 1 + 2 * i
            if not c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, request_block("/"))
                          + frame(RST, 0, sid, struct.pack(">I", 8))):
                break
            sent += 1
    elif mode == "continuation":
        if c.send(frame(HEADERS, END_STREAM, 1, request_block("/"))):
            piece = literal("x-filler", "a" * 1000)
            for _ in range(n):
                if not c.send(frame(CONT, 0, 1, piece)):
                    break
                sent += 1
    elif mode == "hpack_bomb":
        block = request_block("/") + literal("x-bomb", "b" * 4000, index=True)
        block += b"\xbe" * n  # index 62: the entry just added
        parts = [block[i:i + 16000] for i in range(0, len(block), 16000)]
        data = frame(HEADERS, END_STREAM | (END_HEADERS if len(parts) == 1 else 0), 1, parts[0])
        for k, p in enumerate(parts[1:]):
            data += frame(CONT, END_HEADERS if k == len(parts) - 2 else 0, 1, p)
        c.send(data)
        sent = 1
        f = c.read_frames(lambda f: f[0] in (HEADERS, RST) and f[2] == 1, 10)
        st = status_of(f[3]) if f and f[0] == HEADERS else None
        print(json.dumps(c.result(sent=sent, status=st, rst=bool(f and f[0] == RST))))
        return
    elif mode == "ping":
        for i in range(n):
            if not c.send(frame(PING, 0, 0, struct.pack(">Q", i))):
                break
            sent += 1
    elif mode == "settings":
        for i in range(n):
            if not c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100 + i % 10))):
                break
            sent += 1
    elif mode == "streams":
        for i in range(n):
            c.send(frame(HEADERS, END_HEADERS, 1 + 2 * i, request_block("/", "POST")))
        c.read_frames(lambda f: False, 2)
        refused = sum(1 for f in c.frames if f[0] == RST and struct.unpack(">I", f[3])[0] == 7)
        print(json.dumps(c.result(refused=refused)))
        return
    elif mode == "idle":
        c.read_frames(lambda f: f[0] == SETTINGS, 5)
        print(json.dumps({"ready": True}), flush=True)
        c.read_frames(lambda f: False, float(arg))
        print(json.dumps(c.result()))
        return
    elif mode in ("get", "inflight"):
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block(arg)))
        f = c.read_frames(lambda f: f[0] == HEADERS and f[2] == 1, 5)
        body = 0
        if f and not f[1] & END_STREAM:
            while True:
                d = c.read_frames(lambda f: f[0] in (DATA, HEADERS) and f[2] == 1, 5)
                if not d:
                    break
                if d[0] == DATA:
                    body += len(d[3])
                if d[1] & END_STREAM:
                    break
        if mode == "inflight":
            c.read_frames(lambda f: False, 10)
        print(json.dumps(c.result(status=status_of(f[3]) if f else None, body=body)))
        return
    c.read_frames(lambda f: f[0] == GOAWAY, 5)
    print(json.dumps(c.result(sent=sent)))


main()
