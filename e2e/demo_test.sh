# The top-level docker-compose.yml: two replicas each of api and web behind
# the gateway with no moongate config (Docker discovery by labels), reached
# on 127.0.0.1.
COMPOSE_FILE=docker-compose.yml
export COMPOSE_FILE
MOONGATE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOONGATE_ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
export MOONGATE_PORT MOONGATE_ADMIN_PORT DOCKER_GID
trap 'compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1' EXIT INT TERM

failed_before=$E2E_FAILED
# the images were built by run.sh under :e2e tags; reuse them
docker tag moongate:e2e moongate:latest
docker tag moongate-demo-api:e2e moongate-demo-api:latest
docker tag moongate-demo-web:e2e moongate-demo-web:latest

if compose -p "$PROJECT" -f "$COMPOSE_FILE" up -d --no-build >/tmp/moongate-e2e-up.log 2>&1; then
    pass "the demo stack starts with deploy.replicas: 2"
    gw="http://127.0.0.1:$MOONGATE_PORT"
    check "the gateway answers on 127.0.0.1:$MOONGATE_PORT" wait_http "$gw/" 30
    # zero config: replicas are discovered by label, api ones once healthy
    wait_instances "$gw/api/x" 2 20
    seen=$(api_instances "$gw/api/x" 4)
    distinct=$(echo "$seen" | sort -u | wc -l)
    alternating=$(echo "$seen" | awk 'NR>1 && $0==prev {bad=1} {prev=$0} END {print bad ? "no" : "yes"}')
    check "both api replicas answer, in alternation ($(echo $seen))" \
        sh -c "[ $distinct -eq 2 ] && [ $alternating = yes ]"
    web_instances() {
        for _ in 1 2 3 4; do curl -s -m 2 "$gw/" | sed -n 's/.*<b id="instance">\([^<]*\)<.*/\1/p'; done | sort -u | wc -l
    }
    i=0; while [ $i -lt 100 ] && [ "$(web_instances)" -lt 2 ]; do sleep 0.2; i=$((i + 1)); done
    webseen=$(web_instances)
    check "both web replicas answer ($webseen distinct)" sh -c "[ $webseen -eq 2 ]"
    check "the admin API lists both services" \
        sh -c "curl -s -m 2 http://127.0.0.1:$MOONGATE_ADMIN_PORT/api/services | grep -q '\"name\": \"web\"'"
else
    cat /tmp/moongate-e2e-up.log
    fail "the demo stack starts with deploy.replicas: 2"
fi
gateway_log_if_failed "$failed_before" moongate
compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1
trap - EXIT INT TERM
