# Shared by the bench scripts (sourced): their start (bench_init), ports,
# pinning, the backend pair, the configs every script gives moongate, nginx
# and HAProxy, starting a proxy and the run over a list of proxies. The
# configs are the ones earlier runs were measured with: change them here and
# every script's figures move together.

# A scratch folder ($TMP), every process put in $PIDS killed at exit, enough
# fds, and the tools the script needs. Usage: bench_init NAME TOOL...
bench_init() {
    TMP=$(mktemp -d "/tmp/moongate-bench-$1.XXXXXX")
    shift
    PIDS=""
    trap bench_cleanup EXIT INT TERM
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "bench: $tool is missing (make bench installs it)"; exit 1; }
    done
}
bench_cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Runs the Python CODE until it succeeds, at most TRIES times, PAUSE seconds
# apart; fails when it never does. Usage: poll_python TRIES PAUSE CODE
poll_python() {
    i=0
    while [ $i -lt "$1" ]; do
        python3 -c "$3" 2>/dev/null && return 0
        sleep "$2"; i=$((i + 1))
    done
    return 1
}
# Waits up to 5 s for a TCP listener on port $1.
wait_port() { poll_python 100 0.05 "import socket; socket.create_connection(('127.0.0.1',$1),0.2)"; }
# The proxy runs on core 0, the load and the backends on core 1 (with 2 cores).
NCPU=$(nproc)
PIN_PROXY=""; PIN_LOAD=""
if [ "$NCPU" -ge 2 ]; then PIN_PROXY="taskset -c 0"; PIN_LOAD="taskset -c 1"; fi

# nginx.conf up to inside http {}: one worker, in the foreground, its files
# in DIR. NGINX_MAIN (lines added after "daemon off;") and NGINX_CONNECTIONS
# (65536 unless set) are for callgrind.sh, which runs nginx as one process.
# Usage: nginx_common DIR
nginx_common() {
    echo "daemon off;"
    if [ -n "${NGINX_MAIN:-}" ]; then printf '%s\n' "$NGINX_MAIN"; fi
    cat <<CONF
worker_processes 1;
error_log $1/error.log;
pid $1/nginx.pid;
events { worker_connections ${NGINX_CONNECTIONS:-65536}; }
http {
    access_log off;
    client_body_temp_path $1/body; proxy_temp_path $1/proxy; fastcgi_temp_path $1/fcgi;
    uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
    keepalive_requests 1000000;
CONF
}

# Two nginx backends answering a small fixed body; sets B1 and B2.
start_backends() {
    B1=$(free_port); B2=$(free_port)
    for n in 1 2; do
        port=$(eval echo \$B$n)
        mkdir -p "$TMP/b$n"
        { nginx_common "$TMP/b$n"; echo "server { listen 127.0.0.1:$port; location / { return 200 \"hello from backend $n\\n\"; } } }"; } > "$TMP/b$n/nginx.conf"
        $PIN_LOAD nginx -p "$TMP/b$n" -c "$TMP/b$n/nginx.conf" 2>/dev/null &
        PIDS="$PIDS $!"
        wait_port "$port" || { echo "bench: backend $n did not start"; exit 1; }
    done
}

# The pids of a started proxy: the main one and its children.
proxy_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }

# One self-signed ECDSA P-256 certificate for NAME: $TMP/cert.pem, key.pem
# and both.pem (the two together, as HAProxy wants them). Usage: make_cert NAME
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
        -addext "subjectAltName=DNS:$1" -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    cat "$TMP/cert.pem" "$TMP/key.pem" > "$TMP/both.pem"
}

# DIR/moongate.lua: one worker, no access log, keep-alive 64 to the pair
# (B1, B2) balanced round-robin, one route for every path. LISTEN is the Lua
# value of listen; FIELDS are more top-level lines, each ending with a comma;
# ROUTE_FIELDS are more fields of the route, starting with a comma.
# Usage: write_moongate_conf DIR LISTEN [FIELDS [ROUTE_FIELDS]]
write_moongate_conf() {
    {
        echo "return {"
        echo "    listen = $2,"
        echo "    workers = 1,"
        echo "    access_log = false,"
        echo "    upstream = { keepalive = 64 },"
        if [ -n "${3:-}" ]; then printf '%s\n' "$3"; fi
        echo "    services = { pair = { balancer = \"roundrobin\", targets = { \"127.0.0.1:$B1\", \"127.0.0.1:$B2\" } } },"
        printf '%s\n' "    routes = { { rule = \"PathPrefix(\`/\`)\", service = \"pair\"${4:-} } },"
        echo "}"
    } > "$1/moongate.lua"
}
# The same, terminating TLS on PORT with make_cert's certificate.
# Usage: write_moongate_tls_conf DIR PORT [FIELDS]
write_moongate_tls_conf() {
    write_moongate_conf "$1" "{ { address = \"127.0.0.1:$2\", tls = true } }" \
        "    tls = { certificates = { { cert = \"$TMP/cert.pem\", key = \"$TMP/key.pem\" } } },${3:+
$3}"
}

