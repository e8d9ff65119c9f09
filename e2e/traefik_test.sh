# examples/traefik-compose: a Traefik-labelled stack routes the same way.
COMPOSE_FILE=examples/traefik-compose/docker-compose.yml
export COMPOSE_FILE
MOONGATE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
export MOONGATE_PORT DOCKER_GID
trap 'compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1' EXIT INT TERM
docker tag moongate:e2e moongate:latest
docker tag moongate-demo-api:e2e moongate-demo-api:latest
docker tag moongate-demo-web:e2e moongate-demo-web:latest

if compose -p "$PROJECT" -f "$COMPOSE_FILE" up -d --no-build >/tmp/moongate-e2e-up.log 2>&1; then
    pass "the Traefik-labelled stack starts"
    gw="http://127.0.0.1:$MOONGATE_PORT"
    check "the gateway answers" wait_http "$gw/" 30
    wait_instances "$gw/api/x" 2 20
    n=$(distinct_instances "$gw/api/x" 8)
    check "traefik.http.routers.api.rule sends /api to both api replicas ($n distinct)" sh -c "[ $n -eq 2 ]"
    check "the rest goes to web (router priority 1)" sh -c "curl -s -m 2 $gw/ | grep -q 'Hello from web'"
    check "traefik.enable=false keeps a container out" \
        sh -c "curl -s -m 2 $gw/internal | grep -q 'Hello from web'"
else
    cat /tmp/moongate-e2e-up.log
    fail "the Traefik-labelled stack starts"
fi
compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans >/dev/null 2>&1
trap - EXIT INT TERM
