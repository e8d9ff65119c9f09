/* An HTTP/2 stream as a request: its head built from HPACK fields into
 * the same mg_req an HTTP/1 head fills (pseudo-headers first, :authority
 * as Host, cookie crumbs joined), its request body held until the handler
 * takes it (the window reopens only then), and the mg_req_src table that
 * answers it: response heads as HEADERS without connection-specific
 * fields, bodies through a data source bounded per stream and per
 * connection, trailers. See h2.h, h2_int.h. */
#include "conn_int.h"
#include "h1.h"
#include "h2_int.h"
#include "worker.h"

#include <strings.h>

#include <stdlib.h>
#include <string.h>

static inline mg_h2s *of_req(const mg_req *r)
{
    return r->src_ctx;
}

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

static int out_full(const mg_h2s *s)
{
    return s->out.len - s->out_off > MG_H2_STREAM_OUT_HIGH || s->h->out_total > MG_H2_CONN_OUT_HIGH;
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
    if (s->want_drain && s->req && !out_full(s)) {
        s->want_drain = 0;
        h->c->h->drain(s->req);
    }
}

/* ---- the response ---------------------------------------------------- */

/* Names lowercased into h->nv; nva gets pointers once h->nv stops moving. */
typedef struct nv_build {
    mg_h2 *h;
    nghttp2_nv *nva;
    uint32_t n, cap;
    size_t *name_off; /* into h->nv */
} nv_build;

static int nv_add(nv_build *b, const char *name, size_t nlen, const char *v, size_t vlen)
{
    if (b->n == b->cap) return -1;
    size_t off = b->h->nv.len;
    if (mg_buf_reserve(&b->h->nv, nlen)) return -1;
    for (size_t i = 0; i < nlen; i++) {
        char ch = name[i];
        b->h->nv.p[off + i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch | 0x20) : ch;
    }
    b->h->nv.len += nlen;
    b->name_off[b->n] = off;
    b->nva[b->n] = (nghttp2_nv){NULL, (uint8_t *)v, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
    b->n++;
    return 0;
}

static void nv_finish(nv_build *b)
{
    for (uint32_t i = 0; i < b->n; i++)
        b->nva[i].name = (uint8_t *)b->h->nv.p + b->name_off[i];
}

/* Fields that mean something only to one HTTP/1 connection (RFC 9113
 * 8.2.2); Content-Length is the proxy's to say. */
static int conn_specific(int kind)
{
    return kind == MG_HK_CONNECTION || kind == MG_HK_KEEP_ALIVE || kind == MG_HK_PROXY_CONNECTION ||
           kind == MG_HK_TRANSFER_ENCODING || kind == MG_HK_UPGRADE || kind == MG_HK_TE ||
           kind == MG_HK_CONTENT_LENGTH;
}

/* The head of r: :status, r->out's entries and r->resp_extra's lines. */
static int build_head(mg_h2s *s, mg_req *r, int status, int64_t length, nv_build *b,
                      char status_txt[4])
{
    mg_h2 *h = s->h;
    uint32_t end = mg_headers_end(&r->out);
    uint32_t cap = end + 3;
    for (size_t i = 0; i < r->resp_extra.len; i++)
        cap += r->resp_extra.p[i] == '\n';
    b->h = h;
    b->n = 0;
    b->cap = cap;
    b->nva = malloc(cap * sizeof(*b->nva));
    b->name_off = malloc(cap * sizeof(*b->name_off));
    if (!b->nva || !b->name_off) return -1;
    h->nv.len = 0;
    status_txt[0] = (char)('0' + status / 100 % 10);
    status_txt[1] = (char)('0' + status / 10 % 10);
    status_txt[2] = (char)('0' + status % 10);
    status_txt[3] = 0;
    nv_add(b, ":status", 7, status_txt, 3);
    for (uint32_t i = 0; i < end; i++) {
        if (!r->out.h[i].nlen || conn_specific(r->out.h[i].kind)) continue;
        nv_add(b, mg_hname(&r->out, i), r->out.h[i].nlen, mg_hvalue(&r->out, i), r->out.h[i].vlen);
    }
    const char *p = r->resp_extra.p, *e = p + r->resp_extra.len;
    while (p && p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *le = nl ? nl : e;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            const char *v = colon + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t nlen = (size_t)(colon - p);
            if (nlen && !conn_specific(mg_hkind_of(p, nlen)))
                nv_add(b, p, nlen, v, (size_t)(ve - v));
        }
        p = nl ? nl + 1 : e;
    }
    static __thread char cl[24];
    if (length >= 0 && status != 204 && status != 304) {
        int l = mg_h1_u64(cl, (uint64_t)length);
        nv_add(b, "content-length", 14, cl, (size_t)l);
    }
    nv_finish(b);
    return 0;
}

static void nv_free(nv_build *b)
{
    free(b->nva);
    free(b->name_off);
}

static void src_head(mg_req *r, int status, const char *reason, size_t rlen, int64_t length,
                     unsigned flags)
{
    mg_h2s *s = of_req(r);
    mg_h2 *h = s->h;
    if (h->dead || s->closed || s->submitted) return;
    nv_build b;
    char st[4];
    if (build_head(s, r, status, length, &b, st) == 0) {
        s->submitted = 1;
        if (flags & MG_RESP_NO_BODY) {
            s->out_end = 1;
            nghttp2_submit_response(h->sess, s->id, b.nva, b.n, NULL);
        } else {
            nghttp2_data_provider dp = {.source.ptr = s, .read_callback = mg_h2__read_body};
            nghttp2_submit_response(h->sess, s->id, b.nva, b.n, &dp);
        }
    }
    nv_free(&b);
    /* written with the first body bytes or the end (src_body, src_end) */
}

