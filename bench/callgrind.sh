#!/bin/sh
# Instructions per proxied request, counted by valgrind's callgrind for
# moongate, nginx and HAProxy on the same backend pair: the figure that does
# not move with the machine's load (bench/README.md). Each proxy runs one
# worker under callgrind; after a warm-up the counters are zeroed, wrk sends
# requests for BENCH_CG_SECONDS, and the counters of every thread of the
# proxy are divided by the requests wrk saw.
# Usage: bench/callgrind.sh BIN [OUT.json]
set -u
BIN=$(readlink -f "${1:-build/moongate}")
OUT=${2:-build/bench-callgrind.json}
SECS=${BENCH_CG_SECONDS:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
bench_init callgrind valgrind callgrind_control nginx haproxy wrk python3
# nginx as one process (no master) under valgrind, and for the backends
NGINX_MAIN="master_process off;"
NGINX_CONNECTIONS=4096
# Waits up to 60 s (valgrind starts slowly) for an HTTP answer on port $1.
wait_http() {
    poll_python 600 0.1 "import socket; s=socket.create_connection(('127.0.0.1',$1),0.2); s.sendall(b'GET / HTTP/1.0\r\n\r\n'); assert s.recv(1)"
}

B1=$(free_port); B2=$(free_port)
mkdir -p "$TMP/b"
{ nginx_common "$TMP/b"; echo "server { listen 127.0.0.1:$B1; location / { return 200 \"hello from backend 1\\n\"; } }"
  echo "server { listen 127.0.0.1:$B2; location / { return 200 \"hello from backend 2\\n\"; } } }"; } > "$TMP/b/nginx.conf"
nginx -p "$TMP/b" -c "$TMP/b/nginx.conf" 2>/dev/null &
PIDS="$PIDS $!"
wait_http "$B1" || { echo "callgrind: the backends did not start"; exit 1; }

P_MG=$(free_port); P_NG=$(free_port); P_HA=$(free_port)
mkdir -p "$TMP/mg" "$TMP/ng" "$TMP/ha"
write_moongate_conf "$TMP/mg" "\"127.0.0.1:$P_MG\"" "    admin = false,"
write_nginx_proxy_conf "$TMP/ng" "$P_NG"
write_haproxy_conf "$TMP/ha" "$P_HA"

# measure NAME PORT CMD...: Ir per request, all threads.
measure() {
    name=$1; port=$2; shift 2
    valgrind --tool=callgrind --separate-threads=no --callgrind-out-file="$TMP/$name.cg" "$@" \
        >/dev/null 2>"$TMP/$name.vg" &
    vpid=$!
    PIDS="$PIDS $vpid"
    if ! wait_http "$port"; then
        echo "$name did not start under valgrind" >&2
        return 1
    fi
    wrk -t1 -c10 -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1
    callgrind_control -z "$vpid" >/dev/null 2>&1
    n=$(wrk -t1 -c10 -d"${SECS}s" "http://127.0.0.1:$port/" 2>/dev/null | awk '/requests in/ {print $1}')
    callgrind_control -d "$vpid" >/dev/null 2>&1
    kill "$vpid" 2>/dev/null
    wait "$vpid" 2>/dev/null
    # the dump after zeroing is the highest-numbered part file
    ir=$(ls "$TMP/$name".cg.* 2>/dev/null | sort -t. -k3 -n | tail -1 | xargs grep -h '^summary' | awk '{s+=$2} END {print s}')
    echo "$name $n $ir"
}

results="$TMP/results"
: > "$results"
measure moongate "$P_MG" "$BIN" -c "$TMP/mg/moongate.lua" >> "$results"
measure nginx "$P_NG" nginx -p "$TMP/ng" -c "$TMP/ng/nginx.conf" >> "$results"
measure haproxy "$P_HA" haproxy -f "$TMP/ha/haproxy.cfg" -db >> "$results"

python3 - "$results" "$OUT" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 3 and p[1].isdigit() and p[2].isdigit() and int(p[1]) > 0:
        rows[p[0]] = {"requests": int(p[1]), "instructions": int(p[2]),
                      "per_request": int(p[2]) / int(p[1])}
print("%-10s %10s %16s" % ("proxy", "requests", "instr/request"))
for name, r in rows.items():
    print("%-10s %10d %16.0f" % (name, r["requests"], r["per_request"]))
mg = rows.get("moongate")
for peer in ("nginx", "haproxy"):
    if mg and peer in rows:
        print("moongate/%-8s instructions per request %.2f" % (peer, mg["per_request"] / rows[peer]["per_request"]))
json.dump(rows, open(sys.argv[2], "w"), indent=2)
PY
