/* See upstream.h. */
#include "upstream.h"
#include "worker.h"
#include "tls_stream.h"

#include <stdlib.h>
#include <string.h>

static inline mg_upconn *of_stream(mg_stream *s)
{
    return mg_container_of(s, mg_upconn, s);
}

mg_pool *mg_up_pool(mg_worker *w, uint32_t uid)
{
    if (uid >= w->npools) {
        uint32_t n = w->npools ? w->npools : 64;
        while (n <= uid)
            n *= 2;
        if (n > MG_MAX_TARGET_UIDS) n = MG_MAX_TARGET_UIDS;
        if (uid >= n) return NULL;
        mg_pool *np = realloc(w->pools, n * sizeof(*np));
        if (!np) return NULL;
        memset(np + w->npools, 0, (n - w->npools) * sizeof(*np));
        w->pools = np;
        w->npools = n;
    }
    return &w->pools[uid];
}

static void pool_unlink(mg_upconn *u)
{
    mg_pool *p = mg_up_pool(u->w, u->uid);
    if (u->pprev)
        u->pprev->pnext = u->pnext;
    else if (p && p->idle == u)
        p->idle = u->pnext;
    else
        return;
    if (u->pnext) u->pnext->pprev = u->pprev;
    u->pnext = u->pprev = NULL;
    if (p) p->nidle--;
}

/* A connect ended (or was given up): its slot is free for another. */
static void connect_done(mg_upconn *u)
{
    if (!u->connecting) return;
    u->connecting = 0;
    mg_pool *p = mg_up_pool(u->w, u->uid);
    if (p) p->nconnecting--;
    if (u->w->up_slot) u->w->up_slot(u->w);
}

int mg_up_available(mg_worker *w, uint32_t uid)
{
    mg_pool *p = mg_up_pool(w, uid);
    if (!p) return 0;
    return p->idle || !w->cfg->max_connecting || p->nconnecting < w->cfg->max_connecting;
}

void mg_up_close(mg_upconn *u)
{
    if (u->state == MG_U_CLOSING) return;
    connect_done(u);
    if (u->state == MG_U_IDLE) pool_unlink(u);
    u->state = MG_U_CLOSING;
    u->owner = NULL;
    mg_tq_remove(&u->tq);
    mg_stream_close(&u->s);
}

/* ---- stream events -------------------------------------------------- */

static void on_read(mg_stream *s, const char *p, size_t n)
{
    mg_upconn *u = of_stream(s);
    if (u->state != MG_U_ACTIVE || !u->owner) {
        /* idle in the pool: the backend sent something unasked */
        mg_up_close(u);
        return;
    }
    u->ev->data(u->owner, p, n);
}

static void on_eof(mg_stream *s)
{
    mg_upconn *u = of_stream(s);
    if (u->state != MG_U_ACTIVE || !u->owner) {
        mg_up_close(u); /* the backend closed an idle connection */
        return;
    }
    u->ev->eof(u->owner);
}

static void on_error(mg_stream *s, int err)
{
    mg_upconn *u = of_stream(s);
    if (u->state != MG_U_ACTIVE || !u->owner) {
        mg_up_close(u);
        return;
    }
    mg_up_read_stop(u);
    u->ev->error(u->owner, err);
}

static void on_drain(mg_stream *s)
{
    mg_upconn *u = of_stream(s);
    if (u->state == MG_U_ACTIVE && u->owner) u->ev->drained(u->owner);
}

static void on_connect(mg_stream *s, int status)
{
    mg_upconn *u = of_stream(s);
    if (u->state == MG_U_CLOSING) return;
    mg_tq_remove(&u->tq);
    connect_done(u);
    if (status == 0) {
        u->state = MG_U_ACTIVE;
        mg_up_read_start(u);
    }
    u->ev->connected(u->owner, status); /* on failure the owner closes u */
}

static void on_closed(mg_stream *s)
{
    free(of_stream(s));
}

static const mg_stream_events up_events = {
    .read = on_read,
    .eof = on_eof,
    .error = on_error,
    .drain = on_drain,
    .connect = on_connect,
    .close = on_closed,
};

/* ---- use ------------------------------------------------------------ */

void mg_up_read_start(mg_upconn *u)
{
    if (u->state == MG_U_CLOSING || u->state == MG_U_CONNECTING) return;
    mg_stream_read_start(&u->s);
}

void mg_up_read_stop(mg_upconn *u)
{
    mg_stream_read_stop(&u->s);
}

