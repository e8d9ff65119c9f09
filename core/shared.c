/* See shared.h. */
#include "shared.h"
#include "snapshot.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t counters[MG_SHARED_SLOTS];
static char *names[MG_SHARED_SLOTS];
static int nnames;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int mg_shared_counter_slot(const char *name)
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

uint32_t mg_shared_counter_next(int slot)
{
    if (slot < 0 || slot >= MG_SHARED_SLOTS) return 0;
    return (uint32_t)atomic_fetch_add_explicit(&counters[slot], 1, memory_order_relaxed);
}

int mg_shared_inflight(uint32_t uid)
{
    if (uid >= MG_MAX_TARGET_UIDS) return 0;
    return atomic_load_explicit(&mg_target_inflight[uid], memory_order_relaxed);
}
