"""What the spec servers on unix sockets share (unix_stream.py and the
Engine API replays): reading a request head, JSON and chunked answers,
Docker's /_ping answer, and the accept loop. Imported by those scripts,
which run from this folder."""
import json
import os
import socket
import threading

# Docker's answer to /_ping, which every Engine API client asks first.
PING = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
# The head of a chunked JSON stream (Docker's /events); chunk() sends its parts.
CHUNKED_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def read_head(conn):
    """The request head (bytes, up to the empty line) and the file to read
    the body from, or (None, None) with conn closed when the peer left first."""
    f = conn.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            conn.close()
            return None, None
        head += line
    return head, f


def request_target(head):
    """The request target of a head from read_head, as text."""
    return head.split(b" ")[1].decode()


def send_json(conn, obj, status="200 OK", headers=b""):
    """A JSON answer with Content-Length; obj None sends an empty body.
    headers: more header lines, each ending in CRLF, after Content-Type."""
    body = b"" if obj is None else json.dumps(obj).encode()
    conn.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
                 % (status.encode(), headers, len(body), body))


def chunk(conn, data):
    """One chunk of a chunked answer."""
    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def serve(path, handle):
    """Listens on the unix socket path and runs handle(conn) in a thread per
    connection, forever. The socket is bound and listening under another
    name first: once path exists, a connect succeeds (specs wait for it)."""
    for name in (path, path + ".tmp"):
        if os.path.exists(name):
            os.unlink(name)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path + ".tmp")
    srv.listen(16)
    os.rename(path + ".tmp", path)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
