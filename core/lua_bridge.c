/* Calls from a worker into its Lua state. Every call is protected by
 * lua_pcall with debug.traceback as the message handler, so an error in a
 * plugin is logged with its traceback and never unwinds through C. */
#include "lua_bridge.h"
#include "log.h"
#include "lua_env.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

int mg_lua_init(mg_lua *lua, int worker_id, const char *plugins_dir, char *err, size_t errlen)
{
    memset(lua, 0, sizeof(*lua));
    lua->worker_id = worker_id;
    lua_State *L = mg_lua_env_new();
    if (!L) {
        snprintf(err, errlen, "cannot create a Lua state");
        return -1;
    }
    lua->L = L;
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua->ref_traceback = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.runtime");
    if (lua_pcall(L, 1, 1, 0)) goto fail;
    lua_getfield(L, -1, "init");
    lua_pushinteger(L, worker_id);
    lua_pushstring(L, plugins_dir);
    if (lua_pcall(L, 2, 0, 0)) goto fail;
    lua_getfield(L, -1, "pick");
    lua->ref_pick = luaL_ref(L, LUA_REGISTRYINDEX);
    lua->ref_runtime = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
fail:
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    lua->L = NULL;
    return -1;
}

void mg_lua_close(mg_lua *lua)
{
    if (lua->L) lua_close(lua->L);
    lua->L = NULL;
}

static void push_target(lua_State *L, const mg_target *t)
{
    lua_createtable(L, 0, 8);
    lua_pushstring(L, t->host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, t->port);
    lua_setfield(L, -2, "port");
    lua_pushinteger(L, t->weight);
    lua_setfield(L, -2, "weight");
    lua_pushstring(L, t->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, t->address);
    lua_setfield(L, -2, "address");
    lua_pushinteger(L, t->uid);
    lua_setfield(L, -2, "uid");
    lua_newtable(L);
    if (t->labels)
        for (char **l = t->labels; l[0] && l[1]; l += 2) {
            lua_pushstring(L, l[1]);
            lua_setfield(L, -2, l[0]);
        }
    lua_setfield(L, -2, "labels");
}

void mg_lua_adopt(mg_lua *lua, const mg_snapshot *s)
{
    lua_State *L = lua->L;
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_traceback);
    int tb = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_runtime);
    int rt = lua_gettop(L);
    for (int i = 0; i < s->nservices; i++) {
        const mg_service *svc = &s->services[i];
        lua_getfield(L, rt, "set_service");
        lua_pushinteger(L, i);
        lua_pushstring(L, svc->name);
        lua_pushstring(L, svc->balancer);
        lua_pushstring(L, svc->balancer_opts);
        lua_createtable(L, svc->ntargets, 0);
        for (int k = 0; k < svc->ntargets; k++) {
            push_target(L, &svc->targets[k]);
            lua_rawseti(L, -2, k + 1);
        }
        if (lua_pcall(L, 5, 0, tb)) {
            mg_log(MG_LOG_ERROR, lua->worker_id, 0,
                   "service %s: balancer %s failed to start, using round robin: %s", svc->name,
                   svc->balancer, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_getfield(L, rt, "clear_from");
    lua_pushinteger(L, s->nservices);
    if (lua_pcall(L, 1, 0, tb)) lua_pop(L, 1);
    lua_settop(L, base);
}

int mg_lua_pick(mg_lua *lua, int svc, const int *tried, int ntried, uint64_t conn)
{
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_pick);
    lua_pushinteger(L, svc);
    lua_pushinteger(L, ntried);
    if (ntried && !lua_checkstack(L, ntried)) ntried = 0;
    for (int i = 0; i < ntried; i++)
        lua_pushinteger(L, tried[i]);
    if (mg_unlikely(lua_pcall(L, 2 + ntried, 1, -(4 + ntried)))) {
        mg_log(MG_LOG_ERROR, lua->worker_id, conn, "balancer error, using round robin: %s",
               lua_tostring(L, -1));
        lua_pop(L, 2);
        return -2;
    }
    int idx = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -2;
    lua_pop(L, 2);
    return idx;
}
