#!/bin/sh
# HTTPS rows of make bench: moongate, nginx and HAProxy terminating TLS with
# the same ECDSA P-256 certificate, one worker each, in front of the same
# backend pair. Per proxy: keep-alive HTTPS requests/s (wrk) with CPU per
# request, and full handshakes/s (openssl s_time -new: no resumption) with
# CPU per handshake. See bench/README.md.
# Usage: bench/tls.sh BIN
set -u
BIN=$(readlink -f "${1:-build/moongate}")
D=${BENCH_DURATION:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${BENCH_TLS_JSON:-build/bench-tls.json}
. "$HERE/lib.sh"
bench_init tls nginx haproxy wrk openssl python3
start_backends

make_cert bench.test # one certificate for all

P_MG=$(free_port); P_NG=$(free_port); P_HA=$(free_port)
mkdir -p "$TMP/mg" "$TMP/ng" "$TMP/ha"
write_moongate_tls_conf "$TMP/mg" "$P_MG"
write_nginx_proxy_conf "$TMP/ng" "$P_NG" " ssl" "$(nginx_tls_lines)
        ssl_protocols TLSv1.2 TLSv1.3;"
write_haproxy_conf "$TMP/ha" "$P_HA" " ssl crt $TMP/both.pem" "    ssl-default-bind-options ssl-min-ver TLSv1.2"

start_proxy() { # name -> sets PROXY_PIDS, PORT
    case $1 in
    moongate) proxy_start moongate "$TMP/mg" "$P_MG" "$PIN_PROXY" ;;
    nginx) proxy_start nginx "$TMP/ng" "$P_NG" "$PIN_PROXY" ;;
    haproxy) proxy_start haproxy "$TMP/ha" "$P_HA" "$PIN_PROXY" ;;
    esac
}

# One row: wrk's report and CPU over it, then full handshakes (one
# connection after another, each with one request) and CPU over them.
measure() {
    url="https://127.0.0.1:$PORT/"
    $PIN_LOAD wrk -t1 -c50 -d2s "$url" >/dev/null 2>&1 # warm-up
    c0=$(proxy_cpu)
    line=$($PIN_LOAD wrk -t1 -c50 -d"${D}s" -s "$HERE/report.lua" "$url" 2>&1 | grep '^WRK')
    c1=$(proxy_cpu)
    hs=$($PIN_LOAD openssl s_time -connect "127.0.0.1:$PORT" -new -time "$D" 2>/dev/null |
        sed -n 's/^\([0-9]*\) connections in \([0-9.]*\)s.*/\1 \2/p' | head -n 1)
    c2=$(proxy_cpu)
    echo "$1 $line cpu=$(minus "$c1" "$c0") hs=${hs% *} hs_s=${hs#* } hs_cpu=$(minus "$c2" "$c1")"
}
bench_each measure moongate nginx haproxy

python3 - "$results" "$OUT" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    name = parts[0]
    kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    if "requests" not in kv:
        rows[name] = None
        continue
    req, dur = int(kv["requests"]), int(kv["duration_us"]) / 1e6
    hs = int(kv["hs"]) if kv.get("hs", "").isdigit() else 0
    hs_s = float(kv["hs_s"]) if hs else 0
    rows[name] = {
        "rps": req / dur, "p99_ms": int(kv["p99_us"]) / 1000.0,
        "errors": int(kv["errors"]) + int(kv["non2xx"]),
        "cpu_us_per_req": float(kv["cpu"]) / req * 1e6 if req else None,
        "handshakes_per_s": hs / hs_s if hs_s else None,
        "cpu_us_per_handshake": float(kv["hs_cpu"]) / hs * 1e6 if hs else None,
    }
fmt = lambda v, f="%.2f": f % v if v is not None else "-"
print("%-13s %10s %9s %12s %8s %14s %14s" % ("https", "req/s", "p99(ms)", "cpu/req(us)", "errors", "handshakes/s", "cpu/hs(us)"))
for name, r in rows.items():
    if r is None:
        print("%-13s failed to start" % name)
        continue
    print("%-13s %10.0f %9.2f %12s %8d %14s %14s" % (name, r["rps"], r["p99_ms"], fmt(r["cpu_us_per_req"]), r["errors"],
          fmt(r["handshakes_per_s"], "%.0f"), fmt(r["cpu_us_per_handshake"], "%.0f")))
mg, ratios = rows.get("moongate"), {}
for peer in ("nginx", "haproxy"):
    p = rows.get(peer)
    if not mg or not p:
        continue
    div = lambda a, b: a / b if a and b else None
    r = ratios[peer] = {
        "rps": div(mg["rps"], p["rps"]), "cpu_per_req": div(mg["cpu_us_per_req"], p["cpu_us_per_req"]),
        "handshakes_per_s": div(mg["handshakes_per_s"], p["handshakes_per_s"]),
        "cpu_per_handshake": div(mg["cpu_us_per_handshake"], p["cpu_us_per_handshake"]),
    }
    print("https moongate/%-8s req/s %s  cpu/req %s  handshakes/s %s  cpu/handshake %s" % (
        peer, fmt(r["rps"]), fmt(r["cpu_per_req"]), fmt(r["handshakes_per_s"]), fmt(r["cpu_per_handshake"])))
json.dump({"rows": rows, "ratios": ratios}, open(sys.argv[2], "w"), indent=2)
PY
