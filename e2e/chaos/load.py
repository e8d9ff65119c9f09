#!/usr/bin/env python3
"""The chaos suite's load driver: real HTTP/1.1 and WebSocket clients on raw
sockets (no client-side retries that would hide a failure), bounded in count
and wall time.

    load.py --port PORT --seconds S --out RESULT.json [--max-requests N]
            [--plain 4] [--post 1] [--pipeline 1] [--stream 2] [--ws 2]
            [--timeout 10] [--think-ms 10] [--fail-pause-ms 100] [--tag T]

Clients, each on its own keep-alive connection to 127.0.0.1:PORT:
- plain: GET /req/ID; the answer must be 200 and echo ID (a mixed-up answer
  is a failure);
- post: POST /post/ID with a body of 100-4000 bytes; the answer must echo
  its length;
- pipeline: four GETs written at once, four answers read in order;
- stream: GET /stream (chunked, STREAM_CHUNKS lines every STREAM_MS ms);
  every line and the end marker must arrive;
- ws: a WebSocket session of WS_MESSAGES echoes, then the close handshake.

Every failure is recorded with its kind, request id, client, start time,
duration, whether the connection had served a request before, and, for
streams and WebSocket sessions, the instance (X-Instance) they were on.
SIGUSR1 (or the wall-time bound) stops new requests; those in flight finish;
the result is written as JSON.
"""
import argparse
import base64
import hashlib
import json
import os
import random
import signal
import socket
import sys
import threading
import time

STREAM_CHUNKS = 15
STREAM_MS = 200
WS_MESSAGES = 10
WS_INTERVAL = 0.25
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
MAX_FAILURE_RECORDS = 5000
SLOW_S = 0.5
SAMPLE_EVERY = 20
MAX_SAMPLES = 20000


class Fail(Exception):
    """A failed request: kind is one of connect, reset, closed, truncated,
    timeout, status, bad-body, handshake, ws-mismatch."""

    def __init__(self, kind, detail="", status=None):
        super().__init__(kind, detail)
        self.kind, self.detail, self.status = kind, detail, status


class Stats:
    def __init__(self, max_requests):
        self.lock = threading.Lock()
        self.max_requests = max_requests
        self.started = 0
        self.ok = 0
        self.kinds = {}        # client kind -> {"ok": n, "failed": n}
        self.failures = []     # dicts, first MAX_FAILURE_RECORDS
        self.failed = 0
        self.sessions = []     # streams and WebSocket sessions (dicts)
        self.hist = {}         # latency in 0.1 ms (int) -> count, successful plain/post/pipeline
        self.slow = []         # successful plain/post/pipeline requests that took SLOW_S or more
        self.samples = {}      # request path -> instance, every SAMPLE_EVERY-th successful request
        self.per_second = {}   # int(epoch) -> [ok, failed]

    def begin(self, n=1):
        with self.lock:
            if self.started + n > self.max_requests:
                return False
            self.started += n
            return True

    def unbegin(self, n):
        with self.lock:
            self.started -= n

    def success(self, kind, t0, latency, instance=None, rid=None):
        with self.lock:
            if latency >= SLOW_S and kind in ("plain", "post", "pipeline") and len(self.slow) < MAX_FAILURE_RECORDS:
                self.slow.append({"type": kind, "id": rid, "t": round(t0, 3), "latency": round(latency, 3),
                                  "instance": instance})
            self.ok += 1
            self.kinds.setdefault(kind, {"ok": 0, "failed": 0})["ok"] += 1
            if kind in ("plain", "post", "pipeline"):
                if instance and self.ok % SAMPLE_EVERY == 0 and len(self.samples) < MAX_SAMPLES:
                    self.samples[rid] = instance
                ms = int(latency * 10000)
                self.hist[ms] = self.hist.get(ms, 0) + 1
            self.per_second.setdefault(int(t0), [0, 0])[0] += 1

    def failure(self, kind, f, rid, client, t0, reused, instance=None):
        rec = {"client": client, "type": kind, "kind": f.kind, "id": rid, "t": round(t0, 3),
               "duration": round(time.time() - t0, 3), "reused": reused, "detail": f.detail[:200]}
        if f.status is not None:
            rec["status"] = f.status
        if instance:
            rec["instance"] = instance
        with self.lock:
            self.failed += 1
            self.kinds.setdefault(kind, {"ok": 0, "failed": 0})["failed"] += 1
            if len(self.failures) < MAX_FAILURE_RECORDS:
                self.failures.append(rec)
            self.per_second.setdefault(int(t0), [0, 0])[1] += 1

    def session(self, rec):
        with self.lock:
            self.sessions.append(rec)


