/* The answers to an HTTP/2 stream's request: the mg_req_src table.
 * Response heads become HEADERS without connection-specific fields (held
 * until the first body bytes or the end, so a head that ends the response
 * is one frame), bodies go through a data source bounded per stream and
 * per connection, trailers follow the last DATA. See h2_int.h. */
#include "conn_int.h"
#include "h1.h"
#include "h2_int.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>

static inline mg_h2s *of_req(const mg_req *r)
{
    return r->src_ctx;
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

/* Submits the response head src_head held: with a data source, or ending
 * the stream at once when nothing follows (a gRPC trailers-only answer). */
static void submit_head(mg_h2s *s, mg_req *r, int with_body)
{
    mg_h2 *h = s->h;
    s->head_held = 0;
    if (h->dead || s->closed || s->submitted) return;
    nv_build b;
    char st[4];
    if (build_head(s, r, s->head_status, s->head_length, &b, st) == 0) {
        s->submitted = 1;
        if (!with_body) {
            s->out_end = 1;
            nghttp2_submit_response(h->sess, s->id, b.nva, b.n, NULL);
        } else {
            nghttp2_data_provider dp = {.source.ptr = s, .read_callback = mg_h2__read_body};
            nghttp2_submit_response(h->sess, s->id, b.nva, b.n, &dp);
        }
    }
    nv_free(&b);
}

/* Held until the first body bytes or the end, as HTTP/1 does, so that a
 * response that ends with its head goes out as one HEADERS frame with
 * END_STREAM. */
static void src_head(mg_req *r, int status, const char *reason, size_t rlen, int64_t length,
                     unsigned flags)
{
    mg_h2s *s = of_req(r);
    if (s->h->dead || s->closed || s->submitted) return;
    s->head_status = (uint16_t)status;
    s->head_length = length;
    s->head_held = 1;
    if (flags & MG_RESP_NO_BODY) submit_head(s, r, 0);
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
    mg_h2__later(h);
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
    if (s->head_held) submit_head(s, r, 1);
    for (unsigned i = 0; i < n; i++) {
        if (mg_buf_append(&s->out, bufs[i].base, bufs[i].len)) return -1;
        h->out_total += bufs[i].len;
    }
    resume_data(s);
    mg_h2__later(h); /* framed at the end of this loop turn */
    if (h->dead) return -1;
    if (mg_h2__out_full(s)) {
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
    if (s->want_drain && !mg_h2__out_full(s)) mg_h2__ready(s);
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
    if (s->head_held) submit_head(s, r, s->ntrailers > 0);
    s->out_end = 1;
    if (!s->closed) resume_data(s);
    mg_h2__drop_req(s, 0); /* the exchange is over; the stream sends on */
    mg_h2__later(h);
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
    mg_h2__later(s->h);
}

static void src_abort(mg_req *r)
{
    mg_h2s *s = of_req(r);
    mg_h2 *h = s->h;
    if (!h->dead && !s->closed)
        nghttp2_submit_rst_stream(h->sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    mg_h2__drop_req(s, 0);
    mg_h2__later(h);
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
