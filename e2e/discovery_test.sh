# Docker discovery: replicas found by labels, scaling followed without a
# restart or a reload.
COMPOSE_FILE=e2e/discovery/docker-compose.yml
export COMPOSE_FILE
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
export DOCKER_GID
trap 'compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1' EXIT INT TERM

failed_before=$E2E_FAILED
instances() { distinct_instances "$gw/api/x" "$1"; }

if compose -p "$PROJECT" -f "$COMPOSE_FILE" up -d >/tmp/moongate-e2e-up.log 2>&1; then
    pass "the discovery stack starts"
    gw="http://127.0.0.1:$(published_port moongate 8080)"
    check "the gateway answers" wait_http "$gw/" 30
    i=0; while [ $i -lt 100 ] && [ "$(instances 6)" -lt 2 ]; do sleep 0.2; i=$((i + 1)); done
    check "both api replicas answer ($(instances 6) distinct)" sh -c "[ $(instances 6) -eq 2 ]"
    check "the rest goes to web" sh -c "curl -s -m 2 $gw/ | grep -q 'Hello from web'"
    check "a container failing its health check gets no traffic" \
        sh -c "! curl -s -m 2 $gw/sick | grep -q '\"service\": \"api\"'"
    compose -p "$PROJECT" -f "$COMPOSE_FILE" up -d --scale api=4 >/dev/null 2>&1
    t0=$(date +%s.%N)
    i=0; while [ $i -lt 100 ] && [ "$(instances 12)" -lt 4 ]; do sleep 0.05; i=$((i + 1)); done
    t1=$(date +%s.%N)
    took=$(python3 -c "print(round($t1 - $t0, 2))")
    check "after --scale api=4, four replicas answer ($(instances 12) distinct)" sh -c "[ $(instances 12) -eq 4 ]"
    check "the new replicas answer within 1 s of their start (${took} s)" \
        python3 -c "import sys; sys.exit(0 if $took <= 1.0 else 1)"
    victim=$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=api" | head -n 1)
    fails=$(python3 e2e/load.py "$gw/api/x" 3 "docker kill $victim")
    check "docker kill of one replica under load: $fails failed requests" sh -c "[ '$fails' = 0 ]"
    fails=$(python3 e2e/load.py "$gw/api/x" 4 "$(command -v docker) compose version >/dev/null 2>&1 && docker compose -p $PROJECT -f $COMPOSE_FILE up -d --scale api=1 || docker-compose --compatibility -p $PROJECT -f $COMPOSE_FILE up -d --scale api=1")
    check "--scale api=1 under load: $fails failed requests" sh -c "[ '$fails' = 0 ]"
    check "one replica left answers" sh -c "[ $(instances 4) -eq 1 ]"
else
    cat /tmp/moongate-e2e-up.log
    fail "the discovery stack starts"
fi
gateway_log_if_failed "$failed_before" moongate
compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1
trap - EXIT INT TERM
