/* See targets.h. Every array is indexed by a uid below MG_MAX_TARGET_UIDS
 * and lives in BSS: untouched entries cost no memory. Races between
 * workers writing the same entry are benign: either of two close values
 * is right. */
#include "targets.h"
#include "snapshot.h"

#include <stdatomic.h>

#define REST_FIRST_MS 250
#define REST_MAX_MS   10000

static _Atomic uint64_t rest_until[MG_MAX_TARGET_UIDS];
static atomic_uchar fails[MG_MAX_TARGET_UIDS];
static atomic_uchar draining[MG_MAX_TARGET_UIDS];
static atomic_uchar present[MG_MAX_TARGET_UIDS];
static _Atomic uint64_t last_byte_ms[MG_MAX_TARGET_UIDS];
static _Atomic uint32_t peak_ms[MG_MAX_TARGET_UIDS]; /* decays: slowest recent response */
static _Atomic uint64_t peak_at_ms[MG_MAX_TARGET_UIDS];
static _Atomic uint64_t stalled_until[MG_MAX_TARGET_UIDS];

#define LOAD(a)     atomic_load_explicit(&(a), memory_order_relaxed)
#define STORE(a, v) atomic_store_explicit(&(a), (v), memory_order_relaxed)
#define OK(uid)     ((uid) < MG_MAX_TARGET_UIDS)

int mg_targets_resting(uint32_t uid, uint64_t now_ms)
{
    return OK(uid) && LOAD(rest_until[uid]) > now_ms;
}

void mg_targets_connect_failed(uint32_t uid, uint64_t now_ms)
{
    if (!OK(uid)) return;
    unsigned n = LOAD(fails[uid]);
    if (n < 16) STORE(fails[uid], (unsigned char)(n + 1));
    uint64_t rest = (uint64_t)REST_FIRST_MS << (n < 6 ? n : 6);
    if (rest > REST_MAX_MS) rest = REST_MAX_MS;
    STORE(rest_until[uid], now_ms + rest);
}

void mg_targets_connect_ok(uint32_t uid)
{
    if (!OK(uid)) return;
    if (LOAD(fails[uid])) STORE(fails[uid], 0);
    if (LOAD(rest_until[uid])) STORE(rest_until[uid], 0);
}

uint64_t mg_targets_rest_left(uint32_t uid, uint64_t now_ms)
{
    if (!OK(uid)) return 0;
    uint64_t u = LOAD(rest_until[uid]);
    return u > now_ms ? u - now_ms : 0;
}

int mg_targets_draining(uint32_t suid)
{
    return OK(suid) && LOAD(draining[suid]);
}

void mg_targets_set_draining(uint32_t suid, int on)
{
    if (OK(suid)) STORE(draining[suid], (unsigned char)(on != 0));
}

int mg_targets_present(uint32_t uid)
{
    return OK(uid) && LOAD(present[uid]);
}

void mg_targets_set_present(uint32_t uid, int on)
{
    if (OK(uid)) STORE(present[uid], (unsigned char)(on != 0));
}

void mg_targets_progress(uint32_t uid, uint64_t now_ms, uint64_t latency_ms)
{
    if (!OK(uid)) return;
    /* one store per read at most, and none while the value is current */
    if (LOAD(last_byte_ms[uid]) != now_ms) STORE(last_byte_ms[uid], now_ms);
    if (LOAD(stalled_until[uid])) STORE(stalled_until[uid], 0);
    if (!latency_ms) return;
    /* the peak halves every 30 s, and any slower response raises it */
    uint64_t at = LOAD(peak_at_ms[uid]);
    uint32_t peak = LOAD(peak_ms[uid]);
    while (peak && now_ms - at > 30000) {
        peak /= 2;
        at += 30000;
    }
    if (latency_ms >= peak) {
        peak = latency_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_ms;
        at = now_ms;
    }
    STORE(peak_ms[uid], peak);
    STORE(peak_at_ms[uid], at);
}

uint64_t mg_targets_stall_after(uint32_t uid, uint64_t min_ms)
{
    uint64_t t = OK(uid) ? (uint64_t)LOAD(peak_ms[uid]) * 4 : 0;
    return t > min_ms ? t : min_ms;
}

uint64_t mg_targets_silent_for(uint32_t uid, uint64_t now_ms)
{
    if (!OK(uid)) return 0;
    uint64_t last = LOAD(last_byte_ms[uid]);
    return !last ? UINT64_MAX : now_ms > last ? now_ms - last : 0;
}

void mg_targets_set_stalled(uint32_t uid, uint64_t until_ms)
{
    if (OK(uid)) STORE(stalled_until[uid], until_ms);
}

int mg_targets_stalled(uint32_t uid, uint64_t now_ms)
{
    return OK(uid) && LOAD(stalled_until[uid]) > now_ms;
}
