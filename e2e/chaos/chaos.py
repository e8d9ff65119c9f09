#!/usr/bin/env python3
"""The chaos suite (make chaos, make chaos-short, make soak): the gateway in
a container in front of backend replicas on the real Docker engine, under
continuous load, through scale events, docker kill, pause/unpause, restart,
up -d --force-recreate and config/plugin reloads (some broken).

    chaos.py --profile full|short|soak [--minutes M] --project NAME
             [--gateway-image IMG] [--backend-image IMG] [--seed N]

It prints the counts and the evidence for every failure, writes
build/chaos/NAME/summary.json (with the pass/fail criteria, which
e2e/chaos/run.sh and e2e/chaos_test.sh turn into ok/FAIL lines), and exits
0 only when every criterion holds. See docs/reliability.md."""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import events as chaos_events  # noqa: E402
import reloads as chaos_reloads  # noqa: E402
import report  # noqa: E402
from stack import ROOT, Stack, run  # noqa: E402

PROFILES = {
    # the counts of issue 8
    "full": {"events": {"scale": 50, "kill": 20, "pause": 10, "restart": 10, "recreate": 3},
             "reloads": 100, "window": 240, "warm": 10},
    # make e2e's share: a minute
    "short": {"events": {"scale": 8, "kill": 3, "pause": 2, "restart": 2, "recreate": 1},
              "reloads": 15, "window": 40, "warm": 5},
    # make soak: per minute of --minutes; RSS and fds sampled every minute
    "soak": {"events": {"scale": 3}, "reloads": 4, "warm": 10},
}
SOAK_RSS_GROWTH = 0.05     # of the mean, over the second half (at least SOAK_RSS_GROWTH_MIN)
SOAK_RSS_GROWTH_MIN = 1 << 20
SOAK_FD_GROWTH = 3         # fds not counting established sockets, over the second half
BASE_REPLICAS = 2
RSS_SLACK = 0.20       # see docs/reliability.md: allocator and Lua GC high-water marks
RSS_SLACK_MIN = 2 << 20
FD_SLACK = 2           # a Docker API call in progress at the reading
MiB = 1 << 20


def say(*parts):
    print(*parts, flush=True)


