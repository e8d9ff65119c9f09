/* The HTTP/1 client side's answers: the mg_req_src table. Response heads
 * are serialised here (status line, the headers the proxy left in r->out,
 * its extra lines, and the framing: Content-Length, chunked, or close) and
 * held back until the first body bytes, so that head and body usually
 * leave in one writev. */
#include "conn.h"
#include "conn_int.h"
#include "h1.h"
#include "tls_stream.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline mg_conn *conn_of(const mg_req *r)
{
    return r->src_ctx;
}

/* Writes bufs to the client, preceded by a held response head. Returns 0,
 * 1 when queued, or -1 when the write failed (the connection is closed
 * and the request released: the caller must not touch it). */
static int client_write(mg_conn *c, mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    uv_buf_t all[8];
    unsigned k = 0;
    if (c->head_held) {
        all[k++] = uv_buf_init(r->wire.p, (unsigned)r->wire.len);
        c->head_held = 0;
    }
    for (unsigned i = 0; i < n && k < MG_ARRAY_SIZE(all); i++)
        all[k++] = bufs[i];
    if (!k) return 0;
    int rc = mg_stream_write(&c->s, all, k);
    if (rc < 0) {
        mg_conn_close(c);
        return -1;
    }
    return rc;
}

/* Appends the entries of h from `from` to `to` that were not removed. */
static void put_headers(mg_buf *b, const mg_headers *h, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++)
        if (h->h[i].nlen) mg_h1_header_at(b, h, i);
}

static void src_head(mg_req *r, int status, const char *reason, size_t rlen, int64_t length,
                     unsigned flags)
{
    mg_conn *c = conn_of(r);
    if (flags & MG_RESP_CLOSE) c->close_after = 1;
    if (!c->keepalive || c->w->stopping) c->close_after = 1;
    if (!reason) {
        reason = mg_status_reason(status);
        rlen = strlen(reason);
    }
    mg_buf *b = &r->wire;
    b->len = 0;
    mg_h1_status_line(b, r->http_minor, status, reason, rlen);
    put_headers(b, &r->out, 0, mg_headers_end(&r->out));
    if (r->resp_extra.len) mg_buf_append(b, r->resp_extra.p, r->resp_extra.len);
    c->resp_chunked = c->resp_raw = 0;
    if (status == 101) {
        mg_buf_append(b, "Connection: upgrade\r\n", 21);
    } else {
        if (length >= 0) {
            char num[24];
            int l = mg_h1_u64(num, (uint64_t)length);
            MG_H1_HEADER(b, "Content-Length", num, (size_t)l);
        } else if (!(flags & MG_RESP_NO_BODY)) {
            /* unknown length: chunked for HTTP/1.1, until close for 1.0 */
            if (r->http_minor) {
                mg_buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
                c->resp_chunked = 1;
            } else {
                c->resp_raw = 1;
                c->close_after = 1;
            }
        }
        if (c->close_after)
            mg_buf_append(b, "Connection: close\r\n", 19);
        else if (!r->http_minor)
            mg_buf_append(b, "Connection: keep-alive\r\n", 24);
    }
    mg_buf_append(b, "\r\n", 2);
    c->head_held = 1;
}

static void src_interim(mg_req *r, int status, const char *reason, size_t rlen)
{
    mg_conn *c = conn_of(r);
    if (!r->http_minor) return; /* HTTP/1.0 clients do not expect 1xx */
    if (!reason) {
        reason = mg_status_reason(status);
        rlen = strlen(reason);
    }
    mg_buf *b = &r->wire;
    b->len = 0;
    mg_h1_status_line(b, 1, status, reason, rlen);
    put_headers(b, &r->out, 0, mg_headers_end(&r->out));
    mg_buf_append(b, "\r\n", 2);
    uv_buf_t buf = uv_buf_init(b->p, (unsigned)b->len);
    client_write(c, r, &buf, 1);
}

