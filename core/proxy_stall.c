/* Stalled targets: a replica that is frozen (`docker pause`, a stopped
 * process, a wedged event loop) accepts connections and then says nothing,
 * so requests would wait for the whole response timeout. When requests
 * have waited timeouts.upstream_stall (or 4 x the target's slowest recent
 * response, if longer) and the target sent nothing in that time, the
 * worker probes it with a HEAD on its own connection: any answer, even an
 * error, means it is alive (a slow endpoint, a long poll); silence for the
 * probe's timeout means stalled. A stalled target gets no new requests
 * from any worker, its waiting idempotent requests are tried elsewhere,
 * and it is probed again until it answers. */
#include "proxy_int.h"
#include "targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_MAX 32

typedef struct stall_probe {
    mg_tq_node tq; /* in w->q_probe while waiting for a first byte */
    mg_worker *w;
    mg_upconn *u;
    uint32_t uid;
    char address[128];
    struct stall_probe *next; /* the worker's probes */
} stall_probe;

/* Per worker: probes under way, and the targets this worker found stalled
 * (it keeps probing them). Kept in the worker's opaque slot. */
typedef struct stall_state {
    stall_probe *probes;
    struct {
        uint32_t uid;
        char address[128];
    } watch[WATCH_MAX];
    int nwatch;
} stall_state;

static stall_state *state_of(mg_worker *w)
{
    if (!w->stall) w->stall = calloc(1, sizeof(stall_state));
    return w->stall;
}

static uint64_t probe_timeout(const mg_worker *w)
{
    return w->cfg->upstream_stall_ms > 1000 ? w->cfg->upstream_stall_ms : 1000;
}

static int probing(stall_state *st, uint32_t uid)
{
    for (stall_probe *p = st->probes; p; p = p->next)
        if (p->uid == uid) return 1;
    return 0;
}

static int watch_index(stall_state *st, uint32_t uid)
{
    for (int i = 0; i < st->nwatch; i++)
        if (st->watch[i].uid == uid) return i;
    return -1;
}

static void probe_free(stall_probe *p)
{
    stall_state *st = state_of(p->w);
    for (stall_probe **at = &st->probes; *at; at = &(*at)->next)
        if (*at == p) {
            *at = p->next;
            break;
        }
    mg_tq_remove(&p->tq);
    if (p->u) mg_up_close(p->u);
    free(p);
}

/* The target answered the probe: alive. */
static void probe_alive(stall_probe *p)
{
    stall_state *st = state_of(p->w);
    mg_targets_progress(p->uid, mg_targets_now_ms(), 0); /* clears the stall */
    int i = watch_index(st, p->uid);
    if (i >= 0) {
        MG_LOG(MG_LOG_INFO, p->w->id, 0, "target %s answers again: no longer stalled", p->address);
        st->watch[i] = st->watch[--st->nwatch];
    }
    probe_free(p);
}

static void probe_connected(void *owner, int status)
{
    stall_probe *p = owner;
    if (status < 0) {
        /* refusing is not stalling: the connect back-off deals with it */
        probe_free(p);
        return;
    }
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HEAD / HTTP/1.1\r\nHost: %s\r\nUser-Agent: moongate-stall-probe\r\n"
                     "Connection: close\r\n\r\n",
                     p->address);
    uv_buf_t b = uv_buf_init(head, (unsigned)n);
    if (mg_up_send(p->u, &b, 1) < 0) probe_free(p);
}

static void probe_data(void *owner, const char *d, size_t n)
{
    probe_alive(owner);
}

static void probe_gone(void *owner)
{
    probe_alive(owner); /* it closed our connection: something runs there */
}

static void probe_error(void *owner, int err)
{
    probe_alive(owner);
}

static void probe_drained(void *owner) {}

static void probe_connect_timeout(void *owner)
{
    probe_free(owner); /* not connecting is the back-off's business */
}

static const mg_up_events probe_events = {
    .connected = probe_connected,
    .data = probe_data,
    .eof = probe_gone,
    .error = probe_error,
    .drained = probe_drained,
    .timeout = probe_connect_timeout,
};

static void probe_start(mg_worker *w, const mg_target *t)
{
    stall_state *st = state_of(w);
    if (!st || probing(st, t->uid)) return;
    /* Ownership: the worker's list; freed by probe_free. */
    stall_probe *p = calloc(1, sizeof(*p));
    if (!p) return;
    p->w = w;
    p->uid = t->uid;
    snprintf(p->address, sizeof(p->address), "%s", t->address);
    int err = 0;
    p->u = mg_up_get(w, t, p, &probe_events, &err);
    if (!p->u) {
        free(p);
        return;
    }
    p->next = st->probes;
    st->probes = p;
    w->q_probe.timeout_ms = probe_timeout(w);
    mg_tq_arm(&w->q_probe, &p->tq, uv_now(&w->loop));
    if (p->u->state == MG_U_ACTIVE) probe_connected(p, 0);
}

