"""The chaos events, run one after the other against the backend replicas:
compose scale events, docker kill, docker pause/unpause, docker restart and
compose up -d --force-recreate. Each is logged with its start and end time
and the containers it touched, so failures can be put next to the event
that preceded them and broken streams next to the kill that broke them."""
import http.client
import random
import threading
import time

from stack import run

MIN_SCALE, MAX_SCALE = 1, 6
FROZEN_GRACE = 1.0   # s after `docker pause` returned; then fresh requests must avoid the replica
FROZEN_PROBES = 10   # concurrent fresh requests sent then


def probe(port, path, out):
    """One GET on a fresh connection; appends (instance or None, error or None)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=8)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        out.append((r.getheader("X-Instance"), None if r.status == 200 else "status %d" % r.status))
    except (OSError, http.client.HTTPException) as e:
        out.append((None, str(e)))


class Events:
    def __init__(self, stack, log, seed):
        self.stack = stack
        self.log = log  # callable(record)
        self.rng = random.Random(seed)
        self.done = {}
        self.extra_scales = 0

    def _record(self, kind, t0, ok, detail, **more):
        self.done[kind] = self.done.get(kind, 0) + 1
        rec = {"t0": t0, "t1": time.time(), "event": kind, "ok": ok, "detail": detail}
        rec.update(more)
        self.log(rec)

    def _compose(self, kind, detail, *args):
        t0 = time.time()
        before = {c["id"]: c["name"] for c in self.stack.containers()}
        rc, out = self.stack.compose(*args)
        after = {c["id"]: c["name"] for c in self.stack.containers()}
        if rc:
            detail += ": " + out.strip()[-300:]
        self._record(kind, t0, rc == 0, detail, removed=sorted(before[i] for i in before if i not in after),
                     added=sorted(after[i] for i in after if i not in before))

    def scale(self, n=None, at_least=MIN_SCALE):
        cur = self.stack.scale
        if n is None:
            n = self.rng.choice([k for k in range(max(MIN_SCALE, at_least), MAX_SCALE + 1) if k != cur])
        self._compose("scale", "%d -> %d" % (cur, n), "up", "-d", "--scale", "backend=%d" % n)
        self.stack.scale = n

    def recreate(self):
        self._compose("recreate", "up -d --force-recreate (%d replicas)" % self.stack.scale,
                      "up", "-d", "--force-recreate", "--scale", "backend=%d" % self.stack.scale, "backend")

    def _victim(self):
        live = self.stack.running()
        # never the last one: a gateway cannot answer without any backend
        return self.rng.choice(live) if len(live) >= 2 else None

    def kill(self, victim):
        """SIGKILL, then, like a supervisor restarting a crashed process, a
        start 1-2 s later (docker kill counts as a manual stop: no restart
        policy brings the container back, and a later scale-down could keep
        the dead one and stop the live ones)."""
        t0 = time.time()
        rc, out = run(["docker", "kill", victim["id"]], timeout=30)
        killed = time.time()
        time.sleep(self.rng.uniform(1.0, 2.0))
        rc2, out2 = run(["docker", "start", victim["id"]], timeout=30)
        self._record("kill", t0, rc == 0 and rc2 == 0, victim["name"], container=victim["name"],
                     instance=victim["instance"], killed=killed)

    def pause(self, victim):
        """docker pause for 1.5-3 s. FROZEN_GRACE into it, FROZEN_PROBES fresh
        requests go out at once: the load's clients are closed loops, and
        once each is stuck on the frozen replica none starts a new request,
        so the probes are what shows whether new traffic still goes there."""
        t0 = time.time()
        rc, out = run(["docker", "pause", victim["id"]], timeout=30)
        frozen = time.time()
        hold = self.rng.uniform(1.5, 3.0)
        time.sleep(FROZEN_GRACE)
        answers = []
        probes = [threading.Thread(target=probe, args=(self.stack.port, "/frozen-probe/%d" % i, answers))
                  for i in range(FROZEN_PROBES)]
        for p in probes:
            p.start()
        time.sleep(max(0.0, frozen + hold - time.time()))
        thawed = time.time()
        rc2, out2 = run(["docker", "unpause", victim["id"]], timeout=30)
        for p in probes:
            p.join(10)
        self._record("pause", t0, rc == 0 and rc2 == 0, "%s for %.1f s" % (victim["name"], hold),
                     container=victim["name"], instance=victim["instance"], frozen=frozen,
                     thawed=time.time(), thaw_started=thawed,
                     probes={"sent": FROZEN_PROBES, "answered_by_frozen": sum(1 for i, _ in answers if i == victim["instance"]),
                             "failed": [e for _, e in answers if e] + ["no answer"] * (FROZEN_PROBES - len(answers))})

    def restart(self, victim):
        t0 = time.time()
        rc, out = run(["docker", "restart", victim["id"]], timeout=60)
        self._record("restart", t0, rc == 0, victim["name"], container=victim["name"],
                     instance=victim["instance"])

    def run(self, plan, until, stop):
        """Runs the plan (a list of event names) spread until `until`."""
        plan = list(plan)
        while plan and not stop.is_set():
            slot = time.time() + max(0.0, (until - time.time()) / len(plan))
            kind = plan.pop(0)
            if kind in ("scale", "recreate"):
                getattr(self, kind)()
            else:
                victim = self._victim()
                if victim is None:
                    # too few replicas left: bring the next scale event forward
                    if "scale" in plan:
                        plan.remove("scale")
                    else:
                        self.extra_scales += 1
                    self.scale(at_least=3)
                    victim = self._victim()
                if victim is not None:
                    getattr(self, kind)(victim)
            while time.time() < slot and not stop.is_set():
                time.sleep(0.05)


def plan(counts, seed):
    """A shuffled plan with counts = {"scale": 50, "kill": 20, ...}."""
    out = [k for k, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(out)
    return out
