/* Backend connections: connect with a timeout, and keep idle keep-alive
 * connections in a per-worker pool per target. Idle pooled connections keep
 * reading, so a backend closing one is noticed before it is reused. */
#include "http.h"

#include <stdlib.h>
#include <string.h>

static void up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mg_upconn *u = h->data;
    buf->base = u->w->readbuf;
    buf->len = sizeof(u->w->readbuf);
}

static void pool_unlink(mg_upconn *u)
{
    mg_pool *p = mg_worker_pool(u->w, u->uid);
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

static void on_up_closed(uv_handle_t *h)
{
    mg_upconn *u = h->data;
    mg_buf_free(&u->fix);
    free(u);
}

void mg_up_close(mg_upconn *u)
{
    if (u->state == MG_U_CLOSING) return;
    if (u->state == MG_U_IDLE) pool_unlink(u);
    u->state = MG_U_CLOSING;
    u->req = NULL;
    mg_tq_remove(&u->tq);
    uv_close((uv_handle_t *)&u->tcp, on_up_closed);
}

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mg_upconn *u = s->data;
    if (nread == 0) return;
    if (u->state != MG_U_ACTIVE || !u->req) {
        /* idle in the pool: the backend closed it or sent something unasked */
        mg_up_close(u);
        return;
    }
    mg_req *r = u->req;
    if (nread > 0) {
        mg_tq_arm(&u->w->q_up_response, &u->tq, uv_now(&u->w->loop));
        mg_proxy_up_data(u, buf->base, (size_t)nread);
        return;
    }
    mg_up_read_stop(u);
    if (nread == UV_EOF)
        mg_proxy_up_eof(r);
    else
        mg_proxy_up_error(r, (int)nread, "read failed:");
}

void mg_up_read_start(mg_upconn *u)
{
    if (u->reading || u->state == MG_U_CLOSING || u->state == MG_U_CONNECTING) return;
    if (uv_read_start((uv_stream_t *)&u->tcp, up_alloc, on_up_read) == 0) u->reading = 1;
}

void mg_up_read_stop(mg_upconn *u)
{
    if (!u->reading) return;
    uv_read_stop((uv_stream_t *)&u->tcp);
    u->reading = 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    mg_upconn *u = req->data;
    if (status == UV_ECANCELED || u->state == MG_U_CLOSING) return;
    mg_tq_remove(&u->tq);
    mg_req *r = u->req;
    if (status < 0) {
        mg_proxy_up_connected(r, status); /* closes u through detach */
        return;
    }
    u->state = MG_U_ACTIVE;
    mg_up_read_start(u);
    mg_proxy_up_connected(r, 0);
}

mg_upconn *mg_up_get(mg_worker *w, const mg_target *t, mg_req *r)
{
    mg_pool *p = mg_worker_pool(w, t->uid);
    if (p && p->idle) {
        mg_upconn *u = p->idle;
        pool_unlink(u);
        mg_tq_remove(&u->tq);
        u->state = MG_U_ACTIVE;
        u->reused = 1;
        u->got_bytes = 0;
        u->reusable = 0;
        mg_h1check_head(&u->check, 1);
        u->req = r;
        mg_proxy_init_parser(u);
        mg_up_read_start(u);
        return u;
    }
    mg_upconn *u = calloc(1, sizeof(*u));
    if (!u) return NULL;
    uv_tcp_init(&w->loop, &u->tcp);
    u->tcp.data = u;
    u->w = w;
    u->uid = t->uid;
    u->req = r;
    u->connect_req.data = u;
    u->state = MG_U_CONNECTING;
    mg_h1check_head(&u->check, 1);
    mg_proxy_init_parser(u);
    int rc =
        uv_tcp_connect(&u->connect_req, &u->tcp, (const struct sockaddr *)&t->addr, on_connect);
    if (rc) {
        MG_LOG(MG_LOG_WARN, w->id, r->c->id, "connect to %s failed: %s", t->address,
               uv_strerror(rc));
        u->state = MG_U_CLOSING;
        uv_close((uv_handle_t *)&u->tcp, on_up_closed);
        return NULL;
    }
    uv_tcp_nodelay(&u->tcp, 1);
    mg_tq_arm(&w->q_up_connect, &u->tq, uv_now(&w->loop));
    return u;
}

static void on_up_written(void *owner, int status)
{
    mg_upconn *u = owner;
    if (u->state != MG_U_ACTIVE || !u->req) return;
    if (status < 0) return; /* the read side reports the failure */
    if (u->tcp.write_queue_size == 0) mg_proxy_up_drained(u->req);
}

int mg_up_send(mg_upconn *u, const uv_buf_t *bufs, unsigned n)
{
    return mg_write((uv_stream_t *)&u->tcp, bufs, n, on_up_written, u);
}

void mg_up_release(mg_upconn *u)
{
    mg_worker *w = u->w;
    mg_pool *p = mg_worker_pool(w, u->uid);
    if (!u->reusable || !p || p->nidle >= w->cfg->keepalive || w->stopping ||
        u->tcp.write_queue_size) {
        mg_up_close(u);
        return;
    }
    u->state = MG_U_IDLE;
    u->req = NULL;
    u->pprev = NULL;
    u->pnext = p->idle;
    if (p->idle) p->idle->pprev = u;
    p->idle = u;
    p->nidle++;
    mg_tq_arm(&w->q_up_idle, &u->tq, uv_now(&w->loop));
    mg_up_read_start(u);
}

void mg_up_expire(mg_worker *w, uint64_t now)
{
    mg_tq_node *n;
    while ((n = mg_tq_expired(&w->q_up_idle, now)))
        mg_up_close(mg_container_of(n, mg_upconn, tq));
    while ((n = mg_tq_expired(&w->q_up_connect, now))) {
        mg_upconn *u = mg_container_of(n, mg_upconn, tq);
        mg_tq_remove(n);
        if (u->req)
            mg_proxy_up_timeout(u->req, 1);
        else
            mg_up_close(u);
    }
    while ((n = mg_tq_expired(&w->q_up_response, now))) {
        mg_upconn *u = mg_container_of(n, mg_upconn, tq);
        mg_tq_remove(n);
        if (u->req)
            mg_proxy_up_timeout(u->req, 0);
        else
            mg_up_close(u);
    }
}
