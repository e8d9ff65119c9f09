/* The relay: route a parsed request, pick a target through the Lua
 * balancer, send the re-serialized head, stream the body both ways with
 * back-pressure, retry where it is safe, and relay the response. */
#include "http.h"
#include "lua_bridge.h"
#include "stats.h"
#include "uri.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSIVE_FAIL_MS 10000 /* a target that refused a connection rests this long */

static llhttp_settings_t resp_settings;
static uv_once_t resp_once = UV_ONCE_INIT;

static const char default_page[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>moongate</title></head>"
    "<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">"
    "<h1>moongate is running</h1><p>No services are configured yet, so there is nothing to "
    "send this request to.</p><p>Add one in a config file and start moongate with "
    "<code>moongate -c moongate.lua</code>:</p><pre>return {\n  listen = \"0.0.0.0:8080\",\n"
    "  services = {\n    api = { targets = { \"127.0.0.1:9001\", \"127.0.0.1:9002\" } },\n"
    "  },\n  routes = {\n    { rule = \"PathPrefix(`/`)\", service = \"api\" },\n  },\n}"
    "</pre><p>See docs/config.md for every key.</p></body></html>\n";

static void proxy_try(mg_req *r);
static void proxy_fail(mg_req *r, int status, const char *why);
static void retry_or_fail(mg_req *r, int mark_down, int safe, const char *what, int err);
static int chunk_line(char out[24], size_t n);

/* ---- helpers -------------------------------------------------------- */

static int client_ip(const mg_conn *c, char *out, size_t len)
{
    if (c->peer.sa.sa_family == AF_INET6) {
        const struct in6_addr *a = &c->peer.in6.sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) return inet_ntop(AF_INET, a->s6_addr + 12, out, len) ? 0 : -1;
        return inet_ntop(AF_INET6, a, out, len) ? 0 : -1;
    }
    return inet_ntop(AF_INET, &c->peer.in.sin_addr, out, len) ? 0 : -1;
}

static inline const char *req_method(const mg_req *r)
{
    return r->in.arena.p;
}

static inline const char *req_url(const mg_req *r)
{
    return r->in.arena.p + r->url_off; /* set_path may have moved it */
}

static inline mg_target *req_target(const mg_req *r)
{
    return &r->snap->services[r->svc].targets[r->target];
}

/* Headers never forwarded as they came: hop-by-hop ones (RFC 9110 7.6.1)
 * and the framing headers, which are re-generated from what was parsed. */
static int is_hop_header(const mg_headers *h, uint32_t i)
{
    static const struct {
        const char *n;
        size_t len;
    } hop[] = {
        {"connection", 10}, {"keep-alive", 10},        {"proxy-connection", 16},
        {"te", 2},          {"transfer-encoding", 17}, {"upgrade", 7},
        {"trailer", 7},     {"content-length", 14},    {"proxy-authorization", 19},
    };
    for (size_t k = 0; k < MG_ARRAY_SIZE(hop); k++)
        if (mg_hname_is(h, i, hop[k].n, hop[k].len)) return 1;
    return 0;
}

/* True if header i is named by a Connection header (and so hop-by-hop). */
static int named_by_connection(const mg_headers *h, uint32_t i)
{
    uint32_t end = h->ntrailer_start < h->n ? h->ntrailer_start : h->n;
    for (uint32_t k = 0; k < end; k++) {
        if (!mg_hname_is(h, k, "connection", 10)) continue;
        if (mg_value_has_token(mg_hvalue(h, k), h->h[k].vlen, mg_hname(h, i), h->h[i].nlen))
            return 1;
    }
    return 0;
}

/* Appends "Name: value\r\n" without printf (this runs on every request). */
static void buf_kv(mg_buf *b, const char *name, size_t nlen, const char *v, size_t vlen)
{
    if (mg_buf_reserve(b, nlen + vlen + 4)) return;
    memcpy(b->p + b->len, name, nlen);
    b->p[b->len + nlen] = ':';
    b->p[b->len + nlen + 1] = ' ';
    memcpy(b->p + b->len + nlen + 2, v, vlen);
    b->p[b->len + nlen + 2 + vlen] = '\r';
    b->p[b->len + nlen + 3 + vlen] = '\n';
    b->len += nlen + vlen + 4;
}
#define BUF_KV(b, lit, v, vlen) buf_kv(b, lit, sizeof(lit) - 1, v, vlen)

static void buf_hdr(mg_buf *b, const mg_headers *h, uint32_t i)
{
    mg_buf_append(b, mg_hname(h, i), h->h[i].nlen);
    mg_buf_append(b, ": ", 2);
    mg_buf_append(b, mg_hvalue(h, i), h->h[i].vlen);
    mg_buf_append(b, "\r\n", 2);
}

/* ---- request head validation and routing ----------------------------- */

/* The current target's path and query (origin-form or "*": prepare_target
 * rewrote an absolute-form target), and the authority it named. */
static void split_url(const mg_req *r, mg_str *path, mg_str *query, mg_str *authority)
{
    mg_uri u;
    mg_uri_split(req_url(r), r->url_cur_len, &u);
    *path = u.path;
    *query = u.query;
    authority->p = r->in.arena.p + r->auth_off;
    authority->len = r->auth_len;
}

/* Validates the request-target and rewrites it, in the arena, to the
 * origin-form the backend gets: an absolute-form target loses its authority
 * (kept in auth_off/auth_len: it replaces Host), an empty path becomes "/"
 * ("*" for OPTIONS), and the path is normalised (dot segments, duplicate
 * slashes, escapes) so that routing and the backend see the same path.
 * Returns 0, or an HTTP status with *why. */
