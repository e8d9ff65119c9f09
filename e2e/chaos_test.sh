# The chaos suite's short profile (make chaos-short alone): a minute of load
# through scale events, docker kill/pause/restart, --force-recreate and
# reloads, on the gateway image make e2e built. MG_CHAOS=0 skips it.
if [ "${MG_CHAOS:-1}" = 1 ]; then
    . e2e/chaos/criteria.sh
    build moongate-chaos-backend:e2e e2e/chaos/backend
    CHAOS_CONF_DIR="$(pwd)/build/chaos/$PROJECT/conf"
    export CHAOS_CONF_DIR
    trap 'compose -p "$PROJECT" -f e2e/chaos/docker-compose.yml down -v --remove-orphans -t 3 >/dev/null 2>&1' EXIT INT TERM
    python3 e2e/chaos/chaos.py --profile short --project "$PROJECT" \
        --gateway-image moongate:e2e --backend-image moongate-chaos-backend:e2e
    chaos_criteria "build/chaos/$PROJECT/summary.json"
    compose -p "$PROJECT" -f e2e/chaos/docker-compose.yml down -v --remove-orphans -t 3 >/dev/null 2>&1
    trap - EXIT INT TERM
else
    echo "  skip - chaos (short): MG_CHAOS=0; make chaos-short runs it alone"
fi
