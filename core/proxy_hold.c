/* The queue of requests waiting for a ready target: a service with no
 * target yet (scale from zero, a rolling recreate that stopped every
 * replica first), every target draining, refusing or busy. A held request
 * goes again when something changes (a new snapshot, a connection freed,
 * each tick), in its turn, until timeouts.queue; past upstream.queue_max
 * held requests per worker, a request gets 503 at once. Nothing was sent
 * upstream for a held request, so going again is always safe.
 *
 * A retry's backoff (req:set_retries) waits in the same queue, marked
 * r->backoff, with its own deadline: it does not go again when the queue
 * is kicked, only when its deadline passes, and then it tries again
 * instead of failing. */
#include "lua_stats.h"
#include "proxy_int.h"

#include <stdio.h>

/* Inserts n in q ordered by deadline (a request going back keeps its
 * original deadline, so the queue stays sorted for expiry). */
static void insert_sorted(mg_tq *q, mg_tq_node *n, uint64_t deadline)
{
    mg_tq_remove(n);
    n->deadline = deadline;
    mg_tq_node *at = q->head.prev;
    while (at != &q->head && at->deadline > deadline)
        at = at->prev;
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
}

void mg_proxy__hold(mg_req *r, const char *why)
{
    mg_worker *w = r->w;
    const mg_config *cfg = w->cfg;
    uint64_t now = uv_now(&w->loop);
    if (!mg_proxy__live(r)) return;
    const char *svc = r->snap->services[r->svc].name;
    if (!cfg->queue_ms) {
        /* holding is off: fail as a gateway without a queue would */
        int none = r->snap->services[r->svc].ntargets == 0;
        mg_proxy__fail(r, none ? 503 : 502,
                       none ? "service has no targets" : "no target left to try");
        return;
    }
    if (w->nheld >= cfg->queue_max) {
        MG_LOG(MG_LOG_WARN, w->id, r->conn_id, "service %s: %s, and the queue is full (%d)", svc,
               why, cfg->queue_max);
        mg_proxy__respond_text(r, 503,
                               "Service Unavailable: no target is ready and the queue is full\n",
                               !r->body_done);
        return;
    }
    if (!r->held_since) {
        r->held_since = now;
        if (!w->nheld)
            MG_LOG(MG_LOG_INFO, w->id, r->conn_id,
                   "service %s: %s; holding requests up to %.0f s for a ready target", svc, why,
                   (double)cfg->queue_ms / 1000.0);
    }
    mg_tq_remove(&r->tq);
    insert_sorted(&w->q_held, &r->tq, r->held_since + cfg->queue_ms);
    r->held = 1;
    w->nheld++;
    mg_held_add(svc, 1); /* the autoscaler wakes a service at zero on this */
    r->src->pause(r);    /* the body, if any, waits with it */
}

void mg_proxy__backoff(mg_req *r, uint64_t delay_ms)
{
    mg_worker *w = r->w;
    mg_tq_remove(&r->tq);
    insert_sorted(&w->q_held, &r->tq, uv_now(&w->loop) + delay_ms);
    r->held = 1;
    r->backoff = 1;
    w->nheld++;
    r->src->pause(r);
}

void mg_proxy__unhold(mg_req *r)
{
    if (!r->held) return;
    r->held = 0;
    r->w->nheld--;
    mg_held_add(r->snap->services[r->svc].name, -1);
    mg_tq_remove(&r->tq);
}

/* A held request goes again on the worker's newest snapshot: the members
 * it waited for are there. */
static void repin(mg_req *r)
{
    mg_worker *w = r->w;
    if (r->snap == w->snap) return;
    int idx = mg_snapshot_service(w->snap, r->snap->services[r->svc].name);
    if (idx < 0) return; /* the service is gone: it times out on the old one */
    mg_snapshot_unref(r->snap);
    r->snap = w->snap;
    mg_snapshot_ref(r->snap);
    r->svc = idx;
}

void mg_proxy_run_held(mg_worker *w)
{
    if (!w->held_kick || !w->nheld) {
        w->held_kick = 0;
        return;
    }
    w->held_kick = 0;
    /* take the whole queue: requests that still find nothing go back in
     * (sorted), and are not seen twice in this round */
    mg_tq round;
    mg_tq_init(&round, 0);
    mg_tq_node *first = w->q_held.head.next, *last = w->q_held.head.prev;
    round.head.next = first;
    round.head.prev = last;
    first->prev = &round.head;
    last->next = &round.head;
    mg_tq_init(&w->q_held, w->q_held.timeout_ms);
    w->nheld = 0;
    while (round.head.next != &round.head) {
        mg_tq_node *n = round.head.next;
        mg_tq_remove(n);
        mg_req *r = mg_container_of(n, mg_req, tq);
        if (r->backoff) { /* its time has not come: back in, in order */
            insert_sorted(&w->q_held, n, n->deadline);
            w->nheld++;
            continue;
        }
        r->held = 0;
        mg_held_add(r->snap->services[r->svc].name, -1);
        repin(r);
        r->tries = 0; /* the targets it tried may be back; retries stay charged */
        mg_proxy__try(r);
    }
}

void mg_proxy__held_expire(mg_worker *w, uint64_t now)
{
    mg_tq_node *n;
    while ((n = mg_tq_expired(&w->q_held, now))) {
        mg_req *r = mg_container_of(n, mg_req, tq);
        mg_proxy__unhold(r);
        if (r->backoff) { /* a retry's wait is over */
            r->backoff = 0;
            if (mg_proxy__live(r)) mg_proxy__try(r);
            continue;
        }
        /* targets that exist but never took it: 502, as a refused connect
         * would be; none at all: 503 */
        int none = r->snap->services[r->svc].ntargets == 0;
        MG_LOG(MG_LOG_WARN, w->id, r->conn_id,
               "service %s: no target became ready in %.1f s; answering %d",
               r->snap->services[r->svc].name, (double)w->cfg->queue_ms / 1000.0, none ? 503 : 502);
        mg_proxy__respond_text(r, none ? 503 : 502,
                               none ? "Service Unavailable: no target became ready in time\n"
                                    : "Bad Gateway: no target accepted the request in time\n",
                               !r->body_done);
    }
}
