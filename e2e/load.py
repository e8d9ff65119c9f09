#!/usr/bin/env python3
"""load.py URL SECONDS COMMAND [MAX]: sends GETs to URL on 4 keep-alive
connections (CONCURRENCY in the environment: another number) for SECONDS
(bounded: at most MAX requests, default 20000), runs COMMAND in a shell
after the first half second, and prints how many requests failed. On
stderr it also says how long COMMAND and the load ran, and "covered" when
the load outlasted COMMAND."""
import http.client
import os
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

url, seconds, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
max_requests = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
u = urlsplit(url)
failed = 0
total = 0
kinds = {}
lock = threading.Lock()
stop = time.time() + seconds


def worker():
    global failed, total
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    while time.time() < stop:
        with lock:
            if total >= max_requests:
                return
            total += 1
        kind = None
        try:
            conn.request("GET", u.path + ("?" + u.query if u.query else ""))
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
            kind = "status %d" % r.status
        except Exception as e:
            ok = False
            kind = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        if not ok:
            with lock:
                failed += 1
                kinds[kind] = kinds.get(kind, 0) + 1
    with lock:
        ended.append(time.time())


ended = []
started = time.time()
threads = [threading.Thread(target=worker) for _ in range(int(os.environ.get("CONCURRENCY", "4")))]
for t in threads:
    t.start()
time.sleep(0.5)
cmd_start = time.time()
subprocess.run(command, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
cmd_end = time.time()
for t in threads:
    t.join()
print(failed)
load_end = min(ended) if ended else time.time()
sys.stderr.write("load: %d requests, %d failed; command took %.1f s, load ran %.1f s%s\n"
                 % (total, failed, cmd_end - cmd_start, load_end - started,
                    ", covered" if load_end >= cmd_end else ", NOT covered"))
if kinds:
    sys.stderr.write("load: failures: %s\n" % ", ".join("%s x%d" % kv for kv in sorted(kinds.items())))
