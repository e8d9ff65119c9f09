/* The client side: accept, read, parse request heads with llhttp, enforce
 * limits and timeouts, answer errors, and keep connections alive between
 * requests. The relay to a backend lives in proxy.c. */
#include "http.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PEND_MAX (64 * 1024) /* stop reading a client that is this far ahead */

enum { PAUSE_NONE = 0, PAUSE_HEAD, PAUSE_MESSAGE };

static llhttp_settings_t req_settings;
static uv_once_t settings_once = UV_ONCE_INIT;

static void conn_drive(mg_conn *c);
static void conn_read_start(mg_conn *c);
static void conn_bad_request(mg_conn *c, int status, const char *why);

/* ---- requests ------------------------------------------------------- */

static mg_req *req_new(mg_conn *c)
{
    mg_worker *w = c->w;
    mg_req *r = w->req_free;
    if (r) {
        w->req_free = *(mg_req **)r;
        w->nreq_free--;
        /* keep the arenas' memory, clear everything else */
        mg_headers in = r->in, out = r->out;
        mg_buf uhead = r->uhead, ups = r->upstreams, local = r->local, extra = r->resp_extra;
        memset(r, 0, sizeof(*r));
        r->in = in;
        r->out = out;
        r->uhead = uhead;
        r->upstreams = ups;
        r->local = local;
        r->resp_extra = extra;
    } else {
        r = calloc(1, sizeof(*r));
        if (!r) return NULL;
    }
    mg_headers_reset(&r->in);
    mg_headers_reset(&r->out);
    r->uhead.len = 0;
    r->upstreams.len = 0;
    r->local.len = 0;
    r->resp_extra.len = 0;
    r->route = -1;
    r->id = ++c->w->next_req_id;
    r->c = c;
    r->svc = -1;
    r->target = -1;
    r->start_ns = uv_hrtime();
    return r;
}

void mg_req_free(mg_req *r)
{
    if (r->up) mg_proxy_client_gone(r); /* never leave a backend pointing here */
    if (r->snap) mg_snapshot_unref(r->snap);
    r->snap = NULL;
    mg_worker *w = r->c ? r->c->w : NULL;
    /* Recycle a bounded number per worker; big arenas are not worth keeping. */
    if (w && w->nreq_free < 256 && r->in.arena.cap <= 65536 && r->out.arena.cap <= 65536) {
        *(mg_req **)r = w->req_free;
        w->req_free = r;
        w->nreq_free++;
        return;
    }
    mg_req_destroy(r);
}

void mg_req_destroy(mg_req *r)
{
    mg_headers_free(&r->in);
    mg_headers_free(&r->out);
    mg_buf_free(&r->uhead);
    mg_buf_free(&r->upstreams);
    mg_buf_free(&r->local);
    mg_buf_free(&r->resp_extra);
    free(r);
}

/* ---- llhttp callbacks (collect only: no I/O, no Lua) ------------------ */

/* Fails the parse with a status and reason of ours: llhttp replaces the
 * reason of a non-data callback's error with its own text. */
static int conn_refuse(mg_conn *c, int status, const char *why)
{
    c->refuse_status = (uint16_t)status;
    c->refuse_why = why;
    return HPE_USER;
}

