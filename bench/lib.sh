# Shared by the bench scripts (sourced): their start (bench_init), ports,
# pinning, nginx's common config, the backend pair.

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
wait_port() {
    i=0
    while [ $i -lt 100 ]; do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.05; i=$((i + 1))
    done
    return 1
}
# The proxy runs on core 0, the load and the backends on core 1 (with 2 cores).
NCPU=$(nproc)
PIN_PROXY=""; PIN_LOAD=""
if [ "$NCPU" -ge 2 ]; then PIN_PROXY="taskset -c 0"; PIN_LOAD="taskset -c 1"; fi

nginx_common() {
    cat <<CONF
daemon off;
worker_processes 1;
error_log $1/error.log;
pid $1/nginx.pid;
events { worker_connections 65536; }
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
