#!/usr/bin/env python3
"""A Docker Engine API on a unix socket for the autoscale actuators' specs,
seeded with answers recorded from a real engine (spec/fixtures/autoscale):
one Compose replica (container.json, containers.json) and one Swarm service
(swarm_service.json). It keeps what create/start/stop/delete and service
updates do, checks the service version like the engine, and lists the
calls it got on GET /__calls (method, path, body, and the body's text)."""
import argparse
import copy
import json
import os
import threading
from urllib.parse import urlsplit

from unix_http import PING, read_head, send_json, serve

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "autoscale")


def load(name):
    with open(os.path.join(FIX, name)) as f:
        return json.load(f)


TEMPLATE = load("container.json")
LISTED = load("containers.json")[0]
SERVICE = load("swarm_service.json")
lock = threading.Lock()
calls = []
# id -> (listed entry, inspected container)
containers = {}
first = copy.deepcopy(LISTED)
first["State"] = "running"
containers[TEMPLATE["Id"]] = (first, TEMPLATE)
service = copy.deepcopy(SERVICE)
made = [0]


def find(ref):
    for cid, (entry, _) in containers.items():
        if cid == ref or ref in [n.lstrip("/") for n in entry["Names"]]:
            return cid
    return None


def route(method, path, query, body):
    if path == "/_ping":
        return "200 OK", None
    if path == "/__calls":
        return "200 OK", calls
    if not path.startswith("/v1.41/"):
        return "404 Not Found", {"message": "only /v1.41 here"}
    path = path[len("/v1.41"):]
    parts = path.strip("/").split("/")
    if method == "GET" and path == "/containers/json":
        return "200 OK", [e for e, _ in containers.values()]
    if method == "POST" and path == "/containers/create":
        made[0] += 1
        cid = "%064x" % (0xabc000 + made[0])
        name = query.get("name", "c%d" % made[0])
        entry = copy.deepcopy(LISTED)
        entry.update({"Id": cid, "Names": ["/" + name], "Labels": body.get("Labels", {}), "State": "created"})
        inspected = copy.deepcopy(TEMPLATE)
        inspected.update({"Id": cid, "Name": "/" + name})
        containers[cid] = (entry, inspected)
        return "201 Created", {"Id": cid, "Warnings": []}
    if parts[0] == "containers" and len(parts) >= 2:
        cid = find(parts[1])
        if not cid:
            return "404 Not Found", {"message": "No such container: " + parts[1]}
        entry, inspected = containers[cid]
        if method == "GET" and parts[2:] == ["json"]:
            inspected["State"]["Running"] = entry["State"] == "running"
            return "200 OK", inspected
        if method == "POST" and parts[2:] == ["start"]:
            if entry["State"] == "running":
                return "304 Not Modified", None
            entry["State"] = "running"
            return "204 No Content", None
        if method == "POST" and parts[2:] == ["stop"]:
            entry["State"] = "exited"
            return "204 No Content", None
        if method == "DELETE" and len(parts) == 2:
            del containers[cid]
            return "204 No Content", None
    if parts[0] == "services" and len(parts) >= 2:
        if parts[1] not in (service["ID"], service["Spec"]["Name"]):
            return "404 Not Found", {"message": "service %s not found" % parts[1]}
        if method == "GET" and len(parts) == 2:
            return "200 OK", service
        if method == "POST" and parts[2:] == ["update"]:
            if int(query.get("version", "0")) != service["Version"]["Index"]:
                return "500 Internal Server Error", {"message": "rpc error: code = Unknown desc = update out of sequence"}
            service["Spec"] = body
            service["Version"]["Index"] += 1
            return "200 OK", {"Warnings": None}
        if method == "POST" and parts[2:] == ["__bump"]:  # someone else updated it
            service["Version"]["Index"] += 1
            return "200 OK", {}
    return "404 Not Found", {"message": "not recorded: %s %s" % (method, path)}


def handle(conn):
    head, f = read_head(conn)
    if head is None:
        return
    lines = head.decode().split("\r\n")
    method, target = lines[0].split(" ")[:2]
    length = 0
    for l in lines[1:]:
        if l.lower().startswith("content-length:"):
            length = int(l.split(":", 1)[1])
    raw = f.read(length) if length else b""
    body = json.loads(raw) if raw else {}
    u = urlsplit(target)
    query = dict(p.split("=", 1) for p in u.query.split("&") if "=" in p)
    with lock:
        if u.path not in ("/__calls", "/_ping"):
            calls.append({"method": method, "path": u.path, "query": query, "body": body,
                          "raw": raw.decode()})
        status, obj = route(method, u.path, query, body)
    if u.path == "/_ping":
        conn.sendall(PING)
    else:
        send_json(conn, obj, status)
    conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    args = ap.parse_args()
    serve(args.socket, handle)

if __name__ == "__main__":
    main()