static int prepare_target(mg_req *r, const mg_config *cfg, const char **why)
{
    mg_buf *a = &r->in.arena;
    mg_uri u;
    r->url_off = r->method_len;
    r->url_cur_len = r->url_len;
    if (mg_uri_parse(a->p + r->url_off, r->url_len, r->method == HTTP_OPTIONS, &u, why)) return 400;
    if (u.form == MG_TARGET_ASTERISK) return 0;
    size_t poff = (size_t)(u.path.p - a->p), plen = u.path.len;
    size_t qoff = (size_t)(u.query.p - a->p), qlen = u.query.len;
    int has_query = u.has_query;
    if (u.form == MG_TARGET_ABSOLUTE) {
        r->auth_off = (uint32_t)(u.authority.p - a->p);
        r->auth_len = (uint16_t)(u.authority.len < 65535 ? u.authority.len : 65535);
    }
    int normalize = plen && cfg->normalize_paths && mg_uri_path_needs_normalizing(u.path.p, plen);
    if (u.form != MG_TARGET_ABSOLUTE && !normalize) return 0;
    /* the new target goes after everything in the arena: offsets stay valid */
    if (mg_buf_reserve(a, plen + qlen + 3)) return 500;
    size_t off = a->len;
    char *o = a->p + off;
    size_t n;
    if (!plen) {
        int star = r->method == HTTP_OPTIONS && !has_query;
        o[0] = star ? '*' : '/';
        n = 1;
    } else if (normalize) {
        long k = mg_uri_normalize_path(
            a->p + poff, plen, o, cfg->keep_encoded_slash ? MG_PATH_KEEP_ENCODED_SLASH : 0, why);
        if (k < 0) return 400;
        n = (size_t)k;
    } else {
        memcpy(o, a->p + poff, plen);
        n = plen;
    }
    if (has_query) {
        o[n++] = '?';
        memcpy(o + n, a->p + qoff, qlen);
        n += qlen;
    }
    a->len += n;
    r->url_off = (uint32_t)off;
    r->url_cur_len = (uint32_t)n;
    return 0;
}

static int check_head(mg_req *r, const mg_config *cfg, const char **why)
{
    mg_headers *h = &r->in;
    int nhost = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        if (mg_hname_is(h, i, "host", 4)) {
            nhost++;
            if (mg_uri_check_host(mg_hvalue(h, i), h->h[i].vlen)) {
                *why = "invalid Host header";
                return 400;
            }
        } else if (mg_hname_is(h, i, "transfer-encoding", 17)) {
            /* llhttp accepts "gzip, chunked"; we forward only what we decode. */
            const char *v = mg_hvalue(h, i);
            size_t len = h->h[i].vlen, k = 0;
            while (k < len) {
                while (k < len && (v[k] == ' ' || v[k] == '\t' || v[k] == ','))
                    k++;
                size_t s = k;
                while (k < len && v[k] != ',' && v[k] != ' ' && v[k] != '\t')
                    k++;
                if (k > s && !(k - s == 7 && strncasecmp(v + s, "chunked", 7) == 0)) {
                    *why = "unsupported transfer coding";
                    return 400;
                }
            }
        }
    }
    if (nhost > 1) {
        *why = "more than one Host header";
        return 400;
    }
    if (nhost == 0 && r->http_minor >= 1) {
        *why = "missing Host header";
        return 400;
    }
    if (r->method == HTTP_CONNECT) {
        *why = "CONNECT is not supported";
        return 405;
    }
    return prepare_target(r, cfg, why);
}

static int route(mg_req *r, mg_worker *w)
{
    mg_headers *h = &r->in;
    if (w->hdr_view_cap < h->n) {
        mg_hdr *nv = realloc(w->hdr_view, h->n * sizeof(*nv));
        if (!nv) return -1;
        w->hdr_view = nv;
        w->hdr_view_cap = h->n;
    }
    mg_str host = {"", 0}, authority;
    for (uint32_t i = 0; i < h->n; i++) {
        w->hdr_view[i].name = mg_hname(h, i);
        w->hdr_view[i].name_len = h->h[i].nlen;
        w->hdr_view[i].value = mg_hvalue(h, i);
        w->hdr_view[i].value_len = h->h[i].vlen;
        if (!host.len && mg_hname_is(h, i, "host", 4)) {
            host.p = mg_hvalue(h, i);
            host.len = h->h[i].vlen;
        }
    }
    mg_route_input in;
    split_url(r, &in.path, &in.query, &authority);
    if (authority.len) host = authority;
    if (in.path.len == 1 && in.path.p[0] == '*') in.path.p = "/"; /* OPTIONS *: the whole server */
    in.method.p = req_method(r);
    in.method.len = r->method_len;
    in.host = host;
    in.headers = w->hdr_view;
    in.nheaders = h->n;
    in.client = &r->c->peer.sa;
    size_t hl = host.len < sizeof(r->host_lc) - 1 ? host.len : sizeof(r->host_lc) - 1;
    memcpy(r->host_lc, host.p, hl);
    r->host_lc[hl] = 0;
    return mg_router_match(r->snap->router, &in);
}

