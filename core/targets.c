/* See targets.h. */
#include "targets.h"
#include "snapshot.h"

#include <stdatomic.h>

#define REST_FIRST_MS 250
#define REST_MAX_MS   10000

static _Atomic uint64_t rest_until[MG_MAX_TARGET_UIDS];
static atomic_uchar fails[MG_MAX_TARGET_UIDS];

int mg_targets_resting(uint32_t uid, uint64_t now_ms)
{
    if (uid >= MG_MAX_TARGET_UIDS) return 0;
    return atomic_load_explicit(&rest_until[uid], memory_order_relaxed) > now_ms;
}

void mg_targets_connect_failed(uint32_t uid, uint64_t now_ms)
{
    if (uid >= MG_MAX_TARGET_UIDS) return;
    unsigned n = atomic_load_explicit(&fails[uid], memory_order_relaxed);
    if (n < 16) atomic_store_explicit(&fails[uid], (unsigned char)(n + 1), memory_order_relaxed);
    uint64_t rest = (uint64_t)REST_FIRST_MS << (n < 6 ? n : 6);
    if (rest > REST_MAX_MS) rest = REST_MAX_MS;
    /* workers may race here; either of two close deadlines is fine */
    atomic_store_explicit(&rest_until[uid], now_ms + rest, memory_order_relaxed);
}

void mg_targets_connect_ok(uint32_t uid)
{
    if (uid >= MG_MAX_TARGET_UIDS) return;
    if (atomic_load_explicit(&fails[uid], memory_order_relaxed))
        atomic_store_explicit(&fails[uid], 0, memory_order_relaxed);
    if (atomic_load_explicit(&rest_until[uid], memory_order_relaxed))
        atomic_store_explicit(&rest_until[uid], 0, memory_order_relaxed);
}

uint64_t mg_targets_rest_left(uint32_t uid, uint64_t now_ms)
{
    if (uid >= MG_MAX_TARGET_UIDS) return 0;
    uint64_t u = atomic_load_explicit(&rest_until[uid], memory_order_relaxed);
    return u > now_ms ? u - now_ms : 0;
}
