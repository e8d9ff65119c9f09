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
cat > "$TMP/mg/moongate.lua" <<CONF
return {
    listen = "127.0.0.1:$P_MG",
    workers = 1,
    access_log = false,
    upstream = { keepalive = 64 },
    services = { pair = { balancer = "roundrobin", targets = { "127.0.0.1:$B1", "127.0.0.1:$B2" } } },
    routes = { { rule = "PathPrefix(\`/\`)", service = "pair" } },
}
CONF
# the same with three middlewares on the route
cat > "$TMP/mw/moongate.lua" <<CONF
return {
    listen = "127.0.0.1:$P_MW",
    workers = 1,
    access_log = false,
    upstream = { keepalive = 64 },
    services = { pair = { balancer = "roundrobin", targets = { "127.0.0.1:$B1", "127.0.0.1:$B2" } } },
    routes = { { rule = "PathPrefix(\`/\`)", service = "pair", middlewares = {
        { plugin = "headers", request = { set = { ["X-Bench"] = "1" } }, response = { set = { ["X-Served-By"] = "moongate" } } },
        { plugin = "strip_prefix", prefixes = { "/api" } },
        { plugin = "rate_limit", rate = 1000000000, burst = 1000000000 },
    } } },
}
CONF
{ nginx_common "$TMP/ng"; cat <<CONF
    upstream pair { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 64; }
    server { listen 127.0.0.1:$P_NG;
        location / { proxy_pass http://pair; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
} > "$TMP/ng/nginx.conf"
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
cat > "$TMP/ha/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend f
    bind 127.0.0.1:$P_HA
    default_backend pair
backend pair
    balance roundrobin
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
CONF

# Two workers each (rows *-2w), not pinned: they share both cores with wrk
# and the backends, so these rows are noisier than the one-worker rows.
sed -e "s/workers = 1/workers = 2/" -e "s/:$P_MG\"/:$P_MG2\"/" "$TMP/mg/moongate.lua" > "$TMP/mg2/moongate.lua"
sed -e "s/worker_processes 1/worker_processes 2/" -e "s/:$P_NG;/:$P_NG2;/" -e "s|$TMP/ng/|$TMP/ng2/|g" \
    "$TMP/ng/nginx.conf" > "$TMP/ng2/nginx.conf"
sed -e "s/nbthread 1/nbthread 2/" -e "s/:$P_HA\$/:$P_HA2/" "$TMP/ha/haproxy.cfg" > "$TMP/ha2/haproxy.cfg"

start_proxy() { # name -> sets PROXY_PIDS, PORT
    case $1 in
    moongate) $PIN_PROXY "$BIN" -c "$TMP/mg/moongate.lua" >/dev/null 2>"$TMP/mg/error.log" & PORT=$P_MG ;;
    moongate+3mw) $PIN_PROXY "$BIN" -c "$TMP/mw/moongate.lua" >/dev/null 2>"$TMP/mw/error.log" & PORT=$P_MW ;;
    nginx) $PIN_PROXY nginx -p "$TMP/ng" -c "$TMP/ng/nginx.conf" 2>/dev/null & PORT=$P_NG ;;
    nginx-lua) $PIN_PROXY nginx -p "$TMP/nl" -c "$TMP/nl/nginx.conf" 2>/dev/null & PORT=$P_NL ;;
    haproxy) $PIN_PROXY haproxy -f "$TMP/ha/haproxy.cfg" -db 2>/dev/null & PORT=$P_HA ;;
    moongate-2w) "$BIN" -c "$TMP/mg2/moongate.lua" >/dev/null 2>"$TMP/mg2/error.log" & PORT=$P_MG2 ;;
    nginx-2w) nginx -p "$TMP/ng2" -c "$TMP/ng2/nginx.conf" 2>/dev/null & PORT=$P_NG2 ;;
    haproxy-2w) haproxy -f "$TMP/ha2/haproxy.cfg" -db 2>/dev/null & PORT=$P_HA2 ;;
    direct) PORT=$B1; PROXY_PIDS=""; return 0 ;;
    esac
    MAIN=$!
    PIDS="$PIDS $MAIN"
    wait_port "$PORT" || return 1
    sleep 0.2
    PROXY_PIDS=$(proxy_pids "$MAIN")
}

results="$TMP/results"
: > "$results"
for proxy in direct moongate moongate+3mw nginx nginx-lua haproxy moongate-2w nginx-2w haproxy-2w; do
    LOAD=$PIN_LOAD
    case $proxy in *-2w) LOAD="" ;; esac
    if ! start_proxy $proxy; then
        echo "$proxy failed to start" >&2
        echo "$proxy fail" >> "$results"
        continue
    fi
    rss0=0; [ -n "$PROXY_PIDS" ] && rss0=$(python3 "$HERE/proc_stats.py" rss $PROXY_PIDS)
    $LOAD wrk -t1 -c50 -d2s "http://127.0.0.1:$PORT/" >/dev/null 2>&1   # warm-up
    cpu0=0; [ -n "$PROXY_PIDS" ] && cpu0=$(python3 "$HERE/proc_stats.py" cpu $PROXY_PIDS)
    line=$($LOAD wrk -t1 -c50 -d"${D}s" -s "$HERE/report.lua" "http://127.0.0.1:$PORT/" 2>&1 | grep '^WRK')
    cpu1=0; [ -n "$PROXY_PIDS" ] && cpu1=$(python3 "$HERE/proc_stats.py" cpu $PROXY_PIDS)
    idle_b=0
    case $proxy in moongate+3mw | *-2w) measure_idle=0 ;; *) measure_idle=1 ;; esac
    if [ -n "$PROXY_PIDS" ] && [ "$IDLE" -gt 0 ] && [ $measure_idle = 1 ]; then
        before=$(python3 "$HERE/proc_stats.py" rss $PROXY_PIDS)
        mkfifo "$TMP/fifo.$proxy"
        python3 "$HERE/idle_conns.py" "$PORT" "$IDLE" < "$TMP/fifo.$proxy" > "$TMP/idle.$proxy" &
        IP=$!
        exec 9>"$TMP/fifo.$proxy"
        i=0; while ! grep -q ready "$TMP/idle.$proxy" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
        sleep 0.5
        after=$(python3 "$HERE/proc_stats.py" rss $PROXY_PIDS)
        echo >&9; exec 9>&-
        wait $IP 2>/dev/null
        idle_b=$(python3 -c "print(int(($after - $before) / $IDLE))")
    fi
    echo "$proxy $line cpu=$(python3 -c "print($cpu1 - $cpu0)") rss=$rss0 idle=$idle_b" >> "$results"
    for p in $PROXY_PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.5
done

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
