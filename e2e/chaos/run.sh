#!/bin/sh
# make chaos | make chaos-short | make soak: builds the gateway image from
# this checkout and the chaos backend, runs e2e/chaos/chaos.py with the
# profile (full, short or soak) against the real Docker engine, tears the
# stack down even on failure, and ends with "N passed, N failed".
# Holds the engine-wide e2e lock, like make e2e.
set -u
cd "$(dirname "$0")/../.."
if [ -z "${MG_E2E_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    MG_E2E_LOCKED=1 exec flock /tmp/moongate-e2e.lock sh "$(pwd)/e2e/chaos/run.sh" "$@"
fi
. e2e/lib.sh
. e2e/chaos/criteria.sh
profile=${1:-full}

if ! docker info >/dev/null 2>&1; then
    echo "chaos: no Docker engine reachable"
    echo "0 passed, 1 failed"
    exit 1
fi
# image TAG DIR: docker build, one ok/FAIL line (the build's tail on failure)
image() {
    check "image $1 builds" sh -c 'docker build -q -t "$1" "$2" >/tmp/moongate-chaos-build.log 2>&1 ||
        { tail -20 /tmp/moongate-chaos-build.log; exit 1; }' sh "$1" "$2"
}
check "base image debian:bookworm-slim is available" sh tools/base-image.sh debian:bookworm-slim
gateway_image=moongate:chaos
if [ "${CHAOS_ASAN:-0}" = 1 ]; then
    # the ASan+UBSan build in a container: slower, but a crash shows where
    gateway_image=moongate:chaos-asan
    ctx=build/chaos/gateway-asan
    if make asan >/tmp/moongate-chaos-build.log 2>&1; then
        mkdir -p "$ctx" && cp e2e/chaos/gateway-asan/Dockerfile build/asan/moongate "$ctx/"
        image "$gateway_image" "$ctx"
    else
        tail -20 /tmp/moongate-chaos-build.log
        fail "make asan builds"
    fi
else
    image "$gateway_image" .
fi
image moongate-chaos-backend:chaos e2e/chaos/backend

PROJECT=mgchaos$$
export CHAOS_CONF_DIR="$(pwd)/build/chaos/$PROJECT/conf"
trap 'compose -p "$PROJECT" -f e2e/chaos/docker-compose.yml down -v --remove-orphans -t 3 >/dev/null 2>&1' EXIT INT TERM
if [ "$E2E_FAILED" -eq 0 ]; then
    python3 e2e/chaos/chaos.py --profile "$profile" --project "$PROJECT" \
        --gateway-image "$gateway_image" --backend-image moongate-chaos-backend:chaos
    echo "=== chaos $profile: evidence in build/chaos/$PROJECT/"
    chaos_criteria "build/chaos/$PROJECT/summary.json"
fi
echo "$E2E_PASSED passed, $E2E_FAILED failed"
[ "$E2E_FAILED" -eq 0 ]
