/* Plain TCP streams. Writes go out without a copy in the common case: the
 * write is tried at once, and only what the socket did not take is copied
 * into a queued write request. */
#include "stream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

typedef struct queued_write {
    uv_write_t req;
    mg_stream *s;
    char data[];
} queued_write;

static mg_stream *of_handle(uv_handle_t *h)
{
    return mg_container_of((uv_tcp_t *)h, mg_stream, tcp);
}

static void on_written(uv_write_t *req, int status)
{
    queued_write *q = (queued_write *)req;
    mg_stream *s = q->s;
    free(q);
    /* On UV_ECANCELED the stream is closing and its owner may be mid-teardown. */
    if (status == UV_ECANCELED || s->closing) return;
    if (status < 0)
        s->ev->error(s, status);
    else if (s->tcp.write_queue_size == 0 && s->ev->drain)
        s->ev->drain(s);
}

static int tcp_write(mg_stream *s, const uv_buf_t *bufs, unsigned n)
{
    if (s->closing) return UV_EPIPE;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0) return 0;
    size_t done = 0;
    uv_stream_t *us = (uv_stream_t *)&s->tcp;
    if (us->write_queue_size == 0) {
        int r = uv_try_write(us, bufs, n);
        if (r < 0 && r != UV_EAGAIN) return r;
        if (r > 0) done = (size_t)r;
        if (done == total) return 0;
    }
    /* Ownership: the copy belongs to the write request, freed in on_written. */
    queued_write *q = malloc(sizeof(*q) + (total - done));
    if (!q) return UV_ENOMEM;
    q->s = s;
    size_t off = 0, skip = done;
    for (unsigned i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        const char *p = bufs[i].base;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        p += skip;
        len -= skip;
        skip = 0;
        memcpy(q->data + off, p, len);
        off += len;
    }
    uv_buf_t b = uv_buf_init(q->data, (unsigned)off);
    int r = uv_write(&q->req, us, &b, 1, on_written);
    if (r) {
        free(q);
        return r;
    }
    return 1;
}

static size_t tcp_queued(const mg_stream *s)
{
    return s->tcp.write_queue_size;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mg_stream *s = of_handle(h);
    buf->base = s->rbuf;
    buf->len = s->rbuf_len;
}

static void on_read(uv_stream_t *us, ssize_t nread, const uv_buf_t *buf)
{
    mg_stream *s = of_handle((uv_handle_t *)us);
    if (nread > 0) {
        s->ev->read(s, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0) return;
    if (s->reading) {
        uv_read_stop(us);
        s->reading = 0;
    }
    if (nread == UV_EOF)
        s->ev->eof(s);
    else
        s->ev->error(s, (int)nread);
}

static int tcp_read_start(mg_stream *s)
{
    if (s->reading || s->closing) return 0;
    int r = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (r == 0) s->reading = 1;
    return r;
}

static void tcp_read_stop(mg_stream *s)
{
    if (!s->reading) return;
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = 0;
}

static void on_closed(uv_handle_t *h)
{
    mg_stream *s = of_handle(h);
    if (s->ev->close) s->ev->close(s);
}

static void tcp_close(mg_stream *s)
{
    if (uv_is_closing((uv_handle_t *)&s->tcp)) return;
    s->closing = 1;
    s->reading = 0;
    uv_close((uv_handle_t *)&s->tcp, on_closed);
}

/* Lingering close: once our FIN went out, whatever the peer still sends
 * (the next pipelined request, a PING after an HTTP/2 GOAWAY) is read and
 * dropped until it closes too. Closing with its bytes unread would make
 * the kernel answer with a reset, which can destroy our last answer in
 * the peer's buffer before it reads it (nginx's lingering_close). The
 * owner bounds the wait: it closes the stream when its timer runs out. */
static void on_linger_read(uv_stream_t *us, ssize_t nread, const uv_buf_t *buf)
{
    mg_stream *s = of_handle((uv_handle_t *)us);
    /* a peer that keeps sending (a flood ended with GOAWAY) is not read for long */
    if (nread < 0 || (nread > 0 && s->linger_reads-- == 0)) tcp_close(s);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    mg_stream *s = req->data;
    free(req);
    if (status < 0 || !s->linger_reads || uv_is_closing((uv_handle_t *)&s->tcp) ||
        uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_linger_read))
        tcp_close(s);
}

static void tcp_shutdown(mg_stream *s)
{
    if (s->closing) return;
    if (!s->linger_reads && s->tcp.write_queue_size == 0) {
        tcp_close(s);
        return;
    }
    tcp_read_stop(s);
    /* Ownership: freed in on_shutdown. */
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req) req->data = s;
    if (!req || uv_shutdown(req, (uv_stream_t *)&s->tcp, on_shutdown)) {
        free(req);
        tcp_close(s);
        return;
    }
    s->closing = 1; /* no more events but close */
}

static const mg_stream_ops tcp_ops = {
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .write = tcp_write,
    .queued = tcp_queued,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};

int mg_stream_tcp_init(mg_stream *s, uv_loop_t *loop, const mg_stream_events *ev, char *rbuf,
                       size_t rbuf_len)
{
    memset(s, 0, sizeof(*s));
    s->ops = &tcp_ops;
    s->ev = ev;
    s->rbuf = rbuf;
    s->rbuf_len = (uint32_t)rbuf_len;
    return uv_tcp_init(loop, &s->tcp);
}

int mg_stream_accept(mg_stream *s, uv_stream_t *server)
{
    int r = uv_accept(server, (uv_stream_t *)&s->tcp);
    if (r == 0) uv_tcp_nodelay(&s->tcp, 1);
    return r;
}

static void on_connected(uv_connect_t *req, int status)
{
    mg_stream *s = req->data;
    if (status == UV_ECANCELED || s->closing) return;
    if (status == 0) uv_tcp_nodelay(&s->tcp, 1);
    s->ev->connect(s, status);
}

int mg_stream_connect(mg_stream *s, uv_connect_t *req, const struct sockaddr *addr)
{
    req->data = s;
    return uv_tcp_connect(req, &s->tcp, addr, on_connected);
}

void mg_stream_ack_now(mg_stream *s)
{
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((const uv_handle_t *)&s->tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

int mg_stream_unacked(const mg_stream *s)
{
    uv_os_fd_t fd;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (uv_fileno((const uv_handle_t *)&s->tcp, &fd) ||
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
        return -1;
    return (int)ti.tcpi_unacked;
}

int mg_stream_peer(const mg_stream *s, struct sockaddr_storage *out)
{
    int len = sizeof(*out);
    return uv_tcp_getpeername(&s->tcp, (struct sockaddr *)out, &len);
}
