/* HTTP/2 to backends: a service with protocol "h2c" (cleartext, prior
 * knowledge) or "h2" (TLS, ALPN h2) sends its requests as streams over a
 * few connections per target and worker, instead of one HTTP/1.1
 * connection per request in flight. Like upstream.c it knows no request:
 * a stream reports to its owner through the table the owner registers.
 *
 * Lifetime: connections (one nghttp2 client session each) belong to the
 * worker (w->h2up) and live while they work: one that failed, got GOAWAY
 * or stayed idle for upstream.keepalive_timeout closes. A stream is made
 * by mg_h2up_request and belongs to its connection; the owner lets go
 * with mg_h2up_release (the stream is reset if it had not ended), after
 * which no event reaches it. Every event is on the worker's loop. */
#ifndef MG_H2_UPSTREAM_H
#define MG_H2_UPSTREAM_H

#include "snapshot.h"

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mg_h2up_stream mg_h2up_stream;
typedef struct mg_worker mg_worker;
struct ssl_ctx_st;

typedef struct mg_h2up_events {
    /* A response field (trailer: 1 after the body), valid during the call. */
    void (*field)(void *owner, const char *name, size_t nlen, const char *v, size_t vlen,
                  int trailer);
    /* The head ended: status (1xx heads come first, each with its fields). */
    void (*head)(void *owner, int status);
    void (*data)(void *owner, const char *p, size_t n);
    void (*end)(void *owner); /* the response is complete (trailers included) */
    /* The stream failed: sent_nothing says no byte of the request may have
     * been processed (refused, connection lost before it went out). */
    void (*error)(void *owner, const char *why, int sent_nothing);
    void (*drained)(void *owner); /* request body bytes were framed: send more */
} mg_h2up_events;

/* Starts a request to t: the head (nva: pseudo-headers first), and a body
 * to follow with mg_h2up_send when has_body. tls_ctx: NULL for h2c, else
 * the service's client context (server_name for SNI and verification).
 * Returns the stream, or NULL with *why. */
mg_h2up_stream *mg_h2up_request(mg_worker *w, const mg_target *t, struct ssl_ctx_st *tls_ctx,
                                const char *server_name, const nghttp2_nv *nva, size_t n,
                                int has_body, void *owner, const mg_h2up_events *ev,
                                const char **why);

/* Request body bytes (copied): 0, or 1 when enough waits to be framed (a
 * drained event follows), or -1 (the stream failed: an error event came or
 * comes). */
int mg_h2up_send(mg_h2up_stream *st, const char *p, size_t n);

/* The request body ended; nva: trailers (may be empty). */
void mg_h2up_end(mg_h2up_stream *st, const nghttp2_nv *nva, size_t n);

/* The owner took n response bytes: the backend's window reopens by n. */
void mg_h2up_consume(mg_h2up_stream *st, size_t n);

/* The owner lets go; a stream that did not end is reset (CANCEL). */
void mg_h2up_release(mg_h2up_stream *st);

/* The worker stops: every connection closes. */
void mg_h2up_close_all(mg_worker *w);

/* The worker's tick: closes connections idle past keepalive_timeout. */
void mg_h2up_expire(mg_worker *w, uint64_t now);

#endif
