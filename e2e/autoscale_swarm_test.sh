# Autoscaling on the real engine with a single-node Docker Swarm: the
# gateway runs as a Swarm service with the Docker socket; `slow` (deploy
# labels: min 1, max 4, target 4) follows a bounded load of 16 concurrent
# slow requests up to 4 tasks and back to 1 once the load stops and its
# 10 s window passed, with no failed request; `cold` (min 0) is scaled to
# 0 when idle and answers its first request after a cold start. Prints the
# timings. Leaves the stack and the swarm (when it started it) on every
# exit path.
STACK="${PROJECT}"
AS_SWARM_INITED=
AS_LOG=/tmp/moongate-e2e-autoscale-swarm
# what slow's tasks say on SIGTERM (a removed task's logs go with it)
AS_REPORTS=$(mktemp -d /tmp/moongate-e2e-autoscale-swarm-reports.XXXXXX)
chmod 777 "$AS_REPORTS"
export AS_REPORTS
as_swarm_cleanup() {
    [ -n "${as_load_pid:-}" ] && kill "$as_load_pid" 2>/dev/null
    as_load_pid=
    # (the gateway logs on stderr: docker service logs passes it on its own)
    docker service logs --raw "${STACK}_moongate" 2>&1 | grep -v '"GET ' | tail -300 > "$AS_LOG-gateway.log"
    docker stack rm "$STACK" >/dev/null 2>&1
    i=0
    while [ $i -lt 60 ] && [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ]; do
        sleep 0.5; i=$((i + 1))
    done
    # the stack's overlay network goes a moment after its containers
    i=0
    while [ $i -lt 40 ] && [ -n "$(docker network ls -q --filter "label=com.docker.stack.namespace=$STACK")" ]; do
        sleep 0.5; i=$((i + 1))
    done
    [ -n "$AS_SWARM_INITED" ] && swarm_leave
    AS_SWARM_INITED=
    rm -rf "$AS_REPORTS"
}
trap 'as_swarm_cleanup' EXIT INT TERM

