/* The client side's HTTP/1 framing: accept, read, drive the request parser
 * (conn_parse.c: llhttp under our own strict check, h1check.c), enforce
 * timeouts, and keep connections alive between requests; hand a connection
 * that speaks HTTP/2 to h2_conn.c. Responses are serialised in
 * conn_response.c. See conn.h. */
#include "conn.h"
#include "conn_int.h"
#include "addr.h"
#include "h2.h"
#include "stats.h"
#include "tls_stream.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>

#define PEND_MAX (64 * 1024) /* stop reading a client that is this far ahead */

static void conn_drive(mg_conn *c);
static void conn_bad_request(mg_conn *c, int status, const char *why);

static inline mg_conn *of_stream(mg_stream *s)
{
    return mg_container_of(s, mg_conn, s);
}

/* ---- requests ------------------------------------------------------- */

/* The source lets go of its request: the handler hears of it unless the
 * exchange ended normally (mg_conn__exchange_done). */
static void conn_drop_req(mg_conn *c, int tell)
{
    mg_req *r = c->req;
    if (!r) return;
    c->req = NULL;
    c->head_held = 0;
    if (tell) c->h->gone(r);
    r->src = NULL;
    r->src_ctx = NULL;
    r->client = NULL;
    r->client_ip = NULL;
    mg_req_release(r);
}

/* ---- closing -------------------------------------------------------- */

void mg_conn_close(mg_conn *c)
{
    if (c->state == MG_C_CLOSING) {
        mg_stream_close(&c->s); /* a graceful (lingering) close ends now */
        return;
    }
    c->state = MG_C_CLOSING;
    mg_tq_remove(&c->tq);
    conn_drop_req(c, 1);
    if (c->h2) mg_h2_closing(c);
    mg_conn__ps_put(c);
    mg_stream_close(&c->s);
}

/* Closes after the queued writes went out. */
void mg_conn__close_gracefully(mg_conn *c)
{
    if (c->state == MG_C_CLOSING) return;
    /* the stream lingers (stream.h): at most timeouts.client_header */
    mg_tq_remove(&c->tq);
    mg_tq_arm(&c->w->q_client_header, &c->tq, uv_now(&c->w->loop));
    c->state = MG_C_CLOSING;
    conn_drop_req(c, 1);
    if (c->h2) mg_h2_closing(c);
    mg_conn__ps_put(c);
    /* a stopping worker does not wait for clients to close */
    c->s.linger_reads = c->w->stopping ? 0 : 8;
    mg_stream_shutdown(&c->s);
}

/* ---- the request cycle ---------------------------------------------- */

void mg_conn__exchange_done(mg_conn *c)
{
    if (c->state == MG_C_CLOSING) return;
    mg_req *r = c->req;
    /* a request whose body was not read to its end leaves the stream
     * unparseable: that connection carries nothing more */
    if (r && r->has_body && !r->body_done) c->close_after = 1;
    conn_drop_req(c, 0);
    /* the next message gets a fresh parser (and an idle connection none):
     * nothing of this one's parse, finished or not, can spill into it */
    mg_conn__ps_put(c);
    c->nrequests++;
    if (c->close_after || c->w->stopping || !c->keepalive || c->peer_eof) {
        mg_conn__close_gracefully(c);
        return;
    }
    c->state = MG_C_IDLE;
    c->resp_chunked = c->resp_raw = 0;
    mg_tq_arm(&c->w->q_client_idle, &c->tq, uv_now(&c->w->loop));
    mg_conn__resume(c);
}

/* Unblocks the parser: always between exchanges, and during one only
 * where it waits at the request's head (the body comes next). A parser
 * paused at the end of a message in flight stays paused, or the next
 * pipelined request would start beside it (a retry resumes the source). */
static void conn_unblock(mg_conn *c)
{
    if (!c->blocked || (c->req && c->block_reason != PAUSE_HEAD)) return;
    c->blocked = 0;
    if (c->ps) llhttp_resume(&c->ps->parser);
}

void mg_conn__resume(mg_conn *c)
{
    if (c->state == MG_C_CLOSING) return;
    c->paused = 0;
    if (c->state == MG_C_WAIT) c->state = c->req && !c->req->body_done ? MG_C_BODY : MG_C_RESP;
    conn_unblock(c);
    conn_drive(c);
}

