/* The proxy's entry: a request head arrives from a source; it is checked,
 * routed and handed to the middlewares, then tried on a target
 * (proxy_try.c). Also the request body's relay upstream, answers made
 * without a backend, and the end of every exchange. */
#include "addr.h"
#include "h1.h"
#include "tls_certs.h"
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char default_page[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>moongate</title></head>"
    "<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">"
    "<h1>moongate is running</h1><p>No services are configured yet, so there is nothing to "
    "send this request to.</p><p>Add one in a config file and start moongate with "
    "<code>moongate -c moongate.lua</code>:</p><pre>return {\n  listen = \"0.0.0.0:8080\",\n"
    "  services = {\n    api = { targets = { \"127.0.0.1:9001\", \"127.0.0.1:9002\" } },\n"
    "  },\n  routes = {\n    { rule = \"PathPrefix(`/`)\", service = \"api\" },\n  },\n}"
    "</pre><p>See docs/config.md for every key.</p></body></html>\n";

/* ---- the end of an exchange ------------------------------------------ */

void mg_proxy__finish(mg_req *r)
{
    mg_tq_remove(&r->tq);
    if (!r->finished) {
        r->finished = 1;
        mg_req_log(r);
    }
    if (mg_proxy__live(r)) r->src->end(r);
}

void mg_proxy__respond(mg_req *r, int status, const char *headers, size_t hlen, const char *body,
                       size_t blen, int close)
{
    if (!mg_proxy__live(r)) return;
    /* The answer's own lines, then those plugins added (a sticky cookie). */
    int has_type = 0;
    for (size_t i = 0; headers && i + 13 <= hlen; i++) {
        if ((i == 0 || headers[i - 1] == '\n') &&
            strncasecmp(headers + i, "content-type:", 13) == 0)
            has_type = 1;
    }
    mg_buf *b = &r->w->scratch;
    b->len = 0;
    mg_buf_append(b, "Server: moongate\r\n", 18);
    if (!has_type)
        mg_buf_printf(b, "Content-Type: text/%s; charset=utf-8\r\n",
                      blen && body[0] == '<' ? "html" : "plain");
    if (hlen) mg_buf_append(b, headers, hlen);
    if (r->resp_extra.len) mg_buf_append(b, r->resp_extra.p, r->resp_extra.len);
    r->resp_extra.len = 0;
    mg_buf_append(&r->resp_extra, b->p, b->len);
    mg_headers_reset(&r->out);
    int with_body = !r->head_request && blen;
    r->status = (uint16_t)status;
    r->bytes_out = with_body ? blen : 0;
    r->resp_started = 1;
    r->resp_done = 1;
    unsigned flags = (close ? MG_RESP_CLOSE : 0) | (r->head_request ? MG_RESP_NO_BODY : 0);
    r->src->head(r, status, NULL, 0, (int64_t)blen, flags);
    if (with_body) {
        uv_buf_t buf = uv_buf_init((char *)body, (unsigned)blen);
        if (r->src->body(r, &buf, 1) < 0) return;
    }
    mg_proxy__finish(r);
}

void mg_proxy__respond_text(mg_req *r, int status, const char *text, int close)
{
    mg_proxy__respond(r, status, NULL, 0, text, strlen(text), close);
}

/* ---- routing ------------------------------------------------------- */

/* r->host_lc: the Host (or the absolute-form authority), lowercased. */
static void set_host(mg_req *r)
{
    mg_str path, query, authority;
    mg_proxy__split_url(r, &path, &query, &authority);
    mg_str host = authority;
    if (!host.len) {
        int i = mg_headers_find_kind(&r->in, MG_HK_HOST);
        if (i >= 0) {
            host.p = mg_hvalue(&r->in, (uint32_t)i);
            host.len = r->in.h[i].vlen;
        }
    }
    size_t hl = host.len < sizeof(r->host_lc) - 1 ? host.len : sizeof(r->host_lc) - 1;
    for (size_t k = 0; k < hl; k++) {
        char ch = host.p[k];
        r->host_lc[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch | 0x20) : ch;
    }
    r->host_lc[hl] = 0;
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
        if (!host.len && h->h[i].kind == MG_HK_HOST) {
            host.p = mg_hvalue(h, i);
            host.len = h->h[i].vlen;
        }
    }
    mg_route_input in;
    mg_proxy__split_url(r, &in.path, &in.query, &authority);
    if (authority.len) host = authority;
    if (in.path.len == 1 && in.path.p[0] == '*') in.path.p = "/"; /* OPTIONS *: the whole server */
    in.method.p = mg_req_method(r);
    in.method.len = r->method_len;
    in.host = host;
    in.headers = w->hdr_view;
    in.nheaders = h->n;
    in.client = r->client;
    in.listener = r->listen;
    return mg_router_match(r->snap->router, &in);
}

/* ---- before routing: ACME challenges and the HTTPS redirect ------------ */

/* Answers what a listener answers itself: an ACME HTTP-01 challenge (on a
 * plain listener, even one that redirects), and the listener's redirect to
 * HTTPS. Returns 1 when r was answered. */
