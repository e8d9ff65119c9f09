/* The request functions of ffi.h. They run on the worker thread, inside a
 * call into Lua, for the request in mg_ffi_current (lua_ffi.h). */
#include "lua_ffi.h"
#include "addr.h"
#include "request.h"
#include "worker.h"
#include "uri.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

__thread struct mg_req *mg_ffi_current;
__thread int mg_lua_log_worker = -1;
static __thread char ip_buf[64];

static void url_parts(const mg_req *r, mg_str *path, mg_str *query)
{
    mg_uri u;
    mg_uri_split(r->in.arena.p + r->url_off, r->url_cur_len, &u);
    *path = u.path;
    *query = u.query;
}

int mg_ffi_req_field(int which, const char **p, size_t *len)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    mg_str path, query;
    switch (which) {
    case MG_FIELD_METHOD:
        *p = r->in.arena.p;
        *len = r->method_len;
        return MG_FFI_OK;
    case MG_FIELD_PATH:
    case MG_FIELD_QUERY:
        url_parts(r, &path, &query);
        *p = which == MG_FIELD_PATH ? path.p : query.p;
        *len = which == MG_FIELD_PATH ? path.len : query.len;
        return MG_FFI_OK;
    case MG_FIELD_HOST: {
        /* without the port */
        const char *h = r->host_lc;
        size_t n = strlen(h);
        const char *colon = h[0] == '[' ? strstr(h, "]:") : strchr(h, ':');
        if (colon) n = (size_t)(colon - h) + (h[0] == '[' ? 1 : 0);
        *p = h;
        *len = n;
        return MG_FFI_OK;
    }
    case MG_FIELD_CLIENT_IP: {
        mg_req_client_ip(r, ip_buf, sizeof(ip_buf));
        *p = ip_buf;
        *len = strlen(ip_buf);
        return MG_FFI_OK;
    }
    case MG_FIELD_VERSION:
        *p = r->http_major == 2 ? "2.0" : r->http_minor ? "1.1" : "1.0";
        *len = 3;
        return MG_FFI_OK;
    case MG_FIELD_TARGET:
        *p = r->in.arena.p + r->url_off;
        *len = r->url_cur_len;
        return MG_FFI_OK;
    case MG_FIELD_SCHEME:
        *p = r->secure ? "https" : "http";
        *len = r->secure ? 5 : 4;
        return MG_FFI_OK;
    case MG_FIELD_SNI:
    case MG_FIELD_TLS_VERSION:
    case MG_FIELD_TLS_ALPN:
    case MG_FIELD_TLS_RESUMED: {
        static const int what[] = {MG_TLS_SNI, MG_TLS_VERSION, MG_TLS_ALPN, MG_TLS_RESUMED};
        const char *v = r->src && r->src->tls ? r->src->tls(r, what[which - MG_FIELD_SNI]) : NULL;
        if (!v) return MG_FFI_DECLINED;
        *p = v;
        *len = strlen(v);
        return MG_FFI_OK;
    }
    case MG_FIELD_SERVICE:
        if (r->svc < 0 || !r->snap) return MG_FFI_DECLINED;
        *p = r->snap->services[r->svc].name;
        *len = strlen(*p);
        return MG_FFI_OK;
    }
    return MG_FFI_INVALID;
}

static int headers_get(const mg_headers *h, const char *name, size_t nlen, int nth, const char **v,
                       size_t *vlen)
{
    uint32_t end = h->ntrailer_start < h->n ? h->ntrailer_start : h->n;
    for (uint32_t i = 0; i < end; i++) {
        if (!mg_hname_is(h, i, name, nlen)) continue;
        if (nth-- > 0) continue;
        *v = mg_hvalue(h, i);
        *vlen = h->h[i].vlen;
        return MG_FFI_OK;
    }
    return MG_FFI_DECLINED;
}

static int headers_set(mg_headers *h, const char *name, size_t nlen, const char *v, size_t vlen,
                       int mode)
{
    if (!mg_header_valid(name, nlen, v ? v : "", v ? vlen : 0)) return MG_FFI_INVALID;
    if (mode != 1) {
        uint32_t end = h->ntrailer_start < h->n ? h->ntrailer_start : h->n;
        for (uint32_t i = 0; i < end; i++)
            if (mg_hname_is(h, i, name, nlen)) h->h[i].nlen = 0; /* removed */
    }
    if (mode == 2) return MG_FFI_OK;
    return mg_headers_append(h, name, nlen, v, vlen) ? MG_FFI_NO_MEMORY : MG_FFI_OK;
}

int mg_ffi_req_header(const char *name, size_t nlen, int nth, const char **v, size_t *vlen)
{
    mg_req *r = mg_ffi_current;
    return r ? headers_get(&r->in, name, nlen, nth, v, vlen) : MG_FFI_NO_REQUEST;
}

int mg_ffi_req_header_count(void)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    return (int)(r->in.ntrailer_start < r->in.n ? r->in.ntrailer_start : r->in.n);
}

int mg_ffi_req_header_at(int i, const char **n, size_t *nlen, const char **v, size_t *vlen)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (i < 0 || (uint32_t)i >= r->in.n || !r->in.h[i].nlen) return MG_FFI_DECLINED;
    *n = mg_hname(&r->in, (uint32_t)i);
    *nlen = r->in.h[i].nlen;
    *v = mg_hvalue(&r->in, (uint32_t)i);
    *vlen = r->in.h[i].vlen;
    return MG_FFI_OK;
}

int mg_ffi_req_set_header(const char *name, size_t nlen, const char *v, size_t vlen, int mode)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (r->up) return MG_FFI_WRONG_PHASE; /* only before the request went upstream */
    return headers_set(&r->in, name, nlen, v, vlen, mode);
}

