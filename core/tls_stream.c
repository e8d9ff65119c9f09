/* See tls_stream.h. The wrap keeps the TCP ops underneath and calls them
 * for the socket; the owner only ever sees tls_ops and plaintext. */
#include "tls_stream.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

typedef struct tls_state {
    mg_tls *t;
    const mg_stream_ops *tcp;      /* the plain TCP ops underneath */
    const mg_stream_events *owner; /* the owner's events */
    uv_timer_t later;              /* delivers plaintext kept while the owner was not reading */
    uint8_t client, handshook, failed, peer_closed;
    uint8_t owner_reading, in_deliver, connect_reported;
    uint8_t tcp_closed, timer_closed;
} tls_state;

/* Plaintext lands here on its way to the owner (valid during its read
 * event, like the shared read buffer); one per thread. */
static __thread char plainbuf[16384];
/* one TLS record's worth of plaintext, to join small pieces (tls_write) */
static __thread char joinbuf[16384];

static const mg_stream_ops tls_ops;
static const mg_stream_events inner_events;

static tls_state *state(const mg_stream *s)
{
    return s->ops == &tls_ops ? s->tcp.data : NULL;
}

mg_tls *mg_tls_stream_engine(const mg_stream *s)
{
    tls_state *st = state(s);
    return st ? st->t : NULL;
}

/* Ciphertext from the engine goes straight to the TCP write. */
static int sink(void *ud, const char *data, size_t len)
{
    mg_stream *s = ud;
    tls_state *st = s->tcp.data;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int rc = st->tcp->write(s, &b, 1);
    return rc < 0 ? rc : 0;
}

/* The TLS layer failed (handshake or record): the owner hears an error, or
 * a failed connect if it is still waiting for one. */
static void failed(mg_stream *s, tls_state *st)
{
    if (st->failed || s->closing) return;
    st->failed = 1;
    if (st->client && !st->connect_reported) {
        st->connect_reported = 1;
        if (st->owner->connect) st->owner->connect(s, UV_EPROTO);
        return;
    }
    st->owner->error(s, UV_EPROTO);
}

/* Hands the owner every plaintext byte the engine has, while it reads. */
static void deliver(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    if (st->in_deliver) return; /* the loop below is running: it sees owner_reading */
    st->in_deliver = 1;
    while (st->owner_reading && !s->closing && !st->failed && !st->peer_closed) {
        ssize_t n = mg_tls_read(st->t, plainbuf, sizeof(plainbuf));
        if (n > 0) {
            st->owner->read(s, plainbuf, (size_t)n);
            continue;
        }
        if (n == 0) { /* close_notify */
            st->peer_closed = 1;
            st->owner->eof(s);
        } else if (n != -EAGAIN) {
            failed(s, st);
        }
        break;
    }
    st->in_deliver = 0;
}

static int has_pending(tls_state *st)
{
    return mg_tls_in_pending(st->t) || SSL_pending(mg_tls_ssl(st->t)) > 0;
}

static void on_later(uv_timer_t *timer)
{
    mg_stream *s = timer->data;
    deliver(s);
}

static void on_handshake(mg_stream *s, tls_state *st)
{
    st->handshook = 1;
    if (!st->owner_reading) st->tcp->read_stop(s);
    if (st->client && !st->connect_reported) {
        st->connect_reported = 1;
        if (st->owner->connect) st->owner->connect(s, 0);
    }
}

/* ---- events from the TCP stream underneath --------------------------- */

static void in_read(mg_stream *s, const char *p, size_t n)
{
    tls_state *st = s->tcp.data;
    if (st->failed || st->peer_closed) return;
    mg_tls_feed(st->t, p, n);
    if (!st->handshook) {
        int rc = mg_tls_handshake(st->t);
        if (rc == 0)
            on_handshake(s, st);
        else if (rc != -EAGAIN)
            failed(s, st);
    }
    if (st->handshook) deliver(s);
    mg_tls_feed_end(st->t); /* p is the loop's shared buffer: keep what is left */
}

static void in_eof(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    if (!st->handshook) {
        failed(s, st);
        return;
    }
    if (!st->peer_closed) {
        st->peer_closed = 1;
        st->owner->eof(s);
    }
}

static void in_error(mg_stream *s, int err)
{
    tls_state *st = s->tcp.data;
    if (st->client && !st->connect_reported) {
        st->connect_reported = 1;
        if (st->owner->connect) st->owner->connect(s, err);
        return;
    }
    st->owner->error(s, err);
}

static void in_drain(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    if (st->handshook && st->owner->drain) st->owner->drain(s);
}

static void in_connect(mg_stream *s, int status)
{
    tls_state *st = s->tcp.data;
    if (status < 0) {
        st->connect_reported = 1;
        if (st->owner->connect) st->owner->connect(s, status);
        return;
    }
    int rc = st->tcp->read_start(s);
    if (rc == 0) rc = mg_tls_handshake(st->t); /* the ClientHello goes out */
    if (rc && rc != -EAGAIN) failed(s, st);
}

