/* `moongate bench-lua [N]`: measures what the request path pays to ask a
 * Lua balancer for a target: one protected C -> Lua call of the runtime's
 * pick, which calls plugins/roundrobin.lua's pick, for a two-target service. */
#include "cmd.h"
#include "http.h"
#include "lua_bridge.h"
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static mg_snapshot *two_target_snapshot(void)
{
    mg_snapshot *s = calloc(1, sizeof(*s));
    s->services = calloc(1, sizeof(mg_service));
    s->nservices = 1;
    mg_service *svc = &s->services[0];
    svc->name = strdup("bench");
    svc->balancer = strdup("roundrobin");
    svc->balancer_opts = strdup("{}");
    svc->targets = calloc(2, sizeof(mg_target));
    svc->ntargets = 2;
    for (int i = 0; i < 2; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", 9001 + i);
        svc->targets[i].id = strdup(addr);
        svc->targets[i].host = strdup("127.0.0.1");
        svc->targets[i].address = strdup(addr);
        svc->targets[i].port = (uint16_t)(9001 + i);
        svc->targets[i].weight = 1;
    }
    s->router = mg_router_new();
    atomic_init(&s->refs, 1);
    return s;
}

int mg_cmd_bench_lua(int argc, char **argv)
{
    long n = argc > 0 ? atol(argv[0]) : 10000000;
    if (n <= 0) n = 10000000;
    mg_lua lua;
    char err[512];
    if (mg_lua_init(&lua, 0, "plugins", err, sizeof(err))) {
        fprintf(stderr, "moongate bench-lua: %s\n", err);
        return 1;
    }
    mg_snapshot *s = two_target_snapshot();
    s->version = 1;
    mg_lua_adopt(&lua, s);
    /* a request as the proxy would hand it over */
    static mg_conn conn;
    static mg_req req;
    req.c = &conn;
    req.snap = s;
    req.svc = 0;
    long hits[2] = {0, 0};
    for (long i = 0; i < 100000; i++)
        mg_lua_pick(&lua, &req, NULL, 0); /* warm up the JIT */
    uint64_t t0 = uv_hrtime();
    for (long i = 0; i < n; i++) {
        int idx = mg_lua_pick(&lua, &req, NULL, 0);
        if (idx >= 0 && idx < 2) hits[idx]++;
    }
    uint64_t t1 = uv_hrtime();
    int tried[1] = {0};
    uint64_t t2 = uv_hrtime();
    for (long i = 0; i < n / 10; i++)
        mg_lua_pick(&lua, &req, tried, 1);
    uint64_t t3 = uv_hrtime();
    printf("balancer pick (roundrobin, 2 targets): %.1f ns per call over %ld calls "
           "(targets hit %ld/%ld)\n",
           (double)(t1 - t0) / (double)n, n, hits[0], hits[1]);
    printf("balancer pick on a retry (req.tried built): %.1f ns per call\n",
           (double)(t3 - t2) / (double)(n / 10));
    mg_snapshot_unref(s);
    mg_lua_close(&lua);
    return hits[0] + hits[1] == n ? 0 : 1;
}
