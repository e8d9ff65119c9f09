#!/bin/sh
# The HTTP/2 rows of make bench: h2load over TLS (ALPN h2) through moongate,
# nginx and HAProxy, one worker each, the same certificate, HTTP/1.1 with
# keep-alive to the same pair of nginx backends. See bench/README.md.
# Usage: bench/h2.sh BIN   (BENCH_DURATION seconds, default 10;
#        BENCH_H2_CLIENTS connections, default 50; BENCH_H2_STREAMS
#        concurrent streams each, default 10)
set -u
BIN=$(readlink -f "${1:-build/moongate}")
D=${BENCH_DURATION:-10}
C=${BENCH_H2_CLIENTS:-50}
M=${BENCH_H2_STREAMS:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${BENCH_H2_JSON:-build/bench-h2.json}
. "$HERE/lib.sh"
bench_init h2 nginx haproxy h2load openssl python3

make_cert localhost # one certificate for every proxy
start_backends

P_MG=$(free_port); P_NG=$(free_port); P_HA=$(free_port)
mkdir -p "$TMP/mg" "$TMP/ng" "$TMP/ha"
write_moongate_tls_conf "$TMP/mg" "$P_MG" "    admin = false,"
write_nginx_proxy_conf "$TMP/ng" "$P_NG" " ssl http2" "$(nginx_tls_lines)
        http2_max_concurrent_streams 128;"
write_haproxy_conf "$TMP/ha" "$P_HA" " ssl crt $TMP/both.pem alpn h2,http/1.1"

start_proxy() {
    case $1 in
    moongate-h2) proxy_start moongate "$TMP/mg" "$P_MG" "$PIN_PROXY" ;;
    nginx-h2) proxy_start nginx "$TMP/ng" "$P_NG" "$PIN_PROXY" ;;
    haproxy-h2) proxy_start haproxy "$TMP/ha" "$P_HA" "$PIN_PROXY" ;;
    esac
}

# One row: h2load's protocol, requests done and req/s, CPU over the run.
measure() {
    url="https://127.0.0.1:$PORT/"
    $PIN_LOAD h2load -t1 -c"$C" -m"$M" -D2 "$url" >/dev/null 2>&1 # warm-up
    cpu0=$(proxy_cpu)
    out=$($PIN_LOAD h2load -t1 -c"$C" -m"$M" -D"$D" "$url" 2>&1)
    cpu1=$(proxy_cpu)
    proto=$(echo "$out" | sed -n 's/^Application protocol: *//p')
    done_n=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) done, \([0-9]*\) succeeded.*/\2/p')
    failed=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2/p')
    rps=$(echo "$out" | sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p')
    echo "$1 proto=${proto:-?} ok=${done_n:-0} rps=${rps:-0} cpu=$(minus "$cpu1" "$cpu0") failed=$(echo ${failed:-0 0} | tr ' ' +)"
}
bench_each measure moongate-h2 nginx-h2 haproxy-h2

python3 - "$results" "$OUT" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 3:
        rows[parts[0]] = None
        continue
    kv = dict(p.split("=", 1) for p in parts[1:])
    ok = int(kv["ok"])
    rows[parts[0]] = {"protocol": kv["proto"], "rps": float(kv["rps"]), "requests": ok,
                      "failed": eval(kv["failed"]),
                      "cpu_us_per_req": float(kv["cpu"]) / ok * 1e6 if ok else None}
print("%-13s %6s %10s %12s %7s" % ("proxy (h2)", "alpn", "req/s", "cpu/req(us)", "failed"))
for name, r in rows.items():
    if r is None:
        print("%-13s failed to start" % name)
        continue
    cpu = "%.2f" % r["cpu_us_per_req"] if r["cpu_us_per_req"] else "-"
    print("%-13s %6s %10.0f %12s %7d" % (name, r["protocol"], r["rps"], cpu, r["failed"]))
mg = rows.get("moongate-h2")
ratios = {}
for peer in ("nginx-h2", "haproxy-h2"):
    p = rows.get(peer)
    if not mg or not p:
        continue
    ratios[peer] = {"rps": mg["rps"] / p["rps"] if p["rps"] else None,
                    "cpu_per_req": mg["cpu_us_per_req"] / p["cpu_us_per_req"]
                    if mg["cpu_us_per_req"] and p["cpu_us_per_req"] else None}
    fmt = lambda v: "%.2f" % v if v is not None else "-"
    print("moongate/%-10s req/s %s  cpu/req %s" % (peer, fmt(ratios[peer]["rps"]), fmt(ratios[peer]["cpu_per_req"])))
json.dump({"rows": rows, "ratios": ratios}, open(sys.argv[2], "w"), indent=2)
PY
