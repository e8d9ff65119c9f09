/* The one bridge between a worker and its Lua state: load balancers for a
 * snapshot, and call their pick on the request path. */
#ifndef MG_LUA_BRIDGE_H
#define MG_LUA_BRIDGE_H

#include "snapshot.h"

#include <lua.h>

typedef struct mg_lua {
    lua_State *L;
    int ref_pick;      /* runtime.pick */
    int ref_traceback; /* debug.traceback, the message handler */
    int ref_runtime;   /* the moongate.runtime module */
    int worker_id;
} mg_lua;

/* Creates the worker's Lua state and loads lua/moongate/runtime.lua.
 * Returns 0, or -1 with err set. */
int mg_lua_init(mg_lua *lua, int worker_id, const char *plugins_dir, char *err, size_t errlen);
void mg_lua_close(mg_lua *lua);

/* Runs each service's balancer `new` for snapshot s. Errors are logged and
 * leave that service on the built-in round robin. */
void mg_lua_adopt(mg_lua *lua, const mg_snapshot *s);

/* Calls the service's balancer pick. tried holds the target indexes already
 * tried. Returns a target index, or -1 when pick returned nothing, or -2 on
 * an error (logged with a traceback, with conn as the connection id). */
int mg_lua_pick(mg_lua *lua, int svc, const int *tried, int ntried, uint64_t conn);

#endif
