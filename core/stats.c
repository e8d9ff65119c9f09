/* See stats.h. The per-target table is allocated once, zeroed pages cost
 * nothing until a uid is used. */
#include "stats.h"

#include <stdlib.h>

const double mg_lat_bounds[MG_LAT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                              0.5,   1,    2.5,   5,    10,  1e300};

mg_global_stats mg_stats;
static mg_target_stats target_stats[MG_MAX_TARGET_UIDS];

mg_target_stats *mg_target_stats_of(uint32_t uid)
{
    return uid < MG_MAX_TARGET_UIDS ? &target_stats[uid] : NULL;
}

void mg_stats_request(uint32_t uid, int status, double seconds)
{
    mg_target_stats *s = mg_target_stats_of(uid);
    if (!s) return;
    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    int cls = status >= 100 && status < 600 ? status / 100 : 0;
    atomic_fetch_add_explicit(&s->status[cls], 1, memory_order_relaxed);
    int b = 0;
    while (b < MG_LAT_BUCKETS - 1 && seconds > mg_lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&s->lat[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->lat_sum_us, (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

static atomic_uchar health[MG_MAX_TARGET_UIDS];

int mg_health_get(uint32_t suid)
{
    return suid < MG_MAX_TARGET_UIDS ? atomic_load_explicit(&health[suid], memory_order_relaxed)
                                     : 0;
}

void mg_ffi_set_health(uint32_t suid, int state)
{
    if (suid < MG_MAX_TARGET_UIDS)
        atomic_store_explicit(&health[suid], (unsigned char)state, memory_order_relaxed);
}