/* Serializes the request head for the upstream once; retries resend it. */
static void build_upstream_head(mg_req *r)
{
    mg_buf *b = &r->uhead;
    mg_headers *h = &r->in;
    mg_conn *c = r->c;
    mg_str path, query, authority;
    split_url(r, &path, &query, &authority);
    b->len = 0;
    mg_buf_append(b, req_method(r), r->method_len);
    mg_buf_append(b, " ", 1);
    mg_buf_append(b, req_url(r), r->url_cur_len); /* origin-form or "*" */
    mg_buf_append(b, " HTTP/1.1\r\n", 11);
    int xff = -1, xfp = -1, xfh = -1, has_host = 0;
    uint32_t end = h->ntrailer_start < h->n ? h->ntrailer_start : h->n;
    int has_conn = mg_headers_find(h, "connection", 10) >= 0;
    for (uint32_t i = 0; i < end; i++) {
        if (!h->h[i].nlen) continue; /* removed by a plugin */
        if (is_hop_header(h, i) || (has_conn && named_by_connection(h, i))) continue;
        if (mg_hname_is(h, i, "x-forwarded-for", 15)) {
            if (xff < 0) xff = (int)i;
            continue;
        }
        if (mg_hname_is(h, i, "x-forwarded-proto", 17)) {
            if (xfp < 0) xfp = (int)i;
            continue;
        }
        if (mg_hname_is(h, i, "x-forwarded-host", 16)) {
            if (xfh < 0) xfh = (int)i;
            continue;
        }
        if (mg_hname_is(h, i, "x-real-ip", 9)) continue;
        if (mg_hname_is(h, i, "host", 4)) {
            has_host = 1;
            if (authority.len) {
                BUF_KV(b, "Host", authority.p, authority.len);
                continue;
            }
        }
        buf_hdr(b, h, i);
    }
    if (!has_host) {
        if (authority.len)
            BUF_KV(b, "Host", authority.p, authority.len);
        else {
            const char *a = r->snap->services[r->svc].targets[0].address;
            BUF_KV(b, "Host", a, strlen(a));
        }
    }
    char ip[INET6_ADDRSTRLEN] = "";
    client_ip(c, ip, sizeof(ip));
    /* X-Forwarded-* from an untrusted peer are replaced, never extended. */
    if (c->trusted && xff >= 0)
        mg_buf_printf(b, "X-Forwarded-For: %.*s, %s\r\n", (int)h->h[xff].vlen, mg_hvalue(h, xff),
                      ip); /* rare: only behind a trusted proxy */
    else
        BUF_KV(b, "X-Forwarded-For", ip, strlen(ip));
    if (c->trusted && xfp >= 0)
        buf_hdr(b, h, (uint32_t)xfp);
    else
        mg_buf_append(b, "X-Forwarded-Proto: http\r\n", 25);
    if (c->trusted && xfh >= 0)
        buf_hdr(b, h, (uint32_t)xfh);
    else if (r->host_lc[0])
        BUF_KV(b, "X-Forwarded-Host", r->host_lc, strlen(r->host_lc));
    BUF_KV(b, "X-Real-IP", ip, strlen(ip));
    if (r->body_chunked)
        mg_buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
    else if (r->c->parser.flags & F_CONTENT_LENGTH) {
        char num[24];
        int l = snprintf(num, sizeof(num), "%llu", (unsigned long long)r->c->parser.content_length);
        BUF_KV(b, "Content-Length", num, (size_t)l);
    }
    if (r->upgrade) {
        int u = mg_headers_find(h, "upgrade", 7);
        mg_buf_append(b, "Connection: upgrade\r\n", 21);
        if (u >= 0) buf_hdr(b, h, (uint32_t)u);
    }
    mg_buf_append(b, "\r\n", 2);
}

/* ---- entry point from http_conn.c ----------------------------------- */

void mg_proxy_start(mg_conn *c)
{
    mg_req *r = c->req;
    mg_worker *w = c->w;
    const char *why = NULL;
    int bad = check_head(r, w->cfg, &why);
    if (bad) {
        MG_LOG(MG_LOG_INFO, w->id, c->id, "rejected request: %s", why);
        char body[128];
        snprintf(body, sizeof(body), "%s\n", why);
        mg_conn_respond(c, bad, body, 1);
        return;
    }
    r->head_request = r->method == HTTP_HEAD;
    r->idempotent = r->method == HTTP_GET || r->method == HTTP_HEAD || r->method == HTTP_OPTIONS ||
                    r->method == HTTP_PUT || r->method == HTTP_DELETE || r->method == HTTP_TRACE;
    if (r->has_body && !r->body_chunked) mg_tq_arm(&w->q_client_io, &c->tq, uv_now(&w->loop));
    r->snap = w->snap;
    mg_snapshot_ref(r->snap);
    if (r->snap->nservices == 0) {
        /* an unconfigured gateway says how to configure it */
        mg_conn_respond(c, 503, default_page, r->has_body);
        return;
    }
    int ri = route(r, w);
    if (ri < 0) {
        mg_conn_respond(c, 404, "no route matches this request\n", r->has_body);
        return;
    }
    r->route = ri;
    r->svc = r->snap->route_service[ri];
    if (r->method == HTTP_TRACE && !(r->snap->route_flags[ri] & MG_ROUTE_ALLOW_TRACE)) {
        /* TRACE echoes credentials back (cross-site tracing): off by default */
        MG_LOG(MG_LOG_INFO, w->id, c->id, "rejected request: TRACE is not allowed on this route");
        mg_conn_respond(c, 405, "TRACE is not allowed on this route\n", r->has_body);
        return;
    }
    if (r->snap->route_hooks[ri]) {
        r->hooks = 1;
        if (mg_lua_on_request(&w->lua, r)) {
            if (c->state == MG_C_CLOSING) return;
            mg_conn_respond(c, 500, "Internal Server Error: a plugin failed\n", r->has_body);
            return;
        }
        if (c->state == MG_C_CLOSING) return;
        if (r->responded) {
            mg_conn_respond_full(c, r->local_status, r->local.p, r->local_hlen,
                                 r->local.p + r->local_hlen, r->local.len - r->local_hlen,
                                 r->has_body);
            return;
        }
    }
    build_upstream_head(r);
    proxy_try(r);
}

/* ---- passive health --------------------------------------------------- */

static void passive_outcome(mg_req *r, int failed, const char *what)
{
    const mg_service *s = &r->snap->services[r->svc];
    if (!s->passive_failures || r->target < 0) return;
    const mg_target *t = &s->targets[r->target];
    uint64_t now = uv_hrtime() / 1000000;
    if (mg_passive_record(t->suid, failed, s->passive_failures, s->passive_cooldown_ms, now))
        MG_LOG(MG_LOG_WARN, r->c->w->id, r->c->id,
               "service %s: target %s ejected after %d consecutive failures (last: %s)", s->name,
               t->address, s->passive_failures, what);
}

/* ---- picking a target ----------------------------------------------- */

static int was_tried(const mg_req *r, int idx)
{
    for (int i = 0; i < r->tries; i++)
        if (r->tried[i] == idx) return 1;
    return 0;
}

/* Round robin over untried targets: the fallback when a balancer fails. */
static int fallback_pick(mg_req *r, mg_worker *w, const int *excl, int nexcl)
{
    const mg_service *s = &r->snap->services[r->svc];
    for (int k = 0; k < s->ntargets; k++) {
        int idx = (int)(w->rr_fallback++ % (uint32_t)s->ntargets);
        int skip = 0;
        for (int i = 0; i < nexcl; i++)
            if (excl[i] == idx) skip = 1;
        if (!skip) return idx;
    }
    return -1;
}