static void src_interim(mg_req *r, int status, const char *reason, size_t rlen)
{
    mg_h2s *s = of_req(r);
    mg_h2 *h = s->h;
    if (h->dead || s->closed || s->submitted) return;
    nv_build b;
    char st[4];
    if (build_head(s, r, status, -1, &b, st) == 0)
        nghttp2_submit_headers(h->sess, NGHTTP2_FLAG_NONE, s->id, NULL, b.nva, b.n, NULL);
    nv_free(&b);
    mg_h2__enter(h);
    mg_h2__leave(h);
}

static void resume_data(mg_h2s *s)
{
    if (s->deferred && s->submitted) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->h->sess, s->id);
    }
}

static int src_body(mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    mg_h2s *s = of_req(r);
    mg_h2 *h = s->h;
    if (h->dead || s->closed) return -1;
    for (unsigned i = 0; i < n; i++) {
        if (mg_buf_append(&s->out, bufs[i].base, bufs[i].len)) return -1;
        h->out_total += bufs[i].len;
    }
    resume_data(s);
    mg_h2__enter(h);
    mg_h2__leave(h); /* frames what the windows allow */
    if (h->dead) return -1;
    if (out_full(s)) {
        s->want_drain = 1;
        return 1;
    }
    return 0;
}

ssize_t mg_h2__read_body(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    mg_h2s *s = src->ptr;
    size_t avail = s->out.len - s->out_off;
    if (!avail && !s->out_end) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < len ? avail : len;
    memcpy(buf, s->out.p + s->out_off, n);
    s->out_off += n;
    s->h->out_total -= n;
    if (s->out_off == s->out.len) {
        s->out.len = s->out_off = 0;
    } else if (s->out_off >= 65536) {
        memmove(s->out.p, s->out.p + s->out_off, s->out.len - s->out_off);
        s->out.len -= s->out_off;
        s->out_off = 0;
    }
    if (s->out_end && s->out.len == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->ntrailers) {
            nghttp2_nv nva[s->ntrailers];
            const char *p = s->trailers.p;
            for (uint32_t i = 0; i < s->ntrailers; i++) {
                size_t nl = strlen(p), vl = strlen(p + nl + 1);
                nva[i] =
                    (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nl + 1, nl, vl, NGHTTP2_NV_FLAG_NONE};
                p += nl + vl + 2;
            }
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(sess, id, nva, s->ntrailers);
        }
    }
    if (s->want_drain && !out_full(s)) mg_h2__ready(s);
    return (ssize_t)n;
}

static void src_end(mg_req *r)
{
    mg_h2s *s = of_req(r);
    mg_h2 *h = s->h;
    for (uint32_t i = r->out.ntrailer_start; i < r->out.n && !s->closed; i++) {
        if (!r->out.h[i].nlen || conn_specific(r->out.h[i].kind)) continue;
        size_t off = s->trailers.len;
        if (mg_buf_append(&s->trailers, mg_hname(&r->out, i), r->out.h[i].nlen) ||
            mg_buf_append(&s->trailers, "", 1) ||
            mg_buf_append(&s->trailers, mg_hvalue(&r->out, i), r->out.h[i].vlen) ||
            mg_buf_append(&s->trailers, "", 1))
            break;
        for (size_t k = off; k < off + r->out.h[i].nlen; k++)
            if (s->trailers.p[k] >= 'A' && s->trailers.p[k] <= 'Z') s->trailers.p[k] |= 0x20;
        s->ntrailers++;
    }
    s->out_end = 1;
    if (!s->closed) resume_data(s);
    mg_h2__drop_req(s, 0); /* the exchange is over; the stream sends on */
    mg_h2__enter(h);
    mg_h2__leave(h);
}

static void src_pause(mg_req *r)
{
    of_req(r)->paused = 1;
}

static void src_resume(mg_req *r)
{
    mg_h2s *s = of_req(r);
    s->flowing = 1;
    s->paused = 0;
    mg_h2__ready(s); /* the body is handed over from the run loop */
    mg_h2__enter(s->h);
    mg_h2__leave(s->h);
}

static void src_abort(mg_req *r)
{
    mg_h2s *s = of_req(r);
    mg_h2 *h = s->h;
    if (!h->dead && !s->closed)
        nghttp2_submit_rst_stream(h->sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    mg_h2__drop_req(s, 0);
    mg_h2__enter(h);
    mg_h2__leave(h);
}

/* No upgrade over HTTP/2 (the proxy sees r->upgrade == 0): never called. */
static void src_tunnel(mg_req *r, const char *rest, size_t n)
{
    src_abort(r);
}

static int src_raw(mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    return -1;
}

static size_t src_queued(const mg_req *r)
{
    const mg_h2s *s = of_req(r);
    return s->out.len - s->out_off;
}

static const char *src_tls(const mg_req *r, int what)
{
    return mg_conn__tls_info(of_req(r)->h->c, what);
}

const mg_req_src mg_h2__src = {
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