mg_upconn *mg_up_get(mg_worker *w, const mg_target *t, void *owner, const mg_up_events *ev,
                     int *err)
{
    return mg_up_get_tls(w, t, NULL, NULL, owner, ev, err);
}

mg_upconn *mg_up_get_tls(mg_worker *w, const mg_target *t, struct ssl_ctx_st *tls_ctx,
                         const char *server_name, void *owner, const mg_up_events *ev, int *err)
{
    mg_pool *p = mg_up_pool(w, t->uid);
    if (p && p->idle) {
        mg_upconn *u = p->idle;
        pool_unlink(u);
        mg_tq_remove(&u->tq);
        u->state = MG_U_ACTIVE;
        u->reused = 1;
        u->owner = owner;
        u->ev = ev;
        mg_up_read_start(u);
        return u;
    }
    /* Ownership: freed in on_closed, after the stream's handle closed. */
    mg_upconn *u = calloc(1, sizeof(*u));
    if (!u) {
        *err = UV_ENOMEM;
        return NULL;
    }
    mg_stream_tcp_init(&u->s, &w->loop, &up_events, w->readbuf, sizeof(w->readbuf));
    u->w = w;
    u->uid = t->uid;
    u->owner = owner;
    u->ev = ev;
    u->state = MG_U_CONNECTING;
    int rc = tls_ctx ? mg_tls_stream_client(&u->s, tls_ctx, server_name) : 0;
    if (!rc) rc = mg_stream_connect(&u->s, &u->connect_req, (const struct sockaddr *)&t->addr);
    if (rc) {
        *err = rc;
        u->state = MG_U_CLOSING;
        u->owner = NULL;
        mg_stream_close(&u->s);
        return NULL;
    }
    mg_tq_arm(&w->q_up_connect, &u->tq, uv_now(&w->loop));
    if (p) {
        p->nconnecting++;
        u->connecting = 1;
    }
    return u;
}

int mg_up_send(mg_upconn *u, const uv_buf_t *bufs, unsigned n)
{
    return mg_stream_write(&u->s, bufs, n);
}

void mg_up_release(mg_upconn *u, int reusable)
{
    mg_worker *w = u->w;
    mg_pool *p = mg_up_pool(w, u->uid);
    /* Past upstream.keepalive the connection stays only as surplus, for
     * keepalive_surplus_timeout: a load that swings between bursts (HTTP/2
     * clients multiplexing hundreds of streams onto HTTP/1 targets) reuses
     * it instead of closing it now and connecting again a moment later. */
    int surplus = p && p->nidle >= w->cfg->keepalive;
    if (!reusable || !p || (surplus && !w->cfg->keepalive_surplus_ms) || w->stopping ||
        mg_up_queued(u)) {
        mg_up_close(u);
        return;
    }
    u->state = MG_U_IDLE;
    u->owner = NULL;
    u->pprev = NULL;
    u->pnext = p->idle;
    if (p->idle) p->idle->pprev = u;
    p->idle = u;
    p->nidle++;
    mg_tq_arm(surplus ? &w->q_up_surplus : &w->q_up_idle, &u->tq, uv_now(&w->loop));
    mg_up_read_start(u);
    if (w->up_slot) w->up_slot(w);
}

void mg_up_close_idle(mg_worker *w, uint32_t uid)
{
    if (uid >= w->npools) return;
    while (w->pools[uid].idle)
        mg_up_close(w->pools[uid].idle);
}

void mg_up_close_all(mg_worker *w)
{
    for (uint32_t i = 0; i < w->npools; i++)
        mg_up_close_idle(w, i);
}

void mg_up_expire(mg_worker *w, uint64_t now)
{
    mg_tq_node *n;
    while ((n = mg_tq_expired(&w->q_up_idle, now)))
        mg_up_close(mg_container_of(n, mg_upconn, tq));
    /* surplus that outlived its burst: closed while the pool is over
     * upstream.keepalive, kept as an ordinary idle connection once it is not */
    while ((n = mg_tq_expired(&w->q_up_surplus, now))) {
        mg_upconn *u = mg_container_of(n, mg_upconn, tq);
        mg_pool *p = mg_up_pool(w, u->uid);
        if (!p || p->nidle > w->cfg->keepalive)
            mg_up_close(u);
        else
            mg_tq_arm(&w->q_up_idle, n, now);
    }
    while ((n = mg_tq_expired(&w->q_up_connect, now))) {
        mg_upconn *u = mg_container_of(n, mg_upconn, tq);
        mg_tq_remove(n);
        if (u->owner)
            u->ev->timeout(u->owner);
        else
            mg_up_close(u);
    }
}
