#!/bin/sh
# make bench: moongate against nginx, nginx + Lua balancer and HAProxy, one
# worker each, same backend pair, same run. See bench/README.md.
# Usage: bench/run.sh BIN
set -u
BIN=$(readlink -f "${1:-build/moongate}")
D=${BENCH_DURATION:-10}
IDLE=${BENCH_IDLE_CONNS:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${BENCH_JSON:-build/bench.json}
. "$HERE/lib.sh"
bench_init run nginx haproxy wrk python3
start_backends

# ---- proxy configs -----------------------------------------------------
P_MG=$(free_port); P_MW=$(free_port); P_NG=$(free_port); P_NL=$(free_port); P_HA=$(free_port)
P_MG2=$(free_port); P_NG2=$(free_port); P_HA2=$(free_port)
mkdir -p "$TMP/mg" "$TMP/mw" "$TMP/ng" "$TMP/nl" "$TMP/ha" "$TMP/mg2" "$TMP/ng2" "$TMP/ha2"
write_moongate_conf "$TMP/mg" "\"127.0.0.1:$P_MG\""
# the same with three middlewares on the route
write_moongate_conf "$TMP/mw" "\"127.0.0.1:$P_MW\"" "" ', middlewares = {
        { plugin = "headers", request = { set = { ["X-Bench"] = "1" } }, response = { set = { ["X-Served-By"] = "moongate" } } },
        { plugin = "strip_prefix", prefixes = { "/api" } },
        { plugin = "rate_limit", rate = 1000000000, burst = 1000000000 },
    }'
write_nginx_proxy_conf "$TMP/ng" "$P_NG"
{ echo "load_module /usr/lib/nginx/modules/ndk_http_module.so;"
  echo "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"
  nginx_common "$TMP/nl"; cat <<CONF
    lua_package_path "/usr/share/lua/5.1/?.lua;;";
    init_worker_by_lua_block { rr_next = 0; rr_peers = { $B1, $B2 } }
    upstream pair {
        server 0.0.0.1;
        balancer_by_lua_block {
            local b = require "ngx.balancer"
            rr_next = rr_next % #rr_peers + 1
            b.set_current_peer("127.0.0.1", rr_peers[rr_next])
        }
        keepalive 64;
    }
    server { listen 127.0.0.1:$P_NL;
        location / { proxy_pass http://pair; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
} > "$TMP/nl/nginx.conf"
write_haproxy_conf "$TMP/ha" "$P_HA"

# Two workers each (rows *-2w), not pinned: they share both cores with wrk
# and the backends, so these rows are noisier than the one-worker rows.
sed -e "s/workers = 1/workers = 2/" -e "s/:$P_MG\"/:$P_MG2\"/" "$TMP/mg/moongate.lua" > "$TMP/mg2/moongate.lua"
sed -e "s/worker_processes 1/worker_processes 2/" -e "s/:$P_NG;/:$P_NG2;/" -e "s|$TMP/ng/|$TMP/ng2/|g" \
    "$TMP/ng/nginx.conf" > "$TMP/ng2/nginx.conf"
sed -e "s/nbthread 1/nbthread 2/" -e "s/:$P_HA\$/:$P_HA2/" "$TMP/ha/haproxy.cfg" > "$TMP/ha2/haproxy.cfg"

start_proxy() { # name -> sets PROXY_PIDS, PORT
    case $1 in
    moongate) proxy_start moongate "$TMP/mg" "$P_MG" "$PIN_PROXY" ;;
    moongate+3mw) proxy_start moongate "$TMP/mw" "$P_MW" "$PIN_PROXY" ;;
    nginx) proxy_start nginx "$TMP/ng" "$P_NG" "$PIN_PROXY" ;;
    nginx-lua) proxy_start nginx "$TMP/nl" "$P_NL" "$PIN_PROXY" ;;
    haproxy) proxy_start haproxy "$TMP/ha" "$P_HA" "$PIN_PROXY" ;;
    moongate-2w) proxy_start moongate "$TMP/mg2" "$P_MG2" "" ;;
    nginx-2w) proxy_start nginx "$TMP/ng2" "$P_NG2" "" ;;
    haproxy-2w) proxy_start haproxy "$TMP/ha2" "$P_HA2" "" ;;
    direct) PORT=$B1; PROXY_PIDS="" ;;
    esac
}

