#!/bin/sh
# make soak: SOAK_MINUTES (default 30) of mixed keep-alive, pipelined,
# streaming and WebSocket traffic through the gateway in a container, with
# scale events and reloads; prints RSS and fds every minute and fails if
# they grow (a linear fit over the second half) or do not return to their
# baseline at rest. A benchmark, not part of CI. See docs/reliability.md.
cd "$(dirname "$0")/.." || exit 1
SOAK_MINUTES=${SOAK_MINUTES:-30}
export SOAK_MINUTES
exec sh e2e/chaos/run.sh soak
