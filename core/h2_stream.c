/* An HTTP/2 stream as a request: its head built from HPACK fields into
 * the same mg_req an HTTP/1 head fills (pseudo-headers first, :authority
 * as Host, cookie crumbs joined), its request body held until the handler
 * takes it (the window reopens only then), and the handler's events.
 * The answers (mg_req_src) are h2_response.c's. See h2.h, h2_int.h. */
#include "conn_int.h"
#include "h2_int.h"
#include "worker.h"

#include <strings.h>

#include <stdlib.h>
#include <string.h>

static int method_of(const char *m, size_t n)
{
#define MG_H2_METHOD(num, name, string)                                                            \
    if (n == sizeof(#string) - 1 && memcmp(m, #string, n) == 0) return num;
    HTTP_METHOD_MAP(MG_H2_METHOD)
#undef MG_H2_METHOD
    return -1;
}

/* ---- streams ------------------------------------------------------- */

void mg_h2__drop_req(mg_h2s *s, int tell)
{
    mg_req *r = s->req;
    if (!r) return;
    s->req = NULL;
    if (tell) s->h->c->h->gone(r);
    r->src = NULL;
    r->src_ctx = NULL;
    r->client = NULL;
    r->client_ip = NULL;
    mg_req_release(r);
}

void mg_h2__stream_free(mg_h2s *s)
{
    mg_h2 *h = s->h;
    mg_h2__drop_req(s, 0);
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    if (!s->closed) nghttp2_session_set_stream_user_data(h->sess, s->id, NULL);
    h->out_total -= s->out.len - s->out_off;
    mg_buf_free(&s->pseudo);
    mg_buf_free(&s->cookie);
    mg_buf_free(&s->in);
    mg_buf_free(&s->out);
    mg_buf_free(&s->trailers);
    free(s);
    if (--h->nstreams == 0 && !h->dead)
        mg_tq_arm(&h->c->w->q_client_idle, &h->c->tq, uv_now(&h->c->w->loop));
}

static mg_h2s *stream_new(mg_h2 *h, int32_t id)
{
    mg_conn *c = h->c;
    /* Ownership: the connection's list (h->streams), freed by
     * mg_h2__stream_free once nghttp2 closed it (or with the session). */
    mg_h2s *s = calloc(1, sizeof(*s));
    mg_req *r = s ? mg_req_new(c->w) : NULL;
    if (!r) {
        free(s);
        return NULL;
    }
    s->h = h;
    s->id = id;
    s->req = r;
    r->src = &mg_h2__src;
    r->src_ctx = s;
    r->conn_id = c->id;
    r->stream_id = (uint32_t)id;
    r->client = &c->peer.sa;
    r->client_ip = c->peer_ip;
    r->client_trusted = mg_cidr_match_sa(c->w->cfg->trusted, c->w->cfg->ntrusted, &c->peer.sa);
    r->http_major = 2;
    r->http_minor = 0;
    r->secure = c->secure;
    r->listen = c->listen;
    s->next = h->streams;
    if (h->streams) h->streams->prev = s;
    h->streams = s;
    h->nstreams++;
    mg_tq_remove(&c->tq); /* not idle while a stream is open */
    return s;
}

/* ---- the request head -------------------------------------------------- */

static void refuse(mg_h2s *s, int status, const char *why)
{
    if (s->refuse) return;
    s->refuse = (uint16_t)status;
    s->refuse_why = why;
}

int mg_h2__on_begin_headers(nghttp2_session *sess, const nghttp2_frame *f, void *user)
{
    mg_h2 *h = user;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        mg_h2s *s = stream_new(h, f->hd.stream_id);
        if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
        nghttp2_session_set_stream_user_data(sess, f->hd.stream_id, s);
        return 0;
    }
    mg_h2s *s = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
    if (s && s->req) {
        s->in_trailers = 1;
        if (s->req->in.ntrailer_start == UINT32_MAX) s->req->in.ntrailer_start = s->req->in.n;
    }
    return 0;
}

/* Method and path start the arena (request.h), then Host from :authority. */
static int flush_pseudo(mg_h2s *s)
{
    mg_req *r = s->req;
    s->pseudo_done = 1;
    const char *ps = s->pseudo.p;
    if (!s->has_m) return -1;
    if (mg_buf_append(&r->in.arena, ps, s->m_len)) return -1;
    r->method_len = s->m_len;
    const char *url = s->has_p ? ps + s->p_off : ps + s->a_off; /* CONNECT: the authority */
    uint32_t ulen = s->has_p ? s->p_len : s->a_len;
    if (ulen && mg_buf_append(&r->in.arena, url, ulen)) return -1;
    r->url_len = ulen;
    if (s->has_a && mg_headers_append(&r->in, "host", 4, ps + s->a_off, s->a_len)) return -1;
    return 0;
}

static int pseudo(mg_h2s *s, const uint8_t *name, size_t nlen, const uint8_t *v, size_t vlen)
{
    uint32_t off = (uint32_t)s->pseudo.len;
    if (mg_buf_append(&s->pseudo, v, vlen)) return -1;
    if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
        if (off) { /* method first in the buffer: move it there */
            char tmp[32];
            if (vlen > sizeof(tmp)) return -1;
            memcpy(tmp, v, vlen);
            memmove(s->pseudo.p + vlen, s->pseudo.p, off);
            memcpy(s->pseudo.p, tmp, vlen);
            s->p_off += s->has_p ? (uint32_t)vlen : 0;
            s->a_off += s->has_a ? (uint32_t)vlen : 0;
        }
        s->has_m = 1;
        s->m_len = (uint32_t)vlen;
    } else if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
        s->has_p = 1;
        s->p_off = off;
        s->p_len = (uint32_t)vlen;
    } else if (nlen == 10 && memcmp(name, ":authority", 10) == 0) {
        s->has_a = 1;
        s->a_off = off;
        s->a_len = (uint32_t)vlen;
    }
    /* :scheme says what the client thinks; the listener says what it is */
    return 0;
}

