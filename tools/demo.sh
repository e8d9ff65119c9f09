#!/bin/sh
# `make demo` / `make demo-down`: the compose demo of the README (moongate in
# front of two replicas each of an API and a web site, found by their Docker
# labels). Makes the Debian base image when it cannot be pulled, builds,
# brings the stack up with Compose v2 (`docker compose`) or v1
# (`docker-compose --compatibility`), waits until it answers, prints the URLs.
# MOONGATE_PORT (80) and MOONGATE_ADMIN_PORT (8081) move the published ports
# (on 127.0.0.1); COMPOSE_PROJECT_NAME names the stack.
# Usage: tools/demo.sh up|down
set -eu
cd "$(dirname "$0")/.."
. e2e/lib.sh

die() {
    echo "demo: $*" >&2
    exit 1
}

command -v docker >/dev/null 2>&1 ||
    die "needs Docker and Compose: apt-get install -y docker.io docker-compose (Debian 12)"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running? are you in the docker group?)"
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 ||
    die "needs Docker Compose: apt-get install -y docker-compose (v1) or the compose plugin (v2)"

port=${MOONGATE_PORT:-80}
admin=${MOONGATE_ADMIN_PORT:-8081}

case "${1:-up}" in
down)
    compose down -v --remove-orphans
    exit 0
    ;;
up) ;;
*) die "usage: tools/demo.sh up|down" ;;
esac

DOCKER_GID=$(stat -c %g /var/run/docker.sock)
export DOCKER_GID
# Image tags are engine-wide: build under the lock `make e2e` takes, so a
# demo and an e2e run on one engine do not retag each other's images.
lock=/tmp/moongate-e2e.lock
if [ -z "${MG_E2E_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    MG_E2E_LOCKED=1 exec flock "$lock" sh "$(pwd)/tools/demo.sh" up
fi
sh tools/base-image.sh debian:bookworm-slim
echo "demo: building and starting the stack (the first build takes a few minutes)" >&2
compose up -d --build

url="http://127.0.0.1:$port"
if command -v curl >/dev/null 2>&1; then
    wait_http "$url/" 60 || die "the gateway did not answer on $url within 60 s; see: docker compose logs moongate"
    wait_http "$url/api/hello" 60 || die "the api replicas did not answer on $url/api/hello within 60 s"
fi
cat <<EOF
moongate demo is up:
  $url/             the web site (two replicas, alternating)
  $url/api/hello    the API (JSON naming the replica that answered)
  http://127.0.0.1:$admin/   the dashboard and admin API
follow a scale-up: docker compose up -d --scale api=4  (v1: docker-compose --compatibility up -d --scale api=4)
stop it: make demo-down
EOF
