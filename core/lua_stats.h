/* What the autoscaler (the control plane's Lua) reads of the gateway-wide
 * figures and what it leaves for the admin API to show.
 *
 * - Counters of a (service, target) pair, copied out of stats.h's atomics.
 * - Held requests per service, gateway-wide: proxy_hold.c adds and removes
 *   as requests enter and leave the hold queue of any worker; the
 *   controller reads it to wake a service that has no replica.
 * - The newest autoscale decision per service (inputs, desired and actual
 *   replicas, the recent decisions as JSON), for /api/services and
 *   /metrics.
 *
 * The mg_ffi_* functions are read through LuaJIT's FFI (declared in
 * ffi.h and moongate.ffi with the others). All of them take a lock or use
 * relaxed atomics: callers may be any thread. */
#ifndef MG_LUA_STATS_H
#define MG_LUA_STATS_H

#include "common.h"

#include <stdint.h>

/* out[] gets the counters of suid in this order, up to n values:
 * requests, status none,1xx..5xx (6), connect_errors, timeouts, latency
 * buckets (MG_LAT_BUCKETS, stats.h), lat_sum_us. Returns how many values
 * were written, 0 past the table. */
int mg_ffi_target_counters(uint32_t suid, double *out, int n);

/* Requests held for service now, on all workers together. */
int mg_ffi_held(const char *service);
/* proxy_hold.c: delta +1 when a request enters the hold queue, -1 when it
 * leaves. At most MG_HELD_SERVICES names are counted (others read 0). */
#define MG_HELD_SERVICES 256
void mg_held_add(const char *service, int delta);

/* The inputs of an autoscale decision, by index in v[] below. */
enum {
    MG_AS_DESIRED,
    MG_AS_REPLICAS,
    MG_AS_MIN,
    MG_AS_MAX,
    MG_AS_RPS,
    MG_AS_INFLIGHT,
    MG_AS_INFLIGHT_PER_REPLICA,
    MG_AS_QUEUED,
    MG_AS_P50,
    MG_AS_P95,
    MG_AS_ERROR_RATE,
    MG_AS_CONNECT_FAILURE_RATE,
    MG_AS_NVALUES
};

/* Records service's newest figures (n values of the enum above) and its
 * recent decisions (a JSON array, copied). desired < 0 forgets the
 * service (it no longer autoscales). */
void mg_ffi_autoscale_note(const char *service, const double *v, int n, const char *decisions_json);

/* The i-th noted service (0..): its name, values and decisions are copied
 * to the caller's buffers (decisions truncated to dlen). Returns 0, or -1
 * past the last. */
int mg_autoscale_get(int i, char *name, size_t nlen, double v[MG_AS_NVALUES], char *decisions,
                     size_t dlen);

#endif
