# Docker Swarm on two nodes: a second dockerd (its own data root, exec root,
# socket and bridge) in its own network namespace, linked to this one by a
# veth pair, joins this engine's swarm as a worker. Opt-in (MG_SWARM_NODE2=1):
# it adds a network namespace, a veth pair and a daemon for its duration.
# Everything is removed, and both engines leave the swarm, on every exit path.
if [ "${MG_SWARM_NODE2:-}" != 1 ]; then
    echo "  skip - swarm on two nodes: set MG_SWARM_NODE2=1 (adds a netns, a veth pair and a second dockerd while it runs)"
else
N2=/tmp/moongate-e2e-node2
D2="docker -H unix://$N2/docker.sock"
STACK="${PROJECT}"
N2_INITED=
node2_cleanup() {
    docker stack rm "$STACK" >/dev/null 2>&1
    i=0
    while [ $i -lt 60 ] && [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ]; do
        sleep 0.5; i=$((i + 1))
    done
    $D2 swarm leave --force >/dev/null 2>&1
    [ -n "$N2_INITED" ] && docker swarm leave --force >/dev/null 2>&1
    N2_INITED=
    if [ -f $N2/dockerd.pid ]; then
        kill "$(cat $N2/dockerd.pid)" 2>/dev/null
        i=0; while [ $i -lt 40 ] && [ -f $N2/dockerd.pid ] && kill -0 "$(cat $N2/dockerd.pid)" 2>/dev/null; do sleep 0.5; i=$((i + 1)); done
    fi
    ip netns del mgnode2 2>/dev/null
    ip link del mgv0 2>/dev/null
    umount -R $N2/exec 2>/dev/null; umount -R $N2/data 2>/dev/null
    rm -rf $N2
}
trap 'node2_cleanup' EXIT INT TERM
node2_tasks() { # the container ids (12) of the running tasks of $1 on node 2
    $D2 ps -q --filter "label=com.docker.swarm.service.name=$1" 2>/dev/null | sort
}
seen_instances() { # distinct X-Instance headers in $1 GETs of /
    for _ in $(seq 1 "$1"); do curl -s -m 2 -o /dev/null -D - "$gw/" | sed -n 's/^X-Instance: *\([^\r]*\).*/\1/p'; done | sort -u
}

if [ "$(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" != "inactive" ]; then
    fail "swarm on two nodes: the engine is not in a swarm already"
elif ! { mkdir -p $N2 && ip netns add mgnode2 && ip link add mgv0 type veth peer name mgv1 &&
         ip link set mgv1 netns mgnode2 && ip addr add 10.234.0.1/24 dev mgv0 && ip link set mgv0 up &&
         ip netns exec mgnode2 sh -c 'ip addr add 10.234.0.2/24 dev mgv1 && ip link set mgv1 up && ip link set lo up'; }; then
    fail "swarm on two nodes: a network namespace linked by a veth pair"