int mg_h2__on_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    mg_h2s *s = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
    if (!s || !s->req || s->refuse) return 0;
    mg_req *r = s->req;
    const mg_config *cfg = s->h->c->w->cfg;
    /* the decoded size counts, however small HPACK made it (a bomb) */
    s->head_bytes += (uint32_t)(nlen + vlen + 32);
    if (s->head_bytes > cfg->max_header_size) {
        refuse(s, 431, "request head too large");
        return 0;
    }
    const char *n = (const char *)name, *v = (const char *)value;
    if (s->in_trailers) {
        if (nlen && name[0] != ':' && mg_headers_append(&r->in, n, nlen, v, vlen))
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (nlen && name[0] == ':') {
        if (s->pseudo_done || pseudo(s, name, nlen, value, vlen))
            refuse(s, 400, "invalid pseudo-header");
        return 0;
    }
    if (!s->pseudo_done && flush_pseudo(s)) {
        refuse(s, 400, "missing :method");
        return 0;
    }
    if (nlen == 6 && memcmp(n, "cookie", 6) == 0) {
        if (s->cookie.len) mg_buf_append(&s->cookie, "; ", 2);
        mg_buf_append(&s->cookie, v, vlen);
        return 0;
    }
    if (nlen == 4 && memcmp(n, "host", 4) == 0 && s->has_a) {
        /* RFC 9113 8.3.1: Host must name what :authority names */
        if (vlen != s->a_len || strncasecmp(v, s->pseudo.p + s->a_off, vlen) != 0)
            refuse(s, 400, "Host differs from :authority");
        return 0;
    }
    if (r->in.n >= cfg->max_headers) {
        refuse(s, 431, "too many headers");
        return 0;
    }
    if (!mg_header_valid(n, nlen, v, vlen)) {
        refuse(s, 400, "invalid header name or value");
        return 0;
    }
    if (mg_headers_append(&r->in, n, nlen, v, vlen)) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int64_t content_length(const mg_req *r)
{
    int i = mg_headers_find_kind(&r->in, MG_HK_CONTENT_LENGTH);
    if (i < 0) return -1;
    const char *v = mg_hvalue(&r->in, (uint32_t)i);
    int64_t n = 0;
    for (uint32_t k = 0; k < r->in.h[i].vlen; k++) {
        if (v[k] < '0' || v[k] > '9' || n > INT64_MAX / 10 - 10) return -2;
        n = n * 10 + (v[k] - '0');
    }
    return r->in.h[i].vlen ? n : -2;
}

void mg_h2__head_end(mg_h2s *s, int end_stream)
{
    mg_req *r = s->req;
    if (!r) return;
    s->head_done = 1;
    if (end_stream) s->in_end = 1;
    mg_h2__ready(s);
    if (s->refuse) return;
    if (!s->pseudo_done && flush_pseudo(s)) {
        refuse(s, 400, "missing :method");
        return;
    }
    if (s->cookie.len && mg_headers_append(&r->in, "cookie", 6, s->cookie.p, s->cookie.len)) {
        refuse(s, 500, "out of memory");
        return;
    }
    int m = method_of(mg_req_method(r), r->method_len);
    if (m < 0) {
        refuse(s, 400, "unknown method");
        return;
    }
    r->method = (uint8_t)m;
    int64_t cl = content_length(r);
    if (cl == -2) {
        refuse(s, 400, "invalid Content-Length");
        return;
    }
    r->body_len = cl >= 0 ? cl : end_stream ? MG_BODY_NONE : MG_BODY_CHUNKED;
    r->has_body = !end_stream && r->body_len != 0;
    if (!r->has_body) r->body_done = 1;
}

void mg_h2__data(mg_h2s *s, const uint8_t *p, size_t n)
{
    if (!s->req || s->refuse) {
        /* nobody takes it: the window reopens at once */
        nghttp2_session_consume(s->h->sess, s->id, n);
        return;
    }
    if (mg_buf_append(&s->in, p, n)) {
        nghttp2_submit_rst_stream(s->h->sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    mg_h2__ready(s);
}

void mg_h2__in_end(mg_h2s *s)
{
    s->in_end = 1;
    mg_h2__ready(s);
}

/* Hands the request body to the handler while it takes it; each piece
 * taken reopens the client's windows by its size. */
static void pump(mg_h2s *s)
{
    mg_h2 *h = s->h;
    if (!s->req || !s->handed || !s->flowing || s->pumping) return;
    s->pumping = 1;
    while (s->req && !s->paused && s->in_off < s->in.len && !h->dead) {
        size_t n = s->in.len - s->in_off;
        if (n > 16384) n = 16384;
        const char *p = s->in.p + s->in_off;
        s->in_off += n;
        h->c->h->body(s->req, p, n); /* the upstream side copies or writes it */
        nghttp2_session_consume(h->sess, s->id, n);
    }
    if (s->in_off == s->in.len) s->in.len = s->in_off = 0;
    if (s->req && !s->paused && s->in_end && !s->in.len && !s->body_ended && !h->dead) {
        s->body_ended = 1;
        s->req->body_done = 1;
        h->c->h->body_end(s->req);
    }
    s->pumping = 0;
}

void mg_h2__dispatch(mg_h2s *s)
{
    mg_h2 *h = s->h;
    if (s->closed) {
        /* the client reset it, or both sides ended: the handler hears of it
         * only if it had the request and the exchange did not end */
        mg_h2__drop_req(s, s->handed);
        mg_h2__stream_free(s);
        return;
    }
    if (s->head_done && !s->handed && s->req) {
        s->handed = 1;
        if (s->refuse)
            h->c->h->error(s->req, s->refuse, s->refuse_why);
        else
            h->c->h->head(s->req);
    }
    if (h->dead) return;
    pump(s);
    if (s->want_drain && s->req && !mg_h2__out_full(s)) {
        s->want_drain = 0;
        h->c->h->drain(s->req);
    }
}
