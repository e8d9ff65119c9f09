/* Gateway-wide state of each target, shared by every worker through
 * relaxed atomics (no lock on the request path): a connect back-off by
 * target uid. A refused or timed-out connect makes the target rest briefly
 * (250 ms, doubling with each failure in a row up to 10 s) instead of a
 * flat 10 s, so a replica that is still starting is tried again within a
 * second of listening; a successful connect clears it at once. */
#ifndef MG_TARGETS_H
#define MG_TARGETS_H

#include <stdint.h>
#include <uv.h>

/* True while target uid rests after connect failures (now: ms, any
 * monotonic clock shared by the callers, uv_hrtime-based). */
int mg_targets_resting(uint32_t uid, uint64_t now_ms);

/* A connect to uid failed (refused or timed out) / succeeded. */
void mg_targets_connect_failed(uint32_t uid, uint64_t now_ms);
void mg_targets_connect_ok(uint32_t uid);

/* The current rest of uid in ms from now (0: none), for logs. */
uint64_t mg_targets_rest_left(uint32_t uid, uint64_t now_ms);

static inline uint64_t mg_targets_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

#endif
