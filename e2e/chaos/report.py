"""Turns the load driver's result, the event log and the gateway's logs into
the chaos suite's verdict and the evidence for each failure.

What is allowed to break, and nothing else:
- a stream or WebSocket session on a replica that was docker-killed
  (SIGKILL) while it ran: no proxy can finish what a dead process had
  started (identified by the instance the backend named, X-Instance);
- a request whose answer had begun (truncated) or a POST answered 502,
  when the gateway's access log shows its last try went to a replica
  killed while the request ran: a non-idempotent request that reached a
  process that then died cannot be replayed safely.
Every other failure counts: any other 5xx, reset, early close, timeout,
truncation or wrong answer."""
import datetime
import json
import re

KILL_SLACK = 0.5     # s around a kill: clocks are the same host's, this covers scheduling


def parse_error_log(text):
    """[(epoch, line)] from the gateway's error log."""
    out = []
    for line in text.split("\n"):
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z ", line)
        if m:
            t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
            out.append((t, line))
    return out


def access_index(text, ids):
    """The access-log entries (JSON lines) of the given requests, by path
    and query as the load driver sent them (streams and WebSocket sessions
    carry their id in the query)."""
    out = {}
    pat = re.compile(r'"path":\s*"([^"]*)","query":\s*"([^"]*)"')
    for line in text.split("\n"):
        m = pat.search(line)
        if not m:
            continue
        key = m.group(1) + ("?" + m.group(2) if m.group(2) else "")
        if key in ids:
            try:
                out.setdefault(key, []).append(json.loads(line))
            except ValueError:
                pass
    return out


def count_5xx(text):
    return len(re.findall(r'"status":\s*5\d\d', text))


