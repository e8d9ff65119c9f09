#!/bin/sh
# Instructions per proxied request, counted by valgrind's callgrind for
# moongate, nginx and HAProxy on the same backend pair: the figure that does
# not move with the machine's load (bench/README.md). Each proxy runs one
# worker under callgrind; after a warm-up the counters are zeroed, the load
# runs, and the counters of every thread of the proxy are divided by the
# requests the load tool saw. Three loads: plain HTTP/1.1 (wrk for
# BENCH_CG_SECONDS), HTTPS keep-alive and HTTP/2 over TLS (h2load, ALPN
# http/1.1 then h2, BENCH_CG_REQUESTS requests each), all with HTTP/1.1
# keep-alive upstream. BENCH_CG_TLS=0 leaves the TLS loads out.
# Usage: bench/callgrind.sh BIN [OUT.json]
set -u
BIN=$(readlink -f "${1:-build/moongate}")
OUT=${2:-build/bench-callgrind.json}
SECS=${BENCH_CG_SECONDS:-5}
NREQ=${BENCH_CG_REQUESTS:-20000}
CG_TLS=${BENCH_CG_TLS:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
bench_init callgrind valgrind callgrind_control nginx haproxy wrk h2load openssl python3
# nginx as one process (no master) under valgrind, and for the backends
NGINX_MAIN="master_process off;"
NGINX_CONNECTIONS=4096
# Waits up to 60 s (valgrind starts slowly) for an HTTP answer on port $1,
# or (wait_tcp) for a listener.
wait_http() {
    poll_python 600 0.1 "import socket; s=socket.create_connection(('127.0.0.1',$1),0.2); s.sendall(b'GET / HTTP/1.0\r\n\r\n'); assert s.recv(1)"
}
wait_tcp() { poll_python 600 0.1 "import socket; socket.create_connection(('127.0.0.1',$1),0.2)"; }

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
# the same proxies terminating TLS (ALPN h2 and http/1.1) with one certificate
make_cert localhost
T_MG=$(free_port); T_NG=$(free_port); T_HA=$(free_port)
mkdir -p "$TMP/mgt" "$TMP/ngt" "$TMP/hat"
write_moongate_tls_conf "$TMP/mgt" "$T_MG" "    admin = false,"
write_nginx_proxy_conf "$TMP/ngt" "$T_NG" " ssl http2" "$(nginx_tls_lines)"
write_haproxy_conf "$TMP/hat" "$T_HA" " ssl crt $TMP/both.pem alpn h2,http/1.1"

# The load of a row, KIND plain, https or h2, on PORT, for the warm-up (w),
# the count (c) or a quarter of it (c1); prints the requests it completed.
load() {
    case $1 in
    plain) [ "$4" = w ] && d=2 || d=$SECS
        wrk -t1 -c10 -d"${d}s" "http://127.0.0.1:$2/" 2>/dev/null | awk '/requests in/ {print $1}' ;;
    https | h2) case $4 in w) n=2000 ;; c1) n=$((NREQ / 4)) ;; *) n=$NREQ ;; esac
        [ "$1" = https ] && how="-c10 -m1 --h1" || how="-c50 -m10"
        h2load -t1 $how -n"$n" "https://127.0.0.1:$2/" 2>/dev/null |
            sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' ;;
    esac
}
# count KIND PORT WHICH: zeroes the counters, runs the load, dumps them.
count() {
    callgrind_control -z "$vpid" >/dev/null 2>&1
    load "$1" "$2" "$name" "$3"
    callgrind_control -d "$vpid" >/dev/null 2>&1
}
# The instructions of dump number $1 (the part files after the start).
part_ir() { grep -h '^summary' "$TMP/$name.$kind.cg.$1" 2>/dev/null | awk '{s+=$2} END {print s+0}'; }
# measure NAME KIND PORT CMD...: Ir per request, all threads.
measure() {
    name=$1; kind=$2; port=$3; shift 3
    valgrind --tool=callgrind --separate-threads=no --callgrind-out-file="$TMP/$name.$kind.cg" "$@" \
        >/dev/null 2>"$TMP/$name.$kind.vg" &
    vpid=$!
    PIDS="$PIDS $vpid"
    if ! wait_tcp "$port"; then
        echo "$name did not start under valgrind" >&2
        return 1
    fi
    load "$kind" "$port" "$name" w >/dev/null
    if [ "$kind" = plain ]; then
        n=$(count "$kind" "$port" c)
        ir=$(part_ir 1)
    else
        # h2load connects (full TLS handshakes) inside its count: two runs
        # of different lengths, and the difference is what the extra
        # requests cost, handshakes cancelled out
        n1=$(count "$kind" "$port" c1); ir1=$(part_ir 1)
        n2=$(count "$kind" "$port" c); ir2=$(part_ir 2)
        n=$(( ${n2:-0} - ${n1:-0} )); ir=$(( ${ir2:-0} - ${ir1:-0} ))
    fi
    kill "$vpid" 2>/dev/null
    wait "$vpid" 2>/dev/null
    echo "$name $kind ${n:-0} ${ir:-0}"
}

results="$TMP/results"
: > "$results"
measure moongate plain "$P_MG" "$BIN" -c "$TMP/mg/moongate.lua" >> "$results"
measure nginx plain "$P_NG" nginx -p "$TMP/ng" -c "$TMP/ng/nginx.conf" >> "$results"
measure haproxy plain "$P_HA" haproxy -f "$TMP/ha/haproxy.cfg" -db >> "$results"
if [ "$CG_TLS" != 0 ]; then
    for kind in https h2; do
        measure moongate $kind "$T_MG" "$BIN" -c "$TMP/mgt/moongate.lua" >> "$results"
        measure nginx $kind "$T_NG" nginx -p "$TMP/ngt" -c "$TMP/ngt/nginx.conf" >> "$results"
        measure haproxy $kind "$T_HA" haproxy -f "$TMP/hat/haproxy.cfg" -db >> "$results"
    done
fi

python3 - "$results" "$OUT" <<'PY'
import json, sys
rows = {}  # kind -> name -> figures
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 4 and p[2].isdigit() and p[3].isdigit() and int(p[2]) > 0:
        rows.setdefault(p[1], {})[p[0]] = {"requests": int(p[2]), "instructions": int(p[3]),
                                           "per_request": int(p[3]) / int(p[2])}
print("%-10s %-6s %10s %16s" % ("proxy", "load", "requests", "instr/request"))
for kind, by in rows.items():
    for name, r in by.items():
        print("%-10s %-6s %10d %16.0f" % (name, kind, r["requests"], r["per_request"]))
for kind, by in rows.items():
    mg = by.get("moongate")
    for peer in ("nginx", "haproxy"):
        if mg and peer in by:
            print("%s moongate/%-8s instructions per request %.2f" % (kind, peer, mg["per_request"] / by[peer]["per_request"]))
json.dump(rows, open(sys.argv[2], "w"), indent=2)
PY