static int src_body(mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    mg_conn *c = conn_of(r);
    if (!c->resp_chunked) return client_write(c, r, bufs, n);
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (!total) return client_write(c, r, NULL, 0);
    /* one chunk per call */
    char line[24];
    uv_buf_t all[8];
    unsigned k = 0;
    all[k++] = uv_buf_init(line, (unsigned)mg_h1_chunk_line(line, total));
    for (unsigned i = 0; i < n && k < MG_ARRAY_SIZE(all) - 1; i++)
        all[k++] = bufs[i];
    all[k++] = uv_buf_init("\r\n", 2);
    return client_write(c, r, all, k);
}

static void src_end(mg_req *r)
{
    mg_conn *c = conn_of(r);
    if (c->resp_chunked) {
        mg_buf *b = &c->w->scratch;
        b->len = 0;
        mg_buf_append(b, "0\r\n", 3);
        if (r->out.ntrailer_start < r->out.n)
            put_headers(b, &r->out, r->out.ntrailer_start, r->out.n);
        mg_buf_append(b, "\r\n", 2);
        uv_buf_t buf = uv_buf_init(b->p, (unsigned)b->len);
        if (client_write(c, r, &buf, 1) < 0) return;
    } else if (c->head_held) {
        if (client_write(c, r, NULL, 0) < 0) return;
    }
    mg_conn__exchange_done(c);
}

static void src_pause(mg_req *r)
{
    mg_conn__pause(conn_of(r));
}

static void src_resume(mg_req *r)
{
    mg_conn__resume(conn_of(r));
}

static void src_tunnel(mg_req *r, const char *rest, size_t n)
{
    mg_conn *c = conn_of(r);
    c->state = MG_C_TUNNEL;
    mg_tq_remove(&c->tq);
    uv_buf_t b = uv_buf_init((char *)rest, (unsigned)n);
    if (client_write(c, r, &b, n ? 1 : 0) < 0) return;
    if (c->pend_len) {
        /* client bytes that came right after the upgrade request */
        char *p = c->pend;
        uint32_t len = c->pend_len;
        c->pend = NULL;
        c->pend_len = c->pend_cap = 0;
        c->h->tunnel_data(r, p, len);
        free(p);
        if (c->state == MG_C_CLOSING) return;
    }
    c->paused = 0;
    mg_stream_read_start(&c->s);
}

static int src_raw(mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    return client_write(conn_of(r), r, bufs, n);
}

static void src_abort(mg_req *r)
{
    mg_conn_close(conn_of(r));
}

static size_t src_queued(const mg_req *r)
{
    return mg_stream_queued(&conn_of(r)->s);
}

static const char *src_tls(const mg_req *r, int what)
{
    return mg_conn__tls_info(conn_of(r), what);
}

const char *mg_conn__tls_info(const mg_conn *c, int what)
{
    mg_tls *t = mg_tls_stream_engine(&c->s);
    if (!t) return NULL;
    static __thread char alpn[32];
    size_t n = 0;
    const char *a;
    switch (what) {
    case MG_TLS_SNI:
        return mg_tls_sni(t);
    case MG_TLS_VERSION:
        return mg_tls_version(t);
    case MG_TLS_ALPN:
        a = mg_tls_alpn(t, &n);
        if (!a || !n || n >= sizeof(alpn)) return NULL;
        memcpy(alpn, a, n);
        alpn[n] = 0;
        return alpn;
    case MG_TLS_RESUMED:
        return mg_tls_resumed(t) ? "1" : NULL;
    default:
        return NULL;
    }
}

const mg_req_src mg_conn__src = {
    .tls = src_tls,
    .head = src_head,
    .interim = src_interim,
    .body = src_body,
    .end = src_end,
    .pause = src_pause,
    .resume = src_resume,
    .tunnel = src_tunnel,
    .raw = src_raw,
    .abort = src_abort,
    .queued = src_queued,
};
