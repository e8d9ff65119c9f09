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

typedef struct passive {
    atomic_uint fails;
    atomic_uint ejections;
    atomic_uint_fast64_t until_ms;
} passive;

static passive passive_state[MG_MAX_TARGET_UIDS];

int mg_passive_ejected(uint32_t suid, uint64_t now_ms)
{
    if (suid >= MG_MAX_TARGET_UIDS) return 0;
    return atomic_load_explicit(&passive_state[suid].until_ms, memory_order_relaxed) > now_ms;
}

int mg_passive_record(uint32_t suid, int failed, int threshold, uint64_t cooldown_ms,
                      uint64_t now_ms)
{
    if (suid >= MG_MAX_TARGET_UIDS || threshold <= 0) return 0;
    passive *p = &passive_state[suid];
    if (!failed) {
        atomic_store_explicit(&p->fails, 0, memory_order_relaxed);
        if (atomic_load_explicit(&p->until_ms, memory_order_relaxed) < now_ms)
            atomic_store_explicit(&p->ejections, 0, memory_order_relaxed);
        return 0;
    }
    unsigned f = atomic_fetch_add_explicit(&p->fails, 1, memory_order_relaxed) + 1;
    if (f < (unsigned)threshold) return 0;
    atomic_store_explicit(&p->fails, 0, memory_order_relaxed);
    unsigned k = atomic_fetch_add_explicit(&p->ejections, 1, memory_order_relaxed);
    if (k > 5) k = 5; /* up to 32 times the cool-down */
    atomic_store_explicit(&p->until_ms, now_ms + (cooldown_ms << k), memory_order_relaxed);
    return 1;
}
