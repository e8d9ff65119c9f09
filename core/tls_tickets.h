/* Session ticket keys, shared by every worker and rotated.
 *
 * Tickets (TLS 1.2 session tickets and TLS 1.3 PSK resumption tickets) are
 * encrypted with the current key (AES-256-CBC + HMAC-SHA256, the layout
 * OpenSSL's ticket callback expects). After a rotation the previous key
 * still decrypts, and a ticket it opened is replaced by one under the new
 * key, so a client resumes across one rotation. Keys live in a small ring
 * of slots guarded by sequence counters: a handshake on any thread reads
 * them without a lock; only mg_tls_tickets_rotate (main thread) writes. */
#ifndef MG_TLS_TICKETS_H
#define MG_TLS_TICKETS_H

#include <openssl/ssl.h>

/* The first key. Called once before any store exists; returns 0 or -1. */
int mg_tls_tickets_init(void);

/* A new current key; the old current becomes the previous one (main thread). */
int mg_tls_tickets_rotate(void);

/* Installs the ticket callback on a server SSL_CTX. */
void mg_tls_tickets_attach(SSL_CTX *ctx);

/* How many rotations have happened (for specs and logs). */
unsigned mg_tls_tickets_generation(void);

#endif
