/* The one bridge between a worker and its Lua state: balancers and
 * middleware chains for each adopted snapshot, and the calls the request
 * path makes into them. Every call is protected; errors are logged with a
 * traceback and reported to the caller, which decides the fallback. */
#ifndef MG_LUA_BRIDGE_H
#define MG_LUA_BRIDGE_H

#include "log.h"
#include "snapshot.h"

#include <lua.h>
#include <uv.h>
#include <stdatomic.h>

struct mg_req;

/* Per-request plugin errors are logged in full once, then counted: a
 * balancer failing on every request must not write a traceback each time. */
#define MG_LOG_LIMITS 4
typedef struct mg_log_limit {
    const char *what;    /* the kind of call (a static string), NULL: free slot */
    uint64_t since_ms;   /* when the last full message was written */
    uint32_t suppressed; /* errors counted since then */
    char last[200];      /* the first line of the newest suppressed error */
} mg_log_limit;

typedef struct mg_lua {
    lua_State *L;
    int ref_pick, ref_report, ref_on_request, ref_on_response, ref_on_log, ref_tick, ref_on_body;
    int ref_pending;
    int ref_traceback; /* debug.traceback, the message handler */
    int ref_runtime;   /* the moongate.runtime module */
    int worker_id;
    uint8_t *has_report; /* per service of the current snapshot */
    int nreport;
    uint64_t report_version;
    /* For the watchdog (another thread): when the current call into Lua
     * started (0: not in Lua) and what it is. */
    _Atomic uint64_t busy_since;
    _Atomic(const char *) busy_what;
    _Atomic uint64_t interrupt_since; /* the call the watchdog interrupts */
    char busy_plugin[64];             /* the plugin running, as the runtime last said */
    mg_log_limit limits[MG_LOG_LIMITS];
} mg_lua;

/* The worker's Lua bridge, for FFI calls made on the worker's thread. */
extern __thread mg_lua *mg_lua_self;

/* Creates the worker's Lua state and loads lua/moongate/runtime.lua.
 * Returns 0, or -1 with err set. */
int mg_lua_init(mg_lua *lua, int worker_id, const char *plugins_dir, uv_loop_t *loop, char *err,
                size_t errlen);

/* Sets this thread's hooks around resumes of waiting coroutines (the
 * worker's thread, at its start); hooks must outlive the thread's loop. */
struct mg_io_hooks;
void mg_lua_io_hooks(mg_lua *lua, struct mg_io_hooks *hooks);
void mg_lua_close(mg_lua *lua);

/* Runs each service's balancer `new` and builds the middleware chains for
 * snapshot s. A balancer that fails leaves its service on round robin. */
void mg_lua_adopt(mg_lua *lua, const mg_snapshot *s);

/* Starts a new plugin generation: modules are loaded afresh next time. */
void mg_lua_new_generation(mg_lua *lua, const char *plugins_dir);

/* Calls the service's balancer pick for request r (tried: target indexes
 * already tried). Returns a target index, -1 when pick returned nothing,
 * -2 on an error (logged) or a service without a working balancer. */
int mg_lua_pick(mg_lua *lua, struct mg_req *r, const int *tried, int ntried);

/* Tells the balancer how a try went (only if it has report). */
void mg_lua_report(mg_lua *lua, struct mg_req *r, int status, double latency, const char *err);

/* Middleware hooks. on_request returns 0, or -1 after an error (logged):
 * the caller answers 500. */
int mg_lua_on_request(mg_lua *lua, struct mg_req *r);
/* may_wait: the hooks may wait on I/O (an HTTP/1 upstream response, whose
 * read can stop); with 0 they run plain (mg.http raises there). When they
 * wait, r->hook_wait is set and proxy_wait.c goes on later. */
void mg_lua_on_response(mg_lua *lua, struct mg_req *r, int may_wait);
void mg_lua_on_log(mg_lua *lua, struct mg_req *r);
/* Runs the on_body hooks over buf's bytes (last: the body ends here) and
 * replaces buf's content with what they return. -1 when a hook failed. */
int mg_lua_on_body(mg_lua *lua, struct mg_req *r, mg_buf *buf, int last);

/* Called from the watchdog thread when the call that started at `since`
 * (busy_since) has run too long: arms a hook that raises an error at the
 * next instruction count check, if that call is still the one running. */
void mg_lua_interrupt(mg_lua *lua, uint64_t since);

/* How many requests the runtime keeps state for (chains, ctx, waits). */
int mg_lua_pending(mg_lua *lua);

/* Runs due Lua timers (the worker's tick). */
void mg_lua_tick(mg_lua *lua);

/* Writes the counts of plugin errors held back by the log limit (tick). */
void mg_lua_flush_log_limits(mg_lua *lua);

#endif
