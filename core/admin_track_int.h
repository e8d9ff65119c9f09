/* What admin_track.c and admin_track_state.c share: the tracker's state
 * and the clocks it converts between. Not an API. */
#ifndef MG_ADMIN_TRACK_INT_H
#define MG_ADMIN_TRACK_INT_H

#include "admin_track.h"
#include "stats.h"

#include <stdatomic.h>
#include <uv.h>

struct mg_track {
    mg_track_target **by_suid; /* index; NULL where untracked */
    uint32_t cap;
    mg_track_target **all; /* present and removed */
    int nall, capall;
    mg_track_target *removed[MG_TRACK_MAX_REMOVED]; /* oldest removal first */
    int nremoved;
    mg_snapshot *snap; /* the last observed snapshot (our reference) */
    uint64_t gen;
    int reloads, failures;
    uint64_t plugin_gen;
    double created;
    uint64_t nsamples;
    double sample_time[MG_TRACK_HISTORY];
    json_t *events[MG_TRACK_EVENTS]; /* event seq n lives at n % MG_TRACK_EVENTS */
    uint64_t nevents;
    json_t *errors[MG_TRACK_ERRORS];
    uint64_t nerrors;
    json_t *chains; /* per route of snap: [{name, plugin}] */
};

static inline uint64_t hr_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* A time on the uv_hrtime clock (ms) as wall clock seconds. */
static inline double hr_to_wall(uint64_t ms, double now, uint64_t now_ms)
{
    return now - ((double)now_ms - (double)ms) / 1000.0;
}

static inline uint64_t ld(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Why e was ejected, as a sentence for the API and the event timeline. */
void mg_track__eject_reason(const mg_track_target *e, const mg_passive_info *pi, char *out,
                            size_t len);

#endif
