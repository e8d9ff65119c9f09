/* The proxy's entry: a request head arrives from a source; it is checked,
 * routed and handed to the middlewares, then tried on a target
 * (proxy_try.c). Also the request body's relay upstream, answers made
 * without a backend, and the end of every exchange. */
#include "h1.h"
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
    mg_proxy__split_url(r, &in.path, &in.query, &authority);
    if (authority.len) host = authority;
    if (in.path.len == 1 && in.path.p[0] == '*') in.path.p = "/"; /* OPTIONS *: the whole server */
    in.method.p = mg_req_method(r);
    in.method.len = r->method_len;
    in.host = host;
    in.headers = w->hdr_view;
    in.nheaders = h->n;
    in.client = r->client;
    size_t hl = host.len < sizeof(r->host_lc) - 1 ? host.len : sizeof(r->host_lc) - 1;
    memcpy(r->host_lc, host.p, hl);
    r->host_lc[hl] = 0;
    return mg_router_match(r->snap->router, &in);
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
        if (!live) return;
        if (failed) {
            mg_proxy__respond_text(r, 500, "Internal Server Error: a plugin failed\n", r->has_body);
            return;
        }
        if (r->responded) {
            mg_proxy__respond(r, r->local_status, r->local.p, r->local_hlen,
                              r->local.p + r->local_hlen, r->local.len - r->local_hlen,
                              r->has_body);
            return;
        }
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

static void on_body(mg_req *r, const char *p, size_t n)
{
    if (!n || !r->up) return;
    r->body_started = 1;
    if (r->up_chunked) {
        char line[24];
        int l = mg_h1_chunk_line(line, n);
        uv_buf_t b[3] = {uv_buf_init(line, (unsigned)l), uv_buf_init((char *)p, (unsigned)n),
                         uv_buf_init("\r\n", 2)};
        mg_proxy__up_send(r, b, 3);
    } else {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        mg_proxy__up_send(r, &b, 1);
    }
}

static void on_body_end(mg_req *r)
{
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
    mg_proxy__up_send(r, &buf, 1);
}

static void on_drain(mg_req *r)
{
    if (r->up && r->up->state == MG_U_ACTIVE) mg_up_read_start(r->up);
}

static void on_error(mg_req *r, int status, const char *why)
{
    MG_LOG(MG_LOG_INFO, r->w->id, r->conn_id, "bad request from client (%d): %s", status, why);
    /* a head already sent upstream: that connection carries half a request
     * and is closed, never pooled */
    if (r->up) mg_proxy__detach(r, 0);
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
    if (r->up) {
        MG_LOG(MG_LOG_DEBUG, r->w->id, r->conn_id, "client gone: closing its upstream connection");
        mg_proxy__detach(r, 0);
    }
    mg_tq_remove(&r->tq);
    if (!r->finished) {
        r->finished = 1;
        if (!r->status) r->status = 499; /* client closed first, as nginx logs it */
        mg_req_log(r);
    }
}

const mg_conn_handler mg_proxy_handler = {
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
}
