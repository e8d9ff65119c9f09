#!/bin/sh
# Runs each libFuzzer harness for SECONDS from its committed seed corpus
# (copied to a scratch directory, so runs never grow fuzz/corpus), one at
# a time. Crash artifacts and logs go to BUILD/artifacts/HARNESS/.
# Usage: fuzz/run.sh BUILD SECONDS HARNESS...
# Prints per harness the executions reached and whether it crashed, then
# "N passed, N failed". Extra libFuzzer flags: FUZZ_FLAGS.
set -u
build=$1
seconds=$2
shift 2
pass=0
fail=0
for h in "$@"; do
    bin=$build/fuzz_$h
    work=$build/work/$h
    art=$build/artifacts/$h
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/tmp" "$art"
    [ -d "fuzz/corpus/$h" ] && cp fuzz/corpus/"$h"/* "$work/corpus/" 2>/dev/null
    dict=
    [ -f "fuzz/dict/$h.dict" ] && dict="-dict=fuzz/dict/$h.dict"
    log=$art/last.log
    before=$(ls "$art" | grep -c -E '^(crash|leak|timeout|oom)-' || true)
    # shellcheck disable=SC2086
    FUZZ_TMP=$work/tmp nice -n 10 "$bin" -max_total_time="$seconds" -timeout=30 \
        -print_final_stats=1 -artifact_prefix="$art/" $dict ${FUZZ_FLAGS:-} \
        "$work/corpus" >"$log" 2>&1
    rc=$?
    after=$(ls "$art" | grep -c -E '^(crash|leak|timeout|oom)-' || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=${execs:-0}
    if [ "$rc" -eq 0 ] && [ "$after" -eq "$before" ]; then
        echo "fuzz $h: $execs executions in ${seconds}s, no crash"
        pass=$((pass + 1))
    else
        echo "fuzz $h: $execs executions, FAILED (exit $rc); log and artifacts in $art:"
        grep -E 'ERROR|SUMMARY|fuzz:|runtime error|Test unit written' "$log" | head -n 10
        fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
