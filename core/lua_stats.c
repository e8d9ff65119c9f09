/* See lua_stats.h. */
#include "ffi.h"
#include "lua_stats.h"
#include "stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t ld(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

int mg_ffi_target_counters(uint32_t suid, double *out, int n)
{
    mg_target_stats *s = mg_target_stats_of(suid);
    if (!s || n <= 0) return 0;
    double v[2 + 6 + 2 + MG_LAT_BUCKETS];
    int k = 0;
    v[k++] = (double)ld(&s->requests);
    for (int i = 0; i < 6; i++)
        v[k++] = (double)ld(&s->status[i]);
    v[k++] = (double)ld(&s->connect_errors);
    v[k++] = (double)ld(&s->timeouts);
    for (int i = 0; i < MG_LAT_BUCKETS; i++)
        v[k++] = (double)ld(&s->lat[i]);
    v[k++] = (double)ld(&s->lat_sum_us);
    if (n > k) n = k;
    memcpy(out, v, (size_t)n * sizeof(double));
    return n;
}

/* ---- held requests per service ---- */

/* Names are added once and never removed (a service name costs a slot for
 * the process's life): the counters are then read and written without the
 * lock, which only guards adding a name. */
typedef struct held_slot {
    _Atomic(const char *) name; /* owned here, never freed */
    atomic_int n;
} held_slot;

static held_slot held[MG_HELD_SERVICES];
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;

static held_slot *held_find(const char *service, int add)
{
    for (int i = 0; i < MG_HELD_SERVICES; i++) {
        const char *n = atomic_load_explicit(&held[i].name, memory_order_acquire);
        if (!n) break;
        if (!strcmp(n, service)) return &held[i];
    }
    if (!add) return NULL;
    pthread_mutex_lock(&held_lock);
    held_slot *found = NULL;
    for (int i = 0; i < MG_HELD_SERVICES && !found; i++) {
        const char *n = atomic_load_explicit(&held[i].name, memory_order_acquire);
        if (n && !strcmp(n, service)) found = &held[i];
        if (!n) {
            char *copy = strdup(service);
            if (copy) {
                atomic_store_explicit(&held[i].name, copy, memory_order_release);
                found = &held[i];
            }
            break;
        }
    }
    pthread_mutex_unlock(&held_lock);
    return found;
}

void mg_held_add(const char *service, int delta)
{
    held_slot *s = held_find(service, 1);
    if (s) atomic_fetch_add_explicit(&s->n, delta, memory_order_relaxed);
}

int mg_ffi_held(const char *service)
{
    held_slot *s = held_find(service, 0);
    int n = s ? atomic_load_explicit(&s->n, memory_order_relaxed) : 0;
    return n > 0 ? n : 0;
}

/* ---- the newest decision per service ---- */

typedef struct note {
    char *name;
    double v[MG_AS_NVALUES];
    char *decisions; /* JSON array, owned */
} note;

static note *notes;
static int nnotes, capnotes;
static pthread_mutex_t notes_lock = PTHREAD_MUTEX_INITIALIZER;

static void forget(int i)
{
    free(notes[i].name);
    free(notes[i].decisions);
    notes[i] = notes[--nnotes];
}

void mg_ffi_autoscale_note(const char *service, const double *v, int n, const char *decisions_json)
{
    pthread_mutex_lock(&notes_lock);
    int i = 0;
    while (i < nnotes && strcmp(notes[i].name, service))
        i++;
    if (n <= MG_AS_DESIRED || v[MG_AS_DESIRED] < 0) {
        if (i < nnotes) forget(i);
        pthread_mutex_unlock(&notes_lock);
        return;
    }
    if (i == nnotes) {
        if (nnotes == capnotes) {
            int cap = capnotes ? capnotes * 2 : 8;
            note *nn = realloc(notes, (size_t)cap * sizeof(*nn));
            if (!nn) goto out;
            notes = nn;
            capnotes = cap;
        }
        notes[i].name = strdup(service);
        notes[i].decisions = NULL;
        if (!notes[i].name) goto out;
        nnotes++;
    }
    memset(notes[i].v, 0, sizeof(notes[i].v));
    memcpy(notes[i].v, v, (size_t)(n < MG_AS_NVALUES ? n : MG_AS_NVALUES) * sizeof(double));
    char *d = strdup(decisions_json ? decisions_json : "[]");
    if (d) {
        free(notes[i].decisions);
        notes[i].decisions = d;
    }
out:
    pthread_mutex_unlock(&notes_lock);
}

int mg_autoscale_get(int i, char *name, size_t nlen, double v[MG_AS_NVALUES], char *decisions,
                     size_t dlen)
{
    pthread_mutex_lock(&notes_lock);
    int rc = -1;
    if (i >= 0 && i < nnotes) {
        snprintf(name, nlen, "%s", notes[i].name);
        memcpy(v, notes[i].v, sizeof(notes[i].v));
        if (decisions && dlen)
            snprintf(decisions, dlen, "%s", notes[i].decisions ? notes[i].decisions : "[]");
        rc = 0;
    }
    pthread_mutex_unlock(&notes_lock);
    return rc;
}
