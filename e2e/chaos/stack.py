"""The chaos stack on the real Docker engine: compose (through compose() of
e2e/lib.sh, so Compose v1 and v2 both work), the backend replicas, and the
gateway's process figures read from /proc inside its container."""
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE_FILE = os.path.join(ROOT, "e2e", "chaos", "docker-compose.yml")


def run(args, timeout=120, check=False, env=None):
    """Runs a command; returns (rc, stdout+stderr)."""
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return 124, "timed out after %d s: %s" % (timeout, " ".join(args))
    out = p.stdout.decode("utf-8", "replace")
    if check and p.returncode:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), p.returncode, out[-2000:]))
    return p.returncode, out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Stack:
    def __init__(self, project, conf_dir, gateway_image, backend_image):
        self.project = project
        self.port, self.admin_port = free_port(), free_port()
        self.env = dict(os.environ, CHAOS_CONF_DIR=conf_dir, CHAOS_GATEWAY_IMAGE=gateway_image,
                        CHAOS_BACKEND_IMAGE=backend_image, CHAOS_PORT=str(self.port),
                        CHAOS_ADMIN_PORT=str(self.admin_port),
                        DOCKER_GID=str(os.stat("/var/run/docker.sock").st_gid))
        self.deaths = []  # the gateway's exits during the run: {"t", "exit_code"}
        self.watcher = None
        self.files = [COMPOSE_FILE]
        if os.environ.get("CHAOS_HEALTHCHECK") == "1":
            self.files.append(os.path.join(ROOT, "e2e", "chaos", "healthcheck.yml"))
        self.scale = 0
        self.names = {}  # instance (container id prefix, the backend's hostname) -> first name seen
        self.gateway_id = None

    def compose(self, *args, timeout=180):
        cmd = ["sh", "-c", '. e2e/lib.sh && compose "$@"', "compose", "-p", self.project]
        for f in self.files:
            cmd += ["-f", f]
        return run(cmd + list(args), timeout=timeout, env=self.env)

    def up(self, replicas):
        rc, out = self.compose("up", "-d", "--scale", "backend=%d" % replicas)
        if rc:
            raise RuntimeError("compose up failed: " + out[-2000:])
        self.scale = replicas
        self.gateway_id = self.containers("gateway")[0]["id"]
        self.watch_gateway()

    def watch_gateway(self):
        """Records every exit of the gateway's process (docker's die events):
        a crash that compose's next `up` quietly restarts must not pass."""
        self.watcher = subprocess.Popen(
            ["docker", "events", "--filter", "container=" + self.gateway_id, "--filter", "event=die",
             "--format", "{{.Time}} {{index .Actor.Attributes \"exitCode\"}}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

        def read():
            for line in self.watcher.stdout:
                parts = line.decode().split()
                if len(parts) == 2:
                    self.deaths.append({"t": float(parts[0]), "exit_code": int(parts[1])})
        threading.Thread(target=read, daemon=True).start()

    def down(self):
        if self.watcher:
            self.watcher.terminate()
            self.watcher.wait()
            self.watcher = None
        return self.compose("down", "-v", "--remove-orphans", "-t", "3")

    def containers(self, service="backend"):
        """Every container of the service (running, paused or exited)."""
        _, out = run(["docker", "ps", "-a", "--no-trunc",
                      "--filter", "label=com.docker.compose.project=" + self.project,
                      "--filter", "label=com.docker.compose.service=" + service,
                      "--format", "{{.ID}}|{{.Names}}|{{.State}}"], check=True)
        rows = []
        for line in out.split():
            cid, name, state = line.split("|")
            rows.append({"id": cid, "name": name, "state": state, "instance": cid[:12]})
            self.names.setdefault(cid[:12], name)
        return sorted(rows, key=lambda r: r["name"])

    def running(self):
        return [c for c in self.containers() if c["state"] == "running"]

    # --- the gateway -------------------------------------------------------

    def admin(self, path, timeout=3):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin_port, path), timeout=timeout) as r:
            return r.read().decode()

    def admin_json(self, path):
        return json.loads(self.admin(path))

    def metric(self, name):
        for line in self.admin("/metrics").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def proc(self):
        """The gateway's RSS (bytes), open fds and established TCP sockets,
        from /proc/1 in its container (moongate is the container's PID 1;
        the container's network namespace holds only its sockets)."""
        rc, out = run(["docker", "exec", self.gateway_id, "sh", "-c",
                       "grep VmRSS /proc/1/status; ls /proc/1/fd | wc -l; "
                       "cat /proc/1/net/tcp /proc/1/net/tcp6 2>/dev/null | awk '$4 == \"01\"' | wc -l"],
                      timeout=20)
        if rc:
            raise RuntimeError("docker exec failed: " + out)
        lines = out.split("\n")
        return int(lines[0].split()[1]) * 1024, int(lines[1]), int(lines[2])

    def at_rest(self, deadline_s=40, steady=3):
        """Waits until no client connection is open, no TCP connection is
        established (the pool's idle connections have timed out), and RSS and
        fds hold still for `steady` readings a second apart; returns (rss,
        fds, seconds waited). Past the deadline it returns what it reads."""
        t0 = time.time()
        last, same = None, 0
        while True:
            conns = self.metric("moongate_open_connections")
            rss, fds, est = self.proc()
            if conns == 0 and est == 0 and last is not None and fds == last[1] and abs(rss - last[0]) < 256 * 1024:
                same += 1
            else:
                same = 0
            last = (rss, fds)
            if same >= steady - 1 or time.time() - t0 > deadline_s:
                return rss, fds, round(time.time() - t0, 1), same >= steady - 1
            time.sleep(1)

    def logs(self, out_path, err_path):
        """The gateway's stdout (access log) and stderr (error log) to files."""
        with open(out_path, "wb") as o, open(err_path, "wb") as e:
            subprocess.run(["docker", "logs", self.gateway_id], stdout=o, stderr=e, timeout=120)
