/* See admin_api.h: GET /metrics, the Prometheus text format 0.0.4. */
#include "admin_api.h"
#include "lua_stats.h"
#include "stats.h"

#include <stddef.h>
#include <string.h>

static uint64_t ld(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Appends s as a label value: backslash, quote and newline escaped. */
static void put_value(mg_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            mg_buf_printf(b, "\\%c", *s);
        else if (*s == '\n')
            mg_buf_append(b, "\\n", 2);
        else
            mg_buf_append(b, s, 1);
    }
}

/* name{service="..",target=".."[,extra]} */
static void put_series(mg_buf *b, const char *name, const char *service, const char *target,
                       const char *extra)
{
    mg_buf_printf(b, "%s{service=\"", name);
    put_value(b, service);
    mg_buf_append(b, "\",target=\"", 10);
    put_value(b, target);
    mg_buf_printf(b, "\"%s%s} ", extra ? "," : "", extra ? extra : "");
}

static void put_head(mg_buf *b, const char *name, const char *type, const char *help)
{
    mg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define EACH_TARGET(snap, svc, t)                                                                  \
    for (int i_ = 0; i_ < (snap)->nservices; i_++)                                                 \
        for (const mg_service *svc = &(snap)->services[i_]; svc; svc = NULL)                       \
            for (int k_ = 0; k_ < svc->ntargets; k_++)                                             \
                for (const mg_target *t = &svc->targets[k_]; t; t = NULL)

static void requests(mg_buf *b, const mg_snapshot *snap)
{
    static const char *cls[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    put_head(b, "moongate_requests_total", "counter",
             "Requests answered, by service, target and status class.");
    EACH_TARGET(snap, svc, t)
    {
        mg_target_stats *s = mg_target_stats_of(t->suid);
        for (int x = 0; s && x < 6; x++) {
            char code[24];
            snprintf(code, sizeof(code), "code=\"%s\"", cls[x]);
            put_series(b, "moongate_requests_total", svc->name, t->address, code);
            mg_buf_printf(b, "%llu\n", (unsigned long long)ld(&s->status[x]));
        }
    }
    put_head(b, "moongate_request_duration_seconds", "histogram",
             "Request duration through the gateway.");
    EACH_TARGET(snap, svc, t)
    {
        mg_target_stats *s = mg_target_stats_of(t->suid);
        if (!s) continue;
        uint64_t cum = 0;
        for (int x = 0; x < MG_LAT_BUCKETS; x++) {
            char le[32];
            cum += ld(&s->lat[x]);
            if (x == MG_LAT_BUCKETS - 1)
                snprintf(le, sizeof(le), "le=\"+Inf\"");
            else
                snprintf(le, sizeof(le), "le=\"%g\"", mg_lat_bounds[x]);
            put_series(b, "moongate_request_duration_seconds_bucket", svc->name, t->address, le);
            mg_buf_printf(b, "%llu\n", (unsigned long long)cum);
        }
        put_series(b, "moongate_request_duration_seconds_sum", svc->name, t->address, NULL);
        mg_buf_printf(b, "%.6f\n", (double)ld(&s->lat_sum_us) / 1e6);
        put_series(b, "moongate_request_duration_seconds_count", svc->name, t->address, NULL);
        mg_buf_printf(b, "%llu\n", (unsigned long long)cum);
    }
}

static void counters(mg_buf *b, const mg_snapshot *snap)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } cs[] = {
        {"moongate_upstream_connect_errors_total", "Failed connects to a target.",
         offsetof(mg_target_stats, connect_errors)},
        {"moongate_upstream_timeouts_total", "Responses that did not come in time.",
         offsetof(mg_target_stats, timeouts)},
        {"moongate_retries_total", "Requests sent to another target after a failure.",
         offsetof(mg_target_stats, retries)},
    };
    for (size_t m = 0; m < sizeof(cs) / sizeof(cs[0]); m++) {
        put_head(b, cs[m].name, "counter", cs[m].help);
        EACH_TARGET(snap, svc, t)
        {
            mg_target_stats *s = mg_target_stats_of(t->suid);
            if (!s) continue;
            put_series(b, cs[m].name, svc->name, t->address, NULL);
            mg_buf_printf(b, "%llu\n",
                          (unsigned long long)ld((atomic_uint_fast64_t *)((char *)s + cs[m].off)));
        }
    }
    put_head(b, "moongate_target_inflight", "gauge", "Requests in flight to a target.");
    EACH_TARGET(snap, svc, t)
    {
        put_series(b, "moongate_target_inflight", svc->name, t->address, NULL);
        mg_buf_printf(b, "%d\n",
                      t->uid < MG_MAX_TARGET_UIDS ? atomic_load(&mg_target_inflight[t->uid]) : 0);
    }
    put_head(b, "moongate_passive_ejections_total", "counter",
             "Times passive health checks ejected a target.");
    EACH_TARGET(snap, svc, t)
    {
        if (!svc->passive_failures) continue;
        mg_passive_info pi;
        mg_passive_get(t->suid, uv_hrtime() / 1000000, &pi);
        put_series(b, "moongate_passive_ejections_total", svc->name, t->address, NULL);
        mg_buf_printf(b, "%u\n", pi.ejections);
    }
}

