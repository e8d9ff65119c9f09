/* HTTP/2 framing on the client side (RFC 9113), the second framing beside
 * HTTP/1 (conn.c): nghttp2 parses and builds frames, we own the
 * connection's I/O, the streams and their flow control. Each stream is a
 * request (mg_req) handed up through the same handler (mg_conn_handler)
 * and answered through its own mg_req_src table, so the proxy never knows
 * which framing a request came from. docs/http2.md.
 *
 * A client connection (mg_conn) becomes HTTP/2 when TLS negotiated ALPN
 * "h2", or when a plain connection starts with the client preface (h2c
 * with prior knowledge). conn.c keeps the socket, the connection list and
 * the timeouts; it forwards the stream events of an HTTP/2 connection
 * here. Memory: the session (c->h2) is freed in mg_h2_free, from the
 * connection's close event; streams are freed when nghttp2 closed them
 * and nothing on the stack still uses them. */
#ifndef MG_H2_H
#define MG_H2_H

#include <stddef.h>

typedef struct mg_conn mg_conn;

/* Whether p starts the client preface: 1 all of it, 0 a part of it (read
 * on), -1 not. */
int mg_h2_preface(const char *p, size_t n);

/* Starts HTTP/2 on c (sends our SETTINGS). Returns 0 or -1 (out of
 * memory: the caller closes c). */
int mg_h2_start(mg_conn *c);

/* Stream events of an HTTP/2 connection, forwarded by conn.c. */
void mg_h2_read(mg_conn *c, const char *p, size_t n);
void mg_h2_drain(mg_conn *c);
void mg_h2_eof(mg_conn *c);

/* The connection closes: every stream's request ends (gone). */
void mg_h2_closing(mg_conn *c);

/* Frees the session and its streams (the connection's close event). */
void mg_h2_free(mg_conn *c);

/* Frames what the proxy queued on every HTTP/2 connection of w during
 * this loop turn (the worker's prepare callback, before it polls). */
struct mg_worker;
void mg_h2_run_pending(struct mg_worker *w);

/* Graceful end (the worker stops, the idle timeout, a reload that changed
 * the listener): GOAWAY, finish the streams in flight, then close. */
void mg_h2_goaway(mg_conn *c);

#endif
