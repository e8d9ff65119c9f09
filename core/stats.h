/* Gateway-wide counters for the admin API and /metrics. Workers add with
 * relaxed atomics (no lock on the request path); the admin reads them. Per
 * target they are indexed by the target's uid, like the in-flight counts. */
#ifndef MG_STATS_H
#define MG_STATS_H

#include "ffi.h"
#include "snapshot.h"

#include <stdatomic.h>
#include <stddef.h>
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

#define MG_STATS_MAX_WORKERS 64

typedef struct mg_global_stats {
    atomic_uint_fast64_t requests, no_route, local_answers;
    atomic_int open_connections;
    atomic_uint_fast64_t reloads_ok, reloads_failed;
    atomic_uint_fast64_t snapshot_version;
    atomic_int configs_alive; /* loaded configs not freed yet (bounded by held snapshots) */
    /* Lua heap per state, refreshed every tick: [0] the control plane,
     * [id] worker id (1..MG_STATS_MAX_WORKERS) */
    atomic_uint_fast64_t lua_bytes[MG_STATS_MAX_WORKERS + 1];
    /* Per worker id, refreshed every tick: requests whose middleware chain
     * waits on I/O, the I/O waits in progress (mg.http, mg.sleep), and, once
     * a second, requests the Lua runtime keeps state for. */
    atomic_int hook_waits[MG_STATS_MAX_WORKERS + 1];
    atomic_int io_waits[MG_STATS_MAX_WORKERS + 1];
    atomic_int lua_pending[MG_STATS_MAX_WORKERS + 1];
} mg_global_stats;

extern mg_global_stats mg_stats;

/* Health of a (service, target) pair from active checks, by suid:
 * 0 not checked, 1 up, 2 down. Written by the control thread, read by
 * workers when they pick (a down target is skipped unless all are down). */
enum { MG_HEALTH_UNCHECKED = 0, MG_HEALTH_UP = 1, MG_HEALTH_DOWN = 2 };
int mg_health_get(uint32_t suid);
/* Set by health plugins through mg_ffi_set_health (ffi.h), main thread only. */

/* When the active state last changed (wall clock, seconds; 0: never) and
 * the reason given with it ("" when none). Main thread only; the reason
 * stays valid until the next mg_ffi_set_health call for suid. */
double mg_health_since(uint32_t suid, const char **reason);

/* Passive health, per suid, shared by all workers: consecutive failures
 * and an ejection deadline (ms, uv_hrtime clock) that doubles while a
 * target keeps failing after it comes back. A failure has a kind, so the
 * admin API can say why a target was ejected. */
enum {
    MG_FAIL_NONE = 0, /* a success */
    MG_FAIL_UNKNOWN,  /* a failure of unrecorded kind (mg_passive_record) */
    MG_FAIL_CONNECT,  /* connect refused or timed out */
    MG_FAIL_TIMEOUT,  /* no response in time */
    MG_FAIL_RESET,    /* the connection closed before a response */
    MG_FAIL_STATUS,   /* a 5xx answer; the status is recorded too */
};
int mg_passive_ejected(uint32_t suid, uint64_t now_ms);
/* Records an outcome; returns 1 when this failure just ejected the target.
 * Cheap enough for every response: relaxed atomics only. */
int mg_passive_report(uint32_t suid, int kind, int status, int threshold, uint64_t cooldown_ms,
                      uint64_t now_ms);
/* mg_passive_report with MG_FAIL_UNKNOWN for a failure (older call sites). */
int mg_passive_record(uint32_t suid, int failed, int threshold, uint64_t cooldown_ms,
                      uint64_t now_ms);

/* What the admin API shows of a target's passive state (times in ms on the
 * uv_hrtime clock, 0: never). */
typedef struct mg_passive_info {
    int ejected;            /* ejected at now_ms */
    uint64_t ejected_at_ms; /* start of the newest ejection */
    uint64_t until_ms;      /* its end */
    unsigned ejections;     /* ejections since the gateway started */
    unsigned failures;      /* consecutive failures counted now */
    int kind, status;       /* the failure that caused the newest ejection */
} mg_passive_info;
void mg_passive_get(uint32_t suid, uint64_t now_ms, mg_passive_info *out);

/* "connect failed", "status 503", ... for a failure kind; NULL for
 * MG_FAIL_NONE and MG_FAIL_UNKNOWN. */
const char *mg_fail_describe(int kind, int status, char *buf, size_t len);

/* A target's place in its life, set by the core when it admits a target
 * later than discovery found it (starting) or lets one finish its requests
 * before it goes (draining). Read by the admin API; relaxed atomics. */
enum { MG_LIFE_ACTIVE = 0, MG_LIFE_STARTING = 1, MG_LIFE_DRAINING = 2 };
void mg_lifecycle_set(uint32_t suid, int state);
/* The state, and when it was set (wall clock seconds, 0: never). */
int mg_lifecycle_get(uint32_t suid, double *since);

/* The counters of a target uid (NULL past the table). */
mg_target_stats *mg_target_stats_of(uint32_t uid);

/* Records a finished try or request on target uid. */
void mg_stats_request(uint32_t uid, int status, double seconds);

#endif