/* Asks the balancer for a target, skipping targets that failed recently
 * unless every untried target has (panic mode: try them anyway). */
static int pick_target(mg_req *r)
{
    mg_worker *w = r->c->w;
    const mg_service *s = &r->snap->services[r->svc];
    int excl[64];
    int nexcl = 0;
    for (int i = 0; i < r->tries && nexcl < 64; i++)
        excl[nexcl++] = r->tried[i];
    int base = nexcl;
    uint64_t now = uv_now(&w->loop);
    for (int attempt = 0; attempt <= s->ntargets; attempt++) {
        int idx = mg_lua_pick(&w->lua, r, excl, nexcl);
        if (idx == -2 || (idx >= 0 && (idx >= s->ntargets || was_tried(r, idx)))) {
            if (idx >= 0)
                MG_LOG(MG_LOG_WARN, w->id, r->c->id,
                       "balancer %s returned a target already tried; using round robin",
                       s->balancer);
            idx = fallback_pick(r, w, excl, nexcl);
        }
        if (idx < 0) break;
        uint32_t uid = s->targets[idx].uid;
        if (((uid < w->npools && w->down_until[uid] > now) ||
             mg_health_get(s->targets[idx].suid) == MG_HEALTH_DOWN ||
             (s->passive_failures &&
              mg_passive_ejected(s->targets[idx].suid, uv_hrtime() / 1000000))) &&
            nexcl < 64) {
            excl[nexcl++] = idx; /* failed a check or resting: try the others first */
            continue;
        }
        return idx;
    }
    if (nexcl > base) {
        /* every untried target is resting: panic mode, try them anyway */
        MG_LOG(MG_LOG_WARN, w->id, r->c->id,
               "service %s: every target failed recently; trying them anyway", s->name);
        int idx = mg_lua_pick(&w->lua, r, excl, base);
        if (idx < 0 || idx >= s->ntargets || was_tried(r, idx))
            idx = fallback_pick(r, w, excl, base);
        return idx;
    }
    return -1;
}

static void send_head(mg_req *r)
{
    mg_upconn *u = r->up;
    uv_buf_t b = uv_buf_init(r->uhead.p, (unsigned)r->uhead.len);
    if (mg_up_send(u, &b, 1) < 0) {
        /* the write failed at once: treat like a reset before any response */
        mg_proxy_up_error(r, UV_EPIPE, "write");
        return;
    }
    mg_worker *w = r->c->w;
    mg_tq_arm(&w->q_up_response, &u->tq, uv_now(&w->loop));
    if (r->c->state == MG_C_WAIT) r->c->state = r->body_done ? MG_C_RESP : MG_C_BODY;
    mg_conn_resume(r->c); /* stream the body, if any */
}

static void proxy_try(mg_req *r)
{
    mg_conn *c = r->c;
    mg_worker *w = c->w;
    const mg_service *s = &r->snap->services[r->svc];
    if (s->ntargets == 0) {
        proxy_fail(r, 503, "service has no targets");
        return;
    }
    int idx = pick_target(r);
    if (idx < 0) {
        proxy_fail(r, 502, "no target left to try");
        return;
    }
    r->target = idx;
    r->try_start_ns = uv_hrtime();
    if (r->tries < (int)MG_ARRAY_SIZE(r->tried)) r->tried[r->tries] = idx;
    r->tries++;
    const mg_target *t = &s->targets[idx];
    if (r->upstreams.len) mg_buf_append(&r->upstreams, ",", 1);
    /* a discovered target is logged by name too: "web-1@172.18.0.3:80" */
    if (strcmp(t->id, t->address) != 0) {
        mg_buf_append(&r->upstreams, t->id, strlen(t->id));
        mg_buf_append(&r->upstreams, "@", 1);
    }
    mg_buf_append(&r->upstreams, t->address, strlen(t->address));
    atomic_fetch_add_explicit(&mg_target_inflight[t->uid], 1, memory_order_relaxed);
    mg_upconn *u = mg_up_get(w, t, r);
    if (!u) {
        atomic_fetch_sub_explicit(&mg_target_inflight[t->uid], 1, memory_order_relaxed);
        retry_or_fail(r, 1, 1, "cannot connect", 0);
        return;
    }
    r->up = u;
    if (u->state == MG_U_ACTIVE) send_head(r);
}

static void detach_upstream(mg_req *r, int reusable)
{
    mg_upconn *u = r->up;
    if (!u) return;
    r->up = NULL;
    u->req = NULL;
    atomic_fetch_sub_explicit(&mg_target_inflight[u->uid], 1, memory_order_relaxed);
    u->reusable = (uint8_t)reusable;
    if (reusable)
        mg_up_release(u);
    else
        mg_up_close(u);
}

/* Ends a request that got no response from upstream. */
static void proxy_fail(mg_req *r, int status, const char *why)
{
    mg_conn *c = r->c;
    detach_upstream(r, 0);
    if (r->resp_started && r->head_pending) {
        /* the head was held back and nothing went out: an honest 502 is
         * still possible */
        r->resp_started = 0;
        r->head_pending = 0;
    }
    if (r->resp_started) {
        /* a response is half sent: the only honest signal left is closing */
        MG_LOG(MG_LOG_WARN, c->w->id, c->id, "upstream failed mid-response: %s", why);
        mg_conn_close(c);
        return;
    }
    char body[160];
    snprintf(body, sizeof(body), "%s: %s\n", mg_status_reason(status), why);
    mg_conn_respond(c, status, body, !r->body_done);
}

/* Decides between another try and an error, after a failure with nothing
 * of the response received. */
