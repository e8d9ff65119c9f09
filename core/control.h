/* The control plane's Lua state, on the main thread: discovery and health
 * plugins run here as coroutines that wait on libuv (HTTP over TCP or a
 * unix socket, timers) without blocking anything, in the style of
 * OpenResty's cosockets: the plugin writes straight-line code. */
#ifndef MG_CONTROL_H
#define MG_CONTROL_H

#include "reload.h"

#include <lua.h>
#include <uv.h>

typedef struct mg_control {
    uv_loop_t *loop;
    lua_State *L;
    mg_reloader *rl;
    uv_timer_t publish_timer; /* applies discovery results outside any coroutine */
    uv_timer_t tick;          /* runs plugins' mg.timer callbacks */
    int ref_timers;           /* moongate._run_timers */
    char *pending;            /* the newest discovery result not applied yet */
    int ref_runtime;          /* moongate.health */
    int ref_discovery;        /* moongate.discovery */
} mg_control;

/* Creates the state, loads lua/moongate/control.lua and starts the health
 * checks of the current config. Returns 0 or -1 (logged). */
int mg_control_start(mg_control *ctl, uv_loop_t *loop, mg_reloader *rl);

/* The config changed: restart health checks for it (state is kept per
 * target across reloads). */
void mg_control_reconfigure(mg_control *ctl);

void mg_control_stop(mg_control *ctl);

/* Registers the async I/O primitives (moongate.c.io) in a Lua state whose
 * coroutines are resumed from loop. Also used by `moongate test`. */
void mg_control_open_io(lua_State *L, uv_loop_t *loop);

/* Cancels every request and sleep in progress without resuming anyone (at
 * shutdown, before the Lua state is closed; run the loop after). */
void mg_control_io_cancel_all(void);

/* Closes the control state (after mg_control_stop and the loop ran). */
void mg_control_close(mg_control *ctl);

#endif