else
    # the host's storage driver (fuse-overlayfs here) and MTU; nsenter, not
    # `ip netns exec`, so that /sys (and its cgroup mounts) stays the host's
    python3 -c "import json; c=json.load(open('/etc/docker/daemon.json')); print(json.dumps({k: c[k] for k in ('storage-driver', 'mtu') if k in c}))" \
        > $N2/daemon.json 2>/dev/null || echo '{}' > $N2/daemon.json
    nsenter --net=/var/run/netns/mgnode2 dockerd --data-root $N2/data --exec-root $N2/exec \
        -H unix://$N2/docker.sock --pidfile $N2/dockerd.pid --config-file $N2/daemon.json \
        --bip 10.235.0.1/24 > /tmp/moongate-e2e-node2-dockerd.log 2>&1 &
    i=0; while [ $i -lt 60 ] && ! $D2 info >/dev/null 2>&1; do sleep 0.5; i=$((i + 1)); done
    if ! $D2 info >/dev/null 2>&1; then
        tail -5 /tmp/moongate-e2e-node2-dockerd.log
        fail "swarm on two nodes: a second dockerd starts in its namespace"
    elif ! docker swarm init --advertise-addr 10.234.0.1 >/dev/null 2>&1; then
        fail "swarm on two nodes: docker swarm init"
    else
        N2_INITED=1
        if $D2 swarm join --token "$(docker swarm join-token -q worker)" --advertise-addr 10.234.0.2 10.234.0.1:2377 >/dev/null 2>&1; then
            pass "a second dockerd in its own network namespace joins the swarm as a worker"
        else
            fail "a second dockerd in its own network namespace joins the swarm as a worker"
        fi
        NODE2=$($D2 info -f '{{.Swarm.NodeID}}')
        docker save moongate-demo-web:e2e moongate-demo-api:e2e | $D2 load -q >/dev/null
        MOONGATE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        MOONGATE_ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        DOCKER_GID=$(stat -c %g /var/run/docker.sock)
        export MOONGATE_PORT MOONGATE_ADMIN_PORT DOCKER_GID
        export MOONGATE_IMAGE=moongate:e2e API_IMAGE=moongate-demo-api:e2e WEB_IMAGE=moongate-demo-web:e2e
        gw="http://127.0.0.1:$MOONGATE_PORT"
        docker stack deploy --resolve-image never -c examples/swarm/stack.yml -c e2e/swarm/spread.yml "$STACK" >/dev/null 2>&1
        check "swarm on two nodes: the gateway answers" wait_http "$gw/" 90
        docker service scale "${STACK}_web=4" >/dev/null 2>&1
        # the first task on the new node waits for its image layers (fuse-overlayfs): allow a while
        i=0; while [ $i -lt 120 ] && [ "$(node2_tasks "${STACK}_web" | wc -l)" -lt 2 ]; do sleep 0.5; i=$((i + 1)); done
        remote=$(node2_tasks "${STACK}_web")
        found=0
        i=0
        while [ $i -lt 40 ]; do
            seen=$(seen_instances 16)
            found=0
            for c in $remote; do echo "$seen" | grep -q "^$c" && found=$((found + 1)); done
            [ $found -ge 2 ] && break
            sleep 0.25; i=$((i + 1))
        done
        check "tasks on the second node are served through the overlay ($found of $(echo $remote | wc -w) seen)" \
            sh -c "[ $found -ge 2 ]"
        fails=$(python3 e2e/load.py "$gw/" 20 "docker node update --availability drain $NODE2 >/dev/null && sleep 8" 100000 \
            2>/tmp/moongate-e2e-node2-load.txt)
        check "draining the second node under load: $fails failed requests ($(tr '\n' ' ' < /tmp/moongate-e2e-node2-load.txt))" \
            sh -c "[ '$fails' = 0 ] && grep -q ', covered' /tmp/moongate-e2e-node2-load.txt"
        seen=$(seen_instances 16)
        left=0
        for c in $remote; do echo "$seen" | grep -q "^$c" && left=$((left + 1)); done
        check "no request goes to the drained node's tasks ($left of them answered)" sh -c "[ $left -eq 0 ]"
        docker node update --availability active "$NODE2" >/dev/null 2>&1
        docker service update -q --force "${STACK}_web" >/dev/null 2>&1
        i=0; while [ $i -lt 120 ] && [ "$(node2_tasks "${STACK}_web" | wc -l)" -lt 1 ]; do sleep 0.5; i=$((i + 1)); done
        remote=$(node2_tasks "${STACK}_web")
        i=0; while [ $i -lt 40 ] && ! seen_instances 16 | grep -q "^$(echo "$remote" | head -n 1)"; do sleep 0.25; i=$((i + 1)); done
        # the second node's engine stops: Swarm marks the node down after its heartbeat period
        kill "$(cat $N2/dockerd.pid)" 2>/dev/null
        t0=$(date +%s.%N)
        i=0; while [ $i -lt 120 ] && [ "$(docker node inspect -f '{{.Status.State}}' "$NODE2")" != down ]; do sleep 0.25; i=$((i + 1)); done
        t1=$(date +%s.%N)
        downed=$(python3 -c "print(round($t1 - $t0, 1))")
        served=0
        for c in $remote; do seen_instances 16 | grep -q "^$c" && served=$((served + 1)); done
        check "after the second node is marked down (${downed} s after its engine stopped) its tasks get no traffic ($served answered)" \
            sh -c "[ $served -eq 0 ]"
    fi
fi
node2_cleanup
trap - EXIT INT TERM
fi