static void retry_or_fail(mg_req *r, int mark_down, int safe, const char *what, int err)
{
    mg_conn *c = r->c;
    mg_worker *w = c->w;
    const mg_target *t = req_target(r);
    mg_lua_report(&w->lua, r, 0, (double)(uv_hrtime() - r->try_start_ns) / 1e9,
                  mark_down ? "connect" : "reset");
    mg_target_stats *ts = mg_target_stats_of(t->suid);
    if (ts) atomic_fetch_add_explicit(&ts->connect_errors, 1, memory_order_relaxed);
    passive_outcome(r, 1, what);
    if (mark_down && t->uid < w->npools) w->down_until[t->uid] = uv_now(&w->loop) + PASSIVE_FAIL_MS;
    detach_upstream(r, 0);
    const mg_service *s = &r->snap->services[r->svc];
    int can = safe && r->tries <= w->cfg->retries && !r->body_started && !r->resp_started;
    MG_LOG(MG_LOG_WARN, w->id, c->id, "upstream %s (service %s): %s %s%s", t->address, s->name,
           what, err ? uv_strerror(err) : "", can ? ", trying another target" : "");
    if (can) {
        if (ts) atomic_fetch_add_explicit(&ts->retries, 1, memory_order_relaxed);
        if (c->state == MG_C_BODY) c->state = MG_C_WAIT;
        proxy_try(r);
    } else {
        proxy_fail(r, 502, what);
    }
}

/* ---- upstream events ------------------------------------------------ */

void mg_proxy_up_connected(mg_req *r, int status)
{
    if (status < 0) {
        retry_or_fail(r, 1, 1, "connect failed:", status);
        return;
    }
    send_head(r);
}

void mg_proxy_up_timeout(mg_req *r, int connecting)
{
    if (connecting) {
        retry_or_fail(r, 1, 1, "connect timed out", 0);
        return;
    }
    mg_lua_report(&r->c->w->lua, r, 0, (double)(uv_hrtime() - r->try_start_ns) / 1e9, "timeout");
    mg_target_stats *ts = mg_target_stats_of(req_target(r)->suid);
    if (ts) atomic_fetch_add_explicit(&ts->timeouts, 1, memory_order_relaxed);
    passive_outcome(r, 1, "timeout");
    /* No retry after a response timeout: it would multiply the wait. */
    MG_LOG(MG_LOG_WARN, r->c->w->id, r->c->id,
           "upstream %s: no response in time (request body %s, %zu bytes queued upstream)",
           req_target(r)->address, r->body_done ? "sent" : "incomplete",
           r->up ? r->up->tcp.write_queue_size : 0);
    MG_LOG(MG_LOG_DEBUG, r->c->w->id, r->c->id, "client state %d reading %d blocked %d pend %u",
           r->c->state, r->c->reading, r->c->blocked, r->c->pend_len);
    proxy_fail(r, 504, "upstream did not answer in time");
}

void mg_proxy_up_error(mg_req *r, int err, const char *what)
{
    mg_upconn *u = r->up;
    if (u && !u->got_bytes && !r->resp_started) {
        /* Nothing came back. A reused keep-alive connection that the backend
         * had closed is retried for any method; a fresh one only for
         * idempotent requests. */
        int safe = u->reused || r->idempotent;
        retry_or_fail(r, !u->reused, safe, "connection lost before a response:", err);
        return;
    }
    MG_LOG(MG_LOG_WARN, r->c->w->id, r->c->id, "upstream %s: %s %s", req_target(r)->address, what,
           uv_strerror(err));
    proxy_fail(r, 502, "upstream connection failed");
}

void mg_proxy_up_drained(mg_req *r)
{
    if (r->c->state == MG_C_BODY) mg_conn_read_start(r->c);
}

void mg_proxy_client_drained(mg_req *r)
{
    if (r->up && r->up->state == MG_U_ACTIVE) mg_up_read_start(r->up);
}

void mg_proxy_client_gone(mg_req *r)
{
    if (r->up) {
        MG_LOG(MG_LOG_DEBUG, r->c->w->id, r->c->id, "client gone: closing its upstream connection");
        detach_upstream(r, 0);
    }
}

/* ---- request body --------------------------------------------------- */

static void up_send_checked(mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    mg_upconn *u = r->up;
    if (!u || u->state != MG_U_ACTIVE) return;
    int rc = mg_up_send(u, bufs, n);
    if (rc < 0) return;                   /* the read side reports the failure */
    if (rc == 1) mg_conn_read_stop(r->c); /* back-pressure until it drains */
}

void mg_proxy_body(mg_req *r, const char *p, size_t n)
{
    if (!n || !r->up) return;
    r->body_started = 1;
    if (r->body_chunked) {
        char line[24];
        int l = chunk_line(line, n);
        uv_buf_t b[3] = {uv_buf_init(line, (unsigned)l), uv_buf_init((char *)p, (unsigned)n),
                         uv_buf_init("\r\n", 2)};
        up_send_checked(r, b, 3);
    } else {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        up_send_checked(r, &b, 1);
    }
}

void mg_proxy_body_done(mg_req *r)
{
    mg_conn *c = r->c;
    if (r->body_chunked && r->up) {
        mg_buf *b = &c->w->scratch;
        b->len = 0;
        mg_buf_append(b, "0\r\n", 3);
        for (uint32_t i = r->in.ntrailer_start; i < r->in.n; i++)
            if (r->in.h[i].nlen && !is_hop_header(&r->in, i)) buf_hdr(b, &r->in, i);
        mg_buf_append(b, "\r\n", 2);
        uv_buf_t buf = uv_buf_init(b->p, (unsigned)b->len);
        up_send_checked(r, &buf, 1);
    }
    if (c->state == MG_C_BODY || c->state == MG_C_WAIT) c->state = MG_C_RESP;
    if (r->resp_done) {
        /* the backend answered before the body ended */
        mg_conn_request_done(c);
    }
}

/* ---- tunnel (101 Switching Protocols) -------------------------------- */

void mg_proxy_tunnel_client_data(mg_req *r, const char *p, size_t n)
{
    if (!r || !r->up) return;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    up_send_checked(r, &b, 1);
}

static void start_tunnel(mg_req *r, const char *rest, size_t nrest)
{
    mg_conn *c = r->c;
    c->state = MG_C_TUNNEL;
    mg_tq_remove(&c->tq);
    mg_tq_remove(&r->up->tq);
    r->resp_done = 1;
    if (nrest) {
        uv_buf_t b = uv_buf_init((char *)rest, (unsigned)nrest);
        mg_conn_write(c, &b, 1);
    }
    if (c->pend_len) {
        uv_buf_t b = uv_buf_init(c->pend, c->pend_len);
        up_send_checked(r, &b, 1);
        c->pend_len = 0;
    }
    mg_conn_read_start(c);
}

