#!/bin/sh
# Runs every busted spec inside the given moongate binary and prints the
# totals as "N passed, N failed" (the line CI reads).
# Usage: tools/run-specs.sh BIN [busted args...]
set -u
bin=${1:-build/moongate}
shift 2>/dev/null || true
export MOONGATE_BIN="$bin"
mkdir -p build
out=build/specs-$(basename "$(dirname "$bin")")-$$.log
"$bin" test -o utfTerminal "$@" spec 2>&1 | tee "$out"
rc=$?
# busted's summary: "12 successes / 1 failure / 0 errors / 2 pending : 3.1 seconds"
summary=$(grep -a -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out" | tail -n 1)
rm -f "$out"
if [ -z "$summary" ]; then
    echo "0 passed, 1 failed"
    exit 1
fi
passed=$(echo "$summary" | sed -E 's/^[^0-9]*([0-9]+) success.*/\1/')
failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures? .*/\1/')
errors=$(echo "$summary" | sed -E 's/.* ([0-9]+) errors? .*/\1/')
echo "$passed passed, $((failed + errors)) failed"
[ "$((failed + errors))" -eq 0 ]