# One row: wrk's report, CPU seconds over the run, RSS at the start, bytes
# per idle connection (not for the middleware and two-worker rows).
measure() {
    LOAD=$PIN_LOAD
    case $1 in *-2w) LOAD="" ;; esac
    rss0=0; [ -n "$PROXY_PIDS" ] && rss0=$(proxy_rss)
    $LOAD wrk -t1 -c50 -d2s "http://127.0.0.1:$PORT/" >/dev/null 2>&1   # warm-up
    cpu0=0; [ -n "$PROXY_PIDS" ] && cpu0=$(proxy_cpu)
    line=$($LOAD wrk -t1 -c50 -d"${D}s" -s "$HERE/report.lua" "http://127.0.0.1:$PORT/" 2>&1 | grep '^WRK')
    cpu1=0; [ -n "$PROXY_PIDS" ] && cpu1=$(proxy_cpu)
    idle_b=0
    case $1 in moongate+3mw | *-2w) measure_idle=0 ;; *) measure_idle=1 ;; esac
    if [ -n "$PROXY_PIDS" ] && [ "$IDLE" -gt 0 ] && [ $measure_idle = 1 ]; then
        before=$(proxy_rss)
        mkfifo "$TMP/fifo.$1"
        python3 "$HERE/idle_conns.py" "$PORT" "$IDLE" < "$TMP/fifo.$1" > "$TMP/idle.$1" &
        IP=$!
        exec 9>"$TMP/fifo.$1"
        i=0; while ! grep -q ready "$TMP/idle.$1" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
        sleep 0.5
        after=$(proxy_rss)
        echo >&9; exec 9>&-
        wait $IP 2>/dev/null
        idle_b=$(python3 -c "print(int(($after - $before) / $IDLE))")
    fi
    echo "$1 $line cpu=$(minus "$cpu1" "$cpu0") rss=$rss0 idle=$idle_b"
}
bench_each measure direct moongate moongate+3mw nginx nginx-lua haproxy moongate-2w nginx-2w haproxy-2w

python3 - "$results" "$OUT" <<'PY'
import json, sys, re
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    name = parts[0]
    if len(parts) < 3:
        rows[name] = None
        continue
    kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    req, dur = int(kv["requests"]), int(kv["duration_us"]) / 1e6
    rows[name] = {
        "rps": req / dur, "p99_ms": int(kv["p99_us"]) / 1000.0, "p50_ms": int(kv["p50_us"]) / 1000.0,
        "errors": int(kv["errors"]) + int(kv["non2xx"]),
        "cpu_us_per_req": float(kv["cpu"]) / req * 1e6 if float(kv["cpu"]) > 0 else None,
        "rss_mib": int(float(kv["rss"])) / 1048576.0, "idle_conn_bytes": int(kv["idle"]),
    }
print("%-13s %10s %9s %12s %9s %15s %7s" % ("proxy", "req/s", "p99(ms)", "cpu/req(us)", "rss(MiB)", "idle-conn(B)", "errors"))
for name, r in rows.items():
    if r is None:
        print("%-13s failed to start" % name)
        continue
    cpu = "%.2f" % r["cpu_us_per_req"] if r["cpu_us_per_req"] else "-"
    print("%-13s %10.0f %9.2f %12s %9.1f %15d %7d" % (name, r["rps"], r["p99_ms"], cpu, r["rss_mib"], r["idle_conn_bytes"], r["errors"]))
mg = rows.get("moongate")
ratios = {}
if mg:
    for peer in ("nginx", "haproxy"):
        p = rows.get(peer)
        if not p:
            continue
        ratios[peer] = {
            "rps": mg["rps"] / p["rps"],
            "cpu_per_req": (mg["cpu_us_per_req"] / p["cpu_us_per_req"]) if mg["cpu_us_per_req"] and p["cpu_us_per_req"] else None,
            "p99": mg["p99_ms"] / p["p99_ms"] if p["p99_ms"] else None,
            "idle_bytes": mg["idle_conn_bytes"] / p["idle_conn_bytes"] if p["idle_conn_bytes"] else None,
        }
        r = ratios[peer]
        fmt = lambda v: "%.2f" % v if v is not None else "-"
        print("moongate/%-8s req/s %s  cpu/req %s  p99 %s  idle-conn bytes %s" % (peer, fmt(r["rps"]), fmt(r["cpu_per_req"]), fmt(r["p99"]), fmt(r["idle_bytes"])))
mg2 = rows.get("moongate-2w")
for peer in ("nginx-2w", "haproxy-2w"):
    p = rows.get(peer)
    if not mg2 or not p:
        continue
    r = ratios[peer] = {
        "rps": mg2["rps"] / p["rps"],
        "cpu_per_req": (mg2["cpu_us_per_req"] / p["cpu_us_per_req"]) if mg2["cpu_us_per_req"] and p["cpu_us_per_req"] else None,
    }
    fmt = lambda v: "%.2f" % v if v is not None else "-"
    print("moongate-2w/%-10s req/s %s  cpu/req %s (two workers, unpinned: noisy)" % (peer, fmt(r["rps"]), fmt(r["cpu_per_req"])))
mw = rows.get("moongate+3mw")
if mg and mw:
    ratios["middlewares"] = {"rps_cost": 1 - mw["rps"] / mg["rps"]}
    print("3 middlewares cost %.1f%% of moongate's throughput" % (100 * ratios["middlewares"]["rps_cost"]))
json.dump({"rows": rows, "ratios": ratios}, open(sys.argv[2], "w"), indent=2)
PY

# HTTPS rows, HTTP/2 rows, then instructions per request (BENCH_TLS=0,
# BENCH_H2=0, BENCH_CALLGRIND=0 skip them)
if [ "${BENCH_TLS:-1}" = 1 ]; then echo; BENCH_DURATION=$D sh "$HERE/tls.sh" "$BIN"; fi
if [ "${BENCH_H2:-1}" = 1 ]; then echo; BENCH_DURATION=$D sh "$HERE/h2.sh" "$BIN"; fi
if [ "${BENCH_CALLGRIND:-1}" = 1 ]; then echo; sh "$HERE/callgrind.sh" "$BIN"; fi