/* ---- response ------------------------------------------------------- */

static int resp_message_begin(llhttp_t *p)
{
    mg_upconn *u = p->data;
    if (!u->req) return HPE_USER; /* detached: the client went away */
    mg_req *r = u->req;
    mg_headers_reset(&r->out);
    r->in_trailers = 0;
    r->reason_len = 0;
    return 0;
}

/* The reason phrase, kept when it is short and plain (VCHAR and spaces):
 * a client sees the backend's "201 Created", never a made-up text. */
static int resp_status(llhttp_t *p, const char *at, size_t n)
{
    mg_upconn *u = p->data;
    if (!u->req) return HPE_USER;
    mg_req *r = u->req;
    size_t have = r->reason_len;
    if (have == 0xff) return 0; /* already unusable */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)at[i];
        if (have >= sizeof(r->reason) || ch < 0x20 || ch >= 0x7f) {
            r->reason_len = 0xff;
            return 0;
        }
        r->reason[have++] = (char)ch;
    }
    r->reason_len = (uint8_t)have;
    return 0;
}

/* A response head piece: checks the size limit (twice the request limit)
 * and hands it to add (mg_headers_field or mg_headers_value). */
static int resp_head_piece(llhttp_t *p, const char *at, size_t n,
                           int (*add)(mg_headers *, const char *, size_t))
{
    mg_upconn *u = p->data;
    if (!u->req) return HPE_USER; /* detached: the client went away */
    mg_req *r = u->req;
    if (r->out.arena.len + n > r->c->w->cfg->max_header_size * 2) {
        llhttp_set_error_reason(p, "response head too large");
        return HPE_USER;
    }
    return add(&r->out, at, n) ? HPE_USER : 0;
}

static int resp_header_field(llhttp_t *p, const char *at, size_t n)
{
    return resp_head_piece(p, at, n, mg_headers_field);
}

static int resp_header_value(llhttp_t *p, const char *at, size_t n)
{
    return resp_head_piece(p, at, n, mg_headers_value);
}

static int resp_header_value_complete(llhttp_t *p)
{
    mg_upconn *u = p->data;
    if (!u->req) return HPE_USER; /* detached: the client went away */
    mg_req *r = u->req;
    if (r->in_trailers && r->out.ntrailer_start == UINT32_MAX) r->out.ntrailer_start = r->out.n;
    mg_headers_value_done(&r->out);
    uint32_t i = r->out.n - 1;
    if (!mg_header_valid(mg_hname(&r->out, i), r->out.h[i].nlen, mg_hvalue(&r->out, i),
                         r->out.h[i].vlen)) {
        llhttp_set_error_reason(p, "invalid header name or value");
        return HPE_USER;
    }
    return 0;
}

/* Formats n as a chunk-size line ("1f4\r\n"); returns its length. */
static int chunk_line(char out[24], size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[20];
    int k = 0, len = 0;
    do {
        tmp[k++] = hex[n & 15];
        n >>= 4;
    } while (n);
    while (k)
        out[len++] = tmp[--k];
    out[len++] = '\r';
    out[len++] = '\n';
    return len;
}

/* Sends bufs to the client, preceded by the response head while it is held
 * back: a final head waits for the first body bytes, so that head and body
 * leave in one writev (one system call per response instead of two). */
static void client_send(mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    uv_buf_t all[6];
    unsigned k = 0;
    if (r->head_pending) {
        all[k++] = uv_buf_init(r->uhead.p, (unsigned)r->uhead.len);
        r->head_pending = 0;
    }
    for (unsigned i = 0; i < n && k < 6; i++)
        all[k++] = bufs[i];
    if (k) mg_conn_write(r->c, all, k);
}

static void write_response_head(mg_req *r, int status, int interim)
{
    mg_conn *c = r->c;
    /* No retry is possible once a response arrived, so the upstream head's
     * buffer is free to hold the client head. */
    mg_buf *b = &r->uhead;
    mg_headers *h = &r->out;
    b->len = 0;
    {
        /* status line without printf: "HTTP/1.1 200 OK\r\n"; the backend's
         * own reason phrase when it gave a usable one */
        int own = r->reason_len && r->reason_len != 0xff;
        const char *reason = own ? r->reason : mg_status_reason(status);
        size_t rl = own ? r->reason_len : strlen(reason);
        if (mg_buf_reserve(b, 15 + rl)) return;
        char *o = b->p + b->len;
        memcpy(o, "HTTP/1.1 ", 9);
        if (!r->http_minor) o[7] = '0';
        o[9] = (char)('0' + status / 100 % 10);
        o[10] = (char)('0' + status / 10 % 10);
        o[11] = (char)('0' + status % 10);
        o[12] = ' ';
        memcpy(o + 13, reason, rl);
        o[13 + rl] = '\r';
        o[14 + rl] = '\n';
        b->len += 15 + rl;
    }
    int has_conn = mg_headers_find(h, "connection", 10) >= 0;
    for (uint32_t i = 0; i < h->n; i++) {
        if (!h->h[i].nlen) continue; /* removed by a plugin */
        if (mg_hname_is(h, i, "content-length", 14)) {
            if (!r->resp_chunked && !r->resp_close_delimited) buf_hdr(b, h, i);
            continue;
        }
        if (is_hop_header(h, i) || (has_conn && named_by_connection(h, i))) continue;
        buf_hdr(b, h, i);
    }
    if (status == 101) {
        int up = mg_headers_find(h, "upgrade", 7);
        mg_buf_append(b, "Connection: upgrade\r\n", 21);
        if (up >= 0) buf_hdr(b, h, (uint32_t)up);
    } else if (!interim) {
        if (r->resp_extra.len) mg_buf_append(b, r->resp_extra.p, r->resp_extra.len);
        if (r->resp_chunked && r->http_minor)
            mg_buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
        if (c->close_after)
            mg_buf_append(b, "Connection: close\r\n", 19);
        else if (!r->http_minor)
            mg_buf_append(b, "Connection: keep-alive\r\n", 24);
    }
    mg_buf_append(b, "\r\n", 2);
    if (interim || status == 101) {
        uv_buf_t buf = uv_buf_init(b->p, (unsigned)b->len);
        mg_conn_write(c, &buf, 1);
    } else {
        r->head_pending = 1;
    }
}

