/* See admin_api.h: the JSON answers. */
#include "admin_api.h"
#include "lua_stats.h"
#include "stats.h"

#include <math.h>
#include <string.h>

static uint64_t ld(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static json_t *time_or_null(double t)
{
    return t > 0 ? json_real(t) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s && s[0] ? json_string(s) : json_null();
}

/* The counters every target shows, present or removed. */
static void add_counters(json_t *o, uint32_t suid)
{
    mg_target_stats *s = mg_target_stats_of(suid);
    if (!s) return;
    uint64_t req = ld(&s->requests);
    json_object_set_new(o, "requests", json_integer((json_int_t)req));
    json_t *st = json_object();
    static const char *cls[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < 6; i++)
        json_object_set_new(st, cls[i], json_integer((json_int_t)ld(&s->status[i])));
    json_object_set_new(o, "status", st);
    json_object_set_new(o, "errors",
                        json_integer((json_int_t)(ld(&s->status[5]) + ld(&s->status[0]))));
    json_object_set_new(o, "connect_errors", json_integer((json_int_t)ld(&s->connect_errors)));
    json_object_set_new(o, "timeouts", json_integer((json_int_t)ld(&s->timeouts)));
    json_object_set_new(o, "retries", json_integer((json_int_t)ld(&s->retries)));
    json_object_set_new(o, "latency_avg_ms",
                        json_real(req ? (double)ld(&s->lat_sum_us) / 1000.0 / (double)req : 0));
}

/* The active and passive checks' own view, next to the combined state. */
static json_t *checks_json(const mg_track_target *e)
{
    json_t *c = json_object();
    if (e->active_checks) {
        static const char *const hs[] = {"unchecked", "up", "down"};
        int h = mg_health_get(e->suid);
        const char *why;
        double since = mg_health_since(e->suid, &why);
        json_t *a = json_object();
        json_object_set_new(a, "state", json_string(h <= 2 ? hs[h] : "unchecked"));
        json_object_set_new(a, "reason", str_or_null(h == MG_HEALTH_DOWN ? why : NULL));
        json_object_set_new(a, "since", time_or_null(since));
        json_object_set_new(c, "active", a);
    } else {
        json_object_set_new(c, "active", json_null());
    }
    if (e->passive_failures) {
        uint64_t now_ms = uv_hrtime() / 1000000;
        double now = mg_track_now();
        mg_passive_info pi;
        mg_passive_get(e->suid, now_ms, &pi);
        json_t *p = json_object();
        json_object_set_new(p, "ejected", json_boolean(pi.ejected));
        json_object_set_new(p, "ejections", json_integer(pi.ejections));
        json_object_set_new(p, "failures", json_integer(pi.failures));
        json_object_set_new(p, "threshold", json_integer(e->passive_failures));
        json_object_set_new(p, "reason", str_or_null(pi.ejections ? e->eject_reason : NULL));
        json_object_set_new(
            p, "since",
            time_or_null(pi.ejected_at_ms ? now - (double)(now_ms - pi.ejected_at_ms) / 1000 : 0));
        json_object_set_new(p, "until",
                            pi.until_ms
                                ? json_real(now + ((double)pi.until_ms - (double)now_ms) / 1000)
                                : json_null());
        json_object_set_new(c, "passive", p);
    } else {
        json_object_set_new(c, "passive", json_null());
    }
    return c;
}

/* Fields shared by present and removed targets: state, checks, counters,
 * rate and history. */
static void add_state(json_t *o, const mg_track *tr, const mg_track_target *e, int history)
{
    mg_track_state st;
    mg_track_state_of(tr, e, &st);
    json_object_set_new(o, "state", json_string(st.state));
    json_object_set_new(o, "reason", str_or_null(st.reason));
    json_object_set_new(o, "since", time_or_null(st.since));
    json_object_set_new(o, "serving", json_boolean(st.serving));
    json_object_set_new(o, "draining", json_boolean(strcmp(st.state, "draining") == 0));
    json_object_set_new(o, "first_seen", json_real(e->first_seen));
    json_object_set_new(o, "removed_at", time_or_null(e->removed_at));
    json_object_set_new(o, "checks", checks_json(e));
    json_object_set_new(o, "rate", json_real(round(mg_track_rate(tr, e) * 1000) / 1000));
    if (history > 0) {
        json_t *rq, *er;
        mg_track_history(tr, e, history, &rq, &er);
        json_t *h = json_object();
        json_object_set_new(h, "step", json_integer(1));
        json_object_set_new(h, "requests", rq);
        json_object_set_new(h, "errors", er);
        json_object_set_new(o, "history", h);
    }
}

/* The health field predates the combined state: "unchecked", "up",
 * "down", "ejected" or "unresolved". */
static const char *health_name(const mg_target *t, const mg_service *svc)
{
    static const char *const hs[] = {"unchecked", "up", "down"};
    int h = mg_health_get(t->suid);
    if (!t->addr.ss_family) return "unresolved";
    if (svc->passive_failures && mg_passive_ejected(t->suid, uv_hrtime() / 1000000))
        return "ejected";
    return h <= 2 ? hs[h] : "unchecked";
}

static json_t *target_json(const mg_track *tr, const mg_service *svc, const mg_target *t,
                           int history)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "address", json_string(t->address));
    json_object_set_new(o, "weight", json_integer(t->weight));
    json_t *labels = json_object();
    if (t->labels)
        for (char **l = t->labels; l[0] && l[1]; l += 2)
            json_object_set_new(labels, l[0], json_string(l[1]));
    json_object_set_new(o, "labels", labels);
    json_object_set_new(
        o, "inflight",
        json_integer(t->uid < MG_MAX_TARGET_UIDS ? atomic_load(&mg_target_inflight[t->uid]) : 0));
    json_object_set_new(o, "health", json_string(health_name(t, svc)));
    json_object_set_new(o, "draining", json_false());
    add_counters(o, t->suid);
    const mg_track_target *e = mg_track_get(tr, t->suid);
    if (e) add_state(o, tr, e, history);
    return o;
}

