/* A try on a target that speaks HTTP/2 (services.NAME.protocol "h2c" or
 * "h2"): the request head as HPACK fields, its body and trailers through
 * the stream, and the response's events (fields, head, data, trailers,
 * end) handed to the hooks and the source as proxy_response.c does for
 * HTTP/1.1. The response's window reopens only as the client takes the
 * bytes, so a slow client slows the backend. gRPC passes through: te:
 * trailers, request streaming, trailers with grpc-status. */
#include "h1.h"
#include "h2_upstream.h"
#include "proxy_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- the request ------------------------------------------------------- */

typedef struct fields {
    mg_buf *store;   /* names lowercased and values made here (r->uhead) */
    size_t *off;     /* name offset, name length, value offset, value length */
    const char **vp; /* a value that lives elsewhere (NULL: in store) */
    uint32_t n, cap;
} fields;

static void add(fields *f, const char *name, size_t nlen, const char *v, size_t vlen, int copy)
{
    if (f->n == f->cap) return;
    size_t *o = &f->off[f->n * 4];
    o[0] = f->store->len;
    o[1] = nlen;
    for (size_t i = 0; i < nlen; i++) {
        char ch = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] | 0x20) : name[i];
        mg_buf_append(f->store, &ch, 1);
    }
    if (copy) {
        o[2] = f->store->len;
        mg_buf_append(f->store, v, vlen);
        f->vp[f->n] = NULL;
    } else {
        f->vp[f->n] = v;
    }
    o[3] = vlen;
    f->n++;
}

static nghttp2_nv *to_nv(fields *f)
{
    nghttp2_nv *nva = malloc((f->n ? f->n : 1) * sizeof(*nva));
    if (!nva) return NULL;
    for (uint32_t i = 0; i < f->n; i++) {
        size_t *o = &f->off[i * 4];
        const char *v = f->vp[i] ? f->vp[i] : f->store->p + o[2];
        nva[i] = (nghttp2_nv){(uint8_t *)f->store->p + o[0], (uint8_t *)v, o[1], o[3],
                              NGHTTP2_NV_FLAG_NONE};
    }
    return nva;
}

/* The head for the backend: what proxy_head.c writes for HTTP/1.1, as
 * fields (X-Forwarded-* replaced unless the client is trusted). */
static nghttp2_nv *request_fields(mg_req *r, const mg_target *t, fields *f)
{
    mg_headers *h = &r->in;
    uint32_t end = mg_headers_end(h);
    f->store = &r->uhead;
    f->store->len = 0;
    f->cap = end + 10;
    f->n = 0;
    f->off = malloc(f->cap * 4 * sizeof(*f->off));
    f->vp = malloc(f->cap * sizeof(*f->vp));
    if (!f->off || !f->vp) return NULL;
    mg_str path, query, authority;
    mg_proxy__split_url(r, &path, &query, &authority);
    int hi = mg_headers_find_kind(h, MG_HK_HOST);
    if (!authority.len && hi >= 0) {
        authority.p = mg_hvalue(h, (uint32_t)hi);
        authority.len = h->h[hi].vlen;
    }
    if (!authority.len) {
        authority.p = t->address;
        authority.len = strlen(t->address);
    }
    add(f, ":method", 7, mg_req_method(r), r->method_len, 0);
    add(f, ":scheme", 7, t->tls ? "https" : "http", t->tls ? 5 : 4, 0);
    add(f, ":authority", 10, authority.p, authority.len, 0);
    add(f, ":path", 5, mg_req_url(r), r->url_cur_len, 0);
    int xff = -1;
    for (uint32_t i = 0; i < end; i++) {
        int kind = h->h[i].kind;
        if (!h->h[i].nlen || kind == MG_HK_HOST || kind == MG_HK_X_REAL_IP) continue;
        if (kind == MG_HK_TE) {
            /* the one TE an HTTP/2 request may carry; gRPC needs it */
            if (mg_value_has_token(mg_hvalue(h, i), h->h[i].vlen, "trailers", 8))
                add(f, "te", 2, "trailers", 8, 0);
            continue;
        }
        if (mg_hkind_is_hop(kind)) continue;
        if (!r->client_trusted &&
            (kind == MG_HK_X_FORWARDED_PROTO || kind == MG_HK_X_FORWARDED_HOST))
            continue;
        if (kind == MG_HK_X_FORWARDED_FOR) {
            if (xff < 0) xff = (int)i;
            continue;
        }
        add(f, mg_hname(h, i), h->h[i].nlen, mg_hvalue(h, i), h->h[i].vlen, 0);
    }
    char ip[64] = "";
    mg_req_client_ip(r, ip, sizeof(ip));
    mg_buf *b = &r->w->scratch;
    b->len = 0;
    if (r->client_trusted && xff >= 0)
        mg_buf_printf(b, "%.*s, %s", (int)h->h[xff].vlen, mg_hvalue(h, (uint32_t)xff), ip);
    else
        mg_buf_append(b, ip, strlen(ip));
    add(f, "x-forwarded-for", 15, b->p, b->len, 1);
    if (!r->client_trusted || mg_headers_find_kind(h, MG_HK_X_FORWARDED_PROTO) < 0)
        add(f, "x-forwarded-proto", 17, r->secure ? "https" : "http", r->secure ? 5 : 4, 0);
    if ((!r->client_trusted || mg_headers_find_kind(h, MG_HK_X_FORWARDED_HOST) < 0) &&
        r->host_lc[0])
        add(f, "x-forwarded-host", 16, r->host_lc, strlen(r->host_lc), 0);
    add(f, "x-real-ip", 9, ip, strlen(ip), 1);
    if (r->body_len >= 0) {
        char num[24];
        int l = mg_h1_u64(num, (uint64_t)r->body_len);
        add(f, "content-length", 14, num, (size_t)l, 1);
    }
    return to_nv(f);
}