/* The end of a response head: framing checks that need the parser's
 * flags, then a pause, so the head is handled outside llhttp (Lua hooks
 * run there) and the head's bytes are known for the CR/LF check. */
static int resp_headers_complete(llhttp_t *p)
{
    mg_upconn *u = p->data;
    if (!u->req) return HPE_USER; /* detached: the client went away */
    mg_req *r = u->req;
    int status = p->status_code;
    if (p->http_major != 1) {
        llhttp_set_error_reason(p, "unsupported HTTP version");
        return HPE_USER;
    }
    if (r->in_trailers) return 0;
    if (status >= 100 && status < 200 && status != 101) {
        /* RFC 9110 8.6, 15.2: an interim response has no content */
        if (p->flags & (F_CHUNKED | F_CONTENT_LENGTH | F_TRANSFER_ENCODING)) {
            llhttp_set_error_reason(p, "a 1xx response with a body or framing headers");
            return HPE_USER;
        }
        p->flags |= F_SKIPBODY;
    } else if (status == 101) {
        if (!r->upgrade) {
            llhttp_set_error_reason(p, "101 without an upgrade request");
            return HPE_USER;
        }
    } else if (r->head_request || status == 204 || status == 304) {
        p->flags |= F_SKIPBODY; /* what returning 1 would say, kept across the pause */
    }
    u->head_paused = 1;
    return HPE_PAUSED;
}

/* A response head was parsed (the parser is paused at its end): relay an
 * interim one, or run the response hooks and prepare the final head, which
 * waits for the first body bytes (client_send). Returns 0, or -1 when the
 * request is gone (the client closed during a hook). */
static int response_head(mg_req *r, mg_upconn *u)
{
    llhttp_t *p = &u->parser;
    mg_conn *c = r->c;
    int status = p->status_code;
    mg_tq_arm(&c->w->q_up_response, &u->tq, uv_now(&c->w->loop));
    if (status >= 100 && status < 200 && status != 101) {
        /* interim response: relayed to HTTP/1.1 clients, then wait for more */
        r->resp_interim = 1;
        if (r->http_minor) write_response_head(r, status, 1);
        mg_h1check_head(&u->check, 1); /* the next head follows at once */
        return 0;
    }
    r->resp_interim = 0;
    if (status == 101) {
        r->status = 101;
        r->resp_started = 1;
        write_response_head(r, 101, 0);
        return 0;
    }
    r->status = (uint16_t)status;
    mg_lua_report(&c->w->lua, r, status, (double)(uv_hrtime() - r->try_start_ns) / 1e9, NULL);
    passive_outcome(r, status >= 500, "status 5xx");
    if (u->req != r) return -1;
    if (r->hook_flags & 1) {
        r->in_resp_hook = 1;
        mg_lua_on_response(&c->w->lua, r);
        r->in_resp_hook = 0;
        if (u->req != r) return -1;
        if (r->status != status) r->reason_len = 0; /* a hook changed it */
        status = r->status;
    }
    int no_body = r->head_request || status == 204 || status == 304;
    int has_cl = (p->flags & F_CONTENT_LENGTH) != 0;
    int chunked = (p->flags & F_CHUNKED) != 0;
    if (r->upgrade) c->close_after = 1; /* refused upgrade: the client's stream is not HTTP */
    if (!no_body && !has_cl) {
        /* chunked, or delimited by the backend closing: re-frame as chunked
         * for HTTP/1.1 clients; HTTP/1.0 clients read until we close */
        r->resp_chunked = 1;
        r->resp_close_delimited = !chunked;
        if (!r->http_minor) c->close_after = 1;
    }
    if (chunked && !(p->flags & F_SKIPBODY)) mg_h1check_chunked(&u->check, 1);
    if (!r->http_minor && !r->client_keepalive) c->close_after = 1;
    if (c->w->stopping) c->close_after = 1;
    r->resp_started = 1;
    write_response_head(r, status, 0);
    if (!r->http_minor) r->resp_chunked = 0; /* raw bytes to a 1.0 client */
    return 0;
}

static int resp_body(llhttp_t *p, const char *at, size_t n)
{
    mg_upconn *u = p->data;
    if (!u->req) return HPE_USER; /* detached: the client went away */
    mg_req *r = u->req;
    mg_conn *c = r->c;
    r->bytes_out += n;
    if (r->resp_chunked) {
        char line[24];
        int l = chunk_line(line, n);
        uv_buf_t b[3] = {uv_buf_init(line, (unsigned)l), uv_buf_init((char *)at, (unsigned)n),
                         uv_buf_init("\r\n", 2)};
        client_send(r, b, 3);
    } else {
        uv_buf_t b = uv_buf_init((char *)at, (unsigned)n);
        client_send(r, &b, 1);
    }
    if (u->req && c->tcp.write_queue_size) mg_up_read_stop(u); /* back-pressure */
    return 0;
}

static int resp_chunk_header(llhttp_t *p)
{
    mg_upconn *u = p->data;
    if (!u->req) return HPE_USER; /* detached: the client went away */
    if (p->content_length == 0) u->req->in_trailers = 1;
    return 0;
}

