/* What the admin API remembers between snapshots, on the main thread only:
 * targets that were removed (kept for a few minutes with their counters),
 * a per-target history of request and error rates (one sample a second),
 * a timeline of events (reloads, scaling, health changes) and a ring of
 * recent errors. Workers never see any of it: the tracker reads the same
 * relaxed atomics the admin API reads, compares them with what it saw the
 * last time, and records the differences. */
#ifndef MG_ADMIN_TRACK_H
#define MG_ADMIN_TRACK_H

#include "reload.h"

#include <jansson.h>
#include <stdint.h>

#define MG_TRACK_HISTORY     300 /* samples kept per target (one a second: 5 minutes) */
#define MG_TRACK_KEEP_S      300 /* how long a removed target stays listed */
#define MG_TRACK_MAX_REMOVED 256
#define MG_TRACK_EVENTS      256
#define MG_TRACK_ERRORS      100

/* A (service, target) pair the tracker knows: present in the newest
 * snapshot, or removed less than MG_TRACK_KEEP_S ago. */
typedef struct mg_track_target {
    uint32_t suid, uid;
    char *service, *id, *address; /* copies: they outlive the snapshot */
    double first_seen;            /* wall clock, seconds */
    double removed_at;            /* 0 while present */
    int present;                  /* in the newest snapshot */
    int resolved;                 /* its address resolved */
    int passive_failures;         /* its service's threshold, 0: passive off */
    int active_checks;            /* its service probes it */
    /* the previous sample's counters, for rates and the error ring */
    uint64_t last_requests, last_errors, last_connect, last_timeouts, last_5xx;
    /* what the previous observation saw, for events */
    int last_health;
    unsigned last_ejections;
    int last_ejected;
    int last_life;
    /* connect failures and answers, for when a streak of failures began */
    uint64_t seen_connect, seen_requests;
    double connect_failed_at, answered_at, failing_since;
    uint64_t gen;           /* the tracker's generation that saw it present */
    char eject_reason[160]; /* why the newest ejection happened */
    /* requests and errors per sample; slot = sample index % MG_TRACK_HISTORY */
    uint32_t hist_requests[MG_TRACK_HISTORY];
    uint32_t hist_errors[MG_TRACK_HISTORY];
} mg_track_target;

typedef struct mg_track mg_track;

/* A target's state as the admin API shows it: one of "up", "down" (an
 * active probe failed), "ejected" (passive checks), "draining", "starting",
 * "removed", "unresolved". The set is open: clients must treat a value
 * they do not know as "gets no traffic". */
typedef struct mg_track_state {
    const char *state;
    char reason[240]; /* "" when there is nothing to say */
    double since;     /* wall clock seconds; 0: unknown */
    int serving;      /* may get traffic */
} mg_track_state;

/* Returns a new tracker (NULL without memory); mg_track_free releases it. */
mg_track *mg_track_new(void);
void mg_track_free(mg_track *tr);

/* Compares the reloader's state with the last observation: records
 * reloads, membership changes and health changes. With sample, also takes
 * one history sample of every target's counters (the caller calls it once
 * a second) and forgets removed targets past MG_TRACK_KEEP_S. */
void mg_track_observe(mg_track *tr, const mg_reloader *rl, int sample);

/* The tracked entry of suid, or NULL. */
const mg_track_target *mg_track_get(const mg_track *tr, uint32_t suid);

/* Removed entries, oldest removal first: *n gets their count. */
const mg_track_target *const *mg_track_removed(const mg_track *tr, int *n);

/* The combined state of a tracked target, now. */
void mg_track_state_of(const mg_track *tr, const mg_track_target *e, mg_track_state *out);

/* Requests and errors per second over the last n samples, oldest first,
 * as two new JSON arrays (n is clamped to what is kept). */
void mg_track_history(const mg_track *tr, const mg_track_target *e, int n, json_t **requests,
                      json_t **errors);

/* Requests per second over the last sample (0 before the second sample). */
double mg_track_rate(const mg_track *tr, const mg_track_target *e);

/* Events with seq > since, oldest first, as a new JSON array; *next gets
 * the seq to ask for next time. */
json_t *mg_track_events(const mg_track *tr, uint64_t since, uint64_t *next);

/* The error ring, oldest first, as a new JSON array. */
json_t *mg_track_errors(const mg_track *tr);

/* The middleware chain of route i of the newest snapshot as a JSON array
 * of {name, plugin} (a new reference; an empty array without one). */
json_t *mg_track_route_chain(const mg_track *tr, int route);

/* The wall clock in seconds. */
double mg_track_now(void);

#endif
