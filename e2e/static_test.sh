# A static-config stack: the gateway image proxies to containers by name.
COMPOSE_FILE=e2e/static/docker-compose.yml
export COMPOSE_FILE
trap 'compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1' EXIT INT TERM

check "moongate image runs as a non-root user" \
    sh -c '[ "$(docker run --rm --entrypoint id moongate:e2e -u)" != 0 ]'
check "moongate image prints its version" \
    sh -c 'docker run --rm moongate:e2e version | grep -q "^moongate "'

if compose -p "$PROJECT" -f "$COMPOSE_FILE" up -d >/tmp/moongate-e2e-up.log 2>&1; then
    pass "static stack starts"
    gw=$(published_port moongate 8080)
    web=$(published_port web 80)
    check "web answers directly on its published port" wait_http "http://127.0.0.1:$web/" 30
    check "the gateway answers on its published port" wait_http "http://127.0.0.1:$gw/api/x" 30
    seen=$(api_instances "http://127.0.0.1:$gw/api/x" 4 | tr '\n' ' ')
    check "requests alternate between api1 and api2 ($seen)" \
        sh -c "[ '$seen' = 'api1 api2 api1 api2 ' ] || [ '$seen' = 'api2 api1 api2 api1 ' ]"
    check "the rest is routed to web" \
        sh -c "curl -s -m 2 http://127.0.0.1:$gw/ | grep -q 'Hello from web'"
else
    cat /tmp/moongate-e2e-up.log
    fail "static stack starts"
fi
compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1
trap - EXIT INT TERM