static const char *const state_names[] = {"up",       "down",    "ejected",   "draining",
                                          "starting", "removed", "unresolved"};

/* One target's moongate_target_state samples (one per state name), or its
 * moongate_target_state_since_seconds sample. */
static void state_series(mg_buf *b, const mg_track *tr, const mg_track_target *e,
                         const char *service, const char *target, int since)
{
    mg_track_state st;
    mg_track_state_of(tr, e, &st);
    if (since) {
        if (st.since <= 0) return;
        put_series(b, "moongate_target_state_since_seconds", service, target, NULL);
        mg_buf_printf(b, "%.3f\n", st.since);
        return;
    }
    for (size_t x = 0; x < sizeof(state_names) / sizeof(state_names[0]); x++) {
        char lbl[40];
        snprintf(lbl, sizeof(lbl), "state=\"%s\"", state_names[x]);
        put_series(b, "moongate_target_state", service, target, lbl);
        mg_buf_printf(b, "%d\n", strcmp(st.state, state_names[x]) == 0);
    }
}

/* moongate_target_up and the combined state, for present targets and (the
 * state) for removed ones while the tracker remembers them. */
static void states(mg_buf *b, const mg_snapshot *snap, const mg_track *tr)
{
    uint64_t now_ms = uv_hrtime() / 1000000;
    put_head(b, "moongate_target_up", "gauge",
             "1 when a target may get traffic; 0 when a probe failed, passive checks ejected it, "
             "its connects fail, or it is starting or draining.");
    EACH_TARGET(snap, svc, t)
    {
        const mg_track_target *e = mg_track_get(tr, t->suid);
        int up;
        if (e) {
            mg_track_state st;
            mg_track_state_of(tr, e, &st);
            up = st.serving;
        } else {
            up = mg_health_get(t->suid) != MG_HEALTH_DOWN &&
                 !(svc->passive_failures && mg_passive_ejected(t->suid, now_ms));
        }
        put_series(b, "moongate_target_up", svc->name, t->address, NULL);
        mg_buf_printf(b, "%d\n", up);
    }
    int nrm;
    const mg_track_target *const *rm = mg_track_removed(tr, &nrm);
    for (int since = 0; since < 2; since++) {
        if (since)
            put_head(b, "moongate_target_state_since_seconds", "gauge",
                     "When a target entered its current state, in seconds since the epoch.");
        else
            put_head(b, "moongate_target_state", "gauge",
                     "1 for a target's current state: up, down (a probe failed), ejected (passive "
                     "checks), draining, starting, removed, unresolved.");
        EACH_TARGET(snap, svc, t)
        {
            const mg_track_target *e = mg_track_get(tr, t->suid);
            if (e) state_series(b, tr, e, svc->name, t->address, since);
        }
        for (int r = 0; r < nrm; r++)
            state_series(b, tr, rm[r], rm[r]->service, rm[r]->address, since);
    }
    put_head(b, "moongate_target_info", "gauge",
             "A target's instance name (its id, such as web-1); always 1.");
    EACH_TARGET(snap, svc, t)
    {
        mg_buf id = {0};
        mg_buf_append(&id, "id=\"", 4);
        put_value(&id, t->id);
        mg_buf_append(&id, "\"", 2); /* the quote and a NUL: id.p is a C string */
        put_series(b, "moongate_target_info", svc->name, t->address, id.p ? id.p : "id=\"\"");
        mg_buf_free(&id);
        mg_buf_printf(b, "1\n");
    }
}

