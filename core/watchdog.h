/* Watches the workers' calls into Lua from the main thread: a plugin that
 * does not return within the limit is reported (which worker, which hook)
 * and, where LuaJIT allows, interrupted so its request answers 500. */
#ifndef MG_WATCHDOG_H
#define MG_WATCHDOG_H

#include "worker.h"

#include <uv.h>

#define MG_WATCHDOG_LIMIT_MS 1000

typedef struct mg_watchdog {
    uv_timer_t timer;
    mg_worker *ws;
    int n;
    uint64_t *reported; /* busy_since already reported, per worker */
} mg_watchdog;

void mg_watchdog_start(mg_watchdog *wd, uv_loop_t *loop, mg_worker *ws, int n);
void mg_watchdog_stop(mg_watchdog *wd);

#endif
