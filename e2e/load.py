#!/usr/bin/env python3
"""load.py URL SECONDS COMMAND: sends GETs to URL on 4 keep-alive
connections (CONCURRENCY in the environment: another number) for SECONDS
(bounded: at most 20000 requests), runs COMMAND in a shell after the first
half second, and prints how many requests failed."""
import http.client
import os
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

url, seconds, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
u = urlsplit(url)
failed = 0
total = 0
lock = threading.Lock()
stop = time.time() + seconds


def worker():
    global failed, total
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    while time.time() < stop:
        with lock:
            if total >= 20000:
                return
            total += 1
        try:
            conn.request("GET", u.path + ("?" + u.query if u.query else ""))
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
        except Exception:
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        if not ok:
            with lock:
                failed += 1


threads = [threading.Thread(target=worker) for _ in range(int(os.environ.get("CONCURRENCY", "4")))]
for t in threads:
    t.start()
time.sleep(0.5)
subprocess.run(command, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for t in threads:
    t.join()
print(failed)
sys.stderr.write("load: %d requests, %d failed\n" % (total, failed))
