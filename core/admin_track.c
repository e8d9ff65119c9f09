/* See admin_track.h. Everything here runs on the main thread, from the
 * admin's one-second timer and before every admin answer; it costs the
 * request path nothing. */
#include "admin_track_int.h"
#include "log.h"
#include "stats.h"
#include "targets.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

double mg_track_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

mg_track *mg_track_new(void)
{
    mg_track *tr = calloc(1, sizeof(*tr));
    if (tr) tr->created = mg_track_now();
    return tr;
}

static void entry_free(mg_track_target *e)
{
    free(e->service);
    free(e->id);
    free(e->address);
    free(e);
}

void mg_track_free(mg_track *tr)
{
    if (!tr) return;
    for (int i = 0; i < tr->nall; i++)
        entry_free(tr->all[i]);
    free(tr->all);
    free(tr->by_suid);
    for (int i = 0; i < MG_TRACK_EVENTS; i++)
        json_decref(tr->events[i]);
    for (int i = 0; i < MG_TRACK_ERRORS; i++)
        json_decref(tr->errors[i]);
    json_decref(tr->chains);
    mg_snapshot_unref(tr->snap);
    free(tr);
}

const mg_track_target *mg_track_get(const mg_track *tr, uint32_t suid)
{
    return suid < tr->cap ? tr->by_suid[suid] : NULL;
}

const mg_track_target *const *mg_track_removed(const mg_track *tr, int *n)
{
    *n = tr->nremoved;
    return (const mg_track_target *const *)tr->removed;
}

/* ---- events and errors ---------------------------------------------- */

/* Appends an event; takes ownership of ev (an object with the kind's
 * fields) and adds seq, time, kind and message. */
static void push_event(mg_track *tr, double time, const char *kind, json_t *ev, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));

static void push_event(mg_track *tr, double time, const char *kind, json_t *ev, const char *fmt,
                       ...)
{
    if (!ev) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uint64_t seq = ++tr->nevents;
    json_object_set_new(ev, "seq", json_integer((json_int_t)seq));
    json_object_set_new(ev, "time", json_real(time));
    json_object_set_new(ev, "kind", json_string(kind));
    json_object_set_new(ev, "message", json_string(msg));
    json_t **slot = &tr->events[seq % MG_TRACK_EVENTS];
    json_decref(*slot);
    *slot = ev;
}

static void push_error(mg_track *tr, json_t *err)
{
    if (!err) return;
    json_t **slot = &tr->errors[tr->nerrors++ % MG_TRACK_ERRORS];
    json_decref(*slot);
    *slot = err;
}

/* {service, target, address}: the fields every target event has. */
static json_t *target_fields(const mg_track_target *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "service", json_string(e->service));
    json_object_set_new(o, "target", json_string(e->id));
    json_object_set_new(o, "address", json_string(e->address));
    return o;
}

json_t *mg_track_events(const mg_track *tr, uint64_t since, uint64_t *next)
{
    json_t *arr = json_array();
    uint64_t first = tr->nevents > MG_TRACK_EVENTS ? tr->nevents - MG_TRACK_EVENTS + 1 : 1;
    if (since + 1 > first) first = since + 1;
    for (uint64_t s = first; s <= tr->nevents; s++)
        json_array_append(arr, tr->events[s % MG_TRACK_EVENTS]);
    *next = tr->nevents;
    return arr;
}

json_t *mg_track_errors(const mg_track *tr)
{
    json_t *arr = json_array();
    uint64_t first = tr->nerrors > MG_TRACK_ERRORS ? tr->nerrors - MG_TRACK_ERRORS : 0;
    for (uint64_t i = first; i < tr->nerrors; i++)
        json_array_append(arr, tr->errors[i % MG_TRACK_ERRORS]);
    return arr;
}

/* ---- route middleware chains ---------------------------------------- */

/* The snapshot carries each route's middleware chain as a Lua literal for
 * the workers ({[route] = {{name=, plugin=, conf=}, ...}}); the names are
 * read back from it in a bare Lua state (data only: no libraries). */
