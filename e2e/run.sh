#!/bin/sh
# `make e2e`: builds the images (and the Debian base image when it is
# missing), runs every e2e/*_test.sh against a real Docker engine, tears
# everything down even on failure, and ends with "N passed, N failed".
# `sh e2e/run.sh swarm` runs only e2e/swarm_test.sh (make e2e-swarm).
set -u
cd "$(dirname "$0")/.."
# One e2e run at a time on this engine: the image tags and swarm mode are
# engine-wide, so parallel runs (several checkouts) would trip on each other:
# `docker swarm leave --force` on Docker 20.10 even disconnects every running
# container from its bridge network (a soak beside a swarm test lost its
# gateway's network that way).
if [ -z "${MG_E2E_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    MG_E2E_LOCKED=1 exec flock /tmp/moongate-e2e.lock sh "$(pwd)/e2e/run.sh" "$@"
fi
. e2e/lib.sh

if ! docker info >/dev/null 2>&1; then
    echo "e2e: no Docker engine reachable"
    echo "0 passed, 1 failed"
    exit 1
fi

build() {
    tag=$1
    dir=$2
    if docker build -q -t "$tag" "$dir" >/tmp/moongate-e2e-build.log 2>&1; then
        pass "image $tag builds"
    else
        tail -20 /tmp/moongate-e2e-build.log
        fail "image $tag builds"
    fi
}

if sh tools/base-image.sh debian:bookworm-slim; then
    pass "base image debian:bookworm-slim is available"
else
    fail "base image debian:bookworm-slim is available"
fi
build moongate:e2e .
build moongate-demo-api:e2e examples/compose-services/api
build moongate-demo-web:e2e examples/compose-services/web

tests=e2e/*_test.sh
[ $# -gt 0 ] && tests=$(for n in "$@"; do printf 'e2e/%s_test.sh ' "$n"; done)
for t in $tests; do
    export PROJECT="mge2e$$$(basename "$t" _test.sh | tr -cd 'a-z0-9')"
    echo "=== $t"
    . "$t"
done

echo "$E2E_PASSED passed, $E2E_FAILED failed"
[ "$E2E_FAILED" -eq 0 ]