static void fields_free(fields *f)
{
    free(f->off);
    free(f->vp);
}

/* ---- the backend's events ------------------------------------------- */

static void on_field(void *owner, const char *name, size_t nlen, const char *v, size_t vlen,
                     int trailer)
{
    mg_req *r = owner;
    if (r->out.arena.len + nlen + vlen > r->w->cfg->max_header_size * 2) return; /* dropped */
    if (trailer && r->out.ntrailer_start == UINT32_MAX) r->out.ntrailer_start = r->out.n;
    mg_headers_append(&r->out, name, nlen, v, vlen);
}

static void on_head(void *owner, int status)
{
    mg_req *r = owner;
    mg_worker *w = r->w;
    r->got_bytes = 1;
    mg_tq_arm(&w->q_up_response, &r->tq, uv_now(&w->loop));
    if (status < 200) {
        mg_proxy__strip_hop(&r->out, 0, 0);
        if (status != 101) r->src->interim(r, status, NULL, 0);
        mg_headers_reset(&r->out);
        return;
    }
    r->status = (uint16_t)status;
    mg_lua_report(&w->lua, r, status, (double)(uv_hrtime() - r->try_start_ns) / 1e9, NULL);
    mg_proxy__passive(r, status >= 500 ? MG_FAIL_STATUS : MG_FAIL_NONE, status, "status 5xx");
    if (!mg_proxy__live(r)) return;
    if (r->hook_flags & 1) {
        r->in_resp_hook = 1;
        mg_lua_on_response(&w->lua, r, 0); /* no waiting on an HTTP/2 upstream yet */
        r->in_resp_hook = 0;
        if (!mg_proxy__live(r)) return;
        status = r->status;
    }
    int64_t length = -1;
    int cl = mg_headers_find_kind(&r->out, MG_HK_CONTENT_LENGTH);
    if (cl >= 0) {
        const char *v = mg_hvalue(&r->out, (uint32_t)cl);
        length = 0;
        for (uint32_t k = 0; k < r->out.h[cl].vlen && length >= 0; k++)
            length = v[k] >= '0' && v[k] <= '9' ? length * 10 + (v[k] - '0') : -1;
    }
    int no_body = r->head_request || status == 204 || status == 304;
    mg_proxy__strip_hop(&r->out, 0, 0);
    r->resp_started = 1;
    r->src->head(r, status, NULL, 0, length, no_body ? MG_RESP_NO_BODY : 0);
}

static void on_data(void *owner, const char *p, size_t n)
{
    mg_req *r = owner;
    if (!mg_proxy__live(r) || !r->h2st) return;
    mg_tq_arm(&r->w->q_up_response, &r->tq, uv_now(&r->w->loop));
    r->bytes_out += n;
    r->resp_sent = 1;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    mg_req_hold(r);
    int rc = r->src->body(r, &b, 1);
    if (rc == 0 && r->h2st)
        mg_h2up_consume(r->h2st, n);
    else if (rc == 1)
        r->h2_unconsumed += (uint32_t)n; /* reopened when the client drains */
    mg_req_release(r);
}