static int head_limit(mg_conn *c, size_t n)
{
    mg_req *r = c->req;
    if (r->in.arena.len + n + 4 * (r->in.n + 1) > c->w->cfg->max_header_size) {
        return conn_refuse(c, 431, "request head too large");
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    mg_conn *c = p->data;
    c->req = req_new(c);
    if (!c->req) return HPE_USER;
    c->state = MG_C_HEAD;
    mg_tq_arm(&c->w->q_client_header, &c->tq, uv_now(&c->w->loop));
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    mg_conn *c = p->data;
    if (head_limit(c, n)) return HPE_USER;
    c->req->method_len += (uint32_t)n;
    return mg_buf_append(&c->req->in.arena, at, n) ? HPE_USER : 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    mg_conn *c = p->data;
    if (head_limit(c, n)) return HPE_USER;
    c->req->url_len += (uint32_t)n;
    return mg_buf_append(&c->req->in.arena, at, n) ? HPE_USER : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    mg_conn *c = p->data;
    if (head_limit(c, n)) return HPE_USER;
    return mg_headers_field(&c->req->in, at, n) ? HPE_USER : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    mg_conn *c = p->data;
    if (head_limit(c, n)) return HPE_USER;
    return mg_headers_value(&c->req->in, at, n) ? HPE_USER : 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    mg_conn *c = p->data;
    mg_req *r = c->req;
    if (r->in_trailers && r->in.ntrailer_start == UINT32_MAX) r->in.ntrailer_start = r->in.n;
    mg_headers_value_done(&r->in);
    uint32_t i = r->in.n - 1;
    /* Re-serialized headers must mean to a backend exactly what they meant
     * to us: no whitespace in names ("X : y"), no folded or control bytes. */
    if (!mg_header_valid(mg_hname(&r->in, i), r->in.h[i].nlen, mg_hvalue(&r->in, i),
                         r->in.h[i].vlen)) {
        return conn_refuse(c, 400, "invalid header name or value");
    }
    if (r->in.n > c->w->cfg->max_headers) {
        return conn_refuse(c, 431, "too many headers");
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    mg_conn *c = p->data;
    mg_req *r = c->req;
    if (r->in_trailers) return 0; /* end of trailers */
    if (p->http_major != 1) {
        return conn_refuse(c, 505, "unsupported HTTP version");
    }
    if (p->http_minor == 0 && (p->flags & F_CHUNKED)) {
        /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing */
        return conn_refuse(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    r->http_minor = p->http_minor;
    r->method = p->method;
    r->client_keepalive = llhttp_should_keep_alive(p);
    r->body_chunked = (p->flags & F_CHUNKED) != 0;
    r->has_body = r->body_chunked || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    r->upgrade = p->upgrade;
    c->pause_reason = PAUSE_HEAD;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    mg_conn *c = p->data;
    mg_tq_arm(&c->w->q_client_io, &c->tq, uv_now(&c->w->loop));
    mg_proxy_body(c->req, at, n);
    return 0;
}

static int on_chunk_header(llhttp_t *p)
{
    mg_conn *c = p->data;
    if (p->content_length == 0) c->req->in_trailers = 1; /* last chunk: trailers follow */
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    mg_conn *c = p->data;
    mg_tq_remove(&c->tq);
    c->req->body_done = 1;
    c->pause_reason = PAUSE_MESSAGE;
    mg_proxy_body_done(c->req);
    return HPE_PAUSED;
}

static void settings_init(void)
{
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = on_message_begin;
    req_settings.on_method = on_method;
    req_settings.on_url = on_url;
    req_settings.on_header_field = on_header_field;
    req_settings.on_header_value = on_header_value;
    req_settings.on_header_value_complete = on_header_value_complete;
    req_settings.on_headers_complete = on_headers_complete;
    req_settings.on_body = on_body;
    req_settings.on_chunk_header = on_chunk_header;
    req_settings.on_message_complete = on_message_complete;
}

/* ---- writing -------------------------------------------------------- */

static void on_client_written(void *owner, int status)
{
    mg_conn *c = owner;
    if (c->state == MG_C_CLOSING) return;
    if (status < 0) {
        MG_LOG(MG_LOG_INFO, c->w->id, c->id, "client write failed: %s", uv_strerror(status));
        mg_conn_close(c);
        return;
    }
    if (c->tcp.write_queue_size == 0 && c->req) mg_proxy_client_drained(c->req);
}

void mg_conn_write(mg_conn *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->state == MG_C_CLOSING) return;
    int r = mg_write((uv_stream_t *)&c->tcp, bufs, n, on_client_written, c);
    if (r < 0) {
        MG_LOG(MG_LOG_INFO, c->w->id, c->id, "client write failed: %s", uv_strerror(r));
        mg_conn_close(c);
    }
}

/* ---- closing -------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    mg_conn *c = h->data;
    mg_worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub_explicit(&mg_stats.open_connections, 1, memory_order_relaxed);
    free(c->pend);
    free(c);
}

void mg_conn_close(mg_conn *c)
{
    if (c->state == MG_C_CLOSING) return;
    c->state = MG_C_CLOSING;
    mg_tq_remove(&c->tq);
    mg_req *r = c->req;
    c->req = NULL;
    if (r) {
        mg_proxy_client_gone(r);
        if (!r->finished) {
            r->finished = 1;
            if (!r->status) r->status = 499; /* client closed first, as nginx logs it */
            mg_req_log(r);
        }
        mg_req_free(r);
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    mg_conn *c = req->data;
    free(req);
    mg_conn_close(c);
}

/* Closes after the queued writes went out. */
static void conn_close_gracefully(mg_conn *c)
{
    if (c->state == MG_C_CLOSING) return;
    if (c->tcp.write_queue_size == 0) {
        mg_conn_close(c);
        return;
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown)) {
        free(req);
        mg_conn_close(c);
        return;
    }
    req->data = c;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    mg_tq_remove(&c->tq);
    c->state = MG_C_CLOSING;
    mg_req *r = c->req;
    c->req = NULL;
    if (r) mg_req_free(r);
}