int mg_ffi_req_set_path(const char *p, size_t len)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (r->up) return MG_FFI_WRONG_PHASE;
    if (!len || p[0] != '/') return MG_FFI_INVALID;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f) return MG_FFI_INVALID;
    mg_str path, query;
    url_parts(r, &path, &query);
    int keep_query = !memchr(p, '?', len) && query.len;
    size_t qoff = keep_query ? (size_t)(query.p - r->in.arena.p) : 0, qlen = query.len;
    /* the new target goes to the end of the arena; offsets stay valid */
    size_t off = r->in.arena.len;
    if (mg_buf_reserve(&r->in.arena, len + 1 + qlen)) return MG_FFI_NO_MEMORY;
    char *a = r->in.arena.p;
    memcpy(a + off, p, len);
    r->in.arena.len += len;
    if (keep_query) {
        a[r->in.arena.len++] = '?';
        memcpy(a + r->in.arena.len, a + qoff, qlen);
        r->in.arena.len += qlen;
    }
    r->url_off = (uint32_t)off;
    r->url_cur_len = (uint32_t)(r->in.arena.len - off);
    return MG_FFI_OK;
}

int mg_ffi_req_set_service(const char *name)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (r->up || !r->snap) return MG_FFI_WRONG_PHASE;
    int idx = mg_snapshot_service(r->snap, name);
    if (idx < 0) return MG_FFI_DECLINED;
    r->svc = idx;
    return MG_FFI_OK;
}

int mg_ffi_header_valid(const char *name, size_t nlen, const char *v, size_t vlen)
{
    return mg_header_valid(name, nlen, v, vlen) ? MG_FFI_OK : MG_FFI_INVALID;
}

int mg_ffi_req_set_retries(int retries, double initial_interval)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (r->up || r->target >= 0) return MG_FFI_WRONG_PHASE;
    if (retries < 0 || retries > 10 || !(initial_interval >= 0) || initial_interval > 60)
        return MG_FFI_INVALID;
    r->retries_set = 1;
    r->retries_max = (uint8_t)retries;
    r->backoff_ms = (uint32_t)(initial_interval * 1000.0);
    return MG_FFI_OK;
}

int mg_ffi_req_respond(int status, const char *body, size_t blen, const char *headers, size_t hlen)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (r->resp_started) return MG_FFI_WRONG_PHASE;
    if (status < 200 || status > 999) return MG_FFI_INVALID;
    r->local.len = 0;
    if (mg_buf_append(&r->local, headers, hlen) || mg_buf_append(&r->local, body, blen))
        return MG_FFI_NO_MEMORY;
    r->local_hlen = (uint32_t)hlen;
    r->local_status = (uint16_t)status;
    r->responded = 1;
    return MG_FFI_OK;
}

int mg_ffi_resp_add_header(const char *name, size_t nlen, const char *v, size_t vlen)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (!mg_header_valid(name, nlen, v, vlen)) return MG_FFI_INVALID;
    mg_buf *b = &r->resp_extra;
    if (mg_buf_append(b, name, nlen) || mg_buf_append(b, ": ", 2) || mg_buf_append(b, v, vlen) ||
        mg_buf_append(b, "\r\n", 2))
        return MG_FFI_NO_MEMORY;
    return MG_FFI_OK;
}

int mg_ffi_resp_status(void)
{
    mg_req *r = mg_ffi_current;
    return r ? r->status : MG_FFI_NO_REQUEST;
}

int mg_ffi_resp_filter_body(void)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (!r->in_resp_hook) return MG_FFI_WRONG_PHASE;
    r->body_filter = 1;
    return MG_FFI_OK;
}

int mg_ffi_resp_replace(const char *body, size_t blen, const char *headers, size_t hlen)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (!r->in_resp_hook || r->h2st || !r->up) return MG_FFI_WRONG_PHASE;
    if (r->status == 204 || r->status == 304) return MG_FFI_INVALID; /* answers without a body */
    r->local.len = 0;
    if (mg_buf_append(&r->local, headers, hlen) || mg_buf_append(&r->local, body, blen))
        return MG_FFI_NO_MEMORY;
    r->local_hlen = (uint32_t)hlen;
    r->resp_replaced = 1;
    return MG_FFI_OK;
}

int mg_ffi_resp_set_status(int status)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (!r->in_resp_hook) return MG_FFI_WRONG_PHASE;
    if (status < 200 || status > 999) return MG_FFI_INVALID;
    r->status = (uint16_t)status;
    return MG_FFI_OK;
}

int mg_ffi_resp_header(const char *name, size_t nlen, int nth, const char **v, size_t *vlen)
{
    mg_req *r = mg_ffi_current;
    return r ? headers_get(&r->out, name, nlen, nth, v, vlen) : MG_FFI_NO_REQUEST;
}

int mg_ffi_resp_set_header(const char *name, size_t nlen, const char *v, size_t vlen, int mode)
{
    mg_req *r = mg_ffi_current;
    if (!r) return MG_FFI_NO_REQUEST;
    if (!r->in_resp_hook) return MG_FFI_WRONG_PHASE; /* only in on_response */
    return headers_set(&r->out, name, nlen, v, vlen, mode);
}

void mg_ffi_log(int level, const char *msg, size_t len)
{
    mg_req *r = mg_ffi_current;
    if (level < MG_LOG_DEBUG || level > MG_LOG_ERROR || !mg_log_enabled(level)) return;
    int worker = r ? r->w->id : mg_lua_log_worker;
    mg_log(level, worker, r ? r->conn_id : 0, "%.*s", (int)(len > 1800 ? 1800 : len), msg);
}

double mg_ffi_now(void)
{
    return (double)uv_hrtime() / 1e9;
}
