"""Config and plugin reloads for the chaos suite: rewrites the files the
gateway watches (atomically, as editors do) and checks the outcome through
the gateway itself.

Every answer carries X-Chaos-Config (set by the config's `headers`
middleware) and X-Chaos-Plugin (set by plugins/chaos_tag.lua), so a probe
request shows which generation of each file is serving. A good reload must
show its generation within APPLY_S; a broken one must be counted as a failed
reload by the admin API, logged as FILE:LINE (checked in the log later), and
leave the previous generation serving. Broken files stay on disk for a
moment before the next (good) reload fixes them, as when an operator
reads the error and corrects the file."""
import http.client
import os
import re
import time

APPLY_S = 5.0
BALANCERS = ["roundrobin", "least_conn", "p2c", "ewma"]
# kinds of breakage, in turn; each names the file and the line the error
# must point to (None: any line of that file)
BROKEN = ["config-syntax", "plugin-syntax", "config-key", "plugin-error", "config-balancer"]

CONFIG = """\
-- moongate chaos suite: config generation {gen}
return {{
    listen = "0.0.0.0:8080",
    workers = 2,{syntax}
    admin = {{ listen = "0.0.0.0:8081" }},
    access_log = {access_log},
    -- shorter than the backends' 30 s idle timeout; the pool empties within
    -- seconds of the load stopping, so RSS and fds can be read at rest
    upstream = {{ keepalive_timeout = 4 }},
    providers = {{ docker = {{ exposed_by_default = false }} }},{badkey}
    middlewares = {{
        tag = {{ plugin = "chaos_tag" }},
        gen = {{ plugin = "headers", response = {{ set = {{ ["X-Chaos-Config"] = "{gen}" }} }} }},
    }},
    services = {{
        chaos = {{ balancer = "{balancer}", targets = {{}}, middlewares = {{ "gen" }} }},
    }},
    routes = {{
        {{ rule = "PathPrefix(`/`)", service = "chaos", middlewares = {{ "tag" }} }},
    }},
}}
"""

PLUGIN = """\
-- moongate chaos suite: plugin generation {gen}
local GEN = "{gen}"{error}
return {{
    type = "middleware",
    on_response = function(conf, req, res)
        res:set_header("X-Chaos-Plugin", GEN)
    {end}
}}
"""


def config_text(gen, balancer, broken=None, access_log=True):
    text = CONFIG.format(gen=gen, access_log='"json"' if access_log else "false", balancer="no_such_balancer" if broken == "config-balancer" else balancer,
                         syntax="\n    workers_after_a_missing_comma = 2" if broken == "config-syntax" else "",
                         badkey="\n    wrokers = 2," if broken == "config-key" else "")
    if broken == "config-syntax":
        text = text.replace("workers = 2,\n", "workers = 2\n")
    return text


def plugin_text(gen, broken=None):
    return PLUGIN.format(gen=gen, error='\nerror("chaos: broken on purpose")' if broken == "plugin-error" else "",
                         end="" if broken == "plugin-syntax" else "end,")


def expected_line(text, broken):
    """The line a broken file's error must name."""
    marks = {"config-syntax": "workers_after_a_missing_comma", "config-key": "wrokers",
             "config-balancer": "no_such_balancer", "plugin-error": "broken on purpose", "plugin-syntax": None}
    mark = marks[broken]
    if mark is None:
        return None
    for i, line in enumerate(text.split("\n"), 1):
        if mark in line:
            return i