# as_targets SERVICE: how many targets the gateway routes SERVICE to now
as_targets() {
    gateway_targets "$admin" "$1"
}
# as_running SERVICE: its running task containers
as_running() { docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_$1" | wc -l; }
# as_tasks SERVICE: the ids of its tasks whose desired state is running
as_tasks() { docker service ps -q --filter desired-state=running "${STACK}_$1" 2>/dev/null | sort; }
as_wait_for() { # SECONDS COMMAND...: polls COMMAND every 0.2 s
    limit=$(( $1 * 5 )); shift
    i=0
    while [ $i -lt $limit ]; do
        if "$@"; then return 0; fi
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
as_has() { [ "$(as_targets "$1")" -eq "$2" ]; }
as_runs() { [ "$(as_running "$1")" -eq "$2" ]; }
as_now() { date +%s.%N; }
as_since() { python3 -c "print(round($(as_now) - $1, 1))"; }
as_load() { # URL SECONDS CONCURRENCY: a bounded load in the background; failures in $AS_LOG-load.out
    CONCURRENCY=$3 python3 e2e/load.py "$1" "$2" true 20000 >"$AS_LOG-load.out" 2>"$AS_LOG-load.txt" &
    as_load_pid=$!
}
as_load_end() { # waits for the load; its failed requests in $fails
    wait "$as_load_pid"
    as_load_pid=
    fails=$(cat "$AS_LOG-load.out")
    cat "$AS_LOG-load.txt" >> "$AS_LOG-load.log"
}
as_load_note() { sed -n 's/^load: \(.*\)/\1/p' "$AS_LOG-load.txt" | tr '\n' ' '; }

: > "$AS_LOG-load.log"
if [ "$(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" != "inactive" ]; then
    fail "the engine is not in a swarm already (it is $(docker info -f '{{.Swarm.LocalNodeState}}'))"
elif ! swarm_init 127.0.0.1 >"$AS_LOG.log" 2>&1; then
    cat "$AS_LOG.log"
    fail "docker swarm init"
else
    AS_SWARM_INITED=1
    pass "a single-node swarm starts"
    MOONGATE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    MOONGATE_ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    DOCKER_GID=$(stat -c %g /var/run/docker.sock)
    E2E_DIR=$(pwd)/e2e
    export MOONGATE_PORT MOONGATE_ADMIN_PORT DOCKER_GID E2E_DIR
    export MOONGATE_IMAGE=moongate:e2e API_IMAGE=moongate-demo-api:e2e
    gw="http://127.0.0.1:$MOONGATE_PORT"
    admin="http://127.0.0.1:$MOONGATE_ADMIN_PORT"
    if docker stack deploy --resolve-image never -c e2e/autoscale_swarm/stack.yml "$STACK" >"$AS_LOG.log" 2>&1; then
        pass "the autoscale stack deploys offline (--resolve-image never)"
        check "the gateway answers through slow" wait_http "$gw/slow?ms=0" 90
        check "slow starts with 1 task" as_wait_for 10 as_has slow 1
        first_task=$(as_tasks slow)

        t0=$(as_now)
        as_load "$gw/slow?ms=1000" 30 16
        if as_wait_for 30 as_has slow 4; then
            up=$(as_since "$t0")
            joined=$(curl -s -m 2 "$admin/api/services" | python3 -c "
import json, sys
s = [s for s in json.load(sys.stdin) if s['name'] == 'slow'][0]
print(' '.join(str(round(t['first_seen'] - $t0, 1)) for t in sorted(s['targets'], key=lambda t: t['first_seen'])[1:]))")
            pass "16 concurrent slow requests: slow reaches 4 tasks in ${up} s (the gateway routed to the new ones at +${joined} s)"
        else
            fail "16 concurrent slow requests: slow reaches 4 tasks (the gateway has $(as_targets slow))"
        fi
        check "4 slow task containers run" as_wait_for 10 as_runs slow 4
        check "4 distinct slow tasks answer through the gateway" wait_instances "$gw/slow?ms=0" 4 20
        check "the task that ran before still runs (the update changed the replicas only, no rolling restart)" \
            sh -c "as_tasks() { docker service ps -q --filter desired-state=running ${STACK}_slow | sort; }; as_tasks | grep -qx '$first_task'"
        check "never more than max (4) tasks of slow ran" sh -c "[ $(as_running slow) -le 4 ]"
        as_load_end
        check "no request failed under the load and the scale-up ($fails failed; $(as_load_note))" sh -c "[ '$fails' = 0 ]"

        # a light load goes on while it scales down: the removed tasks are
        # out of discovery before Swarm stops them, and finish their requests
        t1=$(as_now)
        as_load "$gw/slow?ms=20" 25 1
        if as_wait_for 40 as_runs slow 1; then
            down=$(as_since "$t1")
            pass "once the load stops, slow is back to 1 task in ${down} s (window 10 s)"
        else
            fail "once the load stops, slow is back to 1 task (has $(as_running slow) running)"
        fi
        as_load_end
        check "no request failed while it scaled down ($fails failed; $(as_load_note))" sh -c "[ '$fails' = 0 ]"
        check "the gateway routes to the one task left" sh -c "[ $(as_targets slow) -eq 1 ]"
        # the removed tasks' own account (slow.py, on SIGTERM, in $AS_REPORTS):
        # the gateway took them out of discovery before Swarm stopped them
        cat "$AS_REPORTS"/* > "$AS_LOG-sigterm.log" 2>/dev/null
        late=$(sed -n 's/.*; \([0-9]*\) requests came after it.*/\1/p' "$AS_LOG-sigterm.log" | awk '{ n += $1 } END { print n + 0 }')
        quiet=$(sed -n 's/.*the last before it came \([0-9.]*\) s before/\1/p' "$AS_LOG-sigterm.log" | sort -n | tr '\n' ' ')
        check "the 3 removed tasks got no request after SIGTERM (out of discovery before Swarm stopped them: $(wc -l < "$AS_LOG-sigterm.log") said so, ${late:-?} came late; their last request came ${quiet}s before SIGTERM)" \
            sh -c "[ $(wc -l < "$AS_LOG-sigterm.log") -eq 3 ] && [ '${late:-x}' = 0 ]"
        check "Swarm has 1 replica of slow" sh -c \
            "[ \"\$(docker service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' ${STACK}_slow)\" = 1 ]"

        # cold: min 0, idle since the start, its 3 s window passed
        check "cold is scaled to 0 when idle (min 0)" as_wait_for 40 as_runs cold 0
        check "Swarm has 0 replicas of cold" sh -c \
            "[ \"\$(docker service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' ${STACK}_cold)\" = 0 ]"
        check "the gateway has no target for cold" as_wait_for 5 as_has cold 0
        res=$(curl -s -m 30 -o /dev/null -w '%{http_code} %{time_total}' "$gw/cold/x")
        code=${res% *}
        cold=${res#* }
        check "the first request to cold after a cold start answers $code in ${cold} s" sh -c "[ '$code' = 200 ]"
        check "cold runs 1 task again" as_wait_for 10 as_runs cold 1
        # docker service logs lags behind the gateway's stderr: wait (bounded)
        # for the actuator's lines of the last step (cold 0 -> 1)
        i=0
        while [ $i -lt 25 ] && ! docker service logs --raw "${STACK}_moongate" 2>&1 | grep -q 'swarm service .*_cold 0 -> 1'; do
            sleep 0.2; i=$((i + 1))
        done
        docker service logs --raw "${STACK}_moongate" 2>&1 | grep '\[autoscale\]' > "$AS_LOG-actions.log"
        updates=$(grep -c ': swarm service .* replicas (version ' "$AS_LOG-actions.log")
        conflicts=$(grep -c 'out of sequence\|status [45][0-9][0-9]' "$AS_LOG-actions.log")
        check "the actuator's Swarm updates all went through ($updates made, $conflicts failed)" \
            sh -c "[ $updates -ge 4 ] && [ $conflicts -eq 0 ]"
        echo "  autoscale on swarm: up to 4 tasks ${up:-?} s, back to 1 ${down:-?} s, cold start ${cold:-?} s"
    else
        cat "$AS_LOG.log"
        fail "the autoscale stack deploys offline (--resolve-image never)"
    fi
fi
as_swarm_cleanup
trap - EXIT INT TERM
