/* Gateway-wide counters for the admin API and /metrics. Workers add with
 * relaxed atomics (no lock on the request path); the admin reads them. Per
 * target they are indexed by the target's uid, like the in-flight counts. */
#ifndef MG_STATS_H
#define MG_STATS_H

#include "snapshot.h"

#include <stdatomic.h>
#include <stdint.h>

#define MG_LAT_BUCKETS 12 /* upper bounds in mg_lat_bounds, the last is +Inf */

extern const double mg_lat_bounds[MG_LAT_BUCKETS];

typedef struct mg_target_stats {
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t status[6]; /* index 1..5 = 1xx..5xx, 0 = no status */
    atomic_uint_fast64_t connect_errors, timeouts, retries;
    atomic_uint_fast64_t lat[MG_LAT_BUCKETS];
    atomic_uint_fast64_t lat_sum_us;
} mg_target_stats;

typedef struct mg_global_stats {
    atomic_uint_fast64_t requests, no_route, local_answers;
    atomic_int open_connections;
    atomic_uint_fast64_t reloads_ok, reloads_failed;
    atomic_uint_fast64_t snapshot_version;
    atomic_int configs_alive; /* loaded configs not freed yet (bounded by held snapshots) */
} mg_global_stats;

extern mg_global_stats mg_stats;

/* Health of a (service, target) pair from active checks, by suid:
 * 0 not checked, 1 up, 2 down. Written by the control thread, read by
 * workers when they pick (a down target is skipped unless all are down). */
enum { MG_HEALTH_UNCHECKED = 0, MG_HEALTH_UP = 1, MG_HEALTH_DOWN = 2 };
int mg_health_get(uint32_t suid);
MG_EXPORT void mg_ffi_set_health(uint32_t suid, int state);

/* Passive health, per suid, shared by all workers: consecutive failures
 * and an ejection deadline (ms, uv_hrtime clock) that doubles while a
 * target keeps failing after it comes back. */
int mg_passive_ejected(uint32_t suid, uint64_t now_ms);
/* Records an outcome; returns 1 when this failure just ejected the target. */
int mg_passive_record(uint32_t suid, int failed, int threshold, uint64_t cooldown_ms,
                      uint64_t now_ms);

/* The counters of a target uid (NULL past the table). */
mg_target_stats *mg_target_stats_of(uint32_t uid);

/* Records a finished try or request on target uid. */
void mg_stats_request(uint32_t uid, int status, double seconds);

#endif