static int resp_message_complete(llhttp_t *p)
{
    mg_upconn *u = p->data;
    if (!u->req) return HPE_USER; /* detached: the client went away */
    mg_req *r = u->req;
    if (r->resp_interim) {
        r->resp_interim = 0;
        mg_headers_reset(&r->out);
        return 0;
    }
    if (r->status == 101) return 0; /* llhttp then returns HPE_PAUSED_UPGRADE */
    if (r->resp_chunked && r->http_minor) {
        mg_buf *b = &r->c->w->scratch;
        b->len = 0;
        mg_buf_append(b, "0\r\n", 3);
        for (uint32_t i = r->out.ntrailer_start; i < r->out.n; i++)
            if (r->out.h[i].nlen && !is_hop_header(&r->out, i)) buf_hdr(b, &r->out, i);
        mg_buf_append(b, "\r\n", 2);
        uv_buf_t buf = uv_buf_init(b->p, (unsigned)b->len);
        client_send(r, &buf, 1);
    } else {
        client_send(r, NULL, 0);
    }
    if (!u->req) return HPE_USER; /* the write failed and closed the client */
    r->resp_done = 1;
    u->reusable = llhttp_should_keep_alive(p) && !r->resp_close_delimited && r->body_done;
    return HPE_PAUSED; /* anything after the response is not ours to parse */
}

static void resp_settings_init(void)
{
    llhttp_settings_init(&resp_settings);
    resp_settings.on_message_begin = resp_message_begin;
    resp_settings.on_status = resp_status;
    resp_settings.on_header_field = resp_header_field;
    resp_settings.on_header_value = resp_header_value;
    resp_settings.on_header_value_complete = resp_header_value_complete;
    resp_settings.on_headers_complete = resp_headers_complete;
    resp_settings.on_body = resp_body;
    resp_settings.on_chunk_header = resp_chunk_header;
    resp_settings.on_message_complete = resp_message_complete;
}

void mg_proxy_init_parser(mg_upconn *u)
{
    uv_once(&resp_once, resp_settings_init);
    llhttp_init(&u->parser, HTTP_RESPONSE, &resp_settings);
    u->parser.data = u;
}

static void response_finished(mg_req *r, int extra_bytes)
{
    mg_conn *c = r->c;
    mg_upconn *u = r->up;
    detach_upstream(r, u && u->reusable && !extra_bytes);
    if (r->body_done) {
        mg_conn_request_done(c);
    } else {
        /* the backend answered before the request body ended: the rest of
         * the body is unread, so this connection cannot carry another */
        c->close_after = 1;
        mg_conn_request_done(c);
    }
}

static void invalid_response(mg_req *r, const char *why)
{
    MG_LOG(MG_LOG_WARN, r->c->w->id, r->c->id, "invalid response from %s: %s",
           req_target(r)->address, why ? why : "framing error");
    proxy_fail(r, 502, "invalid response from upstream");
}

void mg_proxy_up_data(mg_upconn *u, const char *p, size_t n)
{
    mg_req *r = u->req;
    if (r->c->state == MG_C_TUNNEL) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        mg_conn_write(r->c, &b, 1);
        if (u->req && r->c->tcp.write_queue_size) mg_up_read_stop(u);
        return;
    }
    u->got_bytes = 1;
    /* One read may hold interim heads, a final head, body bytes and the
     * end: parse piece by piece. Heads and chunked bodies go through the
     * strict check first, which says where they end (llhttp must agree)
     * and turns bare LF line ends into CRLF for llhttp. */
    for (;;) {
        const char *src = p;
        size_t feed = n, mine = n; /* bytes of p this round covers */
        const char *why = NULL;
        int checked = mg_h1check_active(&u->check);
        int head = u->check.head;
        if (checked) {
            u->fix.len = 0;
            long k = mg_h1check_feed(&u->check, p, n, &u->fix, &why);
            if (k < 0) {
                invalid_response(r, why);
                return;
            }
            mine = feed = (size_t)k;
            if (u->fix.len) {
                src = u->fix.p;
                feed = u->fix.len;
            }
        }
        u->head_paused = 0;
        llhttp_errno_t e = llhttp_execute(&u->parser, src, feed);
        /* A callback may have closed the client, which detaches (and
         * recycles) the request; u itself lives until its close callback. */
        if (u->req != r) return;
        size_t used = e == HPE_OK ? feed : (size_t)(llhttp_get_error_pos(&u->parser) - src);
        if (checked) {
            int ended = mg_h1check_done(&u->check);
            int llhttp_ended =
                head ? (e == HPE_PAUSED && u->head_paused) : (e == HPE_PAUSED && !u->head_paused);
            if (e != HPE_OK && !llhttp_ended) {
                invalid_response(r, llhttp_get_error_reason(&u->parser));
                return;
            }
            if (ended != llhttp_ended || used != feed) {
                invalid_response(r, head ? "a response head that parsers could read differently"
                                         : "chunked framing that parsers could read differently");
                return;
            }
            used = mine;
        }
        if (e == HPE_PAUSED && u->head_paused) {
            llhttp_resume(&u->parser);
            if (response_head(r, u) || u->req != r) return;
            p += used;
            n -= used;
            /* the rest: body, the end, or another head; even with no bytes
             * left, llhttp reaches the end of a bodiless message only inside
             * execute */
            continue;
        }
        if (e == HPE_OK) break;
        if (e == HPE_PAUSED_UPGRADE && r->status == 101) {
            start_tunnel(r, p + used, n - used);
            return;
        }
        if (e == HPE_PAUSED) {
            response_finished(r, used < n);
            return;
        }
        invalid_response(r, llhttp_get_error_reason(&u->parser));
        return;
    }
    if (r->head_pending) client_send(r, NULL, 0); /* the body comes in a later read */
}

void mg_proxy_up_eof(mg_req *r)
{
    mg_upconn *u = r->up;
    if (r->c->state == MG_C_TUNNEL) {
        detach_upstream(r, 0);
        mg_conn_close(r->c);
        return;
    }
    if (!u->got_bytes && !r->resp_started) {
        mg_proxy_up_error(r, UV_EOF, "closed");
        return;
    }
    llhttp_errno_t e = llhttp_finish(&u->parser);
    if ((e == HPE_OK || e == HPE_PAUSED) && r->resp_done) {
        u->reusable = 0;
        response_finished(r, 0);
        return;
    }
    MG_LOG(MG_LOG_WARN, r->c->w->id, r->c->id, "upstream %s closed mid-response",
           req_target(r)->address);
    proxy_fail(r, 502, "upstream closed the connection early");
}
