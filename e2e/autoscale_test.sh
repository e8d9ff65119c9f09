# Autoscaling on the real engine with Compose: `slow` (min 1, max 4,
# target 4) follows a bounded load of 16 concurrent slow requests up to 4
# replicas and back to 1 once the load stops and its 10 s window passed,
# with no failed request; `cold` (min 0) is stopped when idle and answers
# its first request after a cold start. Prints the timings.
COMPOSE_FILE=e2e/autoscale/docker-compose.yml
export COMPOSE_FILE PROJECT
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
export DOCKER_GID
trap 'compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1' EXIT INT TERM

# targets SERVICE: how many replicas the gateway routes SERVICE to now
targets() {
    gateway_targets "$admin" "$1"
}
# running SERVICE: its running containers
running() {
    docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | wc -l
}
# wait_for SECONDS COMMAND...: polls COMMAND every 0.2 s
wait_for() {
    limit=$(( $1 * 5 )); shift
    i=0
    while [ $i -lt $limit ]; do
        if "$@"; then return 0; fi
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
listed() { [ "$(compose -p "$PROJECT" -f "$COMPOSE_FILE" ps -q "$1" | wc -l)" -eq "$2" ]; }
has() { [ "$(targets "$1")" -eq "$2" ]; }
runs() { [ "$(running "$1")" -eq "$2" ]; }
now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 1))"; }

if compose -p "$PROJECT" -f "$COMPOSE_FILE" up -d >/tmp/moongate-e2e-up.log 2>&1; then
    pass "the autoscale stack starts"
    gw="http://127.0.0.1:$(published_port moongate 8080)"
    admin="http://127.0.0.1:$(published_port moongate 8081)"
    check "the gateway answers through slow" wait_http "$gw/slow?ms=0" 30
    check "slow starts with 1 replica" wait_for 10 has slow 1

    load_out=/tmp/moongate-e2e-autoscale-load.$$
    t0=$(now)
    CONCURRENCY=16 python3 e2e/load.py "$gw/slow?ms=1000" 30 true >"$load_out" 2>/dev/null &
    load_pid=$!
    if wait_for 30 has slow 4; then
        up=$(since "$t0")
        # when the gateway itself first routed to each replica (first_seen)
        joined=$(curl -s -m 2 "$admin/api/services" | python3 -c "
import json, sys
s = [s for s in json.load(sys.stdin) if s['name'] == 'slow'][0]
print(' '.join(str(round(t['first_seen'] - $t0, 1)) for t in sorted(s['targets'], key=lambda t: t['first_seen'])[1:]))")
        pass "16 concurrent slow requests: slow reaches 4 replicas in ${up} s (the gateway routed to the new ones at +${joined} s)"
    else
        fail "16 concurrent slow requests: slow reaches 4 replicas (has $(targets slow))"
    fi
    check "docker-compose ps lists the 4 slow replicas" \
        listed slow 4
    check "never more than max (4) replicas ran" sh -c "[ $(running slow) -le 4 ]"
    wait "$load_pid"
    fails=$(cat "$load_out")
    check "no request failed under the load and the scale-up ($fails failed)" sh -c "[ '$fails' = 0 ]"

    # a light load goes on while it scales down: draining must lose nothing
    t1=$(now)
    CONCURRENCY=1 python3 e2e/load.py "$gw/slow?ms=20" 25 true >"$load_out" 2>/dev/null &
    load_pid=$!
    if wait_for 40 runs slow 1; then
        down=$(since "$t1")
        pass "once the load stops, slow is back to 1 replica in ${down} s (window 10 s)"
    else
        fail "once the load stops, slow is back to 1 replica (has $(running slow))"
    fi
    wait "$load_pid"
    fails=$(cat "$load_out")
    check "no request failed while it scaled down ($fails failed)" sh -c "[ '$fails' = 0 ]"
    check "the gateway routes to the one replica left" sh -c "[ $(targets slow) -eq 1 ]"
    rm -f "$load_out"

    # cold: min 0, idle since the start, its 3 s window passed
    check "cold is stopped when idle (min 0)" wait_for 30 runs cold 0
    check "the gateway has no replica of cold" wait_for 5 has cold 0
    res=$(curl -s -m 30 -o /dev/null -w '%{http_code} %{time_total}' "$gw/cold/x")
    code=${res% *}
    cold=${res#* }
    check "the first request to cold after a cold start answers $code in ${cold} s" sh -c "[ '$code' = 200 ]"
    echo "  autoscale timings: up to 4 replicas ${up:-?} s, back to 1 ${down:-?} s, cold start ${cold:-?} s"
else
    cat /tmp/moongate-e2e-up.log
    fail "the autoscale stack starts"
fi
compose -p "$PROJECT" -f "$COMPOSE_FILE" logs --no-color moongate 2>/dev/null | grep -v "\"GET " | tail -200 > /tmp/moongate-e2e-autoscale.log
compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1
trap - EXIT INT TERM
