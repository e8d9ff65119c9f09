/* Async I/O for Lua coroutines on a libuv loop, as the rest of the core
 * sees it (lua_io.c, lua_wait.c): the waits of the calling thread, and
 * what a worker needs to let its request hooks wait. The control plane's
 * entry points are in control.h. */
#ifndef MG_LUA_IO_H
#define MG_LUA_IO_H

#include <lua.h>
#include <uv.h>

/* The same for the calling thread's waits only (a worker's, at its stop),
 * and how many it has in progress. */
void mg_io_cancel_all(void);
int mg_io_pending_count(void);

/* Run around every resume of a waiting coroutine on this thread (a
 * worker sets them: the watchdog's busy mark, the request it looks at). */
typedef struct mg_io_hooks {
    void (*before)(void *ud);
    void (*after)(void *ud);
    void *ud;
    int worker_id;
} mg_io_hooks;
extern __thread const mg_io_hooks *mg_io_thread_hooks;

/* Registers moongate.c.io (mg.http, mg.sleep, mg.resolve) in a worker's
 * Lua state, on the worker's own loop: no crypto or TLS manager there. */
void mg_worker_open_io(lua_State *L, uv_loop_t *loop);

#endif
