/* Shared between the async I/O files (lua_io.c, lua_io_response.c,
 * lua_wait.c, lua_probe.c): the list of waits in progress that shutdown
 * cancels, and resuming. */
#ifndef MG_LUA_IO_INT_H
#define MG_LUA_IO_INT_H

#include <lua.h>

#include "control.h"
#include "lua_io.h"

/* Every request, sleep and probe in progress, so that shutdown can cancel
 * them before the Lua state they would resume is closed. Embed it first in
 * the request's struct. */
typedef struct pending {
    struct pending *prev, *next;
    void (*cancel)(struct pending *);
} pending;

/* The list is the calling thread's (each loop runs on one thread). */
void mg_io_pending_add(pending *p, void (*cancel)(pending *));
/* Idempotent: a request already removed is left alone. */
void mg_io_pending_remove(pending *p);

/* Resumes co (anchored by the caller) with nargs values on its stack; an
 * error is logged with a traceback. The thread's hooks, if set, run around
 * it (a worker names the request its Lua looks at, for the watchdog).
 * Returns lua_resume's code. */
int mg_io_resume(lua_State *L, lua_State *co, int nargs);

/* The io table's functions in lua_wait.c: sleep(co, ms), now(),
 * run(seconds), resolve(co, host); upvalues loop and main state. */
int mg_lua_sleep(lua_State *L);
int mg_lua_now(lua_State *L);
int mg_lua_run(lua_State *L);
int mg_lua_resolve(lua_State *L);

/* moongate.c.io.tcp_probe(co, ip, port, ms): upvalues loop and main state. */
int mg_lua_tcp_probe(lua_State *L);

#endif