/* ---- responses generated here --------------------------------------- */

void mg_conn_respond_full(mg_conn *c, int status, const char *headers, size_t hlen,
                          const char *body, size_t blen, int close_after)
{
    mg_req *r = c->req;
    char head[256];
    if (close_after) c->close_after = 1;
    if (r && !r->client_keepalive) c->close_after = 1;
    int has_type = 0;
    for (size_t i = 0; headers && i + 13 <= hlen; i++) {
        if ((i == 0 || headers[i - 1] == '\n') &&
            strncasecmp(headers + i, "content-type:", 13) == 0)
            has_type = 1;
    }
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nServer: moongate\r\n%s%s%s", status,
                     mg_status_reason(status), has_type ? "" : "Content-Type: text/",
                     has_type ? "" : (blen && body[0] == '<' ? "html" : "plain"),
                     has_type ? "" : "; charset=utf-8\r\n");
    char tail[96];
    int t = snprintf(tail, sizeof(tail), "Content-Length: %zu\r\n%s\r\n", blen,
                     c->close_after ? "Connection: close\r\n" : "");
    int extra = r && r->resp_extra.len;
    uv_buf_t bufs[5];
    unsigned k = 0;
    bufs[k++] = uv_buf_init(head, (unsigned)n);
    if (hlen) bufs[k++] = uv_buf_init((char *)headers, (unsigned)hlen);
    if (extra) bufs[k++] = uv_buf_init(r->resp_extra.p, (unsigned)r->resp_extra.len);
    bufs[k++] = uv_buf_init(tail, (unsigned)t);
    int with_body = !(r && r->head_request) && blen;
    if (with_body) bufs[k++] = uv_buf_init((char *)body, (unsigned)blen);
    mg_conn_write(c, bufs, k);
    if (r) {
        r->status = (uint16_t)status;
        r->bytes_out = with_body ? blen : 0;
        r->resp_started = 1;
        r->resp_done = 1;
    }
    mg_conn_request_done(c);
}

void mg_conn_respond(mg_conn *c, int status, const char *body, int close_after)
{
    mg_conn_respond_full(c, status, NULL, 0, body, strlen(body), close_after);
}

/* ---- the request cycle ---------------------------------------------- */

void mg_conn_request_done(mg_conn *c)
{
    if (c->state == MG_C_CLOSING) return;
    mg_req *r = c->req;
    int keepalive = 1;
    if (r) {
        if (!r->finished) {
            r->finished = 1;
            mg_req_log(r);
        }
        keepalive = r->client_keepalive;
        c->req = NULL;
        mg_req_free(r);
    }
    c->nrequests++;
    if (c->close_after || c->w->stopping || !keepalive || c->peer_eof) {
        conn_close_gracefully(c);
        return;
    }
    c->state = MG_C_IDLE;
    mg_tq_arm(&c->w->q_client_idle, &c->tq, uv_now(&c->w->loop));
    mg_conn_resume(c);
}

void mg_conn_resume(mg_conn *c)
{
    if (c->state == MG_C_CLOSING) return;
    if (c->blocked) {
        c->blocked = 0;
        llhttp_resume(&c->parser);
    }
    conn_drive(c);
}

static void pend_append(mg_conn *c, const char *p, size_t n)
{
    if (c->pend_len + n > c->pend_cap) {
        uint32_t cap = c->pend_cap ? c->pend_cap : 1024;
        while (cap < c->pend_len + n)
            cap *= 2;
        char *np = realloc(c->pend, cap);
        if (!np) {
            mg_conn_close(c);
            return;
        }
        c->pend = np;
        c->pend_cap = cap;
    }
    memcpy(c->pend + c->pend_len, p, n);
    c->pend_len += (uint32_t)n;
}

