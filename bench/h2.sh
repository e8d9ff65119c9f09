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

# one certificate for every proxy (ECDSA P-256, as a real site would have)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/key.pem" \
    -out "$TMP/cert.pem" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
cat "$TMP/cert.pem" "$TMP/key.pem" > "$TMP/both.pem"

start_backends

P_MG=$(free_port); P_NG=$(free_port); P_HA=$(free_port)
mkdir -p "$TMP/mg" "$TMP/ng" "$TMP/ha"
cat > "$TMP/mg/moongate.lua" <<CONF
return {
    listen = { { address = "127.0.0.1:$P_MG", tls = true } },
    tls = { certificates = { { cert = "$TMP/cert.pem", key = "$TMP/key.pem" } } },
    workers = 1,
    access_log = false,
    admin = false,
    upstream = { keepalive = 64 },
    services = { pair = { balancer = "roundrobin", targets = { "127.0.0.1:$B1", "127.0.0.1:$B2" } } },
    routes = { { rule = "PathPrefix(\`/\`)", service = "pair" } },
}
CONF
{ nginx_common "$TMP/ng"; cat <<CONF
    upstream pair { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 64; }
    server { listen 127.0.0.1:$P_NG ssl http2;
        ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;
        http2_max_concurrent_streams 128;
        location / { proxy_pass http://pair; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
} > "$TMP/ng/nginx.conf"
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
    bind 127.0.0.1:$P_HA ssl crt $TMP/both.pem alpn h2,http/1.1
    default_backend pair
backend pair
    balance roundrobin
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
CONF

start_proxy() {
    case $1 in
    moongate-h2) $PIN_PROXY "$BIN" -c "$TMP/mg/moongate.lua" >/dev/null 2>"$TMP/mg/error.log" & PORT=$P_MG ;;
    nginx-h2) $PIN_PROXY nginx -p "$TMP/ng" -c "$TMP/ng/nginx.conf" 2>/dev/null & PORT=$P_NG ;;
    haproxy-h2) $PIN_PROXY haproxy -f "$TMP/ha/haproxy.cfg" -db 2>/dev/null & PORT=$P_HA ;;
    esac
    MAIN=$!
    PIDS="$PIDS $MAIN"
    wait_port "$PORT" || return 1
    sleep 0.2
    PROXY_PIDS=$(proxy_pids "$MAIN")
}

results="$TMP/results"
: > "$results"
for proxy in moongate-h2 nginx-h2 haproxy-h2; do
    if ! start_proxy $proxy; then
        echo "$proxy failed to start" >&2
        echo "$proxy fail" >> "$results"
        continue
    fi
    url="https://127.0.0.1:$PORT/"
    $PIN_LOAD h2load -t1 -c"$C" -m"$M" -D2 "$url" >/dev/null 2>&1 # warm-up
    cpu0=$(python3 "$HERE/proc_stats.py" cpu $PROXY_PIDS)
    out=$($PIN_LOAD h2load -t1 -c"$C" -m"$M" -D"$D" "$url" 2>&1)
    cpu1=$(python3 "$HERE/proc_stats.py" cpu $PROXY_PIDS)
    proto=$(echo "$out" | sed -n 's/^Application protocol: *//p')
    done_n=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) done, \([0-9]*\) succeeded.*/\2/p')
    failed=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2/p')
    rps=$(echo "$out" | sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p')
    echo "$proxy proto=${proto:-?} ok=${done_n:-0} rps=${rps:-0} cpu=$(python3 -c "print($cpu1 - $cpu0)") failed=$(echo ${failed:-0 0} | tr ' ' +)" >> "$results"
    for p in $PROXY_PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.5
done

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
