/* The admin API on its own listener (default 127.0.0.1:8081), served by the
 * main thread: JSON views of services, routes, plugins, events and errors,
 * a reload endpoint, Prometheus metrics and a dashboard page. A one-second
 * timer feeds the tracker (admin_track.h) that remembers what changed. */
#ifndef MG_ADMIN_H
#define MG_ADMIN_H

#include "reload.h"

#include <uv.h>

struct mg_track;

typedef struct mg_admin {
    uv_tcp_t server;
    uv_timer_t tick; /* samples counters for the history, once a second */
    mg_reloader *rl;
    struct mg_track *track; /* owned; freed when tick has closed */
    int running;
    int stopping;
} mg_admin;

/* Starts listening per rl->cfg; logs and returns -1 if it cannot (the
 * gateway keeps serving without its admin API). */
int mg_admin_start(mg_admin *a, uv_loop_t *loop, mg_reloader *rl);

/* /ping answers 503 from now on. */
void mg_admin_stopping(mg_admin *a);
void mg_admin_stop(mg_admin *a);

#endif