class Conn:
    """A client connection with a buffered reader; every read honours the
    request's deadline."""

    def __init__(self, port, deadline):
        self.buf = b""
        self.served = 0
        self.deadline = deadline
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=self.left())
        except socket.timeout:
            raise Fail("connect", "connect timed out")
        except OSError as e:
            raise Fail("connect", str(e))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def left(self):
        t = self.deadline - time.time()
        if t <= 0:
            raise Fail("timeout", "deadline passed")
        return t

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.sock.settimeout(self.left())
            self.sock.sendall(data)
        except socket.timeout:
            raise Fail("timeout", "send timed out")
        except OSError as e:
            raise Fail("reset", "send: " + str(e))

    def fill(self, started):
        try:
            self.sock.settimeout(self.left())
            data = self.sock.recv(65536)
        except socket.timeout:
            raise Fail("timeout", "no bytes for %.1f s" % (time.time() - started))
        except OSError as e:
            raise Fail("reset", str(e))
        if not data:
            raise Fail("closed", "connection closed")
        self.buf += data

    def line(self, started):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 2:]
                return out
            if len(self.buf) > 65536:
                raise Fail("bad-body", "line too long")
            self.fill(started)

    def exact(self, n, started):
        while len(self.buf) < n:
            self.fill(started)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self, started):
        """Reads a response head; a connection closed before any byte of it
        is 'closed', after some is 'truncated'."""
        try:
            status_line = self.line(started)
        except Fail as f:
            if f.kind == "closed" and self.buf:
                raise Fail("truncated", "closed inside the status line")
            raise
        try:
            parts = status_line.decode("latin-1").split(" ", 2)
            status = int(parts[1])
        except (ValueError, IndexError):
            raise Fail("bad-body", "bad status line %r" % status_line[:80])
        headers = {}
        while True:
            try:
                h = self.line(started)
            except Fail as f:
                if f.kind == "closed":
                    raise Fail("truncated", "closed inside the head")
                raise
            if not h:
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        close = "close" in headers.get("connection", "").lower() or parts[0] != "HTTP/1.1"
        return status, headers, close

    def body(self, headers, started, on_chunk=None):
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                out = []
                while True:
                    size = int(self.line(started).split(b";")[0], 16)
                    if size == 0:
                        while self.line(started):
                            pass
                        return b"".join(out)
                    data = self.exact(size, started)
                    if self.exact(2, started) != b"\r\n":
                        raise Fail("bad-body", "bad chunk framing")
                    out.append(data)
                    if on_chunk:
                        on_chunk(data)
            if "content-length" in headers:
                return self.exact(int(headers["content-length"]), started)
            raise Fail("bad-body", "response without a length")
        except Fail as f:
            if f.kind == "closed":
                raise Fail("truncated", "closed inside the body")
            raise
        except ValueError:
            raise Fail("bad-body", "bad chunk size")


def expect_200(status, headers, body):
    if status != 200:
        raise Fail("status", "%d %s" % (status, body[:120].decode("latin-1", "replace").strip()), status)


