/* See shared.h. */
#include "shared.h"
#include "snapshot.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Signed: add() takes negative deltas. Atomic arithmetic on signed types
 * wraps in two's complement (C11 7.17.7.5), so next() can run forever. */
static atomic_int_fast64_t counters[MG_SHARED_SLOTS];
static char *names[MG_SHARED_SLOTS];
static int nnames;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int mg_ffi_counter_slot(const char *name)
{
    int slot = -1;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nnames; i++) {
        if (strcmp(names[i], name) == 0) {
            slot = i;
            goto out;
        }
    }
    if (nnames < MG_SHARED_SLOTS && (names[nnames] = strdup(name))) slot = nnames++;
out:
    pthread_mutex_unlock(&lock);
    return slot;
}

uint32_t mg_ffi_counter_next(int slot)
{
    if (slot < 0 || slot >= MG_SHARED_SLOTS) return 0;
    return (uint32_t)atomic_fetch_add_explicit(&counters[slot], 1, memory_order_relaxed);
}

double mg_ffi_counter_add(int slot, int64_t delta)
{
    if (slot < 0 || slot >= MG_SHARED_SLOTS) return 0;
    /* relaxed is enough: the counter orders nothing but itself. The sum is
     * formed unsigned so that it wraps like the atomic did (no signed UB). */
    int64_t old = atomic_fetch_add_explicit(&counters[slot], delta, memory_order_relaxed);
    return (double)(int64_t)((uint64_t)old + (uint64_t)delta);
}

double mg_ffi_counter_get(int slot)
{
    if (slot < 0 || slot >= MG_SHARED_SLOTS) return 0;
    return (double)atomic_load_explicit(&counters[slot], memory_order_relaxed);
}

int mg_ffi_inflight(uint32_t uid)
{
    if (uid >= MG_MAX_TARGET_UIDS) return 0;
    return atomic_load_explicit(&mg_target_inflight[uid], memory_order_relaxed);
}
