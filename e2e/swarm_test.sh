# Docker Swarm discovery on a single-node swarm: the seed's stack
# (examples/swarm/stack.yml) behind a zero-config gateway. Leaves the swarm
# and removes the stack on every exit path.
STACK="${PROJECT}"
SWARM_INITED=
swarm_cleanup() {
    docker stack rm "$STACK" >/dev/null 2>&1
    i=0
    while [ $i -lt 60 ] && [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ]; do
        sleep 0.5; i=$((i + 1))
    done
    [ -n "$SWARM_INITED" ] && swarm_leave
    SWARM_INITED=
}
trap 'swarm_cleanup' EXIT INT TERM

web_instances() { # distinct X-Instance headers in $1 GETs of the web page
    for _ in $(seq 1 "$1"); do curl -s -m 2 -o /dev/null -D - "$gw/" | sed -n 's/^X-Instance: *\([^\r]*\).*/\1/p'; done | sort -u | wc -l
}
alternates() { # the last $2 answers of URL $1 never name the same instance twice in a row
    prev=; n=0
    for _ in $(seq 1 "$2"); do
        cur=$(curl -s -m 2 "$1" | sed -n 's/.*"instance": "\([^"]*\)".*/\1/p')
        [ -z "$cur" ] && return 1
        [ "$cur" = "$prev" ] && n=$((n + 1))
        prev=$cur
    done
    [ $n -eq 0 ]
}
ask_sick() { # 4 requests for the service that never becomes healthy, at once
    for i in 1 2 3 4; do
        curl -s -m 15 -o "/tmp/moongate-e2e-swarm-sick.$i" -w '%{http_code}' "$gw/sick" > "/tmp/moongate-e2e-swarm-sick.$i.code" &
    done
    wait
}
sick_reached() { cat /tmp/moongate-e2e-swarm-sick.[1-4] | grep -c '"service": "api"'; }
sick_503() { for f in /tmp/moongate-e2e-swarm-sick.[1-4].code; do cat "$f"; echo; done | grep -c '^503$'; }
load() { # URL SECONDS COMMAND -> failed requests; the load's summary in $LOAD_NOTE
    python3 e2e/load.py "$1" "$2" "$3" 100000 2>/tmp/moongate-e2e-swarm-load.txt
    cat /tmp/moongate-e2e-swarm-load.txt >> /tmp/moongate-e2e-swarm-load.log
}
load_ok() { # the last load failed nothing and outlasted its command
    [ "$1" = 0 ] && grep -q ', covered' /tmp/moongate-e2e-swarm-load.txt
}
load_note() { sed -n 's/^load: \(.*\)/\1/p' /tmp/moongate-e2e-swarm-load.txt | tr '\n' ' '; }

if [ "$(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" != "inactive" ]; then
    fail "the engine is not in a swarm already (it is $(docker info -f '{{.Swarm.LocalNodeState}}'))"
elif ! swarm_init 127.0.0.1 >/tmp/moongate-e2e-swarm.log 2>&1; then
    cat /tmp/moongate-e2e-swarm.log
    fail "docker swarm init"
else
    SWARM_INITED=1
    pass "a single-node swarm starts"
    MOONGATE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    MOONGATE_ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    DOCKER_GID=$(stat -c %g /var/run/docker.sock)
    export MOONGATE_PORT MOONGATE_ADMIN_PORT DOCKER_GID
    export MOONGATE_IMAGE=moongate:e2e API_IMAGE=moongate-demo-api:e2e WEB_IMAGE=moongate-demo-web:e2e
    gw="http://127.0.0.1:$MOONGATE_PORT"
    if docker stack deploy --resolve-image never -c examples/swarm/stack.yml -c e2e/swarm/sick.yml "$STACK" \
        >/tmp/moongate-e2e-swarm.log 2>&1; then
        pass "the seed's stack deploys offline (--resolve-image never)"
        check "the gateway answers" wait_http "$gw/" 60
        check "both api tasks answer" wait_instances "$gw/api/x" 2 60
        check "the two api tasks alternate" alternates "$gw/api/x" 8
        i=0; while [ $i -lt 100 ] && [ "$(web_instances 6)" -lt 2 ]; do sleep 0.2; i=$((i + 1)); done
        check "both web tasks answer ($(web_instances 6) distinct)" sh -c "[ $(web_instances 6) -eq 2 ]"
        # its requests are held (timeouts.queue, 10 s) for a task that never comes, then get a 503
        ask_sick
        check "a task failing its health check gets no traffic ($(sick_reached) of 4 reached it, $(sick_503) answered 503)" \
            sh -c "[ $(sick_reached) -eq 0 ] && [ $(sick_503) -eq 4 ]"

        before=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_web" | cut -c1-12 | sort)
        date -u +%H:%M:%S.%N > /tmp/moongate-e2e-swarm-scale-at.txt
        docker service scale -d "${STACK}_web=4" >/dev/null 2>&1
        python3 e2e/swarm/first_seen.py "$gw/" 4 20 > /tmp/moongate-e2e-swarm-seen.txt
        check "after scale web=4, four web tasks answer" sh -c "[ $(wc -l < /tmp/moongate-e2e-swarm-seen.txt) -eq 4 ]"
        worst=$(python3 - "$before" <<'PY'
import subprocess, sys, datetime
before = set(sys.argv[1].split())
worst = None
for line in open("/tmp/moongate-e2e-swarm-seen.txt"):
    inst, t = line.split()
    if inst in before:
        continue
    started = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", inst],
                             capture_output=True, text=True).stdout.strip()
    s = datetime.datetime.fromisoformat(started[:26].rstrip("Z")).replace(tzinfo=datetime.timezone.utc).timestamp()
    d = float(t) - s
    worst = d if worst is None else max(worst, d)