/* The autoscaler's decision and its inputs, per service that autoscales. */
static void autoscale(mg_buf *b)
{
    static const struct {
        int k;
        const char *name, *help;
    } series[] = {
        {MG_AS_DESIRED, "moongate_autoscale_desired_replicas", "Replicas the autoscaler wants."},
        {MG_AS_REPLICAS, "moongate_autoscale_replicas", "Replicas the gateway routes to."},
        {MG_AS_RPS, "moongate_autoscale_requests_per_second", "Request rate over the window."},
        {MG_AS_INFLIGHT_PER_REPLICA, "moongate_autoscale_inflight_per_replica",
         "Requests in flight and queued per replica."},
        {MG_AS_QUEUED, "moongate_autoscale_queued_requests", "Requests held for a replica."},
        {MG_AS_P95, "moongate_autoscale_latency_p95_seconds", "p95 latency over the window."},
        {MG_AS_ERROR_RATE, "moongate_autoscale_error_ratio", "5xx share over the window."},
    };
    char name[256];
    double v[MG_AS_NVALUES];
    for (size_t s = 0; s < MG_ARRAY_SIZE(series); s++) {
        if (mg_autoscale_get(0, name, sizeof(name), v, NULL, 0)) return;
        put_head(b, series[s].name, "gauge", series[s].help);
        for (int i = 0; mg_autoscale_get(i, name, sizeof(name), v, NULL, 0) == 0; i++) {
            mg_buf_printf(b, "%s{service=\"", series[s].name);
            put_value(b, name);
            mg_buf_printf(b, "\"} %g\n", v[series[s].k]);
        }
    }
}

void mg_admin_metrics(const mg_reloader *rl, const mg_track *tr, mg_buf *b)
{
    const mg_snapshot *snap = rl->snap;
    requests(b, snap);
    counters(b, snap);
    states(b, snap, tr);
    autoscale(b);
    put_head(b, "moongate_open_connections", "gauge", "Client connections open.");
    mg_buf_printf(b, "moongate_open_connections %d\n", atomic_load(&mg_stats.open_connections));
    put_head(b, "moongate_requests_unrouted_total", "counter",
             "Requests answered by the gateway itself.");
    mg_buf_printf(b,
                  "moongate_requests_unrouted_total{reason=\"no_route\"} %llu\n"
                  "moongate_requests_unrouted_total{reason=\"local\"} %llu\n",
                  (unsigned long long)ld(&mg_stats.no_route),
                  (unsigned long long)ld(&mg_stats.local_answers));
    put_head(b, "moongate_reloads_total", "counter", "Config and plugin reloads.");
    mg_buf_printf(b,
                  "moongate_reloads_total{result=\"ok\"} %llu\n"
                  "moongate_reloads_total{result=\"failed\"} %llu\n",
                  (unsigned long long)ld(&mg_stats.reloads_ok),
                  (unsigned long long)ld(&mg_stats.reloads_failed));
    put_head(b, "moongate_snapshot_version", "gauge", "Version of the membership snapshot in use.");
    mg_buf_printf(b, "moongate_snapshot_version %llu\n",
                  (unsigned long long)ld(&mg_stats.snapshot_version));
    put_head(b, "moongate_configs_alive", "gauge", "Loaded configs still held by a snapshot.");
    mg_buf_printf(b, "moongate_configs_alive %d\n", atomic_load(&mg_stats.configs_alive));
    put_head(b, "moongate_lua_memory_bytes", "gauge",
             "Lua heap of each Lua state (worker id, or control).");
    for (int i = 0; i <= MG_STATS_MAX_WORKERS; i++) {
        uint64_t v = ld(&mg_stats.lua_bytes[i]);
        if (!v) continue;
        if (i)
            mg_buf_printf(b, "moongate_lua_memory_bytes{state=\"worker-%d\"} %llu\n", i,
                          (unsigned long long)v);
        else
            mg_buf_printf(b, "moongate_lua_memory_bytes{state=\"control\"} %llu\n",
                          (unsigned long long)v);
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } waits[] = {
        {"moongate_hook_waits", "Requests whose middleware chain waits on I/O, per worker.",
         offsetof(mg_global_stats, hook_waits)},
        {"moongate_lua_io_waits", "I/O waits of workers' Lua (mg.http, mg.sleep) in progress.",
         offsetof(mg_global_stats, io_waits)},
        {"moongate_lua_requests_pending",
         "Requests a worker's Lua runtime keeps state for (once a second).",
         offsetof(mg_global_stats, lua_pending)},
    };
    for (size_t k = 0; k < sizeof(waits) / sizeof(waits[0]); k++) {
        put_head(b, waits[k].name, "gauge", waits[k].help);
        const atomic_int *a = (const atomic_int *)((const char *)&mg_stats + waits[k].off);
        for (int i = 1; i <= MG_STATS_MAX_WORKERS; i++) {
            if (!ld(&mg_stats.lua_bytes[i])) continue; /* no such worker */
            mg_buf_printf(b, "%s{state=\"worker-%d\"} %d\n", waits[k].name, i,
                          atomic_load_explicit(&a[i], memory_order_relaxed));
        }
    }
}