static void finish_close(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    if (!st->tcp_closed || !st->timer_closed) return;
    const mg_stream_events *owner = st->owner;
    s->ev = owner;
    s->tcp.data = NULL;
    mg_tls_free(st->t);
    free(st);
    if (owner->close) owner->close(s);
}

static void on_timer_closed(uv_handle_t *h);

static void in_close(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    st->tcp_closed = 1;
    /* a shutdown closes the socket by itself, without tls_close */
    if (!uv_is_closing((uv_handle_t *)&st->later))
        uv_close((uv_handle_t *)&st->later, on_timer_closed);
    finish_close(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    mg_stream *s = h->data;
    tls_state *st = s->tcp.data;
    st->timer_closed = 1;
    finish_close(s);
}

static const mg_stream_events inner_events = {
    .read = in_read,
    .eof = in_eof,
    .error = in_error,
    .drain = in_drain,
    .connect = in_connect,
    .close = in_close,
};

/* ---- what the owner calls --------------------------------------------- */

static int tls_read_start(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    st->owner_reading = 1;
    int rc = st->tcp->read_start(s);
    /* plaintext the engine kept while the owner paused: next loop turn,
     * never from inside the owner's own call */
    if (st->handshook && has_pending(st) && !s->closing) uv_timer_start(&st->later, on_later, 0, 0);
    return rc;
}

static void tls_read_stop(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    st->owner_reading = 0;
    if (st->handshook) st->tcp->read_stop(s); /* a handshake in progress keeps reading */
}

static int tls_write(mg_stream *s, const uv_buf_t *bufs, unsigned n)
{
    tls_state *st = s->tcp.data;
    if (s->closing) return UV_EPIPE;
    if (st->failed) return UV_EPROTO;
    if (!st->handshook) return UV_ENOTCONN;
    /* Pieces that fit one record (a response head and a small body) go as
     * one: one record and one TCP write instead of one of each per piece */
    size_t total = 0;
    for (unsigned i = 0; i < n && total <= sizeof(joinbuf); i++)
        total += bufs[i].len;
    if (n > 1 && total <= sizeof(joinbuf)) {
        size_t off = 0;
        for (unsigned i = 0; i < n; i++) {
            memcpy(joinbuf + off, bufs[i].base, bufs[i].len);
            off += bufs[i].len;
        }
        ssize_t rc = mg_tls_write(st->t, joinbuf, total);
        if (rc == -EPROTO) return UV_EPROTO;
        if (rc < 0) return (int)rc;
        return st->tcp->queued(s) ? 1 : 0;
    }
    for (unsigned i = 0; i < n; i++) {
        ssize_t rc = mg_tls_write(st->t, bufs[i].base, bufs[i].len);
        if (rc == -EPROTO) return UV_EPROTO;
        if (rc < 0) return (int)rc; /* the TCP write's own (libuv) error */
    }
    return st->tcp->queued(s) ? 1 : 0;
}

static size_t tls_queued(const mg_stream *s)
{
    tls_state *st = s->tcp.data;
    return st->tcp->queued(s);
}

static void tls_shutdown(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    if (s->closing) return;
    if (st->handshook && !st->failed) mg_tls_shutdown(st->t); /* close_notify, queued first */
    st->tcp->shutdown(s);
}

static void tls_close(mg_stream *s)
{
    tls_state *st = s->tcp.data;
    if (!uv_is_closing((uv_handle_t *)&st->later))
        uv_close((uv_handle_t *)&st->later, on_timer_closed);
    st->tcp->close(s);
}

static const mg_stream_ops tls_ops = {
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .queued = tls_queued,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

static int wrap(mg_stream *s, SSL_CTX *ctx, int server, const char *name, const unsigned char *alpn,
                size_t alpn_len)
{
    if (s->ops == &tls_ops || s->tcp.data) return -EINVAL;
    /* Ownership: freed in finish_close, after the socket and the timer closed. */
    tls_state *st = calloc(1, sizeof(*st));
    if (!st) return -ENOMEM;
    char err[256];
    st->t = mg_tls_new(ctx, server, name, err, sizeof(err));
    if (!st->t || (alpn_len && mg_tls_set_alpn(st->t, alpn, alpn_len))) {
        mg_tls_free(st->t);
        free(st);
        return -ENOMEM;
    }
    st->client = !server;
    st->tcp = s->ops;
    st->owner = s->ev;
    uv_timer_init(s->tcp.loop, &st->later);
    st->later.data = s;
    mg_tls_set_sink(st->t, sink, s);
    s->tcp.data = st;
    s->ev = &inner_events;
    s->ops = &tls_ops;
    if (server && s->reading) st->owner_reading = 1;
    return 0;
}

int mg_tls_stream_server(mg_stream *s, SSL_CTX *ctx, const unsigned char *alpn, size_t alpn_len)
{
    return wrap(s, ctx, 1, NULL, alpn, alpn_len);
}

int mg_tls_stream_client(mg_stream *s, SSL_CTX *ctx, const char *server_name)
{
    static const unsigned char http11[] = "\x08http/1.1";
    return wrap(s, ctx, 0, server_name, http11, sizeof(http11) - 1);
}
