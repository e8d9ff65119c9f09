/* The TLS engine: one OpenSSL SSL object per connection over memory BIOs,
 * independent of libuv and of the HTTP layers. The transport layer owns
 * the socket and drives the engine:
 *
 *   read from the socket  -> mg_tls_feed(t, bytes)      (ciphertext in)
 *                          -> mg_tls_handshake(t) until 0, then
 *                          -> mg_tls_read(t, buf) until -EAGAIN (plaintext out)
 *                          -> mg_tls_feed_end(t)       (before the bytes go away)
 *   send plaintext         -> mg_tls_write(t, bytes)
 *   ciphertext to send     -> the sink (mg_tls_set_sink), or
 *                             mg_tls_out_peek/mg_tls_out_consume
 *   closing                -> mg_tls_shutdown(t) queues close_notify
 *
 * Input is borrowed, never copied: mg_tls_feed keeps a pointer to the
 * caller's bytes (a worker's shared read buffer), OpenSSL reads its records
 * straight from there, and mg_tls_feed_end copies only what OpenSSL has not
 * consumed yet (a partial record, or records left while the caller applies
 * back-pressure). Output is handed to the sink as OpenSSL produces it, so a
 * transport that writes with uv_try_write copies only what the socket did
 * not take; without a sink it is kept in the engine's own buffer.
 *
 * Return convention: 0 or a positive count on success, -EAGAIN when more
 * ciphertext is needed, -EPROTO for a TLS failure (mg_tls_error names it),
 * -ENOMEM, or whatever negative code the sink returned. Everything runs on
 * the thread that owns the connection; an engine is never shared. */
#ifndef MG_TLS_H
#define MG_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct ssl_ctx_st;
struct ssl_st;
typedef struct mg_tls mg_tls;

/* Receives ciphertext to send. Returns 0 (the bytes were taken: written or
 * copied by the callee) or a negative code, which the engine's call returns. */
typedef int (*mg_tls_sink)(void *ud, const char *data, size_t len);

/* Creates an engine for one connection. ctx comes from the certificate store
 * (server: mg_tls_store_ctx) or from mg_tls_client_ctx_new (client); the SSL
 * object takes its own reference on ctx, so the store a connection started
 * with stays alive until mg_tls_free. server_name (client only, may be NULL)
 * is sent as SNI (unless it is an IP literal) and checked against the
 * peer's certificate when ctx verifies. Returns the engine (caller owns it,
 * free with mg_tls_free) or NULL with err set. */
mg_tls *mg_tls_new(struct ssl_ctx_st *ctx, int server, const char *server_name, char *err,
                   size_t errlen);
void mg_tls_free(mg_tls *t);

/* Where ciphertext goes; NULL keeps it in the engine (mg_tls_out_peek). */
void mg_tls_set_sink(mg_tls *t, mg_tls_sink sink, void *ud);

/* ALPN: a server offers the first protocol of this list that the client
 * also offers; a client offers the list. Wire format: length-prefixed
 * names ("\x02h2\x08http/1.1"); the bytes are copied. Returns 0 or -ENOMEM. */
int mg_tls_set_alpn(mg_tls *t, const unsigned char *wire, size_t len);

/* Borrows len bytes of ciphertext until mg_tls_feed_end (or the next feed). */
void mg_tls_feed(mg_tls *t, const char *data, size_t len);
/* Copies the fed bytes OpenSSL has not consumed. Returns 0 or -ENOMEM. */
int mg_tls_feed_end(mg_tls *t);
/* Bytes fed and not consumed yet (borrowed plus kept). */
size_t mg_tls_in_pending(const mg_tls *t);

/* Advances the handshake: 0 once it is complete, -EAGAIN, -EPROTO. */
int mg_tls_handshake(mg_tls *t);
int mg_tls_handshake_done(const mg_tls *t);

/* Plaintext received: > 0 bytes, 0 when the peer sent close_notify,
 * -EAGAIN when more ciphertext is needed, -EPROTO. Drives the handshake
 * first if it is not done. */
ssize_t mg_tls_read(mg_tls *t, char *buf, size_t len);

/* Encrypts all of len bytes (the ciphertext goes to the sink or the out
 * buffer at once). Returns len, -EAGAIN (handshake not done: feed more),
 * -EPROTO, or the sink's error. */
ssize_t mg_tls_write(mg_tls *t, const char *buf, size_t len);

/* Queues a close_notify alert. Returns 0 or a negative code. Call it
 * before mg_tls_free on a client engine whose session should be resumed
 * later (pooled upstream connections): OpenSSL marks the session of an SSL
 * freed without close_notify as not resumable. */
int mg_tls_shutdown(mg_tls *t);

/* The out buffer (used when no sink is set). peek returns the bytes waiting
 * to be sent, consume drops the first n of them after they were written. */
const char *mg_tls_out_peek(const mg_tls *t, size_t *len);
void mg_tls_out_consume(mg_tls *t, size_t n);

/* The last failure, "" if none. Valid until the next call on t. */
const char *mg_tls_error(const mg_tls *t);

/* Negotiated parameters (after the handshake; before it, NULL / 0). */
const char *mg_tls_alpn(const mg_tls *t, size_t *len); /* not NUL-terminated */
const char *mg_tls_sni(const mg_tls *t);               /* server: the name the client sent */
const char *mg_tls_version(const mg_tls *t);           /* "TLSv1.3" */
int mg_tls_version_number(const mg_tls *t);            /* 0x0304 */
const char *mg_tls_cipher(const mg_tls *t);
int mg_tls_resumed(const mg_tls *t);

/* Attaches a pointer for the store's callbacks (listener settings). */
void mg_tls_set_user(mg_tls *t, void *user);
void *mg_tls_user(const mg_tls *t);
/* The engine an SSL object belongs to (for callbacks that get the SSL). */
mg_tls *mg_tls_from_ssl(const struct ssl_st *ssl);
struct ssl_st *mg_tls_ssl(const mg_tls *t);

/* The engine's ALPN list as set by mg_tls_set_alpn (for the store's ALPN
 * selection callback); NULL when none was set. */
const unsigned char *mg_tls__alpn_list(const mg_tls *t, size_t *len);

/* Converts a list of protocol names into ALPN wire format. Returns the
 * length written, or -ENOSPC / -EINVAL (a name longer than 255 or empty). */
int mg_tls_alpn_wire(const char *const *names, int n, unsigned char *out, size_t outlen);

/* Fills err with the OpenSSL error queue's most useful entry (and clears
 * the queue); prefix is prepended. For the store and the crypto functions. */
void mg_tls_openssl_error(char *err, size_t errlen, const char *prefix);

#endif