static json_t *read_chains(const mg_snapshot *s)
{
    json_t *routes = json_array();
    for (int i = 0; i < s->nroutes; i++)
        json_array_append_new(routes, json_array());
    if (!s->plugins_literal) return routes;
    lua_State *L = luaL_newstate();
    if (!L) return routes;
    size_t n = strlen(s->plugins_literal);
    char *src = malloc(n + 8);
    if (src) {
        memcpy(src, "return ", 7);
        memcpy(src + 7, s->plugins_literal, n + 1);
    }
    if (src && luaL_loadbuffer(L, src, n + 7, "=chains") == 0 && lua_pcall(L, 0, 1, 0) == 0 &&
        lua_istable(L, -1)) {
        for (int i = 0; i < s->nroutes; i++) {
            lua_rawgeti(L, -1, i); /* routes are 0-based there */
            int nm = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
            json_t *chain = json_array_get(routes, (size_t)i);
            for (int k = 1; k <= nm; k++) {
                lua_rawgeti(L, -1, k);
                if (lua_istable(L, -1)) {
                    json_t *m = json_object();
                    lua_getfield(L, -1, "name");
                    lua_getfield(L, -2, "plugin");
                    const char *plugin = lua_isstring(L, -1) ? lua_tostring(L, -1) : "?";
                    json_object_set_new(
                        m, "name", json_string(lua_isstring(L, -2) ? lua_tostring(L, -2) : plugin));
                    json_object_set_new(m, "plugin", json_string(plugin));
                    json_array_append_new(chain, m);
                    lua_pop(L, 2);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    free(src);
    lua_close(L);
    return routes;
}

json_t *mg_track_route_chain(const mg_track *tr, int route)
{
    json_t *c = tr->chains ? json_array_get(tr->chains, (size_t)route) : NULL;
    return c ? json_incref(c) : json_array();
}

/* ---- membership ----------------------------------------------------- */

static mg_track_target *entry_for(mg_track *tr, uint32_t suid)
{
    if (suid >= MG_MAX_TARGET_UIDS) return NULL;
    if (suid >= tr->cap) {
        uint32_t n = tr->cap ? tr->cap : 64;
        while (n <= suid)
            n *= 2;
        mg_track_target **nb = realloc(tr->by_suid, n * sizeof(*nb));
        if (!nb) return NULL;
        memset(nb + tr->cap, 0, (n - tr->cap) * sizeof(*nb));
        tr->by_suid = nb;
        tr->cap = n;
    }
    if (tr->by_suid[suid]) return tr->by_suid[suid];
    if (tr->nall == tr->capall) {
        int n = tr->capall ? tr->capall * 2 : 32;
        mg_track_target **na = realloc(tr->all, (size_t)n * sizeof(*na));
        if (!na) return NULL;
        tr->all = na;
        tr->capall = n;
    }
    mg_track_target *e = calloc(1, sizeof(*e));
    if (!e) return NULL;
    e->suid = suid;
    e->first_seen = mg_track_now();
    /* counting starts now: requests made before it was tracked (an earlier
     * membership with the same pair) are not this sample's */
    mg_target_stats *s = mg_target_stats_of(suid);
    e->last_requests = ld(&s->requests);
    e->last_errors = ld(&s->status[5]) + ld(&s->status[0]);
    e->last_connect = ld(&s->connect_errors);
    e->last_timeouts = ld(&s->timeouts);
    e->last_5xx = ld(&s->status[5]);
    e->last_health = mg_health_get(suid);
    mg_passive_info pi;
    mg_passive_get(suid, hr_ms(), &pi);
    e->last_ejections = pi.ejections;
    e->last_ejected = pi.ejected;
    e->last_life = mg_lifecycle_get(suid, NULL);
    e->seen_connect = e->last_connect;
    e->seen_requests = e->last_requests;
    tr->all[tr->nall++] = e;
    tr->by_suid[suid] = e;
    return e;
}

/* Takes e off the removed list (keeping its order), if it is on it. */
static void unlist_removed(mg_track *tr, const mg_track_target *e)
{
    for (int i = 0; i < tr->nremoved; i++)
        if (tr->removed[i] == e) {
            memmove(&tr->removed[i], &tr->removed[i + 1],
                    (size_t)(tr->nremoved - i - 1) * sizeof(e));
            tr->nremoved--;
            return;
        }
}

static void forget(mg_track *tr, mg_track_target *e)
{
    for (int i = 0; i < tr->nall; i++)
        if (tr->all[i] == e) {
            tr->all[i] = tr->all[--tr->nall];
            break;
        }
    unlist_removed(tr, e);
    tr->by_suid[e->suid] = NULL;
    entry_free(e);
}

static void set_str(char **dst, const char *src)
{
    if (*dst && strcmp(*dst, src) == 0) return;
    char *c = strdup(src);
    if (!c) return;
    free(*dst);
    *dst = c;
}

/* The ids of a service's targets that the other snapshot's service lacks. */
static json_t *missing_ids(const mg_service *a, const mg_service *b)
{
    json_t *ids = json_array();
    for (int i = 0; a && i < a->ntargets; i++) {
        int found = 0;
        for (int k = 0; b && k < b->ntargets && !found; k++)
            found = b->targets[k].suid == a->targets[i].suid;
        if (!found) json_array_append_new(ids, json_string(a->targets[i].id));
    }
    return ids;
}

static void join_ids(const json_t *ids, char sign, char *out, size_t len)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        size_t used = strlen(out);
        if (used + 4 >= len) break;
        snprintf(out + used, len - used, "%s%c%s", used ? " " : "", sign, json_string_value(v));
    }
}

/* One "scale" event per service whose set of targets changed. */
static void scale_events(mg_track *tr, const mg_snapshot *old, const mg_snapshot *cur, double now)
{
    if (!old) return; /* the first snapshot: nothing changed yet */
    for (int i = 0; i < cur->nservices; i++) {
        const mg_service *ns = &cur->services[i];
        int o = mg_snapshot_service(old, ns->name);
        const mg_service *os = o >= 0 ? &old->services[o] : NULL;
        json_t *added = missing_ids(ns, os), *removed = missing_ids(os, ns);
        if (!json_array_size(added) && !json_array_size(removed) && os) {
            json_decref(added);
            json_decref(removed);
            continue;
        }
        char ids[300] = "";
        join_ids(added, '+', ids, sizeof(ids));
        join_ids(removed, '-', ids, sizeof(ids));
        int from = os ? os->ntargets : 0;
        json_t *ev = json_object();
        json_object_set_new(ev, "service", json_string(ns->name));
        json_object_set_new(ev, "from", json_integer(from));
        json_object_set_new(ev, "to", json_integer(ns->ntargets));
        json_object_set_new(ev, "added", added);
        json_object_set_new(ev, "removed", removed);
        push_event(tr, now, "scale", ev, "%s: %s%d → %d target%s%s%s%s", ns->name,
                   os ? "" : "new service, ", from, ns->ntargets, ns->ntargets == 1 ? "" : "s",
                   ids[0] ? " (" : "", ids, ids[0] ? ")" : "");
    }
    for (int i = 0; i < old->nservices; i++) {
        const mg_service *os = &old->services[i];
        if (mg_snapshot_service(cur, os->name) >= 0) continue;
        json_t *ev = json_object();
        json_object_set_new(ev, "service", json_string(os->name));
        json_object_set_new(ev, "from", json_integer(os->ntargets));
        json_object_set_new(ev, "to", json_integer(0));
        json_object_set_new(ev, "added", json_array());
        json_object_set_new(ev, "removed", missing_ids(os, NULL));
        push_event(tr, now, "scale", ev, "%s: service removed (%d → 0 targets)", os->name,
                   os->ntargets);
    }
}

static int active_checks(const mg_service *svc)
{
    /* the settings are a literal made by moongate.plugins.serialize */
    return svc->health && !strstr(svc->health, "[\"active\"]=false");
}

/* Adopts a new snapshot: new entries for new pairs, removal marks for
 * pairs it lacks, events for every service whose targets changed. */
static void adopt(mg_track *tr, mg_snapshot *cur, double now)
{
    const mg_snapshot *old = tr->snap;
    tr->gen++;
    for (int i = 0; i < cur->nservices; i++) {
        const mg_service *svc = &cur->services[i];
        for (int k = 0; k < svc->ntargets; k++) {
            const mg_target *t = &svc->targets[k];
            mg_track_target *e = entry_for(tr, t->suid);
            if (!e) continue;
            if (!e->present && e->removed_at) { /* back within the retention */
                unlist_removed(tr, e);
                e->removed_at = 0;
            }
            e->present = 1;
            e->gen = tr->gen;
            e->uid = t->uid;
            e->resolved = t->addr.ss_family != 0;
            e->passive_failures = svc->passive_failures;
            e->active_checks = active_checks(svc);
            set_str(&e->service, svc->name);
            set_str(&e->id, t->id);
            set_str(&e->address, t->address);
        }
    }
    for (int i = 0; i < tr->nall; i++) {
        mg_track_target *e = tr->all[i];
        if (!e->present || e->gen == tr->gen) continue;
        e->present = 0;
        e->removed_at = now;
        if (tr->nremoved == MG_TRACK_MAX_REMOVED) {
            forget(tr, tr->removed[0]); /* the oldest removal goes first */
            i = -1;                     /* tr->all changed under us: start over */
        }
        tr->removed[tr->nremoved++] = e;
    }
    scale_events(tr, old, cur, now);
    json_decref(tr->chains);
    tr->chains = read_chains(cur);
    mg_snapshot_ref(cur);
    mg_snapshot_unref(tr->snap);
    tr->snap = cur;
}

static void reload_events(mg_track *tr, const mg_reloader *rl, double now)
{
    if (rl->failures != tr->failures) {
        int n = rl->failures - tr->failures;
        const char *why = rl->last_error[0] ? rl->last_error : "see the error log";
        json_t *ev = json_object();
        json_object_set_new(ev, "ok", json_false());
        json_object_set_new(ev, "error", json_string(why));
        json_object_set_new(ev, "count", json_integer(n));
        push_event(tr, now, "reload", ev, "reload failed%s: %s", n > 1 ? " (several times)" : "",
                   why);
        json_t *err = json_object();
        json_object_set_new(err, "time", json_real(now));
        json_object_set_new(err, "kind", json_string("reload"));
        json_object_set_new(err, "message", json_string(why));
        push_error(tr, err);
    }
    if (rl->reloads != tr->reloads && rl->plugin_gen != tr->plugin_gen) {
        json_t *ev = json_object();
        json_object_set_new(ev, "ok", json_true());
        json_object_set_new(ev, "version", json_integer((json_int_t)rl->version));
        push_event(tr, now, "reload", ev, "config and plugins reloaded (snapshot %llu)",
                   (unsigned long long)rl->version);
    }
    tr->failures = rl->failures;
    tr->reloads = rl->reloads;
    tr->plugin_gen = rl->plugin_gen;
}

/* ---- health --------------------------------------------------------- */

/* Why e was ejected: the failure kind the workers recorded, or else the
 * kinds of failure counted since the last sample. */
void mg_track__eject_reason(const mg_track_target *e, const mg_passive_info *pi, char *out,
                            size_t len)
{
    char kb[32];
    const char *kind = mg_fail_describe(pi->kind, pi->status, kb, sizeof(kb));
    int n = snprintf(out, len, "%d consecutive failures", e->passive_failures);
    if (kind) {
        snprintf(out + n, len - (size_t)n, ", the last: %s", kind);
        return;
    }
    mg_target_stats *s = mg_target_stats_of(e->suid);
    char seen[120] = "";
    if (ld(&s->connect_errors) > e->last_connect) strcat(seen, ", connection errors");
    if (ld(&s->timeouts) > e->last_timeouts) strcat(seen, ", timeouts");
    if (ld(&s->status[5]) > e->last_5xx) strcat(seen, ", 5xx answers");
    if (seen[0]) snprintf(out + n, len - (size_t)n, " (%s)", seen + 2);
}

/* Notes connect failures and answers since the last observation. Both in
 * one interval: the answer counts (the target is reachable). */
static void note_reachability(mg_track_target *e, double now)
{
    mg_target_stats *s = mg_target_stats_of(e->suid);
    uint64_t conn = ld(&s->connect_errors), req = ld(&s->requests);
    if (conn != e->seen_connect) {
        if (e->connect_failed_at <= e->answered_at) e->failing_since = now;
        e->connect_failed_at = now;
    }
    if (req != e->seen_requests) e->answered_at = now;
    e->seen_connect = conn;
    e->seen_requests = req;
}

static void health_events(mg_track *tr, mg_track_target *e, double now, uint64_t now_ms)
{
    double streak = e->failing_since;
    note_reachability(e, now);
    if (e->failing_since != streak && e->present) { /* connects began to fail */
        json_t *ev = target_fields(e);
        json_object_set_new(ev, "reason", json_string("connect failed"));
        push_event(tr, now, "down", ev, "%s %s: connect failed; it rests, then is tried again",
                   e->service, e->id);
    }
    int h = mg_health_get(e->suid);
    if (h != e->last_health && e->present) {
        const char *reason;
        double since = mg_health_since(e->suid, &reason);
        if (h == MG_HEALTH_DOWN) {
            json_t *ev = target_fields(e);
            json_object_set_new(ev, "reason", json_string(reason));
            push_event(tr, since ? since : now, "down", ev, "%s %s is down: probe failed%s%s",
                       e->service, e->id, reason[0] ? ": " : "", reason);
        } else if (h == MG_HEALTH_UP && e->last_health == MG_HEALTH_DOWN) {
            push_event(tr, since ? since : now, "up", target_fields(e), "%s %s is up again",
                       e->service, e->id);
        }
    }
    e->last_health = h;
    mg_passive_info pi;
    mg_passive_get(e->suid, now_ms, &pi);
    if (pi.ejections != e->last_ejections && e->passive_failures) {
        double at = hr_to_wall(pi.ejected_at_ms, now, now_ms);
        mg_track__eject_reason(e, &pi, e->eject_reason, sizeof(e->eject_reason));
        json_t *ev = target_fields(e);
        json_object_set_new(ev, "reason", json_string(e->eject_reason));
        json_object_set_new(ev, "until", json_real(hr_to_wall(pi.until_ms, now, now_ms)));
        push_event(tr, at, "ejected", ev, "%s %s ejected for %.1f s: %s", e->service, e->id,
                   (double)(pi.until_ms - pi.ejected_at_ms) / 1000.0, e->eject_reason);
    } else if (e->last_ejected && !pi.ejected && e->passive_failures) {
        push_event(tr, hr_to_wall(pi.until_ms, now, now_ms), "readmitted", target_fields(e),
                   "%s %s gets traffic again after its ejection", e->service, e->id);
    }
    e->last_ejections = pi.ejections;
    e->last_ejected = pi.ejected;
    double lsince;
    int life = mg_lifecycle_get(e->suid, &lsince);
    if (life != e->last_life && life != MG_LIFE_ACTIVE)
        push_event(tr, lsince ? lsince : now, life == MG_LIFE_DRAINING ? "draining" : "starting",
                   target_fields(e), "%s %s is %s", e->service, e->id,
                   life == MG_LIFE_DRAINING ? "draining" : "starting");
    e->last_life = life;
}

/* ---- samples -------------------------------------------------------- */

static uint32_t clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* One error-ring entry per target and sample with failures in it. */
static void note_errors(mg_track *tr, const mg_track_target *e, uint64_t conn, uint64_t to,
                        uint64_t s5, double now)
{
    if (!conn && !to && !s5) return;
    char msg[200] = "";
    size_t n = 0;
    if (conn)
        n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%llu connection error%s",
                              (unsigned long long)conn, conn == 1 ? "" : "s");
    if (to)
        n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s%llu timeout%s", n ? ", " : "",
                              (unsigned long long)to, to == 1 ? "" : "s");
    if (s5)
        snprintf(msg + n, sizeof(msg) - n, "%s%llu × 5xx", n ? ", " : "", (unsigned long long)s5);
    json_t *err = target_fields(e);
    json_object_set_new(err, "time", json_real(now));
    json_object_set_new(err, "kind", json_string("upstream"));
    json_object_set_new(err, "connect_errors", json_integer((json_int_t)conn));
    json_object_set_new(err, "timeouts", json_integer((json_int_t)to));
    json_object_set_new(err, "5xx", json_integer((json_int_t)s5));
    json_object_set_new(err, "message", json_string(msg));
    push_error(tr, err);
}

