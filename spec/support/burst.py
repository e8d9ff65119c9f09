#!/usr/bin/env python3
"""Opens N client connections at once, sends one GET on each and counts the
statuses (a JSON object status -> count; "error" for a connection that broke
and "timeout" past the deadline). Usage: burst.py HOST PORT N SECONDS"""
import asyncio
import json
import sys


async def one(host, port, i, counts):
    try:
        r, w = await asyncio.open_connection(host, port)
        w.write(b"GET /burst%d HTTP/1.1\r\nHost: burst\r\nConnection: close\r\n\r\n" % i)
        await w.drain()
        line = await r.readline()
        parts = line.split()
        key = parts[1].decode() if len(parts) > 1 else "error"
        await r.read()
        w.close()
    except (OSError, asyncio.IncompleteReadError):
        key = "error"
    counts[key] = counts.get(key, 0) + 1


async def main():
    host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    counts = {}
    tasks = [asyncio.ensure_future(one(host, port, i, counts)) for i in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=secs)
    for t in pending:
        t.cancel()
    if pending:
        counts["timeout"] = len(pending)
    print(json.dumps(counts))


asyncio.run(main())