class Verdict:
    def __init__(self, load, events, access_log, error_log, names):
        self.load = load
        self.events = events
        self.errors = parse_error_log(error_log)
        self.kills = [e for e in events if e["event"] == "kill" and e.get("ok")]
        self.pauses = [e for e in events if e["event"] == "pause" and e.get("ok")]
        ids = set()
        for f in load["failures"]:
            ids.add(f["id"])
        ids.update(load.get("samples", {}))
        self.access = access_index(access_log, ids)
        self.names = names
        self.check_names()
        self.gateway_5xx = count_5xx(access_log)
        self.classify()

    def check_names(self):
        """The access log names the container that answered: checked on a
        sample of requests, against the instance the backend itself named."""
        self.names_checked, self.names_wrong = 0, []
        for path, instance in self.load.get("samples", {}).items():
            entries = self.access.get(path)
            want = self.names.get(instance)
            if not entries or not want:
                continue
            got = (entries[-1].get("upstream") or "").split(",")[-1].split("@")[0]
            self.names_checked += 1
            if got != want:
                self.names_wrong.append({"path": path, "instance": instance, "container": want,
                                         "access_log": entries[-1].get("upstream")})

    @staticmethod
    def during(k, t0, t1):
        """The SIGKILL lands somewhere between `docker kill` starting and
        returning (it took up to 0.8 s under load): the overlap counts."""
        return k["t0"] - KILL_SLACK <= t1 and t0 - KILL_SLACK <= k["killed"]

    def killed_instance(self, instance, t0, t1):
        for k in self.kills:
            if k["instance"] == instance and self.during(k, t0, t1):
                return k
        return None

    def killed_container(self, name, t0, t1):
        for k in self.kills:
            if k["container"] == name and self.during(k, t0, t1):
                return k
        return None

    def access_entry(self, f):
        entries = self.access.get(f["id"]) or []
        return entries[-1] if entries else None

    def near(self, t):
        """The chaos event under way at t or ended at most 5 s before, and the
        reload at most 3 s before (either may be None)."""
        ev = rl = None
        for e in self.events:
            if e["t0"] > t:
                continue
            if e["event"].startswith("reload"):
                if t <= e["t1"] + 3 and (rl is None or e["t0"] > rl["t0"]):
                    rl = e
            elif t <= e["t1"] + 5 and (ev is None or e["t0"] > ev["t0"]):
                ev = e
        return ev, rl

    @staticmethod
    def label(e):
        if e["event"] == "scale":
            a, _, b = e["detail"].partition(" -> ")
            return "scale down" if int(b) < int(a) else "scale up"
        return {"reload-broken": "broken reload"}.get(e["event"], e["event"])

    def by_event(self, failures):
        """How many failures came during or just after each kind of event."""
        out = {}
        for f in failures:
            ev, rl = self.near(f["t"])
            key = self.label(ev) if ev else self.label(rl) if rl else "no event nearby"
            out[key] = out.get(key, 0) + 1
        return out

    def error_lines(self, t0, t1, limit=4):
        return [l for t, l in self.errors if t0 - 0.1 <= t <= t1 + 0.1][:limit]

    def classify(self):
        self.allowed, self.counted = [], []
        for f in self.load["failures"]:
            t1 = f["t"] + f["duration"]
            why = None
            if f["type"] in ("stream", "ws") and f.get("instance"):
                k = self.killed_instance(f["instance"], f["t"], t1)
                if k:
                    why = "its replica %s was docker-killed %.2f s after it began" % (k["container"], k["killed"] - f["t"])
            if why is None:
                a = self.access_entry(f)
                last = (a or {}).get("upstream") or ""
                name = last.split(",")[-1].split("@")[0].strip() if last else ""
                k = name and self.killed_container(name, f["t"], t1)
                post_502 = f["type"] == "post" and f.get("status") == 502
                if k and (f["kind"] == "truncated" or post_502):
                    why = "its last try went to %s, docker-killed %.2f s after it began" % (name, k["killed"] - f["t"])
            (self.allowed if why else self.counted).append(dict(f, allowed_because=why) if why else f)
        s = self.load["sessions"]
        self.sessions = {}
        for kind in ("stream", "ws"):
            mine = [x for x in s if x["type"] == kind]
            broken = [x for x in mine if not x.get("ok")]
            on_killed = [x for x in broken if x.get("instance")
                         and self.killed_instance(x["instance"], x["t0"], x["t1"])]
            self.sessions[kind] = {"total": len(mine), "completed": len(mine) - len(broken),
                                   "broken_on_killed": len(on_killed),
                                   "broken_elsewhere": len(broken) - len(on_killed)}
        # fresh requests sent FROZEN_GRACE into a pause that went to the frozen replica
        self.frozen = []
        self.frozen_probe_failures = []
        for p in self.pauses:
            pr = p.get("probes") or {}
            self.frozen_probe_failures += pr.get("failed", [])
            if pr.get("answered_by_frozen"):
                self.frozen.append({"container": p["container"], "requests": pr["answered_by_frozen"],
                                    "of": pr["sent"], "paused_at": p["frozen"]})

    def by_kind(self, failures):
        out = {}
        for f in failures:
            key = "%s %s%s" % (f["type"], f["kind"], " %s" % f["status"] if f.get("status") else "")
            out[key] = out.get(key, 0) + 1
        return out

    def evidence(self, f, t_base):
        """One failure as a few lines: what, when, where it went, what the
        gateway logged around it, and the event before it."""
        t1 = f["t"] + f["duration"]
        a = self.access_entry(f)
        ev, rl = self.near(f["t"])
        lines = ["%+8.3f s  %s %s %s (%s, %.3f s, %s connection)%s" % (
            f["t"] - t_base, f["type"], f["id"], f["kind"], f["detail"], f["duration"],
            "reused" if f.get("reused") else "fresh", " on " + f["instance"] if f.get("instance") else "")]
        for e in (ev, rl):
            if e:
                lines.append("           %s %s %s (began %.2f s before, took %.2f s)" % (
                    "during" if f["t"] <= e["t1"] else "after", e["event"], e.get("detail", ""),
                    f["t"] - e["t0"], e["t1"] - e["t0"]))
        if a:
            lines.append("           gateway: status %s, upstream %s, %s tries, %.3f s" % (
                a.get("status"), a.get("upstream"), a.get("tries"), a.get("duration") or 0))
        else:
            lines.append("           gateway: no access-log line for it")
        for l in self.error_lines(f["t"], t1):
            lines.append("           log: " + l[:220])
        return "\n".join(lines)