/* A probe got nothing in time: the target is stalled. */
static void probe_expired(stall_probe *p)
{
    mg_worker *w = p->w;
    stall_state *st = state_of(w);
    uint64_t now = mg_targets_now_ms();
    if (!mg_targets_stalled(p->uid, now))
        MG_LOG(MG_LOG_WARN, w->id, 0,
               "target %s stalled: requests wait on it and it did not answer a probe in %.1f s; "
               "sending elsewhere until it answers",
               p->address, (double)probe_timeout(w) / 1000.0);
    mg_targets_set_stalled(p->uid, now + 3 * probe_timeout(w));
    if (watch_index(st, p->uid) < 0 && st->nwatch < WATCH_MAX) {
        int i = st->nwatch++;
        st->watch[i].uid = p->uid;
        snprintf(st->watch[i].address, sizeof(st->watch[i].address), "%s", p->address);
    }
    probe_free(p);
}

#define UNACKED_AFTER_MS 1000

/* Requests waiting on a stalled target that can safely go elsewhere (no
 * response byte yet, idempotent, no body sent), and requests the backend's
 * kernel never acknowledged: their new connection sits in a full listen
 * backlog (a burst against a small backend), so the backend never saw
 * them and they go again on a new connection. */
static void retry_stalled(mg_worker *w, uint64_t now_loop, uint64_t now_ms)
{
    uint64_t timeout = w->q_up_response.timeout_ms;
    mg_tq_node *n = w->q_up_response.head.next, *next;
    for (; n != &w->q_up_response.head; n = next) {
        next = n->next;
        mg_req *r = mg_container_of(n, mg_req, tq);
        if (!r->up || r->got_bytes) continue;
        uint64_t waited = now_loop + timeout - n->deadline;
        if (!r->up->reused && waited >= UNACKED_AFTER_MS && mg_proxy__can_go_again(r) &&
            mg_up_unacked(r->up) > 0) {
            mg_proxy__retry_unsent(r, "the request was never acknowledged (listen backlog full?)");
        } else if (r->idempotent && mg_proxy__can_go_again(r) &&
                   mg_targets_stalled(r->up->uid, now_ms)) {
            mg_proxy__retry_or_fail(r, 0, 1, "target stalled", 0);
        } else {
            continue;
        }
        next = w->q_up_response.head.next; /* the queue changed under us */
    }
}

/* The target of uid in the worker's snapshot (its socket address). */
static const mg_target *find_target(const mg_worker *w, uint32_t uid)
{
    const mg_snapshot *s = w->snap;
    for (int i = 0; s && i < s->nservices; i++)
        for (int k = 0; k < s->services[i].ntargets; k++)
            if (s->services[i].targets[k].uid == uid) return &s->services[i].targets[k];
    return NULL;
}

void mg_proxy__stall_tick(mg_worker *w, uint64_t now_loop)
{
    uint64_t min = w->cfg->upstream_stall_ms;
    mg_tq_node *n;
    while ((n = mg_tq_expired(&w->q_probe, now_loop)))
        probe_expired(mg_container_of(n, stall_probe, tq));
    if (!min) {
        retry_stalled(w, now_loop, mg_targets_now_ms());
        return;
    }
    uint64_t now = mg_targets_now_ms();
    uint64_t timeout = w->q_up_response.timeout_ms;
    /* the queue is in arm order: the longest-waiting requests come first */
    for (n = w->q_up_response.head.next; n != &w->q_up_response.head; n = n->next) {
        uint64_t waited = now_loop + timeout - n->deadline;
        if (n->deadline > now_loop + timeout || waited < min) break;
        mg_req *r = mg_container_of(n, mg_req, tq);
        if (!r->up || r->tunnel) continue;
        const mg_target *t = mg_req_target(r);
        uint64_t after = mg_targets_stall_after(t->uid, min);
        if (waited >= after && mg_targets_silent_for(t->uid, now) >= after) probe_start(w, t);
    }
    retry_stalled(w, now_loop, now);
    /* keep probing what this worker found stalled, until it answers */
    stall_state *st = w->stall;
    for (int i = 0; st && i < st->nwatch; i++) {
        if (!mg_targets_stalled(st->watch[i].uid, now)) {
            st->watch[i--] = st->watch[--st->nwatch]; /* another worker saw it answer */
            continue;
        }
        if (!probing(st, st->watch[i].uid)) {
            const mg_target *t = find_target(w, st->watch[i].uid);
            if (t)
                probe_start(w, t);
            else
                st->watch[i--] = st->watch[--st->nwatch]; /* it left the membership */
        }
    }
}

void mg_proxy__stall_free(mg_worker *w)
{
    stall_state *st = w->stall;
    if (!st) return;
    while (st->probes)
        probe_free(st->probes);
    free(st);
    w->stall = NULL;
}
