/* See control.h. */
#include "control.h"
#include "addr.h"
#include "log.h"
#include "lua_env.h"
#include "stats.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pushes field name of the Lua literal lit, deserialized, into the table at
 * the top of the stack (nothing when lit is NULL). */
static void set_literal(lua_State *L, const char *name, const char *lit)
{
    if (!lit) return;
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.plugins");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "deserialize");
    lua_pushstring(L, lit);
    lua_call(L, 1, 1);
    lua_setfield(L, -3, name);
    lua_pop(L, 1);
}

/* Calls module.configure(services) for the table at index tbl. */
static void call_configure(lua_State *L, const char *module, int tbl)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    if (lua_pcall(L, 1, 1, 0) == 0) {
        lua_getfield(L, -1, "configure");
        lua_pushvalue(L, tbl);
        if (lua_pcall(L, 1, 0, 0) == 0) {
            lua_pop(L, 1);
            return;
        }
    }
    mg_log(MG_LOG_ERROR, -1, 0, "%s: %s", module, lua_tostring(L, -1));
    lua_pop(L, 1);
}

/* Builds the input of the health runner and the autoscaler from the newest
 * snapshot and calls moongate.health.configure and
 * moongate.autoscale.configure with it. */
static void configure(mg_control *ctl)
{
    lua_State *L = ctl->L;
    const mg_snapshot *s = ctl->rl->snap;
    int top = lua_gettop(L);
    lua_createtable(L, s->nservices, 0);
    for (int i = 0; i < s->nservices; i++) {
        const mg_service *svc = &s->services[i];
        lua_createtable(L, 0, 3);
        lua_pushstring(L, svc->name);
        lua_setfield(L, -2, "name");
        set_literal(L, "health", svc->health);
        set_literal(L, "autoscale", svc->autoscale);
        lua_createtable(L, svc->ntargets, 0);
        for (int k = 0; k < svc->ntargets; k++) {
            const mg_target *t = &svc->targets[k];
            char ip[INET6_ADDRSTRLEN];
            mg_addr_ip((const struct sockaddr *)&t->addr, ip, sizeof(ip)); /* "" if unresolved */
            lua_createtable(L, 0, 6);
            lua_pushstring(L, t->address);
            lua_setfield(L, -2, "address");
            lua_pushstring(L, t->id);
            lua_setfield(L, -2, "id");
            lua_pushstring(L, t->host);
            lua_setfield(L, -2, "host");
            lua_pushstring(L, ip[0] ? ip : t->host);
            lua_setfield(L, -2, "ip");
            lua_pushinteger(L, t->port);
            lua_setfield(L, -2, "port");
            lua_pushnumber(L, t->suid);
            lua_setfield(L, -2, "suid");
            lua_pushnumber(L, t->uid);
            lua_setfield(L, -2, "uid");
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -2, "targets");
        lua_rawseti(L, -2, i + 1);
    }
    int tbl = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctl->ref_runtime);
    lua_getfield(L, -1, "configure");
    lua_pushvalue(L, tbl);
    if (lua_pcall(L, 1, 0, 0))
        mg_log(MG_LOG_ERROR, -1, 0, "health checks: %s", lua_tostring(L, -1));
    lua_settop(L, tbl);
    call_configure(L, "moongate.autoscale", tbl);
    lua_settop(L, top);
}

static void on_publish(uv_timer_t *t)
{
    mg_control *ctl = t->data;
    char *lit = ctl->pending;
    ctl->pending = NULL;
    if (lit) mg_reload_discovered(ctl->rl, lit);
    free(lit);
}

/* discovery.publish(literal): keeps the newest and applies it on the next
 * loop turn, outside the coroutine that called it. */
static int l_publish(lua_State *L)
{
    mg_control *ctl = lua_touserdata(L, lua_upvalueindex(1));
    free(ctl->pending);
    ctl->pending = strdup(luaL_checkstring(L, 1));
    uv_timer_start(&ctl->publish_timer, on_publish, 0, 0);
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    mg_control *ctl = t->data;
    lua_rawgeti(ctl->L, LUA_REGISTRYINDEX, ctl->ref_timers);
    if (lua_pcall(ctl->L, 0, 0, 0)) {
        mg_log(MG_LOG_ERROR, -1, 0, "control timers: %s", lua_tostring(ctl->L, -1));
        lua_pop(ctl->L, 1);
    }
    atomic_store_explicit(&mg_stats.lua_bytes[0],
                          (uint64_t)lua_gc(ctl->L, LUA_GCCOUNT, 0) * 1024 +
                              (uint64_t)lua_gc(ctl->L, LUA_GCCOUNTB, 0),
                          memory_order_relaxed);
}

/* Certificate sources (tls.acme entries) run here too, as coroutines. */
static void start_certificates(mg_control *ctl)
{
    lua_State *L = ctl->L;
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.tls");
    if (lua_pcall(L, 1, 1, 0) == 0) {
        lua_getfield(L, -1, "start_sources");
        if (ctl->rl->cfg->tls.sources)
            lua_pushstring(L, ctl->rl->cfg->tls.sources);
        else
            lua_pushnil(L);
        lua_pushstring(L, ctl->rl->cfg->plugins_dir);
        if (lua_pcall(L, 2, 0, 0)) mg_log(MG_LOG_ERROR, -1, 0, "tls: %s", lua_tostring(L, -1));
    } else {
        mg_log(MG_LOG_ERROR, -1, 0, "tls: %s", lua_tostring(L, -1));
    }
    lua_settop(L, 0);
}

