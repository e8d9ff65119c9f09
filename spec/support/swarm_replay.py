#!/usr/bin/env python3
"""Replays Engine API answers recorded from a real single-node Swarm manager
(spec/fixtures/swarm) on a unix socket, for plugins/swarm.lua's specs.

The recording has one node; for multi-node cases the replay adds a second
one, "vm2" (a copy of the recorded node with its own ID, a worker), and
runs recweb's slot 2 (and the slot 3 a scale-up adds) there. Only
/v1.41/ paths are answered; /tasks honours the service and node filters.

Timeline, from the moment the 1st /events stream opens (t):
  t+0.5  service update for recweb (2 -> 3 replicas): slot 3 appears pending
         on vm2 (tasks_scaling.json), and turns running at t+1.0 with no
         event (Swarm has no task events);
  t+2.0  node update for vm2, which is now down;
  t+3.0  the stream breaks (the plugin must reconnect and re-list).
From the 2nd /events stream (u):
  u+0.5  node update for vm2, ready again;
  u+1.5  service update for recweb: slot 2's desired state turns remove while
         it still runs (tasks_removing.json), as Swarm does before stopping it.
--worker: /info says this node is a worker, and /services, /tasks, /nodes
answer 503 as a worker's engine does."""
import argparse
import copy
import json
import os
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

import unix_http
from unix_http import CHUNKED_JSON, PING, read_head, request_target, serve

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "swarm")
NODE2 = "vm2node0000000000000000000"
state = {"phase": 0, "events": 0, "node2_down": False, "slot3_running": False, "slot2_remove": False}
lock = threading.Lock()
args = None


def load(name):
    with open(os.path.join(FIX, name)) as f:
        return json.load(f)


INFO = load("info.json")
NODES = load("nodes.json")
SERVICES = load("services.json")
TASKS = load("tasks.json")
SCALING = load("tasks_scaling.json")
REMOVING = load("tasks_removing.json")
WEB = next(s["ID"] for s in SERVICES if s["Spec"]["Name"] == "recweb")


def nodes():
    n1 = NODES[0]
    n2 = copy.deepcopy(n1)
    n2["ID"] = NODE2
    n2["Description"]["Hostname"] = "vm2"
    n2["Spec"]["Role"] = "worker"
    n2.pop("ManagerStatus", None)
    n2["Status"] = {"State": "down" if state["node2_down"] else "ready", "Addr": "127.0.0.2"}
    return [n1, n2]


def tasks():
    out = copy.deepcopy(TASKS)
    if state["phase"] >= 1:
        slot3 = copy.deepcopy(next(t for t in SCALING if t["Slot"] == 3))
        if state["slot3_running"]:
            slot3["Status"]["State"] = "running"
            slot3["Status"]["Message"] = "started"
            slot3["Status"]["ContainerStatus"] = {"ContainerID": "3" * 64, "PID": 4242, "ExitCode": 0}
        out.append(slot3)
    removing = {t["ID"]: t for t in REMOVING}
    for t in out:
        if t["ServiceID"] == WEB and t["Slot"] in (2, 3):
            t["NodeID"] = NODE2
        if state["slot2_remove"] and t["ServiceID"] == WEB and t["Slot"] == 2:
            t["DesiredState"] = removing[t["ID"]]["DesiredState"]
    return out


def send_json(conn, obj, status="200 OK"):
    unix_http.send_json(conn, obj, status, b"Api-Version: 1.41\r\n")


def chunk(conn, obj):
    unix_http.chunk(conn, json.dumps(obj).encode() + b"\n")


def event(kind, actor, name):
    return {"Type": kind, "Action": "update", "Actor": {"ID": actor, "Attributes": {"name": name}},
            "scope": "swarm", "time": int(time.time()), "timeNano": time.time_ns()}


def filtered(items, query):
    f = parse_qs(query).get("filters")
    if not f:
        return items
    filters = json.loads(unquote(f[0]))
    for key, field in (("service", "ServiceID"), ("node", "NodeID")):
        if key in filters:
            items = [t for t in items if t[field] in filters[key]]
    return items


def stream_events(conn):
    with lock:
        state["events"] += 1
        n = state["events"]
    conn.sendall(CHUNKED_JSON)
    if n == 1:
        time.sleep(0.5)
        state["phase"] = 1
        chunk(conn, event("service", WEB, "recweb"))
        time.sleep(0.5)
        state["slot3_running"] = True
        time.sleep(1.0)
        state["node2_down"] = True
        chunk(conn, event("node", NODE2, "vm2"))
        time.sleep(1.0)
        conn.close()
        return
    time.sleep(0.5)
    state["node2_down"] = False
    chunk(conn, event("node", NODE2, "vm2"))
    time.sleep(1.0)
    state["slot2_remove"] = True
    chunk(conn, event("service", WEB, "recweb"))
    time.sleep(30)
    conn.close()


def handle(conn):
    head, f = read_head(conn)
    if head is None:
        return
    u = urlsplit(request_target(head))
    path = u.path
    worker_only = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state."
    if path == "/_ping":
        conn.sendall(PING)
    elif path == "/v1.41/info":
        info = copy.deepcopy(INFO)
        if args.worker:
            info["Swarm"]["ControlAvailable"] = False
        send_json(conn, info)
    elif args.worker and path.split("/")[2] in ("nodes", "services", "tasks"):
        send_json(conn, {"message": worker_only}, "503 Service Unavailable")
    elif path == "/v1.41/nodes":
        send_json(conn, nodes())
    elif path.startswith("/v1.41/nodes/"):
        nid = path.split("/")[3]
        match = [n for n in nodes() if n["ID"] == nid]
        send_json(conn, match[0]) if match else send_json(conn, {"message": "node not found"}, "404 Not Found")
    elif path == "/v1.41/services":
        send_json(conn, SERVICES)
    elif path.startswith("/v1.41/services/"):
        sid = path.split("/")[3]
        match = [s for s in SERVICES if s["ID"] == sid]
        send_json(conn, match[0]) if match else send_json(conn, {"message": "service not found"}, "404 Not Found")
    elif path == "/v1.41/tasks":
        send_json(conn, filtered(tasks(), u.query))
    elif path == "/v1.41/events":
        stream_events(conn)
        return
    else:
        send_json(conn, {"message": "page not found"}, "404 Not Found")
    conn.close()


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    serve(args.socket, handle)


if __name__ == "__main__":
    main()