/* The answer to a parse error: ours when a callback refused (conn_refuse),
 * else 400 with llhttp's reason. */
static void conn_parse_error(mg_conn *c)
{
    int status = c->refuse_status ? c->refuse_status : 400;
    const char *why = c->refuse_why ? c->refuse_why : llhttp_get_error_reason(&c->parser);
    c->refuse_status = 0;
    c->refuse_why = NULL;
    conn_bad_request(c, status, why ? why : "malformed request");
}

static void conn_bad_request(mg_conn *c, int status, const char *why)
{
    MG_LOG(MG_LOG_INFO, c->w->id, c->id, "bad request from client (%d): %s", status, why);
    if (c->req && c->req->up) {
        /* the head already went upstream: that connection carries half a
         * request and is closed, never pooled */
        mg_proxy_client_gone(c->req);
    }
    if (c->req && c->req->resp_started) {
        mg_conn_close(c);
        return;
    }
    if (!c->req) c->req = req_new(c);
    if (c->req) c->req->client_keepalive = 0;
    char body[160];
    snprintf(body, sizeof(body), "%s: %s\n", mg_status_reason(status), why);
    mg_conn_respond(c, status, body, 1);
}

static void conn_parse(mg_conn *c, const char *p, size_t n)
{
    int in_head = c->state == MG_C_IDLE || c->state == MG_C_HEAD;
    c->pause_reason = PAUSE_NONE;
    /* Heads and chunked bodies go through our own strict check first,
     * which also decides where they end: llhttp only sees those bytes, and
     * must end them at the same place. */
    if (in_head && !(c->check.head && mg_h1check_active(&c->check))) mg_h1check_head(&c->check, 0);
    size_t feed = n;
    int checked = mg_h1check_active(&c->check);
    if (checked) {
        const char *why = NULL;
        long k = mg_h1check_feed(&c->check, p, n, NULL, &why);
        if (k < 0) {
            conn_bad_request(c, 400, why);
            return;
        }
        feed = (size_t)k;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, p, feed);
    if (c->state == MG_C_CLOSING) return;
    size_t used = feed;
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        used = (size_t)(llhttp_get_error_pos(&c->parser) - p);
        c->blocked = 1;
        if (used < n) pend_append(c, p + used, n - used);
    } else if (e != HPE_OK) {
        conn_parse_error(c);
        return;
    }
    if (checked) {
        int ended = mg_h1check_done(&c->check);
        int llhttp_ended = c->pause_reason == (c->check.head ? PAUSE_HEAD : PAUSE_MESSAGE);
        if (ended != llhttp_ended || used != feed) {
            conn_bad_request(c, 400,
                             c->check.head ? "a request head that parsers could read differently"
                                           : "chunked framing that parsers could read differently");
            return;
        }
    }
    if (c->pause_reason == PAUSE_HEAD) {
        if (c->req && c->req->body_chunked) mg_h1check_chunked(&c->check, 0);
        c->state = MG_C_WAIT;
        mg_tq_remove(&c->tq);
        mg_proxy_start(c);
    }
}

/* Feeds pending bytes to the parser while it is not blocked. Re-entrant
 * calls (a response finished synchronously) only ask the loop to run again,
 * so a long pipeline does not grow the stack. */