void mg_conn__pause(mg_conn *c)
{
    c->paused = 1;
    mg_stream_read_stop(&c->s);
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

/* Answers a parse error: ours when a callback refused (conn_refuse), else
 * 400 with llhttp's reason. */
static void conn_parse_error(mg_conn *c)
{
    mg_conn_parse *ps = c->ps;
    int status = ps->refuse_status ? ps->refuse_status : 400;
    const char *why = ps->refuse_why ? ps->refuse_why : llhttp_get_error_reason(&ps->parser);
    ps->refuse_status = 0;
    ps->refuse_why = NULL;
    conn_bad_request(c, status, why ? why : "malformed request");
}

static void conn_bad_request(mg_conn *c, int status, const char *why)
{
    c->close_after = 1;
    c->keepalive = 0;
    if (!c->req) c->req = mg_conn__new_req(c);
    if (!c->req) {
        mg_conn_close(c);
        return;
    }
    c->h->error(c->req, status, why);
}

static void conn_parse(mg_conn *c, const char *p, size_t n)
{
    int in_head = c->state == MG_C_IDLE || c->state == MG_C_HEAD;
    c->pause_reason = PAUSE_NONE;
    mg_conn_parse *ps = mg_conn__ps_get(c);
    if (!ps) {
        mg_conn_close(c);
        return;
    }
    /* Heads and chunked bodies go through our own strict check first,
     * which also decides where they end: llhttp only sees those bytes, and
     * must end them at the same place. */
    if (in_head && !(ps->check.head && mg_h1check_active(&ps->check)))
        mg_h1check_head(&ps->check, 0);
    size_t feed = n;
    int checked = mg_h1check_active(&ps->check);
    int head = ps->check.head;
    if (checked) {
        const char *why = NULL;
        long k = mg_h1check_feed(&ps->check, p, n, NULL, &why);
        if (k < 0) {
            conn_bad_request(c, 400, why);
            return;
        }
        feed = (size_t)k;
    }
    llhttp_errno_t e = llhttp_execute(&ps->parser, p, feed);
    if (c->state == MG_C_CLOSING || c->ps != ps) return;
    size_t used = feed;
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        used = (size_t)(llhttp_get_error_pos(&ps->parser) - p);
        c->blocked = 1;
        c->block_reason = e == HPE_PAUSED_UPGRADE ? PAUSE_MESSAGE : c->pause_reason;
        if (used < n) pend_append(c, p + used, n - used);
    } else if (e != HPE_OK) {
        conn_parse_error(c);
        return;
    }
    if (checked) {
        int ended = mg_h1check_done(&ps->check);
        int llhttp_ended = c->pause_reason == (head ? PAUSE_HEAD : PAUSE_MESSAGE);
        if (ended != llhttp_ended || used != feed) {
            conn_bad_request(c, 400,
                             head ? "a request head that parsers could read differently"
                                  : "chunked framing that parsers could read differently");
            return;
        }
    }
    if (c->pause_reason == PAUSE_HEAD && c->req) {
        if (c->req->body_len == MG_BODY_CHUNKED) mg_h1check_chunked(&ps->check, 0);
        c->state = MG_C_WAIT;
        mg_tq_remove(&c->tq);
        if (c->req->has_body) mg_tq_arm(&c->w->q_client_io, &c->tq, uv_now(&c->w->loop));
        c->h->head(c->req);
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
    /* Read again unless the client is far ahead or the handler asked for a
     * pause (back-pressure from the backend; resume restarts us). */
    if (c->state != MG_C_CLOSING && !c->peer_eof && c->pend_len < PEND_MAX && !c->paused)
        mg_stream_read_start(&c->s);
    if (c->state != MG_C_CLOSING && c->peer_eof && !c->blocked && !c->pend_len &&
        (c->state == MG_C_IDLE || c->state == MG_C_HEAD))
        mg_conn_close(c);
}

/* ---- stream events -------------------------------------------------- */

/* Chooses the framing before the first byte is parsed: HTTP/2 when TLS
 * negotiated "h2", or when a plain connection opens with the client
 * preface (h2c with prior knowledge), on a listener that speaks it.
 * Returns 1 when the bytes were taken (by HTTP/2, or kept to decide). */
static int choose_framing(mg_conn *c, const char *p, size_t n)
{
    const mg_listen *l = c->listen < c->w->cfg->nlisten ? &c->w->cfg->listen[c->listen] : NULL;
    int h2 = 0;
    if (!l || !l->http2 || c->nrequests || c->state != MG_C_IDLE) {
        c->h2_checked = 1;
        return 0;
    }
    if (c->secure) {
        size_t an = 0;
        mg_tls *t = mg_tls_stream_engine(&c->s);
        const char *a = t ? mg_tls_alpn(t, &an) : NULL;
        h2 = a && an == 2 && memcmp(a, "h2", 2) == 0;
    } else {
        int kept = c->pend_len > 0;
        if (kept) {
            pend_append(c, p, n);
            if (c->state == MG_C_CLOSING) return 1;
            p = c->pend;
            n = c->pend_len;
        }
        int k = mg_h2_preface(p, n);
        if (k == 0) { /* a part of the preface: read on */
            if (!kept) pend_append(c, p, n);
            return 1;
        }
        h2 = k > 0;
        if (!h2 && kept) { /* HTTP/1 after all: parse what was kept */
            c->h2_checked = 1;
            conn_drive(c);
            return 1;
        }
    }
    c->h2_checked = 1;
    if (!h2) return 0;
    if (mg_h2_start(c)) {
        mg_conn_close(c);
        return 1;
    }
    mg_h2_read(c, p, n);
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_cap = 0;
    return 1;
}

static void on_read(mg_stream *s, const char *p, size_t n)
{
    mg_conn *c = of_stream(s);
    if (c->h2) {
        mg_h2_read(c, p, n);
        return;
    }
    if (!c->h2_checked && choose_framing(c, p, n)) return;
    if (c->state == MG_C_TUNNEL) {
        if (c->req) c->h->tunnel_data(c->req, p, n);
    } else if (c->blocked || c->pend_len || c->driving) {
        pend_append(c, p, n);
        if (c->pend_len >= PEND_MAX) mg_stream_read_stop(s);
    } else {
        conn_parse(c, p, n);
    }
}

static void on_eof(mg_stream *s)
{
    mg_conn *c = of_stream(s);
    c->peer_eof = 1;
    if (c->h2) {
        mg_h2_eof(c);
        return;
    }
    switch (c->state) {
    case MG_C_IDLE:
    case MG_C_HEAD:
        if (!c->blocked && !c->pend_len) mg_conn_close(c);
        break;
    case MG_C_BODY:
    case MG_C_WAIT:
        /* the request body can never complete */
        if (c->req && c->req->has_body && !c->req->body_done) mg_conn_close(c);
        break;
    case MG_C_TUNNEL:
        mg_conn_close(c);
        break;
    default:
        /* half-close after a complete request: answer it, then close */
        break;
    }
}

static void on_error(mg_stream *s, int err)
{
    mg_conn *c = of_stream(s);
    if (err == UV_EPROTO && c->secure && c->h->broken) {
        mg_tls *t = mg_tls_stream_engine(s);
        const char *why = t ? mg_tls_error(t) : NULL;
        c->h->broken(c->w, c->id, &c->peer.sa, why ? why : "TLS failed");
    }
    mg_conn_close(c);
}

static void on_drain(mg_stream *s)
{
    mg_conn *c = of_stream(s);
    if (c->state == MG_C_CLOSING) return;
    if (c->h2)
        mg_h2_drain(c);
    else if (c->req)
        c->h->drain(c->req);
}

static void on_closed(mg_stream *s)
{
    mg_conn *c = of_stream(s);
    mg_worker *w = c->w;
    mg_tq_remove(&c->tq); /* a lingering close ends before its deadline */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub_explicit(&mg_stats.open_connections, 1, memory_order_relaxed);
    mg_h2_free(c);
    free(c->pend);
    free(c);
}

static const mg_stream_events conn_events = {
    .read = on_read,
    .eof = on_eof,
    .error = on_error,
    .drain = on_drain,
    .close = on_closed,
};

/* A connection on w, linked into its list (its stream not set up yet). */
static mg_conn *conn_new(mg_worker *w, const mg_conn_handler *h)
{
    /* Ownership: freed in on_closed, after the stream's handle closed. */
    mg_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->w = w;
    c->h = h;
    c->id = ++w->next_conn_id;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add_explicit(&mg_stats.open_connections, 1, memory_order_relaxed);
    return c;
}

/* The stream is set up: wait for the first request. */
static void conn_start(mg_conn *c)
{
    c->state = MG_C_IDLE;
    /* The first request must arrive within client_header. */
    mg_tq_arm(&c->w->q_client_header, &c->tq, uv_now(&c->w->loop));
    mg_stream_read_start(&c->s);
}

void mg_conn_accept(mg_worker *w, uv_stream_t *server, const mg_conn_handler *h, int listen)
{
    mg_conn *c = conn_new(w, h);
    if (!c) return;
    mg_stream_tcp_init(&c->s, &w->loop, &conn_events, w->readbuf, sizeof(w->readbuf));
    if (mg_stream_accept(&c->s, server)) {
        c->state = MG_C_CLOSING;
        mg_stream_close(&c->s);
        return;
    }
    struct sockaddr_storage peer;
    if (mg_stream_peer(&c->s, &peer) == 0)
        memcpy(&c->peer, &peer,
               peer.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                          : sizeof(struct sockaddr_in));
    mg_addr_ip(&c->peer.sa, c->peer_ip, sizeof(c->peer_ip));
    c->listen = (uint8_t)listen;
    const mg_listen *l = listen < w->cfg->nlisten ? &w->cfg->listen[listen] : NULL;
    if (l && l->tls) {
        mg_tls_store *st = mg_tls_holder_get(&w->tls);
        if (!st || mg_tls_stream_server(&c->s, mg_tls_store_ctx(st), l->alpn_len ? l->alpn : NULL,
                                        (size_t)l->alpn_len)) {
            c->state = MG_C_CLOSING;
            mg_stream_close(&c->s);
            return;
        }
        c->secure = 1;
    }
    conn_start(c);
}

mg_conn *mg_conn_serve(mg_worker *w, const mg_conn_handler *h, const struct sockaddr *peer,
                       void (*init)(mg_stream *s, const mg_stream_events *ev, void *arg), void *arg)
{
    mg_conn *c = conn_new(w, h);
    if (!c) return NULL;
    init(&c->s, &conn_events, arg);
    if (peer)
        memcpy(&c->peer, peer,
               peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    mg_addr_ip(&c->peer.sa, c->peer_ip, sizeof(c->peer_ip));
    conn_start(c);
    return c;
}

void mg_conn_expire(mg_worker *w, uint64_t now)
{
    mg_tq_node *n;
    while ((n = mg_tq_expired(&w->q_client_idle, now))) {
        mg_conn *c = mg_container_of(n, mg_conn, tq);
        mg_tq_remove(n);
        if (c->h2)
            mg_h2_goaway(c); /* closes once the streams in flight ended */
        else
            mg_conn_close(c);
    }
    while ((n = mg_tq_expired(&w->q_client_header, now))) {
        mg_conn *c = mg_container_of(n, mg_conn, tq);
        mg_tq_remove(n);
        if (c->state == MG_C_HEAD)
            conn_bad_request(c, 408, "request head not received in time");
        else
            mg_conn_close(c); /* connected and never sent a byte */
    }
    while ((n = mg_tq_expired(&w->q_client_io, now))) {
        mg_conn *c = mg_container_of(n, mg_conn, tq);
        mg_tq_remove(n);
        if (c->req)
            conn_bad_request(c, 408, "request body not received in time");
        else
            mg_conn_close(c);
    }
}

void mg_conn_listener_changed(mg_worker *w, int listen)
{
    mg_conn *next;
    for (mg_conn *c = w->conns; c; c = next) {
        next = c->next;
        if (c->h2 && c->listen == listen) mg_h2_goaway(c);
    }
}

void mg_conn_stop_all(mg_worker *w)
{
    mg_conn *next;
    for (mg_conn *c = w->conns; c; c = next) {
        next = c->next;
        if (c->h2)
            mg_h2_goaway(c);
        else if (c->state == MG_C_IDLE && !c->pend_len)
            mg_conn_close(c);
        else
            c->close_after = 1;
    }
}