static void sample(mg_track *tr, double now)
{
    uint64_t idx = tr->nsamples % MG_TRACK_HISTORY;
    tr->sample_time[idx] = now;
    for (int i = 0; i < tr->nall; i++) {
        mg_track_target *e = tr->all[i];
        mg_target_stats *s = mg_target_stats_of(e->suid);
        uint64_t req = ld(&s->requests), s5 = ld(&s->status[5]);
        uint64_t err = s5 + ld(&s->status[0]);
        uint64_t conn = ld(&s->connect_errors), to = ld(&s->timeouts);
        e->hist_requests[idx] = clamp32(req - e->last_requests);
        e->hist_errors[idx] = clamp32(err - e->last_errors);
        note_errors(tr, e, conn - e->last_connect, to - e->last_timeouts, s5 - e->last_5xx, now);
        e->last_requests = req;
        e->last_errors = err;
        e->last_connect = conn;
        e->last_timeouts = to;
        e->last_5xx = s5;
    }
    tr->nsamples++;
    /* forget removals past the retention */
    while (tr->nremoved) {
        mg_track_target *e = tr->removed[0];
        if (now - e->removed_at < MG_TRACK_KEEP_S) break;
        forget(tr, e);
    }
}

void mg_track_observe(mg_track *tr, const mg_reloader *rl, int take_sample)
{
    double now = mg_track_now();
    uint64_t now_ms = hr_ms();
    if (!tr->snap) {
        tr->reloads = rl->reloads;
        tr->failures = rl->failures;
        tr->plugin_gen = rl->plugin_gen;
        adopt(tr, rl->snap, now);
        json_t *ev = json_object();
        json_object_set_new(ev, "version", json_integer((json_int_t)rl->version));
        push_event(tr, now, "start", ev, "started with %d service%s (snapshot %llu)",
                   rl->snap->nservices, rl->snap->nservices == 1 ? "" : "s",
                   (unsigned long long)rl->version);
    } else {
        reload_events(tr, rl, now);
        if (rl->snap != tr->snap) adopt(tr, rl->snap, now);
    }
    for (int i = 0; i < tr->nall; i++)
        health_events(tr, tr->all[i], now, now_ms);
    if (take_sample) sample(tr, now);
}
