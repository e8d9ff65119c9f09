/* The transport layer: a byte stream over a socket, behind one small
 * function table, so the HTTP layers above never touch a socket. Plain TCP
 * is the first implementation (stream.c); TLS wraps the same socket and
 * fills the same table.
 *
 * A stream is embedded in its owner (a client connection, an upstream
 * connection), which registers an event table; the owner is found again
 * with mg_container_of. Every event arrives on the owner's loop thread.
 * Memory: the owner is freed only from its close event. */
#ifndef MG_STREAM_H
#define MG_STREAM_H

#include "common.h"

#include <uv.h>

typedef struct mg_stream mg_stream;

/* What a stream reports to its owner. */
typedef struct mg_stream_events {
    /* Bytes arrived. They are valid only during the call (reads land in a
     * buffer shared by every stream of the loop). */
    void (*read)(mg_stream *s, const char *p, size_t n);
    void (*eof)(mg_stream *s);                 /* the peer half-closed */
    void (*error)(mg_stream *s, int err);      /* a read or a write failed (libuv error code) */
    void (*drain)(mg_stream *s);               /* everything queued was written */
    void (*connect)(mg_stream *s, int status); /* mg_stream_connect finished (0 or error) */
    void (*close)(mg_stream *s);               /* closed: the owner may free itself now */
} mg_stream_events;

typedef struct mg_stream_ops {
    int (*read_start)(mg_stream *s);
    void (*read_stop)(mg_stream *s);
    /* Writes bufs (the caller keeps them): 0 written, 1 partly queued (a
     * drain event follows), or a negative error. */
    int (*write)(mg_stream *s, const uv_buf_t *bufs, unsigned n);
    size_t (*queued)(const mg_stream *s); /* bytes waiting to be written */
    /* Sends FIN once the queue is written, then, if s->linger_reads, drops
     * up to that many reads of what the peer still sends until it closes
     * (the owner's timer bounds that: close); else closes. */
    void (*shutdown)(mg_stream *s);
    void (*close)(mg_stream *s); /* closes now; the close event follows */
} mg_stream_ops;

struct mg_stream {
    uv_tcp_t tcp;
    const mg_stream_ops *ops;
    const mg_stream_events *ev;
    char *rbuf;        /* where reads land: the loop's shared read buffer */
    uint32_t rbuf_len; /* at most the loop buffer, 64 KiB */
    uint8_t reading;
    uint8_t closing;
    uint8_t linger_reads; /* set by the owner before shutdown: reads to drop while lingering (0:
                             none) */
};

/* Plain TCP. Initialises s on loop; reads go to rbuf (shared, not owned). */
int mg_stream_tcp_init(mg_stream *s, uv_loop_t *loop, const mg_stream_events *ev, char *rbuf,
                       size_t rbuf_len);

/* Takes the next connection of a listening socket. */
int mg_stream_accept(mg_stream *s, uv_stream_t *server);

/* Connects to addr; req must live until the connect event (embed it in the
 * owner). */
int mg_stream_connect(mg_stream *s, uv_connect_t *req, const struct sockaddr *addr);

static inline int mg_stream_read_start(mg_stream *s)
{
    return s->ops->read_start(s);
}

static inline void mg_stream_read_stop(mg_stream *s)
{
    s->ops->read_stop(s);
}

static inline int mg_stream_write(mg_stream *s, const uv_buf_t *bufs, unsigned n)
{
    return s->ops->write(s, bufs, n);
}

static inline size_t mg_stream_queued(const mg_stream *s)
{
    return s->ops->queued(s);
}

static inline void mg_stream_shutdown(mg_stream *s)
{
    s->ops->shutdown(s);
}

static inline void mg_stream_close(mg_stream *s)
{
    s->ops->close(s);
}

/* Acknowledges what was received now instead of after the delayed-ACK
 * timer. A peer that writes a response in two small pieces with Nagle on
 * (Python's http.server does) waits for that ACK before the second piece:
 * 40 ms per request on a kept-alive connection, unless we ACK at once. */
void mg_stream_ack_now(mg_stream *s);

/* Segments sent but not acknowledged by the peer's kernel (TCP_INFO), or
 * -1 when unknown. */
int mg_stream_unacked(const mg_stream *s);

/* The peer's address (for logs and X-Forwarded-For); 0 or a libuv error. */
int mg_stream_peer(const mg_stream *s, struct sockaddr_storage *out);

#endif