static json_t *removed_json(const mg_track *tr, const mg_track_target *e, int history)
{
    static const char *const hs[] = {"unchecked", "up", "down"};
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(e->id));
    json_object_set_new(o, "address", json_string(e->address));
    json_object_set_new(
        o, "inflight",
        json_integer(e->uid < MG_MAX_TARGET_UIDS ? atomic_load(&mg_target_inflight[e->uid]) : 0));
    int h = mg_health_get(e->suid);
    json_object_set_new(o, "health", json_string(h <= 2 ? hs[h] : "unchecked"));
    add_counters(o, e->suid);
    add_state(o, tr, e, history);
    return o;
}

/* The removed targets of a service, by name. */
static json_t *removed_of(const mg_track *tr, const char *service, int history)
{
    json_t *arr = json_array();
    int n;
    const mg_track_target *const *rm = mg_track_removed(tr, &n);
    for (int i = 0; i < n; i++)
        if (strcmp(rm[i]->service, service) == 0)
            json_array_append_new(arr, removed_json(tr, rm[i], history));
    return arr;
}

/* The autoscaler's view of a service (null when it does not autoscale):
 * desired vs actual replicas, the inputs of the newest tick, the recent
 * decisions. */
static json_t *autoscale_json(const char *service)
{
    static const char *const keys[MG_AS_NVALUES] = {"desired",
                                                    "replicas",
                                                    "min",
                                                    "max",
                                                    "rps",
                                                    "inflight",
                                                    "inflight_per_replica",
                                                    "queued",
                                                    "p50",
                                                    "p95",
                                                    "error_rate",
                                                    "connect_failure_rate"};
    char name[256], decisions[8192];
    double v[MG_AS_NVALUES];
    for (int i = 0; mg_autoscale_get(i, name, sizeof(name), v, decisions, sizeof(decisions)) == 0;
         i++) {
        if (strcmp(name, service)) continue;
        json_t *o = json_object();
        for (int k = 0; k < MG_AS_NVALUES; k++)
            json_object_set_new(o, keys[k],
                                k < MG_AS_RPS ? json_integer((json_int_t)v[k]) : json_real(v[k]));
        json_t *d = json_loads(decisions, 0, NULL);
        json_object_set_new(o, "decisions", d && json_is_array(d) ? d : json_array());
        if (d && !json_is_array(d)) json_decref(d);
        return o;
    }
    return json_null();
}

