#!/usr/bin/env python3
"""first_seen.py URL COUNT SECONDS: GETs URL (about 200 a second, bounded by
SECONDS) until COUNT distinct X-Instance headers answered; prints
"instance epoch_seconds" for each, the moment it first answered."""
import http.client
import sys
import time
from urllib.parse import urlsplit

url, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
u = urlsplit(url)
seen = {}
stop = time.time() + seconds
conn = None
while time.time() < stop and len(seen) < count:
    try:
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
        conn.request("GET", u.path or "/")
        r = conn.getresponse()
        r.read()
        inst = r.getheader("X-Instance")
        if r.status == 200 and inst and inst not in seen:
            seen[inst] = time.time()
    except Exception:
        conn = None
    time.sleep(0.005)
for inst, t in seen.items():
    print(inst, "%.3f" % t)
