# Turns the chaos suite's summary.json (its "criteria") into the ok/FAIL
# lines of e2e/lib.sh; sourced after e2e/lib.sh.
# chaos_criteria SUMMARY_JSON
chaos_criteria() {
    _list=$(mktemp)
    if ! python3 -c '
import json, sys
for c in json.load(open(sys.argv[1])).get("criteria") or [{"ok": False, "desc": "the chaos run wrote its criteria"}]:
    print("%s|%s" % ("1" if c["ok"] else "0", c["desc"]))' "$1" >"$_list" 2>/dev/null; then
        echo "0|the chaos run wrote $1" >"$_list"
    fi
    while IFS='|' read -r _ok _desc; do
        if [ "$_ok" = 1 ]; then pass "$_desc"; else fail "$_desc"; fi
    done <"$_list"
    rm -f "$_list"
}