static void on_end(void *owner)
{
    mg_req *r = owner;
    if (r->out.ntrailer_start < r->out.n) mg_proxy__strip_hop(&r->out, r->out.ntrailer_start, 0);
    r->resp_done = 1;
    mg_proxy__detach(r, 1);
    if (!r->resp_started) {
        mg_proxy__fail(r, 502, "HTTP/2 response without a head");
        return;
    }
    mg_proxy__finish(r);
}

static void on_error(void *owner, const char *why, int sent_nothing)
{
    mg_req *r = owner;
    MG_LOG(MG_LOG_WARN, r->w->id, r->conn_id, "upstream %s (HTTP/2): %s", mg_req_target(r)->address,
           why);
    if (!r->got_bytes && !r->resp_started) {
        mg_proxy__retry_or_fail(r, 0, sent_nothing || r->idempotent, why, 0);
        return;
    }
    mg_proxy__fail(r, 502, why);
}

static void on_drained(void *owner)
{
    mg_req *r = owner;
    if (!r->body_done && mg_proxy__live(r)) r->src->resume(r);
}

static const mg_h2up_events h2_events = {
    .field = on_field,
    .head = on_head,
    .data = on_data,
    .end = on_end,
    .error = on_error,
    .drained = on_drained,
};

/* ---- what the proxy calls ------------------------------------------------ */

void mg_proxy__h2_try(mg_req *r, const mg_service *s, const mg_target *t)
{
    fields f = {0};
    nghttp2_nv *nva = request_fields(r, t, &f);
    const char *why = "out of memory";
    mg_h2up_stream *st = NULL;
    if (nva) {
        const char *sni = s->tls_server_name ? s->tls_server_name : t->host;
        st = mg_h2up_request(r->w, t, t->tls ? s->tls_ctx : NULL, sni, nva, f.n, r->has_body, r,
                             &h2_events, &why);
    }
    free(nva);
    fields_free(&f);
    if (!st) {
        atomic_fetch_sub_explicit(&mg_target_inflight[t->uid], 1, memory_order_relaxed);
        mg_proxy__retry_or_fail(r, 1, 1, why, 0);
        return;
    }
    r->h2st = st;
    r->h2_unconsumed = 0;
    mg_tq_arm(&r->w->q_up_response, &r->tq, uv_now(&r->w->loop));
    if (mg_proxy__live(r)) r->src->resume(r); /* the body, if any */
}

void mg_proxy__h2_body(mg_req *r, const char *p, size_t n)
{
    r->body_started = 1;
    int rc = mg_h2up_send(r->h2st, p, n);
    if (rc == 1 && mg_proxy__live(r)) r->src->pause(r); /* until on_drained */
}

void mg_proxy__h2_body_end(mg_req *r)
{
    uint32_t from = r->in.ntrailer_start, k = 0;
    nghttp2_nv nva[32];
    char names[32][64];
    if (from < r->in.n) mg_proxy__strip_hop(&r->in, from, 0);
    for (uint32_t i = from; i < r->in.n && k < 32; i++) {
        size_t nl = r->in.h[i].nlen;
        if (!nl || nl > sizeof(names[0])) continue;
        for (size_t c = 0; c < nl; c++) {
            char ch = mg_hname(&r->in, i)[c];
            names[k][c] = ch >= 'A' && ch <= 'Z' ? (char)(ch | 0x20) : ch;
        }
        nva[k] = (nghttp2_nv){(uint8_t *)names[k], (uint8_t *)mg_hvalue(&r->in, i), nl,
                              r->in.h[i].vlen, NGHTTP2_NV_FLAG_NONE};
        k++;
    }
    mg_h2up_end(r->h2st, nva, k);
}

void mg_proxy__h2_drained(mg_req *r)
{
    if (r->h2_unconsumed && r->h2st) mg_h2up_consume(r->h2st, r->h2_unconsumed);
    r->h2_unconsumed = 0;
}

void mg_proxy__h2_detach(mg_req *r)
{
    mg_h2up_stream *st = r->h2st;
    r->h2st = NULL;
    atomic_fetch_sub_explicit(&mg_target_inflight[mg_req_target(r)->uid], 1, memory_order_relaxed);
    mg_h2up_release(st);
}
