/* See watchdog.h. */
#include "watchdog.h"
#include "log.h"

#include <stdlib.h>

static void on_check(uv_timer_t *t)
{
    mg_watchdog *wd = t->data;
    for (int i = 0; i < wd->n; i++) {
        mg_lua *lua = &wd->ws[i].lua;
        uint64_t since = atomic_load_explicit(&lua->busy_since, memory_order_acquire);
        if (!since) continue;
        /* the clock is read after since: a call that began between a
         * reading taken first and the load would have since > now, and
         * now - since would wrap to centuries (a soak saw a balancer pick
         * "not returned for 18446744073.7 s" interrupted) */
        uint64_t now = uv_hrtime();
        if (now < since || now - since < (uint64_t)MG_WATCHDOG_LIMIT_MS * 1000000) continue;
        if (since == wd->reported[i]) {
            /* still stuck after the interrupt: a compiled loop; say so again
             * every few seconds rather than once and never more */
            if ((now - since) / 1000000 % 5000 < 250)
                mg_log(MG_LOG_ERROR, wd->ws[i].id, 0, "watchdog: still stuck for %.0f s",
                       (double)(now - since) / 1e9);
            continue;
        }
        wd->reported[i] = since;
        const char *what = atomic_load_explicit(&lua->busy_what, memory_order_relaxed);
        mg_log(MG_LOG_ERROR, wd->ws[i].id, 0,
               "watchdog: plugin %s (%s) has not returned for %.1f s; this worker's requests "
               "wait. Interrupting it (a loop LuaJIT compiled cannot be interrupted)",
               lua->busy_plugin[0] ? lua->busy_plugin : "?", what ? what : "?",
               (double)(now - since) / 1e9);
        mg_lua_interrupt(lua, since);
    }
}

void mg_watchdog_start(mg_watchdog *wd, uv_loop_t *loop, mg_worker *ws, int n)
{
    wd->ws = ws;
    wd->n = n;
    wd->reported = calloc((size_t)n, sizeof(uint64_t));
    uv_timer_init(loop, &wd->timer);
    wd->timer.data = wd;
    uv_timer_start(&wd->timer, on_check, 250, 250);
}

void mg_watchdog_stop(mg_watchdog *wd)
{
    uv_close((uv_handle_t *)&wd->timer, NULL);
    free(wd->reported);
    wd->reported = NULL;
}
