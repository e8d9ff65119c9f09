# Shared helpers for the end-to-end tests (sourced by e2e/run.sh and the
# *_test.sh files). Traffic goes only to ports published on 127.0.0.1.

# Compose v2 plugin if present, else Debian's docker-compose (v1).
# v1 needs --compatibility to honour deploy.replicas.
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose "$@"
    else
        docker-compose --compatibility "$@"
    fi
}

E2E_PASSED=${E2E_PASSED:-0}
E2E_FAILED=${E2E_FAILED:-0}

pass() {
    E2E_PASSED=$((E2E_PASSED + 1))
    echo "  ok   - $*"
}

fail() {
    E2E_FAILED=$((E2E_FAILED + 1))
    echo "  FAIL - $*"
}

# check "description" command...: runs the command, counts the result.
check() {
    desc=$1
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}

# gateway_log_if_failed SINCE SERVICE: when checks failed since the count
# SINCE (E2E_FAILED at the test's start), prints the last lines of the
# compose SERVICE's log, so that a failure in CI shows what the gateway saw.
gateway_log_if_failed() {
    [ "$E2E_FAILED" -gt "$1" ] || return 0
    echo "  --- the last lines of $2's log:"
    compose -p "$PROJECT" -f "$COMPOSE_FILE" logs --no-color "$2" 2>&1 | tail -40 | sed 's/^/  | /'
}

# Waits up to $2 seconds (default 30) for URL $1 to answer 2xx.
wait_http() {
    i=0
    limit=$(( ${2:-30} * 10 ))
    while [ $i -lt $limit ]; do
        if curl -fs -m 1 -o /dev/null "$1"; then return 0; fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# Prints the published host port of a compose service's container port.
published_port() {
    compose -p "$PROJECT" -f "$COMPOSE_FILE" port "$1" "$2" | sed 's/.*://'
}

# Prints the api instance that answered each of $2 GETs of URL $1, one a line.
api_instances() {
    for _ in $(seq 1 "$2"); do
        curl -s -m 2 "$1" | sed -n 's/.*"instance": "\([^"]*\)".*/\1/p'
    done
}

# Prints how many distinct api instances answered $2 GETs of URL $1.
distinct_instances() {
    api_instances "$1" "$2" | sort -u | wc -l
}

# Waits up to $3 seconds until $2 or more distinct instances answer URL $1.
wait_instances() {
    i=0
    while [ $i -lt $(( ${3:-20} * 5 )) ]; do
        [ "$(distinct_instances "$1" 8)" -ge "$2" ] && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}

# swarm_init ADDR: docker swarm init, noting whether the docker_gwbridge
# network (which swarm init creates and swarm leave keeps) was there
# before, so that swarm_leave leaves the engine as it found it.
swarm_init() {
    if docker network inspect docker_gwbridge >/dev/null 2>&1; then SWARM_GWBRIDGE_KEEP=1; else SWARM_GWBRIDGE_KEEP=; fi
    docker swarm init --advertise-addr "$1"
}

# swarm_leave: leaves the swarm, and removes docker_gwbridge if swarm_init made it.
swarm_leave() {
    docker swarm leave --force >/dev/null 2>&1
    [ -n "${SWARM_GWBRIDGE_KEEP:-}" ] || docker network rm docker_gwbridge >/dev/null 2>&1
    return 0
}

# gateway_targets ADMIN_URL SERVICE: how many targets the gateway behind
# ADMIN_URL routes SERVICE to now (0 when it cannot say).
gateway_targets() {
    curl -s -m 2 "$1/api/services" | python3 -c "
import json, sys
for s in json.load(sys.stdin):
    if s['name'] == '$2' and not s.get('removed'): print(len(s['targets'])); break
else: print(0)" 2>/dev/null || echo 0
}