def write(path, text):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class Reloader:
    def __init__(self, conf_dir, stack, log, access_log=True):
        self.conf_dir = conf_dir
        self.config_path = os.path.join(conf_dir, "moongate.lua")
        self.plugin_path = os.path.join(conf_dir, "plugins", "chaos_tag.lua")
        self.stack = stack
        self.access_log = access_log
        self.log = log  # callable(record)
        self.config_gen = 0
        self.plugin_gen = 0
        self.balancer = BALANCERS[0]
        self.n = 0
        self.reset()

    def reset(self):
        """Forgets the counts (after the warm-up)."""
        self.results = {"good": 0, "applied": 0, "broken": 0, "rejected": 0, "kept_serving": 0,
                        "probes": 0, "probe_failures": 0}
        self.problems = []
        self.broken_expect = []  # (file name, line or None, kind, t)

    def prepare(self):
        os.makedirs(os.path.dirname(self.plugin_path), exist_ok=True)
        os.chmod(self.conf_dir, 0o755)
        os.chmod(os.path.dirname(self.plugin_path), 0o755)
        write(self.config_path, config_text(0, self.balancer, access_log=self.access_log))
        write(self.plugin_path, plugin_text(0))

    def probe(self):
        """(config gen, plugin gen) the gateway serves now, via one request."""
        self.results["probes"] += 1
        self.n += 1
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=5)
            c.request("GET", "/probe/%d" % self.n)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status != 200:
                raise OSError("status %d" % r.status)
            return r.getheader("X-Chaos-Config"), r.getheader("X-Chaos-Plugin")
        except (OSError, http.client.HTTPException) as e:
            self.results["probe_failures"] += 1
            self.problems.append("probe /probe/%d failed at %.3f: %s" % (self.n, time.time(), e))
            return None

    def serving(self):
        return (str(self.config_gen), str(self.plugin_gen))

    def wait_serving(self, want):
        t0 = time.time()
        while time.time() - t0 < APPLY_S:
            if self.probe() == want:
                return time.time() - t0
            time.sleep(0.05)
        return None

    def failures(self):
        try:
            return self.stack.admin_json("/api/plugins")["reload_failures"]
        except (OSError, ValueError, KeyError):
            return None

    def good(self, i):
        """A good reload: the config (new generation, next balancer) on even
        turns, the plugin on odd ones."""
        t0 = time.time()
        if i % 2 == 0:
            self.config_gen += 1
            self.balancer = BALANCERS[self.config_gen % len(BALANCERS)]
            what = "config gen %d (%s)" % (self.config_gen, self.balancer)
        else:
            self.plugin_gen += 1
            what = "plugin gen %d" % self.plugin_gen
        # both files: the other one may still be broken on disk from the turn before
        write(self.plugin_path, plugin_text(self.plugin_gen))
        write(self.config_path, config_text(self.config_gen, self.balancer, access_log=self.access_log))
        self.results["good"] += 1
        took = self.wait_serving(self.serving())
        if took is not None:
            self.results["applied"] += 1
        else:
            self.problems.append("reload of %s at %.3f not serving after %.0f s" % (what, t0, APPLY_S))
        self.log({"t0": t0, "t1": time.time(), "event": "reload", "detail": what,
                  "ok": took is not None, "took": took and round(took, 3)})

    def broken(self, k):
        kind = BROKEN[k % len(BROKEN)]
        t0 = time.time()
        before = self.failures()
        if kind.startswith("config"):
            text = config_text(self.config_gen + 1, self.balancer, kind, self.access_log)
            path = self.config_path
        else:
            text = plugin_text(self.plugin_gen + 1, kind)
            path = self.plugin_path
        self.broken_expect.append((os.path.basename(path), expected_line(text, kind), kind, t0))
        write(path, text)
        self.results["broken"] += 1
        rejected = False
        while time.time() - t0 < APPLY_S:
            now = self.failures()
            if now is not None and before is not None and now > before:
                rejected = True
                break
            time.sleep(0.05)
        if rejected:
            self.results["rejected"] += 1
        else:
            self.problems.append("broken %s at %.3f: no failed reload counted within %.0f s" % (kind, t0, APPLY_S))
        now = None
        while now is None and time.time() - t0 < 2 * APPLY_S:
            now = self.probe()  # None while the gateway has no target to answer with
            if now is None:
                time.sleep(0.05)
        kept = now == self.serving()
        if kept:
            self.results["kept_serving"] += 1
        else:
            self.problems.append("broken %s at %.3f: the previous generation is not serving" % (kind, t0))
        self.log({"t0": t0, "t1": time.time(), "event": "reload-broken", "detail": kind,
                  "ok": rejected and kept})

    def run(self, count, every_broken, until, stop):
        """count reloads spread until `until` (epoch); every every_broken-th is broken."""
        broken = 0
        for i in range(count):
            if stop.is_set():
                return
            slot = time.time() + max(0.0, (until - time.time()) / (count - i))
            if every_broken and i % every_broken == every_broken - 1:
                self.broken(broken)
                broken += 1
            else:
                self.good(i - broken)
            while time.time() < slot and not stop.is_set():
                time.sleep(0.05)
        # leave good files behind
        write(self.config_path, config_text(self.config_gen, self.balancer, access_log=self.access_log))
        write(self.plugin_path, plugin_text(self.plugin_gen))

    def check_log(self, error_log):
        """Each broken reload must be in the error log as FILE:LINE: reason.
        Returns (found, extra, problems): extra counts the failed reloads
        beyond the broken files written, i.e. membership changes (discovery)
        that failed because a broken file was on disk at the time."""
        lines = [l for l in error_log.split("\n") if "reload failed" in l]
        want = {}
        for name, line, kind, _ in self.broken_expect:
            want.setdefault((name, line, kind), 0)
            want[(name, line, kind)] += 1
        found, problems = 0, []
        for (name, line, kind), n in sorted(want.items(), key=str):
            pat = re.compile(re.escape(name) + (r":%d:" % line if line else r":\d+:"))
            hits = sum(1 for l in lines if pat.search(l))
            found += min(hits, n)
            if hits < n:
                problems.append("broken %s written %d times, %d 'reload failed ... %s:%s:' lines in the log"
                                % (kind, n, hits, name, line if line else "N"))
        return found, max(0, len(lines) - len(self.broken_expect)), problems