static int listener_answers(mg_req *r)
{
    mg_worker *w = r->w;
    if (r->secure || r->listen >= w->cfg->nlisten) return 0;
    const mg_listen *l = &w->cfg->listen[r->listen];
    mg_str path, query, authority;
    mg_proxy__split_url(r, &path, &query, &authority);
    static const char acme[] = "/.well-known/acme-challenge/";
    if (path.len > sizeof(acme) - 1 && memcmp(path.p, acme, sizeof(acme) - 1) == 0 &&
        (r->method == HTTP_GET || r->method == HTTP_HEAD)) {
        mg_tls_store *st = mg_tls_holder_get(&w->tls);
        const char *ka =
            st ? mg_tls_store_http01(st, path.p + sizeof(acme) - 1, path.len - (sizeof(acme) - 1))
               : NULL;
        if (ka) {
            mg_proxy__respond(r, 200, "Content-Type: text/plain\r\n", 26, ka, strlen(ka), 0);
            return 1;
        }
        if (l->redirect_port) {
            mg_proxy__respond_text(r, 404, "no such ACME challenge\n", 0);
            return 1;
        }
    }
    if (!l->redirect_port) return 0;
    /* Location: https://host[:port]/path?query, 308 for methods with a body */
    char host[256];
    size_t hl = strcspn(r->host_lc, ":");
    if (r->host_lc[0] == '[') hl = strcspn(r->host_lc, "]") + 1;
    if (hl >= sizeof(host)) hl = sizeof(host) - 1;
    memcpy(host, r->host_lc, hl);
    host[hl] = 0;
    mg_buf *b = &w->scratch;
    b->len = 0;
    if (l->redirect_port == 443)
        mg_buf_printf(b, "Location: https://%s%.*s\r\n", host, (int)r->url_cur_len, mg_req_url(r));
    else
        mg_buf_printf(b, "Location: https://%s:%d%.*s\r\n", host, l->redirect_port,
                      (int)r->url_cur_len, mg_req_url(r));
    char headers[600];
    size_t n = b->len < sizeof(headers) ? b->len : sizeof(headers) - 1;
    memcpy(headers, b->p, n);
    int status = r->method == HTTP_GET || r->method == HTTP_HEAD ? 301 : 308;
    mg_proxy__respond(r, status, headers, n, "", 0, r->has_body);
    return 1;
}

/* ---- the handler sources call ---------------------------------------- */

static void on_head(mg_req *r)
{
    mg_worker *w = r->w;
    const char *why = NULL;
    int bad = mg_proxy__check_head(r, w->cfg, &why);
    if (bad) {
        MG_LOG(MG_LOG_INFO, w->id, r->conn_id, "rejected request: %s", why);
        char body[128];
        snprintf(body, sizeof(body), "%s\n", why);
        mg_proxy__respond_text(r, bad, body, 1);
        return;
    }
    r->head_request = r->method == HTTP_HEAD;
    r->idempotent = r->method == HTTP_GET || r->method == HTTP_HEAD || r->method == HTTP_OPTIONS ||
                    r->method == HTTP_PUT || r->method == HTTP_DELETE || r->method == HTTP_TRACE;
    r->snap = w->snap;
    mg_snapshot_ref(r->snap);
    set_host(r);
    if (listener_answers(r)) return;
    if (r->snap->nservices == 0) {
        /* an unconfigured gateway says how to configure it */
        mg_proxy__respond_text(r, 503, default_page, r->has_body);
        return;
    }
    int ri = route(r, w);
    if (ri < 0) {
        mg_proxy__respond_text(r, 404, "no route matches this request\n", r->has_body);
        return;
    }
    r->route = ri;
    r->svc = r->snap->route_service[ri];
    if (r->method == HTTP_TRACE && !(r->snap->route_flags[ri] & MG_ROUTE_ALLOW_TRACE)) {
        /* TRACE echoes credentials back (cross-site tracing): off by default */
        MG_LOG(MG_LOG_INFO, w->id, r->conn_id,
               "rejected request: TRACE is not allowed on this route");
        mg_proxy__respond_text(r, 405, "TRACE is not allowed on this route\n", r->has_body);
        return;
    }
    if (r->snap->route_hooks[ri]) {
        r->hooks = 1;
        mg_req_hold(r);
        int failed = mg_lua_on_request(&w->lua, r);
        int live = mg_proxy__live(r);
        mg_req_release(r);
        /* a chain that waits holds r itself and goes on later (proxy_wait.c) */
        if (!live || r->hook_wait) return;
        mg_proxy__after_on_request(r, failed);
        return;
    }
    mg_proxy__upstream_head(r);
    mg_proxy__try(r);
}

void mg_proxy__up_send(mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    mg_upconn *u = r->up;
    if (!u || u->state != MG_U_ACTIVE) return;
    int rc = mg_up_send(u, bufs, n);
    if (rc < 0) return;                                 /* the read side reports it */
    if (rc == 1 && mg_proxy__live(r)) r->src->pause(r); /* back-pressure until it drains */
}