static void conn_drive(mg_conn *c)
{
    if (c->driving) {
        c->redrive = 1;
        return;
    }
    c->driving = 1;
    do {
        c->redrive = 0;
        /* llhttp advances through non-consuming steps (the end of a bodiless
         * request after a pause at its head) only inside execute. */
        if (c->state != MG_C_CLOSING && !c->blocked && !c->pend_len && c->req &&
            !c->req->body_done && c->state != MG_C_TUNNEL)
            conn_parse(c, "", 0);
        while (c->state != MG_C_CLOSING && !c->blocked && c->pend_len) {
            char *buf = c->pend;
            uint32_t len = c->pend_len;
            c->pend = NULL;
            c->pend_len = c->pend_cap = 0;
            conn_parse(c, buf, len);
            free(buf);
        }
    } while (c->redrive && c->state != MG_C_CLOSING);
    c->driving = 0;
    /* Read again unless the client is far ahead or the upstream is still
     * draining what we sent (back-pressure; its drain restarts us). */
    if (c->state != MG_C_CLOSING && !c->peer_eof && c->pend_len < PEND_MAX &&
        !(c->req && c->req->up && c->req->up->tcp.write_queue_size))
        conn_read_start(c);
    if (c->state != MG_C_CLOSING && c->peer_eof && !c->blocked && !c->pend_len &&
        (c->state == MG_C_IDLE || c->state == MG_C_HEAD))
        mg_conn_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mg_conn *c = h->data;
    buf->base = c->w->readbuf;
    buf->len = sizeof(c->w->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mg_conn *c = s->data;
    if (nread > 0) {
        if (c->state == MG_C_TUNNEL) {
            mg_proxy_tunnel_client_data(c->req, buf->base, (size_t)nread);
        } else if (c->blocked || c->pend_len || c->driving) {
            pend_append(c, buf->base, (size_t)nread);
            if (c->pend_len >= PEND_MAX && c->reading) {
                uv_read_stop(s);
                c->reading = 0;
            }
        } else {
            conn_parse(c, buf->base, (size_t)nread);
        }
        return;
    }
    if (nread == 0) return;
    if (c->reading) {
        uv_read_stop(s);
        c->reading = 0;
    }
    if (nread != UV_EOF) {
        mg_conn_close(c);
        return;
    }
    c->peer_eof = 1;
    switch (c->state) {
    case MG_C_IDLE:
    case MG_C_HEAD:
        if (!c->blocked && !c->pend_len) mg_conn_close(c);
        break;
    case MG_C_BODY:
        /* the request body can never complete */
        if (c->req && !c->req->body_done) {
            MG_LOG(MG_LOG_INFO, c->w->id, c->id, "client closed during the request body");
            mg_conn_close(c);
        }
        break;
    case MG_C_TUNNEL:
        mg_conn_close(c);
        break;
    default:
        /* half-close after a complete request: answer it, then close */
        break;
    }
}

static void conn_read_start(mg_conn *c)
{
    if (c->reading || c->state == MG_C_CLOSING) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) == 0) c->reading = 1;
}

void mg_conn_read_start(mg_conn *c)
{
    conn_read_start(c);
}

void mg_conn_read_stop(mg_conn *c)
{
    if (!c->reading) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

void mg_conn_accept(uv_stream_t *server, int status)
{
    mg_worker *w = server->data;
    if (status < 0 || w->stopping) return;
    uv_once(&settings_once, settings_init);
    mg_conn *c = calloc(1, sizeof(*c));
    if (!c) return;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->w = w;
    c->id = ++w->next_conn_id;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add_explicit(&mg_stats.open_connections, 1, memory_order_relaxed);
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        c->state = MG_C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    int len = sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, &c->peer.sa, &len);
    c->trusted = mg_cidr_match(w->cfg->trusted, w->cfg->ntrusted, &c->peer.sa);
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
    c->parser.data = c;
    c->state = MG_C_IDLE;
    /* The first request must arrive within client_header. */
    mg_tq_arm(&w->q_client_header, &c->tq, uv_now(&w->loop));
    conn_read_start(c);
}

/* Called by the worker's tick: closes connections whose wait expired. */
void mg_conn_expire(mg_worker *w, uint64_t now)
{
    mg_tq_node *n;
    while ((n = mg_tq_expired(&w->q_client_idle, now))) {
        mg_conn *c = mg_container_of(n, mg_conn, tq);
        mg_tq_remove(n);
        mg_conn_close(c);
    }
    while ((n = mg_tq_expired(&w->q_client_header, now))) {
        mg_conn *c = mg_container_of(n, mg_conn, tq);
        mg_tq_remove(n);
        if (c->state == MG_C_HEAD) {
            MG_LOG(MG_LOG_INFO, w->id, c->id, "request head not complete in time");
            conn_bad_request(c, 408, "request head not received in time");
        } else {
            mg_conn_close(c); /* connected and never sent a byte */
        }
    }
    while ((n = mg_tq_expired(&w->q_client_io, now))) {
        mg_conn *c = mg_container_of(n, mg_conn, tq);
        mg_tq_remove(n);
        MG_LOG(MG_LOG_INFO, w->id, c->id, "client too slow sending the request body");
        if (c->req && !c->req->resp_started) {
            mg_proxy_client_gone(c->req);
            conn_bad_request(c, 408, "request body not received in time");
        } else {
            mg_conn_close(c);
        }
    }
}
