/* The TLS manager, on the main thread: it owns every certificate the
 * gateway serves, builds certificate stores from them and publishes each
 * new one (mg_tls_publish) for the workers.
 *
 * Sources of certificates, in the order a store lists them (so the first
 * of the config's tls.certificates is the default):
 *   1. tls.certificates files; they are checked every 500 ms (stat), and a
 *      changed pair is loaded and served at once; an unreadable or
 *      mismatched pair is logged with its file and the last good
 *      certificate keeps serving;
 *   2. certificates set at run time by certificate source plugins on the
 *      control plane (mg.tls.set_certificate: the ACME client, ...);
 *   3. when there is none at all, a self-signed certificate made at start,
 *      so a TLS listener answers (with a certificate no browser trusts)
 *      while the first ACME certificate is being obtained.
 * Plus the ACME challenge tables (HTTP-01 tokens, TLS-ALPN-01 certificates).
 *
 * The manager is a process-wide singleton: there is one main thread.
 * Every function here runs on it. */
#ifndef MG_TLS_WATCH_H
#define MG_TLS_WATCH_H

#include "config.h"

#include <stddef.h>
#include <uv.h>

/* Loads cfg's certificates and publishes the first store (nothing when
 * cfg uses no TLS), then watches the files and rotates the ticket keys
 * every 12 h on loop. loop may be NULL (no watching: `moongate test`).
 * Returns 0, or -1 with err naming the file. */
int mg_tls_watch_start(uv_loop_t *loop, const mg_config *cfg, char *err, size_t errlen);

/* The config was reloaded: take its certificate list and settings. */
void mg_tls_watch_configure(const mg_config *cfg);

/* Stops the timers (run the loop once after), then frees everything and
 * publishes no store. */
void mg_tls_watch_stop(void);
void mg_tls_watch_free(void);

/* Checks the certificate files now (what the 500 ms timer does). */
void mg_tls_watch_check(void);

/* Run-time certificates, by an id of the caller's choosing ("acme:le:shop.example.com");
 * setting an id again replaces its certificate. Returns 0, or -1 with err. */
int mg_tls_set_certificate(const char *id, const char *cert_pem, size_t cert_len,
                           const char *key_pem, size_t key_len, char *err, size_t errlen);
int mg_tls_remove_certificate(const char *id); /* 0, or -1: no such id */

/* ACME challenges: key_authorization / cert NULL removes the entry. */
int mg_tls_set_http01(const char *token, const char *key_authorization);
int mg_tls_set_alpn01(const char *name, const char *cert_pem, size_t cert_len, const char *key_pem,
                      size_t key_len, char *err, size_t errlen);

/* A new ticket key now (the previous one still decrypts). */
int mg_tls_rotate_tickets(void);

#endif