class Run:
    def __init__(self, opts):
        self.opts = opts
        self.out_dir = os.path.join(ROOT, "build", "chaos", opts.project)
        self.conf_dir = os.path.join(self.out_dir, "conf")
        os.makedirs(self.conf_dir, exist_ok=True)
        for d in (os.path.join(ROOT, "build"), os.path.join(ROOT, "build", "chaos"), self.out_dir):
            os.chmod(d, 0o755)
        self.stack = Stack(opts.project, self.conf_dir, opts.gateway_image, opts.backend_image)
        self.log_lock = threading.Lock()
        self.event_log = []
        # the soak keeps no access log: 30 minutes of it would be gigabytes
        self.reloader = chaos_reloads.Reloader(self.conf_dir, self.stack, self.record,
                                               access_log=opts.profile != "soak")
        self.criteria = []
        self.snapshot0 = None
        self.load_proc = None
        self.rested = False

    def record(self, rec):
        with self.log_lock:
            self.event_log.append(rec)

    def check(self, ok, desc):
        self.criteria.append({"ok": bool(ok), "desc": " ".join(str(desc).split())})

    # --- phases ------------------------------------------------------------

    def load(self, seconds, out, tag, progress=0):
        o = self.opts
        args = [sys.executable, os.path.join(ROOT, "e2e", "chaos", "load.py"), "--port", str(self.stack.port),
                "--seconds", str(seconds), "--out", out, "--max-requests", str(o.max_requests),
                "--timeout", str(o.timeout), "--think-ms", str(o.think_ms), "--tag", tag]
        if progress:
            args += ["--progress", str(progress)]
        self.load_proc = subprocess.Popen(args)
        return self.load_proc

    def stop_load(self, proc, out):
        proc.send_signal(signal.SIGUSR1)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with open(out) as f:
            return json.load(f)

    def start(self):
        self.reloader.prepare()
        self.stack.up(BASE_REPLICAS)
        t0 = time.time()
        while time.time() - t0 < 60:
            if self.reloader.probe() == ("0", "0"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("the gateway did not answer through a backend within 60 s")
        self.reloader.reset()

    def warm_up(self):
        """All kinds of traffic, a few reloads and a scale up and down, so the
        baseline is the gateway's steady state, not its first allocation."""
        out = os.path.join(self.out_dir, "warmup.json")
        proc = self.load(self.profile["warm"] + 5, out, "w")
        ev = chaos_events.Events(self.stack, lambda r: None, 0)
        ev.scale(BASE_REPLICAS + 1)
        for i in range(4):
            self.reloader.good(i)
        ev.scale(BASE_REPLICAS)
        time.sleep(self.profile["warm"])
        warm = self.stop_load(proc, out)
        rss, fds, waited, rested = self.stack.at_rest()
        if not rested:
            raise RuntimeError("the gateway did not come to rest within 40 s after the warm-up")
        self.event_log = []
        self.reloader.reset()
        self.snapshot0 = self.snapshot_version()
        say("warm-up: %d requests, %d failed; at rest after %.0f s: RSS %.1f MiB, %d fds"
            % (warm["requests"], warm["failed"], waited, rss / MiB, fds))
        return rss, fds

    def chaos(self):
        p = self.profile
        window = p["window"]
        out = os.path.join(self.out_dir, "load.json")
        t_start = time.time()
        until = t_start + window
        proc = self.load(window + 120, out, "m")
        stop = threading.Event()
        ev = chaos_events.Events(self.stack, self.record, self.opts.seed)
        plan = chaos_events.plan(p["events"], self.opts.seed)
        threads = [threading.Thread(target=ev.run, args=(plan, until, stop), daemon=True),
                   threading.Thread(target=self.reloader.run, args=(p["reloads"], 5, until, stop), daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(window + 300)
        if any(t.is_alive() for t in threads):
            stop.set()
            say("chaos: events or reloads still running 300 s past the window; stopping them")
        time.sleep(2)
        result = self.stop_load(proc, out)
        return t_start, ev, result

    def soak(self):
        """SOAK minutes of mixed traffic with scale events and reloads; RSS and
        fds every minute."""
        p, minutes = self.profile, self.opts.minutes
        window = minutes * 60
        out = os.path.join(self.out_dir, "load.json")
        t_start = time.time()
        until = t_start + window
        proc = self.load(window, out, "s", progress=60)
        stop = threading.Event()
        ev = chaos_events.Events(self.stack, self.record, self.opts.seed)
        plan = chaos_events.plan({k: n * minutes for k, n in p["events"].items()}, self.opts.seed)
        threads = [threading.Thread(target=ev.run, args=(plan, until, stop), daemon=True),
                   threading.Thread(target=self.reloader.run, args=(p["reloads"] * minutes, 5, until, stop),
                                    daemon=True)]
        for t in threads:
            t.start()
        samples = []
        for minute in range(1, minutes + 1):
            while time.time() < t_start + minute * 60:
                time.sleep(0.5)
            try:
                rss, fds, est = self.stack.proc()
                conns = self.stack.metric("moongate_open_connections")
            except (RuntimeError, OSError) as e:
                say("soak: minute %3d: no reading, the gateway is not running (%s)" % (minute, str(e).strip()[:80]))
                continue
            samples.append((minute, rss, fds, est, time.time()))
            say("soak: minute %3d: RSS %6.2f MiB, open fds %3d (%d of them established TCP; %d client connections), "
                "%d replicas" % (minute, rss / MiB, fds, est, conns or 0, self.stack.scale))
        stop.set()
        for t in threads:
            t.join(120)
        result = self.stop_load(proc, out)
        return t_start, ev, result, samples

    def soak_verdict(self, t_start, ev, load, samples, before, after):
        def growth(points):
            """Least-squares slope over the points, times their span."""
            n = len(points)
            if n < 2:
                return 0.0
            mx = sum(x for x, _ in points) / n
            my = sum(y for _, y in points) / n
            sxx = sum((x - mx) ** 2 for x, _ in points)
            slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
            return slope * (points[-1][0] - points[0][0])
        # the second half, and only what the last gateway process lived through
        last_death = max([d["t"] for d in self.stack.deaths] or [0])
        half = [x for x in samples if x[0] > self.opts.minutes / 2.0 and x[4] > last_death]
        rss_pts = [(m, rss) for m, rss, _, _, _ in half]
        fd_pts = [(m, fds - est) for m, _, fds, est, _ in half]
        rss_g, fd_g = growth(rss_pts), growth(fd_pts)
        mean_rss = sum(y for _, y in rss_pts) / max(1, len(rss_pts))
        rss_lim = max(SOAK_RSS_GROWTH_MIN, mean_rss * SOAK_RSS_GROWTH)
        r = self.reloader.results
        say("")
        say("soak (seed %d): %d minutes, %s" % (self.opts.seed, len(samples), self.versions()))
        say("requests: %d (%s); failed %d" % (load["requests"], ", ".join(
            "%s %d" % (k, v_["ok"] + v_["failed"]) for k, v_ in sorted(load["by_client"].items())), load["failed"]))
        say("events: %s; reloads: %d good (%d applied), %d broken (%d rejected)" % (
            ", ".join("%s %d" % (k, n) for k, n in sorted(ev.done.items())), r["good"], r["applied"],
            r["broken"], r["rejected"]))
        say("second half (%d samples): RSS grew %+.2f MiB (limit %.2f), fds other than established sockets %+.1f (limit %d)"
            % (len(half), rss_g / MiB, rss_lim / MiB, fd_g, SOAK_FD_GROWTH))
        rss_limit = before[0] + max(RSS_SLACK_MIN, int(before[0] * RSS_SLACK))
        fd_limit = before[1] + FD_SLACK
        say("gateway at rest: RSS %.1f MiB -> %.1f MiB (limit %.1f), open fds %d -> %d (limit %d); "
            "%s snapshots made meanwhile (reloads and membership changes)" % (
                before[0] / MiB, after[0] / MiB, rss_limit / MiB, before[1], after[1], fd_limit, self.snapshots()))
        with open(os.path.join(self.out_dir, "events.json"), "w") as f:
            json.dump(self.event_log, f, indent=0)
        self.timeline(load, t_start)
        self.check_deaths(t_start)
        self.check(len(half) >= 3, "the soak has a trend to fit: %d readings in its second half from one gateway process"
                   % len(half))
        self.check(rss_g <= rss_lim, "RSS does not grow over the second half (%+.2f MiB)" % (rss_g / MiB))
        self.check(fd_g <= SOAK_FD_GROWTH, "open fds do not grow over the second half (%+.1f)" % fd_g)
        self.check_rest(before, after, rss_limit, fd_limit)
        with open(os.path.join(self.out_dir, "summary.json"), "w") as f:
            json.dump({"profile": "soak", "seed": self.opts.seed, "versions": self.versions(),
                       "requests": load["requests"], "failed": load["failed"], "events": ev.done, "reloads": r,
                       "samples": [list(x[:4]) for x in samples], "rss_growth": rss_g, "fd_growth": fd_g,
                       "rss": [before[0], after[0], rss_limit], "fds": [before[1], after[1], fd_limit],
                       "criteria": self.criteria}, f, indent=1)

    def settle(self):
        """Back to the baseline's replica count, load stopped; then at rest."""
        self.stack.compose("up", "-d", "--scale", "backend=%d" % BASE_REPLICAS)
        self.stack.scale = BASE_REPLICAS
        rss, fds, waited, rested = self.stack.at_rest(deadline_s=60)
        self.rested = rested
        return rss, fds

    # --- the verdict -------------------------------------------------------

    def verdict(self, t_start, ev, load, before, after):
        a_out, a_err = os.path.join(self.out_dir, "gateway.access.log"), os.path.join(self.out_dir, "gateway.error.log")
        self.stack.logs(a_out, a_err)
        access, errors = open(a_out, errors="replace").read(), open(a_err, errors="replace").read()
        v = report.Verdict(load, self.event_log, access, errors, self.stack.names)
        counted = load["failed"] - len(v.allowed)  # records stop at 5000; the count does not
        rl = self.reloader
        found, extra, log_problems = rl.check_log(errors)
        by = load["by_client"]
        lat = load["latency_ms"]
        say("")
        say("chaos %s (seed %d): %.0f s of load, %s" % (self.opts.profile, self.opts.seed,
                                                        load["stopped"] - load["started"], self.versions()))
        say("requests: %d (%s); failed %d: %d counted, %d allowed (on a docker-killed replica)" % (
            load["requests"], ", ".join("%s %d" % (k, v_["ok"] + v_["failed"]) for k, v_ in sorted(by.items())),
            load["failed"], counted, len(v.allowed)))
        for k, n in sorted(v.by_kind(v.counted).items()):
            say("  counted: %-28s %d" % (k, n))
        for k, n in sorted(v.by_kind(v.allowed).items()):
            say("  allowed: %-28s %d" % (k, n))
        if v.counted:
            say("  counted, by the event under way or just before: " + ", ".join(
                "%s %d" % kv for kv in sorted(v.by_event(v.counted).items(), key=lambda kv: -kv[1])))
        for kind, label in (("stream", "streams"), ("ws", "websockets")):
            s = v.sessions[kind]
            say("%s: %d, completed %d, broken on a killed replica %d, broken elsewhere %d" % (
                label, s["total"], s["completed"], s["broken_on_killed"], s["broken_elsewhere"]))
        say("latency of plain/post/pipeline answers (ms): p50 %s, p99 %s, p99.9 %s, max %s; %d took over 1 s, %s over 5 s"
            % (lat["p50"], lat["p99"], lat["p999"], lat["max"], lat["over_1s"], lat.get("over_5s", "?")))
        frozen_n = sum(f["requests"] for f in v.frozen)
        say("fresh requests sent %.0f s into a docker pause: %d, answered by the frozen replica: %d, failed: %d%s" % (
            chaos_events.FROZEN_GRACE, chaos_events.FROZEN_PROBES * len(v.pauses), frozen_n,
            len(v.frozen_probe_failures),
            "".join("\n  %s: %d of %d" % (f["container"], f["requests"], f["of"]) for f in v.frozen)))
        say("5xx answers in the gateway's access log: %d" % v.gateway_5xx)
        say("the access log named the container that answered in %d of %d sampled requests%s" % (
            v.names_checked - len(v.names_wrong), v.names_checked,
            "".join("\n  %s answered by %s (%s), logged as %s" % (w["path"], w["container"], w["instance"],
                                                                 w["access_log"]) for w in v.names_wrong[:5])))
        failed_cmds = [e for e in self.event_log if not e.get("ok") and e["event"] not in ("reload", "reload-broken")]
        say("events: %s (%d commands failed)%s" % (
            ", ".join("%s %d" % (k, n) for k, n in sorted(ev.done.items())), len(failed_cmds),
            "; %d extra scale events to keep 2 replicas for a kill/pause/restart" % ev.extra_scales
            if ev.extra_scales else ""))
        r = rl.results
        say("reloads: %d good (%d applied), %d broken (%d rejected, %d kept the old version serving, "
            "%d logged as FILE:LINE); %d other failed reloads (membership changes while a broken file was on disk);"
            " %d probes, %d failed" % (r["good"], r["applied"], r["broken"], r["rejected"], r["kept_serving"],
                                      found, extra, r["probes"], r["probe_failures"]))
        rss_limit = before[0] + max(RSS_SLACK_MIN, int(before[0] * RSS_SLACK))
        fd_limit = before[1] + FD_SLACK
        say("gateway at rest: RSS %.1f MiB -> %.1f MiB (limit %.1f), open fds %d -> %d (limit %d); "
            "%s snapshots made meanwhile (reloads and membership changes)" % (
                before[0] / MiB, after[0] / MiB, rss_limit / MiB, before[1], after[1], fd_limit, self.snapshots()))
        for problem in failed_cmds[:10]:
            say("  command failed: %s %s" % (problem["event"], problem.get("detail", "")))
        for problem in (rl.problems + log_problems)[:20]:
            say("  reload: " + problem)

        failures = v.counted + v.allowed
        failures.sort(key=lambda f: f["t"])
        with open(os.path.join(self.out_dir, "failures.txt"), "w") as f:
            for x in failures:
                f.write(("ALLOWED (%s)\n" % x["allowed_because"] if x.get("allowed_because") else "")
                        + v.evidence(x, t_start) + "\n")
        if v.counted:
            say("counted failures (first 25 of %d; all recorded ones in %s):" % (
                counted, os.path.relpath(os.path.join(self.out_dir, "failures.txt"), ROOT)))
            for x in sorted(v.counted, key=lambda f: f["t"])[:25]:
                say(v.evidence(x, t_start))
        with open(os.path.join(self.out_dir, "events.json"), "w") as f:
            json.dump(self.event_log, f, indent=0)
        self.timeline(load, t_start)

        s = v.sessions
        plan = self.profile["events"]
        self.check_deaths(t_start)
        self.check(load["requests"] >= 500 and all(by.get(k, {}).get("ok", 0) > 0 for k in by),
                   "the load ran: %d requests, every client kind answered" % load["requests"])
        self.check(counted == 0, "no request failed (%d of %d; %d allowed on a killed replica)" % (
            counted, load["requests"], len(v.allowed)))
        self.check(s["stream"]["broken_elsewhere"] == 0 and s["stream"]["total"] > 0,
                   "every stream completes unless its replica was killed (%d of %d broken elsewhere)" % (
                       s["stream"]["broken_elsewhere"], s["stream"]["total"]))
        self.check(s["ws"]["broken_elsewhere"] == 0 and s["ws"]["total"] > 0,
                   "every WebSocket session completes unless its replica was killed (%d of %d broken elsewhere)" % (
                       s["ws"]["broken_elsewhere"], s["ws"]["total"]))
        if plan.get("pause"):
            self.check(frozen_n == 0 and not v.frozen_probe_failures and v.pauses,
                       "no new request goes to a frozen (paused) replica (%d of %d did)" % (
                           frozen_n, chaos_events.FROZEN_PROBES * len(v.pauses)))
        self.check(not failed_cmds and not load["hung_clients"] and sum(ev.done.values()) >= sum(plan.values()),
                   "every chaos event ran (%d)" % sum(ev.done.values()))
        if self.profile["reloads"]:
            self.check(r["applied"] == r["good"] and r["probe_failures"] == 0,
                       "every good reload serves its new version (%d of %d)" % (r["applied"], r["good"]))
            self.check(r["rejected"] == r["broken"] and r["kept_serving"] == r["broken"] and found == r["broken"],
                       "every broken reload is rejected with FILE:LINE and the old version keeps serving (%d of %d)"
                       % (min(r["rejected"], r["kept_serving"], found), r["broken"]))
        self.check(not v.names_wrong, "the access log names the container that answered (%d of %d sampled)" % (
            v.names_checked - len(v.names_wrong), v.names_checked))
        self.check_rest(before, after, rss_limit, fd_limit)
        summary = {"profile": self.opts.profile, "seed": self.opts.seed, "versions": self.versions(),
                   "requests": load["requests"], "failed": load["failed"], "counted": counted,
                   "allowed": len(v.allowed), "counted_by_kind": v.by_kind(v.counted),
                   "allowed_by_kind": v.by_kind(v.allowed), "counted_by_event": v.by_event(v.counted), "sessions": v.sessions, "latency_ms": lat,
                   "frozen": v.frozen, "events": ev.done, "reloads": r, "reload_log_lines": found,
                   "reload_other_failures": extra, "gateway_5xx": v.gateway_5xx,
                   "names_checked": v.names_checked, "names_wrong": v.names_wrong[:50],
                   "rss": [before[0], after[0], rss_limit], "fds": [before[1], after[1], fd_limit],
                   "criteria": self.criteria}
        with open(os.path.join(self.out_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)

    def check_rest(self, before, after, rss_limit, fd_limit):
        # a gateway that died and was started again has fresh memory: nothing to compare
        restarted = " (not comparable: the gateway restarted)" if self.stack.deaths else ""
        if not self.rested:
            restarted += " (connections still open 60 s after the load stopped)"
        self.check(after[0] <= rss_limit and not restarted,
                   "the gateway's RSS returns to its baseline (%.1f -> %.1f MiB)%s" % (
                       before[0] / MiB, after[0] / MiB, restarted))
        self.check(after[1] <= fd_limit and not restarted,
                   "the gateway's open fds return to their baseline (%d -> %d)%s" % (before[1], after[1], restarted))

    def check_deaths(self, t_start):
        deaths = self.stack.deaths
        for d in deaths:
            say("the gateway's process EXITED at %+.2f s with code %d%s" % (
                d["t"] - t_start, d["exit_code"],
                " (killed by signal %d)" % (d["exit_code"] - 128) if d["exit_code"] > 128 else ""))
        self.check(not deaths, "the gateway's process never exits (%s)" % (
            ", ".join("code %d at %+.0f s" % (d["exit_code"], d["t"] - t_start) for d in deaths) or "it did not"))

    def snapshot_version(self):
        try:
            return self.stack.admin_json("/api/plugins")["snapshot_version"]
        except (OSError, ValueError, KeyError):
            return None

    def snapshots(self):
        now = self.snapshot_version()
        return now - self.snapshot0 if now is not None and self.snapshot0 is not None else "?"

    def timeline(self, load, t_start):
        """timeline.txt: the events and every second with a failure, in order."""
        items = []
        for e in self.event_log:
            more = ""
            if e.get("removed") or e.get("added"):
                more = " (removed %s, added %s)" % (",".join(e["removed"]) or "-", ",".join(e["added"]) or "-")
            items.append((e["t0"] - t_start, "%-14s %s, %.2f s%s%s" % (
                e["event"], e.get("detail", ""), e["t1"] - e["t0"], "" if e.get("ok") else ", FAILED", more)))
        for sec, (ok, failed) in load["per_second"].items():
            if failed:
                items.append((int(sec) - t_start, "    second: %d answered, %d failed" % (ok, failed)))
        with open(os.path.join(self.out_dir, "timeline.txt"), "w") as f:
            for d in self.stack.deaths:
                items.append((d["t"] - t_start, "GATEWAY EXITED with code %d" % d["exit_code"]))
            for t, line in sorted(items):
                f.write("%+8.2f  %s\n" % (t, line))

    def versions(self):
        _, git = run(["git", "describe", "--always", "--dirty"])
        _, compose = run(["sh", "-c", ". e2e/lib.sh && compose version --short 2>/dev/null || compose version"])
        _, engine = run(["docker", "version", "--format", "{{.Server.Version}}"])
        return "moongate %s, compose %s, engine %s" % (git.strip(), compose.strip().split("\n")[0], engine.strip())

    def main(self):
        # diagnostic knobs: one kind of event alone, say CHAOS_EVENTS='{"scale": 20}' CHAOS_RELOADS=0
        self.profile = dict(PROFILES[self.opts.profile])
        if os.environ.get("CHAOS_EVENTS"):
            self.profile["events"] = json.loads(os.environ["CHAOS_EVENTS"])
        for key in ("reloads", "window"):
            if os.environ.get("CHAOS_" + key.upper()):
                self.profile[key] = int(os.environ["CHAOS_" + key.upper()])
        try:
            self.start()
            before = self.warm_up()
            if self.opts.profile == "soak":
                t_start, ev, load, samples = self.soak()
                after = self.settle()
                self.soak_verdict(t_start, ev, load, samples, before, after)
                # no access log in a soak, but the error log says why a
                # request failed (small: warnings and reloads)
                self.stack.logs(os.path.join(self.out_dir, "gateway.access.log"),
                                os.path.join(self.out_dir, "gateway.error.log"))
            else:
                t_start, ev, load = self.chaos()
                after = self.settle()
                self.verdict(t_start, ev, load, before, after)
        except Exception as e:  # the run itself broke: say so as a failed criterion
            say("chaos: %s" % e)
            if self.load_proc and self.load_proc.poll() is None:
                self.load_proc.kill()
                self.load_proc.wait()
            with open(os.path.join(self.out_dir, "events.json"), "w") as f:
                json.dump(self.event_log, f, indent=0)
            if self.stack.gateway_id:
                self.stack.logs(os.path.join(self.out_dir, "gateway.access.log"),
                                os.path.join(self.out_dir, "gateway.error.log"))
            self.check(False, "the chaos run completes (%s)" % e)
            with open(os.path.join(self.out_dir, "summary.json"), "w") as f:
                json.dump({"criteria": self.criteria}, f)
        finally:
            if os.environ.get("CHAOS_KEEP") != "1":
                self.stack.down()
        return 0 if self.criteria and all(c["ok"] for c in self.criteria) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full")
    ap.add_argument("--project", required=True)
    ap.add_argument("--gateway-image", default="moongate:chaos")
    ap.add_argument("--backend-image", default="moongate-chaos-backend:chaos")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "0")) or int(time.time()) % 100000)
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("CHAOS_TIMEOUT", "10")))
    ap.add_argument("--think-ms", type=float, default=float(os.environ.get("CHAOS_THINK_MS", "10")))
    ap.add_argument("--max-requests", type=int, default=5000000)
    ap.add_argument("--minutes", type=int, default=int(os.environ.get("SOAK_MINUTES", "30")), help="soak only")
    opts = ap.parse_args()
    sys.exit(Run(opts).main())


if __name__ == "__main__":
    main()