# DIR/nginx.conf: nginx_common, then an upstream of the pair with keep-alive
# 64 and one server on PORT proxying every path to it over HTTP/1.1.
# LISTEN_OPTS follow the address on the listen line (" ssl http2"); LINES
# are more lines inside server {} (certificates and such).
# Usage: write_nginx_proxy_conf DIR PORT [LISTEN_OPTS [LINES]]
write_nginx_proxy_conf() {
    {
        nginx_common "$1"
        echo "    upstream pair { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 64; }"
        echo "    server { listen 127.0.0.1:$2${3:-};"
        if [ -n "${4:-}" ]; then printf '%s\n' "$4"; fi
        echo '        location / { proxy_pass http://pair; proxy_http_version 1.1; proxy_set_header Connection ""; } }'
        echo "}"
    } > "$1/nginx.conf"
}
# The nginx lines of a TLS server with make_cert's certificate.
nginx_tls_lines() {
    echo "        ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;"
}

# DIR/haproxy.cfg: one thread, HTTP keep-alive on both sides with connection
# reuse, a frontend on PORT, round-robin over the pair. BIND_OPTS follow the
# address on the bind line (" ssl crt ..."); GLOBAL is more lines of global.
# Usage: write_haproxy_conf DIR PORT [BIND_OPTS [GLOBAL]]
write_haproxy_conf() {
    {
        echo "global"
        echo "    nbthread 1"
        echo "    maxconn 8000"
        if [ -n "${4:-}" ]; then printf '%s\n' "$4"; fi
        cat <<CONF
defaults
    mode http
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend f
    bind 127.0.0.1:$2${3:-}
    default_backend pair
backend pair
    balance roundrobin
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
CONF
    } > "$1/haproxy.cfg"
}

# Starts a proxy of KIND (moongate, nginx or haproxy) with its config in DIR
# (as the writers above name it) under PIN, a command prefix such as
# $PIN_PROXY or "" (unpinned). Adds it to PIDS; once PORT answers, sets PORT
# and PROXY_PIDS (the main pid and its children). Usage: proxy_start KIND DIR PORT PIN
proxy_start() {
    PORT=$3
    case $1 in
    moongate) $4 "$BIN" -c "$2/moongate.lua" >/dev/null 2>"$2/error.log" & ;;
    nginx) $4 nginx -p "$2" -c "$2/nginx.conf" 2>/dev/null & ;;
    haproxy) $4 haproxy -f "$2/haproxy.cfg" -db 2>/dev/null & ;;
    esac
    MAIN=$!
    PIDS="$PIDS $MAIN"
    wait_port "$PORT" || return 1
    sleep 0.2
    PROXY_PIDS=$(proxy_pids "$MAIN")
}

# CPU seconds and resident bytes of the started proxy's processes.
proxy_cpu() { python3 "$HERE/proc_stats.py" cpu $PROXY_PIDS; }
proxy_rss() { python3 "$HERE/proc_stats.py" rss $PROXY_PIDS; }
# A - B, for the figures above (floats). Usage: minus A B
minus() { python3 -c "print($1 - $2)"; }

# The run every script makes: for each NAME, the script's start_proxy NAME,
# then MEASURE NAME, whose output (one row) goes to $results; a proxy that
# does not start gets the row "NAME fail". The proxy is stopped after.
# Usage: bench_each MEASURE NAME...
bench_each() {
    _measure=$1; shift
    results="$TMP/results"
    : > "$results"
    for proxy in "$@"; do
        if ! start_proxy "$proxy"; then
            echo "$proxy failed to start" >&2
            echo "$proxy fail" >> "$results"
            continue
        fi
        "$_measure" "$proxy" >> "$results"
        for p in $PROXY_PIDS; do kill "$p" 2>/dev/null; done
        sleep 0.5
    done
}
