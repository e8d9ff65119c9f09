/* `moongate bench-lua [N]`: measures what the request path pays to ask a
 * Lua balancer for a target: one protected C -> Lua call of the runtime's
 * pick, which calls plugins/roundrobin.lua's pick, for a two-target service. */
#include "cmd.h"
#include "request.h"
#include "lua_bridge.h"
#include "lua_ffi.h"
#include "router.h"

#include <lauxlib.h>
#include <unistd.h>

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
    if (mg_lua_init(&lua, 0, "plugins", NULL, err, sizeof(err))) {
        fprintf(stderr, "moongate bench-lua: %s\n", err);
        return 1;
    }
    mg_snapshot *s = two_target_snapshot();
    s->version = 1;
    mg_lua_adopt(&lua, s);
    /* a request as the proxy would hand it over */
    static mg_req req;
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
    /* One empty middleware hook: the cost of entering Lua for on_request. */
    char dir[] = "/tmp/moongate-bench-XXXXXX";
    if (mkdtemp(dir)) {
        char path[64];
        snprintf(path, sizeof(path), "%s/empty.lua", dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fputs("return { type = 'middleware', on_request = function(conf, req) end }\n", f);
            fclose(f);
        }
        mg_lua_new_generation(&lua, dir);
        s->version = 2;
        s->nroutes = 1;
        s->route_hooks = calloc(1, 1);
        s->route_flags = calloc(1, 1);
        s->route_service = calloc(1, sizeof(int));
        s->plugins_literal = strdup("{[0]={{plugin=\"empty\",conf={},name=\"empty\"}}}");
        mg_lua_adopt(&lua, s);
        mg_headers_reset(&req.in);
        mg_headers_field(&req.in, "User-Agent", 10);
        mg_headers_value(&req.in, "bench/1.0", 9);
        mg_headers_value_done(&req.in);
        req.route = 0;
        req.id = 1;
        long m = n / 10;
        for (long i = 0; i < 10000; i++)
            mg_lua_on_request(&lua, &req);
        uint64_t h0 = uv_hrtime();
        for (long i = 0; i < m; i++)
            mg_lua_on_request(&lua, &req);
        uint64_t h1 = uv_hrtime();
        printf("empty on_request hook: %.1f ns per request\n", (double)(h1 - h0) / (double)m);
        /* a header read from Lua, through the FFI */
        const char *chunk = "local req, n = require('moongate.request').req, ...\n"
                            "local v\n"
                            "for i = 1, 100000 do v = req:header('user-agent') end\n"
                            "local t = os.clock()\n"
                            "for i = 1, n do v = req:header('user-agent') end\n"
                            "assert(v == 'bench/1.0', v)\n"
                            "return (os.clock() - t) / n * 1e9\n";
        mg_ffi_current = &req;
        if (luaL_loadstring(lua.L, chunk) == 0) {
            lua_pushnumber(lua.L, (lua_Number)m);
            if (lua_pcall(lua.L, 1, 1, 0) == 0)
                printf("req:header() from Lua: %.1f ns per read\n", lua_tonumber(lua.L, -1));
            else
                printf("req:header() failed: %s\n", lua_tostring(lua.L, -1));
            lua_pop(lua.L, 1);
        }
        mg_ffi_current = NULL;
        mg_headers_free(&req.in);
        remove(path);
        rmdir(dir);
    }
    mg_snapshot_unref(s);
    mg_lua_close(&lua);
    return hits[0] + hits[1] == n ? 0 : 1;
}
