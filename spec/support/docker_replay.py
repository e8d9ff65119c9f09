#!/usr/bin/env python3
"""Replays recorded Docker Engine API answers (spec/fixtures/docker) on a
unix socket, for the docker discovery plugin's specs. The scenario, per
event-stream connection:
  1st /events: a health_status event that makes the recorded container
     healthy, a malformed line, then the stream breaks (connection closed);
  2nd /events: the recorded kill and die events, then the stream stays open.
Containers listed after the first /events reconnect include the recorded
one; /_ping says Api-Version 1.41 and only /v1.41/ paths are answered.

--port P rewrites the container's address to 127.0.0.1:P (moongate admits
a container once a TCP connect to it succeeds, so specs listen there).
--scenario pause: the container is healthy from the start; the 1st /events
  stream sends pause, then (after 1 s) unpause, then stays open.
--scenario probe: the container is healthy from the start; /events stays
  open with nothing on it (the spec decides when its port listens).
--scenario flaky: the container is healthy from the start; the 1st /events
  stream sends a health_status event, and the two inspects after it fail
  with 500 (an engine busy with a scale event), then answer again.
--label K=V (repeatable) adds a label to the recorded container.
--network-ip IP with --port: the container's address (default 127.0.0.1)."""
import argparse
import json
import os
import threading
import time

from unix_http import CHUNKED_JSON, PING, chunk, read_head, request_target, send_json, serve

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "docker")
state = {"healthy": False, "events": 0, "lists": 0, "killed": False, "paused": False, "fail_inspects": 0}
args = None
lock = threading.Lock()


def load(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()


CONTAINER = json.loads(load("container.json"))
LISTED = json.loads(load("containers.json"))
EVENTS = [l for l in load("events.ndjson").splitlines() if l.strip()]
CID = CONTAINER["Id"]


def inspect():
    c = json.loads(json.dumps(CONTAINER))
    if state["healthy"]:
        c["State"]["Health"]["Status"] = "healthy"
    if state["killed"]:
        c["State"]["Running"] = False
        c["State"]["Status"] = "exited"
    if state["paused"]:
        c["State"]["Paused"] = True
        c["State"]["Status"] = "paused"
    if args.port:
        for n in c["NetworkSettings"]["Networks"].values():
            n["IPAddress"] = "127.0.0.1"
        c["Config"]["Labels"]["moongate.port"] = str(args.port)
    for kv in args.label or []:
        k, v = kv.split("=", 1)
        c["Config"]["Labels"][k] = v
    return c


def event(action):
    ev = {"status": action, "id": CID, "Type": "container", "Action": action,
          "Actor": {"ID": CID, "Attributes": {"name": "nostalgic_kalam"}}}
    return json.dumps(ev).encode() + b"\n"


def handle(conn):
    head, f = read_head(conn)
    if head is None:
        return
    path = request_target(head)
    if path == "/_ping":
        conn.sendall(PING)
    elif path.startswith("/v1.41/containers/json"):
        with lock:
            state["lists"] += 1
        send_json(conn, [] if state["killed"] else LISTED)
    elif path.startswith("/v1.41/containers/" + CID):
        with lock:
            failing = state["fail_inspects"] > 0
            state["fail_inspects"] -= 1 if failing else 0
        if failing:
            send_json(conn, {"message": "engine busy"}, "500 Internal Server Error")
        else:
            send_json(conn, inspect())
    elif path.startswith("/v1.41/containers/"):
        send_json(conn, {"message": "No such container"}, "404 Not Found")
    elif path.startswith("/v1.41/events"):
        with lock:
            state["events"] += 1
            n = state["events"]
        conn.sendall(CHUNKED_JSON)
        time.sleep(0.3)
        if args.scenario == "probe":
            time.sleep(30)
            conn.close()
            return
        elif args.scenario == "flaky":
            if n == 1:
                time.sleep(0.3)
                with lock:
                    state["fail_inspects"] = 2
                ev = {"status": "health_status: healthy", "id": CID, "Type": "container",
                      "Action": "health_status: healthy", "Actor": {"ID": CID}}
                chunk(conn, json.dumps(ev).encode() + b"\n")
            time.sleep(30)
            conn.close()
            return
        elif args.scenario == "pause":
            if n == 1:
                time.sleep(0.5)
                state["paused"] = True
                chunk(conn, event("pause"))
                time.sleep(1)
                state["paused"] = False
                chunk(conn, event("unpause"))
            time.sleep(30)
            conn.close()
            return
        elif n == 1:
            state["healthy"] = True
            ev = {"status": "health_status: healthy", "id": CID, "Type": "container",
                  "Action": "health_status: healthy", "Actor": {"ID": CID}}
            chunk(conn, json.dumps(ev).encode() + b"\n")
            time.sleep(0.3)
            chunk(conn, b"{this is not json\n")
            time.sleep(0.3)
            conn.close()  # the stream breaks: the plugin must re-list
            return
        time.sleep(0.5)
        state["killed"] = True
        for line in EVENTS:
            chunk(conn, line + b"\n")
        time.sleep(30)
    else:
        send_json(conn, {"message": "not found"}, "404 Not Found")
    conn.close()


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--port", type=int)
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--label", action="append")
    args = ap.parse_args()
    for kv in args.label or []:
        k, v = kv.split("=", 1)
        for entry in LISTED:
            entry.setdefault("Labels", {})[k] = v
    if args.scenario != "default":
        state["healthy"] = True
    serve(args.socket, handle)


if __name__ == "__main__":
    main()
