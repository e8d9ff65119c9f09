/* HTTP/1 request parsing for conn.c: the per-message parser state (from
 * the worker's free list, so an idle connection holds none) and the
 * llhttp callbacks, which only collect the head into the request and hand
 * body pieces up; no I/O here. See conn_int.h. */
#include "addr.h"
#include "conn.h"
#include "conn_int.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>

static llhttp_settings_t req_settings;
static uv_once_t settings_once = UV_ONCE_INIT;
static void settings_init(void);

mg_req *mg_conn__new_req(mg_conn *c)
{
    mg_req *r = mg_req_new(c->w);
    if (!r) return NULL;
    r->src = &mg_conn__src;
    r->src_ctx = c;
    r->conn_id = c->id;
    r->client = &c->peer.sa;
    r->client_ip = c->peer_ip;
    r->client_trusted = mg_cidr_match_sa(c->w->cfg->trusted, c->w->cfg->ntrusted, &c->peer.sa);
    r->http_major = 1;
    r->http_minor = 1;
    r->secure = c->secure;
    r->listen = c->listen;
    return r;
}

/* ---- llhttp callbacks (collect only: no I/O) ------------------------- */

/* Fails the parse with a status and reason of ours: llhttp replaces the
 * reason of a non-data callback's error with its own text. */
static int conn_refuse(mg_conn *c, int status, const char *why)
{
    c->ps->refuse_status = (uint16_t)status;
    c->ps->refuse_why = why;
    return HPE_USER;
}

/* ---- parser state, per message --------------------------------------- */

#define PARSE_FREE_MAX 256

mg_conn_parse *mg_conn__ps_get(mg_conn *c)
{
    if (c->ps) return c->ps;
    uv_once(&settings_once, settings_init);
    mg_worker *w = c->w;
    mg_conn_parse *ps = w->conn_parse_free;
    if (ps) {
        w->conn_parse_free = ps->next;
        w->nconn_parse_free--;
    } else {
        /* Ownership: the connection's while a message is read, then the
         * worker's free list (mg_conn_free_parse_states at exit). */
        ps = malloc(sizeof(*ps));
        if (!ps) return NULL;
    }
    llhttp_init(&ps->parser, HTTP_REQUEST, &req_settings);
    ps->parser.data = c;
    memset(&ps->check, 0, sizeof(ps->check));
    ps->refuse_status = 0;
    ps->refuse_why = NULL;
    c->ps = ps;
    return ps;
}

void mg_conn__ps_put(mg_conn *c)
{
    mg_conn_parse *ps = c->ps;
    if (!ps) return;
    c->ps = NULL;
    c->blocked = 0;
    mg_worker *w = c->w;
    if (w->nconn_parse_free < PARSE_FREE_MAX) {
        ps->next = w->conn_parse_free;
        w->conn_parse_free = ps;
        w->nconn_parse_free++;
    } else {
        free(ps);
    }
}

void mg_conn_free_parse_states(mg_worker *w)
{
    while (w->conn_parse_free) {
        mg_conn_parse *ps = w->conn_parse_free;
        w->conn_parse_free = ps->next;
        free(ps);
    }
    w->nconn_parse_free = 0;
}

static int head_limit(mg_conn *c, size_t n)
{
    mg_req *r = c->req;
    if (r->in.arena.len + n + 4 * (r->in.n + 1) > c->w->cfg->max_header_size)
        return conn_refuse(c, 431, "request head too large");
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    mg_conn *c = p->data;
    c->req = mg_conn__new_req(c);
    if (!c->req) return conn_refuse(c, 500, "out of memory");
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
                         r->in.h[i].vlen))
        return conn_refuse(c, 400, "invalid header name or value");
    if (r->in.n > c->w->cfg->max_headers) return conn_refuse(c, 431, "too many headers");
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    mg_conn *c = p->data;
    mg_req *r = c->req;
    if (r->in_trailers) return 0; /* end of trailers */
    if (p->http_major != 1) return conn_refuse(c, 505, "unsupported HTTP version");
    if (p->http_minor == 0 && (p->flags & F_CHUNKED)) {
        /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing */
        return conn_refuse(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)INT64_MAX) {
        /* llhttp takes up to 2^64-1; r->body_len is signed, and a negative
         * one would forward the head unframed and the body as a request */
        return conn_refuse(c, 400, "Content-Length too large");
    }
    r->http_minor = p->http_minor;
    r->method = p->method;
    c->keepalive = (uint8_t)llhttp_should_keep_alive(p);
    int chunked = (p->flags & F_CHUNKED) != 0;
    int has_cl = (p->flags & F_CONTENT_LENGTH) != 0;
    r->body_len = chunked ? MG_BODY_CHUNKED : has_cl ? (int64_t)p->content_length : MG_BODY_NONE;
    r->has_body = chunked || (has_cl && p->content_length > 0);
    r->upgrade = p->upgrade;
    c->pause_reason = PAUSE_HEAD;
    return HPE_PAUSED;
}

/* The body callbacks may run for a message whose exchange already ended:
 * a bodiless request answered at its head (a 404, a plugin's answer) is
 * complete for llhttp only at the next execute, with c->req gone. */

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    mg_conn *c = p->data;
    if (!c->req) return 0;
    mg_tq_arm(&c->w->q_client_io, &c->tq, uv_now(&c->w->loop));
    c->h->body(c->req, at, n);
    return 0;
}

static int on_chunk_header(llhttp_t *p)
{
    mg_conn *c = p->data;
    if (c->req && p->content_length == 0) c->req->in_trailers = 1; /* trailers follow */
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    mg_conn *c = p->data;
    if (!c->req) return 0; /* its exchange ended already: parse on */
    mg_tq_remove(&c->tq);
    c->pause_reason = PAUSE_MESSAGE;
    if (c->state == MG_C_BODY || c->state == MG_C_WAIT) c->state = MG_C_RESP;
    mg_req *r = c->req;
    r->body_done = 1;
    c->h->body_end(r);
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
