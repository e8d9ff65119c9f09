/* The admin API's answers, built from the newest snapshot, the statistics
 * atomics and the tracker (main thread). Documented in docs/admin.md. */
#ifndef MG_ADMIN_API_H
#define MG_ADMIN_API_H

#include "admin_track.h"
#include "log.h"
#include "reload.h"

#include <jansson.h>

/* GET /api/services. history: seconds of per-target rates to include (0:
 * none); removed: also list services that are gone but have targets
 * removed less than MG_TRACK_KEEP_S ago. Returns a new array. */
json_t *mg_admin_services(const mg_reloader *rl, const mg_track *tr, int history, int removed);

/* GET /api/routes, /api/plugins, /api/events, /api/errors: new objects. */
json_t *mg_admin_routes(const mg_reloader *rl, const mg_track *tr);
json_t *mg_admin_plugins(const mg_reloader *rl);
json_t *mg_admin_events(const mg_track *tr, uint64_t since);
json_t *mg_admin_errors(const mg_track *tr);

/* GET /metrics: appends the Prometheus text (format 0.0.4) to b. */
void mg_admin_metrics(const mg_reloader *rl, const mg_track *tr, mg_buf *b);

#endif