json_t *mg_admin_services(const mg_reloader *rl, const mg_track *tr, int history, int removed)
{
    const mg_snapshot *snap = rl->snap;
    json_t *arr = json_array();
    for (int i = 0; i < snap->nservices; i++) {
        const mg_service *svc = &snap->services[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(svc->name));
        json_object_set_new(o, "balancer", json_string(svc->balancer));
        json_t *ts = json_array();
        json_int_t req = 0, err = 0;
        double rate = 0;
        for (int k = 0; k < svc->ntargets; k++) {
            json_t *t = target_json(tr, svc, &svc->targets[k], history);
            req += json_integer_value(json_object_get(t, "requests"));
            err += json_integer_value(json_object_get(t, "errors"));
            rate += json_real_value(json_object_get(t, "rate"));
            json_array_append_new(ts, t);
        }
        json_object_set_new(o, "requests", json_integer(req));
        json_object_set_new(o, "errors", json_integer(err));
        json_object_set_new(o, "rate", json_real(rate));
        json_object_set_new(o, "removed", json_false());
        json_object_set_new(o, "targets", ts);
        json_object_set_new(o, "removed_targets", removed_of(tr, svc->name, history));
        json_object_set_new(o, "autoscale", autoscale_json(svc->name));
        json_array_append_new(arr, o);
    }
    if (!removed) return arr;
    /* services that are gone, while their targets are remembered */
    int n;
    const mg_track_target *const *rm = mg_track_removed(tr, &n);
    for (int i = 0; i < n; i++) {
        const char *name = rm[i]->service;
        if (mg_snapshot_service(snap, name) >= 0) continue;
        int seen = 0;
        for (int k = 0; k < i && !seen; k++)
            seen = strcmp(rm[k]->service, name) == 0;
        if (seen) continue;
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(name));
        json_object_set_new(o, "balancer", json_null());
        json_object_set_new(o, "requests", json_integer(0));
        json_object_set_new(o, "errors", json_integer(0));
        json_object_set_new(o, "rate", json_real(0));
        json_object_set_new(o, "removed", json_true());
        json_object_set_new(o, "targets", json_array());
        json_object_set_new(o, "removed_targets", removed_of(tr, name, history));
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *mg_admin_routes(const mg_reloader *rl, const mg_track *tr)
{
    const mg_snapshot *snap = rl->snap;
    json_t *arr = json_array();
    for (int i = 0; i < snap->nroutes; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "rule", json_string(snap->route_rule[i] ? snap->route_rule[i] : ""));
        int s = snap->route_service[i];
        json_object_set_new(o, "service",
                            s >= 0 ? json_string(snap->services[s].name) : json_null());
        json_object_set_new(o, "priority", json_integer(snap->route_priority[i]));
        json_object_set_new(o, "middlewares", json_boolean(snap->route_hooks[i]));
        json_object_set_new(o, "chain", mg_track_route_chain(tr, i));
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *mg_admin_plugins(const mg_reloader *rl)
{
    json_t *o = json_object();
    json_object_set_new(o, "plugins_dir", json_string(rl->cfg->plugins_dir));
    json_object_set_new(o, "snapshot_version", json_integer((json_int_t)rl->version));
    json_object_set_new(o, "reloads", json_integer(rl->reloads));
    json_object_set_new(o, "reload_failures", json_integer(rl->failures));
    json_object_set_new(o, "last_reload",
                        rl->last_reload ? json_real(rl->last_reload) : json_null());
    json_object_set_new(o, "last_reload_ok", json_boolean(!rl->last_error[0]));
    json_object_set_new(o, "last_error",
                        rl->last_error[0] ? json_string(rl->last_error) : json_null());
    json_t *bal = json_object();
    for (int i = 0; i < rl->snap->nservices; i++)
        json_object_set_new(bal, rl->snap->services[i].name,
                            json_string(rl->snap->services[i].balancer));
    json_object_set_new(o, "balancers", bal);
    return o;
}

json_t *mg_admin_events(const mg_track *tr, uint64_t since)
{
    uint64_t next;
    json_t *ev = mg_track_events(tr, since, &next);
    json_t *o = json_object();
    json_object_set_new(o, "now", json_real(mg_track_now())); /* the server's clock */
    json_object_set_new(o, "next", json_integer((json_int_t)next));
    json_object_set_new(o, "events", ev);
    return o;
}

json_t *mg_admin_errors(const mg_track *tr)
{
    json_t *o = json_object();
    json_object_set_new(o, "errors", mg_track_errors(tr));
    return o;
}
