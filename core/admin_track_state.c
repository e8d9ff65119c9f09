/* The tracker as the admin API shows it: request and error rates, the
 * per-target history and the state (up, down, ejected, draining...) with
 * its reason. Main thread only, like the rest of admin_track. */
#include "admin_track_int.h"
#include "targets.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

double mg_track_rate(const mg_track *tr, const mg_track_target *e)
{
    if (tr->nsamples < 2) return 0;
    uint64_t j = tr->nsamples - 1;
    double dt = tr->sample_time[j % MG_TRACK_HISTORY] - tr->sample_time[(j - 1) % MG_TRACK_HISTORY];
    return dt > 0 ? e->hist_requests[j % MG_TRACK_HISTORY] / dt : 0;
}

void mg_track_history(const mg_track *tr, const mg_track_target *e, int n, json_t **requests,
                      json_t **errors)
{
    *requests = json_array();
    *errors = json_array();
    if (n > MG_TRACK_HISTORY - 1) n = MG_TRACK_HISTORY - 1;
    if ((uint64_t)n > tr->nsamples) n = (int)tr->nsamples;
    for (uint64_t j = tr->nsamples - (uint64_t)n; j < tr->nsamples; j++) {
        double prev = j ? tr->sample_time[(j - 1) % MG_TRACK_HISTORY] : tr->created;
        double dt = tr->sample_time[j % MG_TRACK_HISTORY] - prev;
        if (dt <= 0) dt = 1;
        /* samples older than the entry count nothing: it did not exist */
        uint32_t rq = e->hist_requests[j % MG_TRACK_HISTORY];
        uint32_t er = e->hist_errors[j % MG_TRACK_HISTORY];
        json_array_append_new(*requests, json_real(round(rq / dt * 1000) / 1000));
        json_array_append_new(*errors, json_real(round(er / dt * 1000) / 1000));
    }
}

/* Whether another present entry uses uid (then its in-flight count is not
 * this removed target's). */
static int uid_present(const mg_track *tr, uint32_t uid)
{
    for (int i = 0; i < tr->nall; i++)
        if (tr->all[i]->present && tr->all[i]->uid == uid) return 1;
    return 0;
}

void mg_track_state_of(const mg_track *tr, const mg_track_target *e, mg_track_state *out)
{
    double now = mg_track_now();
    uint64_t now_ms = hr_ms();
    memset(out, 0, sizeof(*out));
    int inflight = e->uid < MG_MAX_TARGET_UIDS ? atomic_load(&mg_target_inflight[e->uid]) : 0;
    if (!e->present) {
        out->since = e->removed_at;
        if (inflight > 0 && !uid_present(tr, e->uid)) {
            out->state = "draining";
            snprintf(out->reason, sizeof(out->reason), "removed; finishing %d request%s in flight",
                     inflight, inflight == 1 ? "" : "s");
        } else {
            out->state = "removed";
            snprintf(out->reason, sizeof(out->reason), "no longer in the config or discovered");
        }
        return;
    }
    double lsince;
    int life = mg_lifecycle_get(e->suid, &lsince);
    if (life == MG_LIFE_DRAINING || life == MG_LIFE_STARTING) {
        out->state = life == MG_LIFE_DRAINING ? "draining" : "starting";
        out->since = lsince;
        snprintf(out->reason, sizeof(out->reason), "%s",
                 life == MG_LIFE_DRAINING ? "finishing its requests before it goes"
                                          : "discovered, not admitted yet");
        return;
    }
    if (!e->resolved) {
        out->state = "unresolved";
        out->since = e->first_seen;
        snprintf(out->reason, sizeof(out->reason), "its name did not resolve");
        return;
    }
    mg_passive_info pi;
    mg_passive_get(e->suid, now_ms, &pi);
    if (e->passive_failures && pi.ejected) {
        out->state = "ejected";
        out->since = hr_to_wall(pi.ejected_at_ms, now, now_ms);
        if (e->eject_reason[0])
            snprintf(out->reason, sizeof(out->reason), "%s", e->eject_reason);
        else
            mg_track__eject_reason(e, &pi, out->reason, sizeof(out->reason));
        return;
    }
    const char *why;
    double hsince = mg_health_since(e->suid, &why);
    int h = mg_health_get(e->suid);
    if (h == MG_HEALTH_DOWN) {
        out->state = "down";
        out->since = hsince;
        snprintf(out->reason, sizeof(out->reason), "probe failed%s%s", why[0] ? ": " : "", why);
        return;
    }
    if (e->uid < MG_MAX_TARGET_UIDS && mg_targets_resting(e->uid, now_ms)) {
        out->state = "down";
        out->since = e->connect_failed_at > e->answered_at ? e->failing_since : now;
        snprintf(out->reason, sizeof(out->reason), "connect failed; the next try in %.1f s",
                 (double)mg_targets_rest_left(e->uid, now_ms) / 1000.0);
        return;
    }
    out->state = "up";
    out->serving = 1;
    out->since = e->first_seen;
    if (e->answered_at > out->since && e->failing_since > 0) out->since = e->answered_at;
    if (h == MG_HEALTH_UP && hsince > out->since) out->since = hsince;
    if (e->passive_failures && pi.until_ms) {
        double back = hr_to_wall(pi.until_ms, now, now_ms);
        if (back > out->since) out->since = back;
    }
}
