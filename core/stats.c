/* See stats.h. The per-target table is allocated once, zeroed pages cost
 * nothing until a uid is used. */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

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

/* When and why the active state last changed: written and read on the main
 * thread only (health plugins and the admin API), so plain memory, grown on
 * demand and indexed by suid. */
typedef struct health_note {
    double since;
    char reason[120];
} health_note;

static health_note *notes;
static uint32_t nnotes;

static double wall_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int mg_health_get(uint32_t suid)
{
    return suid < MG_MAX_TARGET_UIDS ? atomic_load_explicit(&health[suid], memory_order_relaxed)
                                     : 0;
}

void mg_ffi_set_health(uint32_t suid, int state, const char *reason)
{
    if (suid >= MG_MAX_TARGET_UIDS) return;
    int old = atomic_exchange_explicit(&health[suid], (unsigned char)state, memory_order_relaxed);
    if (suid >= nnotes) {
        uint32_t n = nnotes ? nnotes : 64;
        while (n <= suid)
            n *= 2;
        health_note *nn = realloc(notes, n * sizeof(*nn));
        if (!nn) return; /* the state is set; only its note is lost */
        memset(nn + nnotes, 0, (n - nnotes) * sizeof(*nn));
        notes = nn;
        nnotes = n;
    }
    health_note *h = &notes[suid];
    /* a reconfigure re-sets the same state: keep its time */
    if (old != state || !h->since) h->since = wall_now();
    if (old != state || (reason && reason[0]))
        snprintf(h->reason, sizeof(h->reason), "%s", reason ? reason : "");
}

double mg_health_since(uint32_t suid, const char **reason)
{
    if (suid >= nnotes) {
        if (reason) *reason = "";
        return 0;
    }
    if (reason) *reason = notes[suid].reason;
    return notes[suid].since;
}

typedef struct passive {
    atomic_uint fails;
    atomic_uint ejections;  /* in a row: the back-off exponent */
    atomic_uint total;      /* since start */
    atomic_uchar last_kind; /* of the newest failure */
    atomic_ushort last_status;
    atomic_uchar eject_kind; /* of the failure that ejected */
    atomic_ushort eject_status;
    atomic_uint_fast64_t until_ms;
    atomic_uint_fast64_t since_ms;
} passive;

static passive passive_state[MG_MAX_TARGET_UIDS];

int mg_passive_ejected(uint32_t suid, uint64_t now_ms)
{
    if (suid >= MG_MAX_TARGET_UIDS) return 0;
    return atomic_load_explicit(&passive_state[suid].until_ms, memory_order_relaxed) > now_ms;
}

int mg_passive_report(uint32_t suid, int kind, int status, int threshold, uint64_t cooldown_ms,
                      uint64_t now_ms)
{
    if (suid >= MG_MAX_TARGET_UIDS || threshold <= 0) return 0;
    passive *p = &passive_state[suid];
    if (kind == MG_FAIL_NONE) {
        atomic_store_explicit(&p->fails, 0, memory_order_relaxed);
        if (atomic_load_explicit(&p->until_ms, memory_order_relaxed) < now_ms)
            atomic_store_explicit(&p->ejections, 0, memory_order_relaxed);
        return 0;
    }
    atomic_store_explicit(&p->last_kind, (unsigned char)kind, memory_order_relaxed);
    atomic_store_explicit(&p->last_status, (unsigned short)status, memory_order_relaxed);
    unsigned f = atomic_fetch_add_explicit(&p->fails, 1, memory_order_relaxed) + 1;
    if (f < (unsigned)threshold) return 0;
    atomic_store_explicit(&p->fails, 0, memory_order_relaxed);
    unsigned k = atomic_fetch_add_explicit(&p->ejections, 1, memory_order_relaxed);
    if (k > 5) k = 5; /* up to 32 times the cool-down */
    atomic_store_explicit(&p->eject_kind, (unsigned char)kind, memory_order_relaxed);
    atomic_store_explicit(&p->eject_status, (unsigned short)status, memory_order_relaxed);
    atomic_store_explicit(&p->since_ms, now_ms, memory_order_relaxed);
    atomic_store_explicit(&p->until_ms, now_ms + (cooldown_ms << k), memory_order_relaxed);
    atomic_fetch_add_explicit(&p->total, 1, memory_order_relaxed);
    return 1;
}

int mg_passive_record(uint32_t suid, int failed, int threshold, uint64_t cooldown_ms,
                      uint64_t now_ms)
{
    return mg_passive_report(suid, failed ? MG_FAIL_UNKNOWN : MG_FAIL_NONE, 0, threshold,
                             cooldown_ms, now_ms);
}

void mg_passive_get(uint32_t suid, uint64_t now_ms, mg_passive_info *out)
{
    memset(out, 0, sizeof(*out));
    if (suid >= MG_MAX_TARGET_UIDS) return;
    passive *p = &passive_state[suid];
    out->until_ms = atomic_load_explicit(&p->until_ms, memory_order_relaxed);
    out->ejected = out->until_ms > now_ms;
    out->ejected_at_ms = atomic_load_explicit(&p->since_ms, memory_order_relaxed);
    out->ejections = atomic_load_explicit(&p->total, memory_order_relaxed);
    out->failures = atomic_load_explicit(&p->fails, memory_order_relaxed);
    out->kind = atomic_load_explicit(&p->eject_kind, memory_order_relaxed);
    out->status = atomic_load_explicit(&p->eject_status, memory_order_relaxed);
}

const char *mg_fail_describe(int kind, int status, char *buf, size_t len)
{
    switch (kind) {
    case MG_FAIL_CONNECT:
        return "connect failed";
    case MG_FAIL_TIMEOUT:
        return "no response in time";
    case MG_FAIL_RESET:
        return "connection lost before a response";
    case MG_FAIL_STATUS:
        if (status < 500 || status > 599) return "a 5xx answer";
        snprintf(buf, len, "status %d", status);
        return buf;
    default:
        return NULL;
    }
}

typedef struct lifecycle {
    atomic_uchar state;
    atomic_uint_fast64_t since_ms; /* wall clock */
} lifecycle;

static lifecycle lifecycles[MG_MAX_TARGET_UIDS];

void mg_lifecycle_set(uint32_t suid, int state)
{
    if (suid >= MG_MAX_TARGET_UIDS) return;
    lifecycle *l = &lifecycles[suid];
    if (atomic_exchange_explicit(&l->state, (unsigned char)state, memory_order_relaxed) != state)
        atomic_store_explicit(&l->since_ms, (uint64_t)(wall_now() * 1000), memory_order_relaxed);
}

int mg_lifecycle_get(uint32_t suid, double *since)
{
    if (suid >= MG_MAX_TARGET_UIDS) {
        if (since) *since = 0;
        return MG_LIFE_ACTIVE;
    }
    lifecycle *l = &lifecycles[suid];
    if (since) *since = (double)atomic_load_explicit(&l->since_ms, memory_order_relaxed) / 1000;
    return atomic_load_explicit(&l->state, memory_order_relaxed);
}