print("%.2f" % worst if worst is not None else "none")
PY
)
        echo "  scale-up: the slowest new web task was served ${worst} s after its container started (Traefik's Swarm provider polls every 15 s)"
        check "new tasks are served within 1 s of starting (${worst} s)" \
            python3 -c "import sys; sys.exit(0 if '$worst' != 'none' and float('$worst') <= 1.0 else 1)"
        docker service logs --raw "${STACK}_moongate" 2>&1 | grep '"web"' | tail -3000 > /tmp/moongate-e2e-swarm-access.log

        fails=$(load "$gw/" 8 "docker service scale ${STACK}_web=1")
        check "scale web=1 under load: $fails failed requests ($(load_note))" load_ok "$fails"
        check "one web task left answers" sh -c "[ $(web_instances 6) -eq 1 ]"
        docker service scale "${STACK}_web=2" >/dev/null 2>&1
        i=0; while [ $i -lt 100 ] && [ "$(web_instances 8)" -lt 2 ]; do sleep 0.2; i=$((i + 1)); done
        for order in stop-first start-first; do
            fails=$(load "$gw/" 30 "docker service update --force --update-order $order --update-monitor 1s ${STACK}_web")
            check "docker service update --force ($order) under load: $fails failed requests ($(load_note))" load_ok "$fails"
            docker service logs --raw --since 40s "${STACK}_moongate" 2>&1 | grep '"GET' | grep -v '" 200 ' | tail -40 \
                > "/tmp/moongate-e2e-swarm-failed-$order.log"
            i=0; while [ $i -lt 100 ] && [ "$(web_instances 8)" -lt 2 ]; do sleep 0.2; i=$((i + 1)); done
        done
        ask_sick
        # docker service logs lags behind the gateway's stdout: wait (bounded)
        i=0
        while [ $i -lt 25 ] && [ "$(docker service logs --raw "${STACK}_moongate" 2>&1 | grep -c '"sick"')" -lt 8 ]; do
            sleep 0.2; i=$((i + 1))
        done
        served=$(docker service logs --raw "${STACK}_moongate" 2>&1 | grep '"sick"' | grep -c '@')
        asked=$(docker service logs --raw "${STACK}_moongate" 2>&1 | grep -c '"sick"')
        # (docker service logs does not always return both batches: the
        # second batch's answers, all 503 with no target, say the rest)
        check "the unhealthy task got none of the requests for it over the whole run ($served of $asked logged did, $(sick_503) of the last 4 answered 503)" \
            sh -c "[ $served -eq 0 ] && [ $asked -ge 4 ] && [ $(sick_503) -eq 4 ] && [ $(sick_reached) -eq 0 ]"
        victim=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_web" | head -n 1)
        fails=$(load "$gw/" 6 "docker kill $victim")
        check "docker kill of a web task's container under load: $fails failed requests ($(load_note))" load_ok "$fails"
    else
        cat /tmp/moongate-e2e-swarm.log
        fail "the seed's stack deploys offline (--resolve-image never)"
    fi
    docker service logs --raw "${STACK}_moongate" 2>&1 | grep -v '"GET' | tail -40 > /tmp/moongate-e2e-swarm-gateway.log
fi
swarm_cleanup
trap - EXIT INT TERM