/* Sends request body bytes upstream, keeping a copy while the body fits
 * upstream.replay_body: a try lost before any response byte can then go
 * again, body and all (proxy_try.c). */
static void send_body(mg_req *r, const uv_buf_t *bufs, unsigned n)
{
    r->body_started = 1;
    if (!r->replay_lost) {
        size_t len = 0;
        for (unsigned i = 0; i < n; i++)
            len += bufs[i].len;
        int ok = r->replay.len + len <= r->w->cfg->replay_body;
        for (unsigned i = 0; ok && i < n; i++)
            ok = mg_buf_append(&r->replay, bufs[i].base, bufs[i].len) == 0;
        if (!ok) {
            r->replay_lost = 1;
            mg_buf_free(&r->replay);
        }
    }
    mg_proxy__up_send(r, bufs, n);
}

static void on_body(mg_req *r, const char *p, size_t n)
{
    if (n && r->h2st) {
        mg_proxy__h2_body(r, p, n);
        return;
    }
    if (!n || !r->up) return;
    if (r->up_chunked) {
        char line[24];
        int l = mg_h1_chunk_line(line, n);
        uv_buf_t b[3] = {uv_buf_init(line, (unsigned)l), uv_buf_init((char *)p, (unsigned)n),
                         uv_buf_init("\r\n", 2)};
        send_body(r, b, 3);
    } else {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        send_body(r, &b, 1);
    }
}

static void on_body_end(mg_req *r)
{
    if (r->h2st) {
        mg_proxy__h2_body_end(r);
        return;
    }
    if (!r->up_chunked || !r->up) return;
    mg_buf *b = &r->w->scratch;
    b->len = 0;
    mg_buf_append(b, "0\r\n", 3);
    if (r->in.ntrailer_start < r->in.n) {
        mg_proxy__strip_hop(&r->in, r->in.ntrailer_start, 0);
        for (uint32_t i = r->in.ntrailer_start; i < r->in.n; i++)
            if (r->in.h[i].nlen) mg_h1_header_at(b, &r->in, i);
    }
    mg_buf_append(b, "\r\n", 2);
    uv_buf_t buf = uv_buf_init(b->p, (unsigned)b->len);
    send_body(r, &buf, 1);
}

static void on_drain(mg_req *r)
{
    if (r->h2st) mg_proxy__h2_drained(r);
    /* a response head whose hooks wait reads nothing more until they end */
    if (r->up && r->up->state == MG_U_ACTIVE && r->hook_wait != 2) mg_up_read_start(r->up);
}

static void on_error(mg_req *r, int status, const char *why)
{
    MG_LOG(MG_LOG_INFO, r->w->id, r->conn_id, "bad request from client (%d): %s", status, why);
    /* a head already sent upstream: that connection carries half a request
     * and is closed, never pooled */
    if (r->up || r->h2st) mg_proxy__detach(r, 0);
    if (r->resp_started) {
        r->src->abort(r);
        return;
    }
    char body[160];
    snprintf(body, sizeof(body), "%s: %s\n", mg_status_reason(status), why);
    mg_proxy__respond_text(r, status, body, 1);
}

static void on_tunnel_data(mg_req *r, const char *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    mg_proxy__up_send(r, &b, 1);
}

static void on_gone(mg_req *r)
{
    if (r->up || r->h2st) {
        MG_LOG(MG_LOG_DEBUG, r->w->id, r->conn_id, "client gone: closing its upstream connection");
        mg_proxy__detach(r, 0);
    }
    mg_proxy__unhold(r);
    mg_tq_remove(&r->tq);
    if (!r->finished) {
        r->finished = 1;
        /* client closed first, as nginx logs it (also when the backend's
         * head was in, waiting for its hooks, and nothing went out) */
        if (!r->status || !r->resp_started) r->status = 499;
        mg_req_log(r);
    }
}

static void on_broken(mg_worker *w, uint64_t conn_id, const struct sockaddr *client,
                      const char *why)
{
    char ip[64];
    mg_addr_ip(client, ip, sizeof(ip));
    MG_LOG(MG_LOG_INFO, w->id, conn_id, "TLS handshake: %s (client %s)", why, ip);
}

const mg_conn_handler mg_proxy_handler = {
    .broken = on_broken,
    .head = on_head,
    .body = on_body,
    .body_end = on_body_end,
    .drain = on_drain,
    .error = on_error,
    .tunnel_data = on_tunnel_data,
    .gone = on_gone,
};

void mg_proxy_expire(mg_worker *w, uint64_t now)
{
    mg_tq_node *n;
    while ((n = mg_tq_expired(&w->q_up_response, now))) {
        mg_req *r = mg_container_of(n, mg_req, tq);
        mg_tq_remove(n);
        mg_proxy__up_timeout_response(r);
    }
    mg_proxy__held_expire(w, now);
    mg_proxy__stall_tick(w, now);
    /* rests end and stalls clear with time: let held requests look again */
    if (w->nheld) mg_proxy_kick(w);
}