static void start_discovery(mg_control *ctl)
{
    lua_State *L = ctl->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctl->ref_discovery);
    lua_getfield(L, -1, "start");
    lua_pushstring(L, ctl->rl->cfg->providers ? ctl->rl->cfg->providers : "{}");
    lua_pushstring(L, ctl->rl->cfg->plugins_dir);
    if (lua_pcall(L, 2, 0, 0)) {
        mg_log(MG_LOG_ERROR, -1, 0, "discovery: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

int mg_control_start(mg_control *ctl, uv_loop_t *loop, mg_reloader *rl)
{
    memset(ctl, 0, sizeof(*ctl));
    ctl->loop = loop;
    ctl->rl = rl;
    ctl->L = mg_lua_env_new();
    if (!ctl->L) return -1;
    mg_control_open_io(ctl->L, loop);
    lua_getglobal(ctl->L, "require");
    lua_pushstring(ctl->L, "moongate.health");
    if (lua_pcall(ctl->L, 1, 1, 0)) {
        mg_log(MG_LOG_ERROR, -1, 0, "control plane: %s", lua_tostring(ctl->L, -1));
        lua_close(ctl->L);
        ctl->L = NULL;
        return -1;
    }
    ctl->ref_runtime = luaL_ref(ctl->L, LUA_REGISTRYINDEX);
    lua_getglobal(ctl->L, "require");
    lua_pushstring(ctl->L, "moongate.discovery");
    if (lua_pcall(ctl->L, 1, 1, 0)) {
        mg_log(MG_LOG_ERROR, -1, 0, "control plane: %s", lua_tostring(ctl->L, -1));
        lua_close(ctl->L);
        ctl->L = NULL;
        return -1;
    }
    lua_pushlightuserdata(ctl->L, ctl);
    lua_pushcclosure(ctl->L, l_publish, 1);
    lua_setfield(ctl->L, -2, "publish");
    ctl->ref_discovery = luaL_ref(ctl->L, LUA_REGISTRYINDEX);
    uv_timer_init(loop, &ctl->publish_timer);
    ctl->publish_timer.data = ctl;
    lua_getglobal(ctl->L, "require");
    lua_pushstring(ctl->L, "moongate.internal");
    lua_call(ctl->L, 1, 1);
    lua_getfield(ctl->L, -1, "run_timers");
    ctl->ref_timers = luaL_ref(ctl->L, LUA_REGISTRYINDEX);
    lua_pop(ctl->L, 1);
    uv_timer_init(loop, &ctl->tick);
    ctl->tick.data = ctl;
    uv_timer_start(&ctl->tick, on_tick, 100, 100);
    configure(ctl);
    start_discovery(ctl);
    start_certificates(ctl);
    return 0;
}

void mg_control_reconfigure(mg_control *ctl)
{
    if (!ctl->L) return;
    configure(ctl);
    start_discovery(ctl);    /* a no-op unless the providers' settings changed */
    start_certificates(ctl); /* the same for certificate sources */
}

void mg_control_stop(mg_control *ctl)
{
    if (!ctl->L) return;
    lua_rawgeti(ctl->L, LUA_REGISTRYINDEX, ctl->ref_runtime);
    lua_getfield(ctl->L, -1, "stop");
    lua_pcall(ctl->L, 0, 0, 0);
    lua_settop(ctl->L, 0);
    lua_rawgeti(ctl->L, LUA_REGISTRYINDEX, ctl->ref_discovery);
    lua_getfield(ctl->L, -1, "stop");
    lua_pcall(ctl->L, 0, 0, 0);
    lua_settop(ctl->L, 0);
    lua_getglobal(ctl->L, "require");
    lua_pushstring(ctl->L, "moongate.autoscale");
    if (lua_pcall(ctl->L, 1, 1, 0) == 0) {
        lua_getfield(ctl->L, -1, "stop");
        lua_pcall(ctl->L, 0, 0, 0);
    }
    lua_settop(ctl->L, 0);
    lua_getglobal(ctl->L, "require");
    lua_pushstring(ctl->L, "moongate.tls");
    if (lua_pcall(ctl->L, 1, 1, 0) == 0) {
        lua_getfield(ctl->L, -1, "stop_sources");
        lua_pcall(ctl->L, 0, 0, 0);
    }
    lua_settop(ctl->L, 0);
    uv_close((uv_handle_t *)&ctl->publish_timer, NULL);
    uv_close((uv_handle_t *)&ctl->tick, NULL);
    free(ctl->pending);
    ctl->pending = NULL;
    mg_control_io_cancel_all(); /* probes in flight and sleeping loops end here */
}

void mg_control_close(mg_control *ctl)
{
    if (ctl->L) lua_close(ctl->L);
    ctl->L = NULL;
}
