/* TLS streams: the TLS engine (tls.h) behind the transport layer's
 * function table (stream.h), so the HTTP layers above read and write
 * plaintext and never know TLS is there.
 *
 * A TLS stream is a plain TCP stream (mg_stream_tcp_init) that has been
 * wrapped: the wrap swaps the stream's ops for TLS ones and interposes its
 * own event table between the socket and the owner's. Ciphertext from the
 * socket goes through the engine; plaintext reaches the owner's read event
 * as if from the socket. Writes are encrypted and handed straight to the
 * TCP write (tried at once, the rest queued), so drain and queued() mean
 * what they mean for TCP.
 *
 *   server: mg_stream_tcp_init(&c->s, ...); mg_stream_accept(&c->s, server);
 *           mg_tls_stream_server(&c->s, mg_tls_store_ctx(store), alpn, alpn_len);
 *           mg_stream_read_start(&c->s);
 *   client: mg_stream_tcp_init(&u->s, ...);
 *           mg_tls_stream_client(&u->s, svc->tls_ctx, server_name);
 *           mg_stream_connect(&u->s, &u->connect_req, addr);
 *           (the owner's connect event comes once the handshake is done,
 *           or with UV_EPROTO when it failed)
 *
 * A handshake failure is reported as an error event (UV_EPROTO) and
 * logged at info level with the reason; a close_notify from the peer as an
 * eof event. mg_stream_shutdown sends close_notify first. The state lives
 * in a block the stream points to (s->tcp.data, unused by plain TCP
 * streams), freed just before the owner's close event. */
#ifndef MG_TLS_STREAM_H
#define MG_TLS_STREAM_H

#include "stream.h"
#include "tls.h"

struct ssl_ctx_st;

/* Wraps an accepted stream as a TLS server. alpn (wire format, may be
 * NULL) is this listener's protocol list. Returns 0 or a negative errno;
 * on failure the stream is still a plain stream the caller must close. */
int mg_tls_stream_server(mg_stream *s, struct ssl_ctx_st *ctx, const unsigned char *alpn,
                         size_t alpn_len);

/* Wraps a stream about to connect as a TLS client that sends SNI and
 * checks server_name (verification as ctx says). Offers ALPN http/1.1. */
int mg_tls_stream_client(mg_stream *s, struct ssl_ctx_st *ctx, const char *server_name);

/* The engine of a wrapped stream (for the negotiated ALPN, SNI name, TLS
 * version to show hooks and logs), or NULL for a plain stream. */
mg_tls *mg_tls_stream_engine(const mg_stream *s);

#endif
