#!/usr/bin/env python3
"""proc_stats.py cpu PID...  -> total utime+stime in seconds (all threads)
   proc_stats.py rss PID...  -> total RSS in bytes"""
import os
import sys

what, pids = sys.argv[1], [int(p) for p in sys.argv[2:]]
tick = os.sysconf("SC_CLK_TCK")
total = 0
for pid in pids:
    try:
        if what == "cpu":
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        else:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
print(total)
