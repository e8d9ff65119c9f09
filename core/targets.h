/* Gateway-wide state of each target, shared by every worker through
 * relaxed atomics (no lock on the request path). Written by workers (what
 * their requests saw) and by the control thread (membership), read by
 * workers when they pick.
 *
 * - Connect back-off, by target uid: a refused or timed-out connect makes
 *   the target rest briefly (250 ms, doubling with each failure in a row up
 *   to 10 s) instead of a flat 10 s, so a replica that is still starting is
 *   tried again within a second of listening; a successful connect clears
 *   it at once.
 * - Draining, by (service, target) suid: set for every target a published
 *   snapshot no longer has, so no worker opens a new connection to it,
 *   whatever snapshot its requests pinned; cleared when it comes back.
 * - Presence, by uid: whether any service of the newest snapshot has that
 *   address (workers close idle pooled connections to absent ones).
 * - Progress, by uid: when a response byte last came from the target and
 *   how long its slowest recent responses took, to tell a frozen target
 *   (`docker pause`) from a slow one. */
#ifndef MG_TARGETS_H
#define MG_TARGETS_H

#include <stdint.h>
#include <uv.h>

static inline uint64_t mg_targets_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* ---- connect back-off ---- */
int mg_targets_resting(uint32_t uid, uint64_t now_ms);
void mg_targets_connect_failed(uint32_t uid, uint64_t now_ms);
void mg_targets_connect_ok(uint32_t uid);
/* The rest left for uid in ms from now (0: none), for the admin API. */
uint64_t mg_targets_rest_left(uint32_t uid, uint64_t now_ms);

/* ---- membership (the control thread) ---- */
int mg_targets_draining(uint32_t suid);
void mg_targets_set_draining(uint32_t suid, int draining);
int mg_targets_present(uint32_t uid);
void mg_targets_set_present(uint32_t uid, int present);

/* ---- progress ---- */
/* A response byte came from uid; latency_ms: a response that just ended
 * took this long (0: none ended). */
void mg_targets_progress(uint32_t uid, uint64_t now_ms, uint64_t latency_ms);
/* How long uid may stay silent while requests wait on it before it counts
 * as stalled: max(min_ms, 4 x its slowest recent response). */
uint64_t mg_targets_stall_after(uint32_t uid, uint64_t min_ms);
/* ms since the last byte from uid (UINT64_MAX: never). */
uint64_t mg_targets_silent_for(uint32_t uid, uint64_t now_ms);
/* Marks uid stalled until now + ms (avoided by picks meanwhile). */
void mg_targets_set_stalled(uint32_t uid, uint64_t until_ms);
int mg_targets_stalled(uint32_t uid, uint64_t now_ms);

#endif