class Client(threading.Thread):
    def __init__(self, kind, n, opts, stats, stop):
        super().__init__(daemon=True)
        self.kind, self.name_, self.opts, self.stats, self.stop = kind, "%s%d" % (kind, n), opts, stats, stop
        self.conn = None
        self.seq = 0
        self.failed_last = False
        self.rng = random.Random(hash(self.name_) ^ os.getpid())

    def failure(self, *args, **kw):
        self.failed_last = True
        self.stats.failure(*args, **kw)

    def next_id(self):
        self.seq += 1
        return "%s%s-%d" % (self.opts.tag, self.name_, self.seq)

    def connection(self, deadline):
        if self.conn is None:
            self.conn = Conn(self.opts.port, deadline)
        self.conn.deadline = deadline
        return self.conn

    def drop(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def run(self):
        step = getattr(self, "step_" + self.kind)
        while not self.stop.is_set():
            try:
                more = step()
            except Exception as e:  # a driver bug must not pass silently
                sys.stderr.write("load: %s crashed: %r\n" % (self.name_, e))
                self.failure(self.kind, Fail("driver", repr(e)), "-", self.name_, time.time(), False)
                self.drop()
                more = True
            if more is False:
                return
            # after a failure, a short pause, as a user or a client's retry
            # would: failures are then counted at a rate near the traffic's
            pause = self.opts.think_ms + (self.opts.fail_pause_ms if self.failed_last else 0)
            self.failed_last = False
            if pause:
                time.sleep(pause / 1000.0 * (0.5 + self.rng.random()))
        self.drop()

    def request(self, method, path, body=b"", extra=""):
        head = "%s %s HTTP/1.1\r\nHost: chaos.test\r\nUser-Agent: moongate-chaos\r\n%s" % (method, path, extra)
        if body or method == "POST":
            head += "Content-Length: %d\r\n" % len(body)
        return (head + "\r\n").encode() + body

    def one(self, kind, method, path, body, check):
        """One request on the keep-alive connection, recorded."""
        if not self.stats.begin():
            return False
        rid = path
        t0 = time.time()
        reused = self.conn is not None and self.conn.served > 0
        try:
            c = self.connection(t0 + self.opts.timeout)
            c.send(self.request(method, path, body))
            status, headers, close = c.head(t0)
            data = c.body(headers, t0)
            expect_200(status, headers, data)
            check(headers, data)
            c.served += 1
            if close:
                self.drop()
            self.stats.success(kind, t0, time.time() - t0, headers.get("x-instance"), rid)
        except Fail as f:
            self.failure(kind, f, rid, self.name_, t0, reused)
            self.drop()
        return True

    def step_plain(self):
        path = "/req/" + self.next_id()

        def check(h, data):
            want = "instance=%s path=%s\n" % (h.get("x-instance", "?"), path)
            if data.decode("latin-1") != want:
                raise Fail("bad-body", "expected %r, got %r" % (want, data[:120]))
        return self.one("plain", "GET", path, b"", check)

    def step_post(self):
        path = "/post/" + self.next_id()
        body = os.urandom(self.rng.randint(50, 2000)).hex().encode()

        def check(h, data):
            want = "instance=%s path=%s length=%d\n" % (h.get("x-instance", "?"), path, len(body))
            if data.decode("latin-1") != want:
                raise Fail("bad-body", "expected %r, got %r" % (want, data[:120]))
        return self.one("post", "POST", path, body, check)

    def step_pipeline(self):
        n = 4
        if not self.stats.begin(n):
            return False
        paths = ["/req/" + self.next_id() for _ in range(n)]
        t0 = time.time()
        reused = self.conn is not None and self.conn.served > 0
        done = 0
        try:
            c = self.connection(t0 + self.opts.timeout)
            c.send(b"".join(self.request("GET", p) for p in paths))
            for p in paths:
                status, headers, close = c.head(t0)
                data = c.body(headers, t0)
                done += 1
                c.served += 1
                if status != 200:
                    # a complete error answer: this request failed, the
                    # connection goes on with the next answer
                    self.failure("pipeline", Fail("status", "%d %s" % (
                        status, data[:120].decode("latin-1", "replace").strip()), status),
                        p, self.name_, t0, reused or done > 1)
                else:
                    want = "instance=%s path=%s\n" % (headers.get("x-instance", "?"), p)
                    if data.decode("latin-1") != want:
                        done -= 1
                        raise Fail("bad-body", "expected %r, got %r" % (want, data[:120]))
                    self.stats.success("pipeline", t0, time.time() - t0, headers.get("x-instance"), p)
                if close:
                    break
            if close:
                # the rest of the batch was not answered on this connection:
                # a gateway may close after a response only when it says so
                # (Connection: close); resend what is left on a new one
                self.drop()
                self.stats.unbegin(n - done)
                for p in paths[done:]:
                    self.one("pipeline", "GET", p, b"", lambda h, d: None)
        except Fail as f:
            for p in paths[done:]:
                self.failure("pipeline", f, p, self.name_, t0, reused or done > 0)
            self.drop()
        return True

    def step_stream(self):
        if not self.stats.begin():
            return False
        path = "/stream?chunks=%d&ms=%d&id=%s" % (STREAM_CHUNKS, STREAM_MS, self.next_id())
        t0 = time.time()
        reused = self.conn is not None and self.conn.served > 0
        rec = {"type": "stream", "client": self.name_, "id": path, "t0": round(t0, 3)}
        try:
            # the head must come within the timeout; then each line within it
            c = self.connection(t0 + self.opts.timeout)
            c.send(self.request("GET", path))
            status, headers, close = c.head(t0)
            rec["instance"] = headers.get("x-instance")
            if status != 200:
                expect_200(status, headers, c.body(headers, t0))
            lines = []

            def on_chunk(data):
                lines.append(data)
                c.deadline = time.time() + self.opts.timeout
            data = c.body(headers, t0, on_chunk)
            inst = rec["instance"]
            want = b"".join(("%s %d\n" % (inst, i)).encode() for i in range(STREAM_CHUNKS))
            want += ("end %s %d\n" % (inst, STREAM_CHUNKS)).encode()
            if data != want:
                raise Fail("bad-body", "stream content differs after %d chunks" % len(lines))
            c.served += 1
            if close:
                self.drop()
            rec.update(t1=round(time.time(), 3), ok=True)
            self.stats.success("stream", t0, time.time() - t0)
        except Fail as f:
            rec.update(t1=round(time.time(), 3), ok=False, kind=f.kind, detail=f.detail[:200])
            self.failure("stream", f, path, self.name_, t0, reused, rec.get("instance"))
            self.drop()
        self.stats.session(rec)
        return True

    def step_ws(self):
        if not self.stats.begin():
            return False
        rid = self.next_id()
        t0 = time.time()
        rec = {"type": "ws", "client": self.name_, "id": rid, "t0": round(t0, 3)}
        self.drop()  # a WebSocket takes its connection over: always a fresh one
        key = base64.b64encode(os.urandom(16)).decode()
        try:
            c = self.connection(t0 + self.opts.timeout)
            c.send(self.request("GET", "/ws?id=" + rid, extra=(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                "Sec-WebSocket-Version: 13\r\n" % key)))
            status, headers, _ = c.head(t0)
            rec["instance"] = headers.get("x-instance")
            if status != 101:
                data = c.body(headers, t0) if status >= 200 else b""
                raise Fail("status" if status >= 500 else "handshake",
                           "%d %s" % (status, data[:120].decode("latin-1", "replace").strip()), status)
            accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
            if headers.get("sec-websocket-accept") != accept:
                raise Fail("handshake", "bad Sec-WebSocket-Accept")
            for i in range(WS_MESSAGES):
                msg = ("%s %d" % (rid, i)).encode()
                c.deadline = time.time() + self.opts.timeout
                c.send(ws_frame(1, msg))
                op, got = ws_read(c, t0)
                if op != 1 or got != msg:
                    raise Fail("ws-mismatch", "message %d: sent %r, got opcode %d %r" % (i, msg, op, got[:80]))
                time.sleep(WS_INTERVAL)
            c.deadline = time.time() + self.opts.timeout
            c.send(ws_frame(8, b"\x03\xe8"))
            op, _ = ws_read(c, t0)
            if op != 8:
                raise Fail("ws-mismatch", "expected a close frame, got opcode %d" % op)
            rec.update(t1=round(time.time(), 3), ok=True)
            self.stats.success("ws", t0, time.time() - t0)
        except Fail as f:
            rec.update(t1=round(time.time(), 3), ok=False, kind=f.kind, detail=f.detail[:200])
            self.failure("ws", f, "/ws?id=" + rid, self.name_, t0, False, rec.get("instance"))
        self.drop()
        self.stats.session(rec)
        return True


def ws_frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode, 0x80 | n]) if n < 126 else bytes([0x80 | opcode, 0xFE]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read(c, started):
    try:
        b0, b1 = c.exact(2, started)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(c.exact(2, started), "big")
        elif n == 127:
            n = int.from_bytes(c.exact(8, started), "big")
        return b0 & 0x0F, c.exact(n, started)
    except Fail as f:
        if f.kind == "closed":
            raise Fail("truncated", "WebSocket closed early")
        raise


def percentile(hist, q):
    """In ms, from the 0.1 ms histogram."""
    total = sum(hist.values())
    if not total:
        return None
    want, seen = q * total, 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= want:
            return b / 10.0
    return max(hist) / 10.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-requests", type=int, default=2000000)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--think-ms", type=float, default=10.0)
    ap.add_argument("--fail-pause-ms", type=float, default=100.0)
    ap.add_argument("--progress", type=float, default=0, help="print counts every N seconds")
    ap.add_argument("--tag", default="", help="prefix of every request id (one per run phase)")
    for kind, n in (("plain", 4), ("post", 1), ("pipeline", 1), ("stream", 2), ("ws", 2)):
        ap.add_argument("--" + kind, type=int, default=n)
    opts = ap.parse_args()

    stats = Stats(opts.max_requests)
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    t_start = time.time()
    clients = [Client(kind, i, opts, stats, stop)
               for kind in ("plain", "post", "pipeline", "stream", "ws")
               for i in range(getattr(opts, kind))]
    for c in clients:
        c.start()
    next_progress = t_start + opts.progress
    while not stop.wait(0.2):
        now = time.time()
        if now - t_start > opts.seconds:
            stop.set()
        if opts.progress and now >= next_progress:
            next_progress += opts.progress
            with stats.lock:
                sys.stderr.write("load: %4.0f s: %d requests, %d failed\n" % (now - t_start, stats.started, stats.failed))
    # in flight: at most a stream or a session plus one timeout
    limit = time.time() + STREAM_CHUNKS * STREAM_MS / 1000.0 + WS_MESSAGES * WS_INTERVAL + 2 * opts.timeout
    for c in clients:
        c.join(max(0.1, limit - time.time()))
    hung = [c.name_ for c in clients if c.is_alive()]
    hist = stats.hist
    with stats.lock:
        out = {
            "started": t_start, "stopped": time.time(), "requests": stats.started, "ok": stats.ok,
            "failed": stats.failed, "by_client": stats.kinds, "failures": stats.failures,
            "sessions": stats.sessions, "hung_clients": hung,
            "latency_ms": {"p50": percentile(hist, 0.5), "p99": percentile(hist, 0.99),
                           "p999": percentile(hist, 0.999), "max": max(hist) / 10.0 if hist else None,
                           "over_1s": sum(n for b, n in hist.items() if b >= 10000),
                           "over_5s": sum(n for b, n in hist.items() if b >= 50000)},
            "slow": stats.slow,
            "samples": stats.samples,
            "per_second": {str(k): v for k, v in sorted(stats.per_second.items())},
        }
    tmp = opts.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, opts.out)
    sys.stderr.write("load: %d requests, %d failed\n" % (out["requests"], out["failed"]))


if __name__ == "__main__":
    main()
