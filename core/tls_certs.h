/* Certificates and the certificate store.
 *
 * mg_tls_cert: one parsed certificate chain and its private key, checked
 * to match, with the names it serves (its DNS SANs, or its CN when it has
 * none) and its expiry. Immutable and reference-counted.
 *
 * mg_tls_store: everything a TLS listener needs to answer a handshake: the
 * server SSL_CTX (TLS 1.2+ or 1.3 only, Mozilla's "intermediate" ciphers,
 * session tickets under the shared rotating keys, ALPN selection), the
 * certificates indexed by name (exact names, then "*.example.com"
 * wildcards for one label; the first certificate added is the default),
 * an ECDSA and an RSA certificate side by side for the same name (OpenSSL
 * serves whichever the client's signature algorithms prefer), and the ACME
 * challenge tables: HTTP-01 key authorizations by token, TLS-ALPN-01
 * certificates by name (served when the client offers only "acme-tls/1").
 *
 * Lifetime: a store is built on the main thread (new, add..., finalize)
 * and is immutable from mg_tls_store_finalize on. Its reference count is
 * the SSL_CTX's own: every SSL object made from mg_tls_store_ctx() holds a
 * reference, so a connection keeps the store it started with however many
 * newer ones are published meanwhile.
 *
 * Publishing (main thread -> workers): mg_tls_publish(store) replaces the
 * current store; a worker keeps an mg_tls_holder and calls
 * mg_tls_holder_get() when it accepts a connection: one atomic load while
 * nothing changed, and a short mutex-held reference swap once per publish.
 * The pointer it returns stays valid until the next call on that holder;
 * mg_tls_new() takes the connection's own reference. */
#ifndef MG_TLS_CERTS_H
#define MG_TLS_CERTS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct mg_tls_cert mg_tls_cert;
typedef struct mg_tls_store mg_tls_store;

/* ---- certificates -------------------------------------------------------- */

/* Reads a PEM chain (leaf first) and a PEM private key. Errors name the
 * file: "certs/site.pem: no certificate in the file", "certs/site.key: the
 * private key does not match the certificate in certs/site.pem". Returns a
 * new certificate (one reference, the caller's) or NULL with err set. */
mg_tls_cert *mg_tls_cert_load_files(const char *cert_path, const char *key_path, char *err,
                                    size_t errlen);

/* The same from PEM text in memory; origin names it in errors and logs
 * ("acme le: shop.example.com"). */
mg_tls_cert *mg_tls_cert_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem,
                                  size_t key_len, const char *origin, char *err, size_t errlen);

void mg_tls_cert_ref(mg_tls_cert *c);
void mg_tls_cert_unref(mg_tls_cert *c);

int mg_tls_cert_nnames(const mg_tls_cert *c);
const char *mg_tls_cert_name(const mg_tls_cert *c, int i); /* lower case, "*.x.y" for wildcards */
time_t mg_tls_cert_not_after(const mg_tls_cert *c);
const char *mg_tls_cert_key_type(const mg_tls_cert *c); /* "ECDSA", "RSA", other: "other" */
const char *mg_tls_cert_origin(const mg_tls_cert *c);
/* The SHA-256 of the leaf's DER, as 64 lowercase hex digits (and a NUL). */
void mg_tls_cert_fingerprint(const mg_tls_cert *c, char out[65]);

/* ---- the store ------------------------------------------------------------ */

enum { MG_TLS_MIN_12 = 0x0303, MG_TLS_MIN_13 = 0x0304 };

/* A store being built. min_version: MG_TLS_MIN_12 or MG_TLS_MIN_13.
 * alpn (wire format, may be NULL: "http/1.1") is what a connection offers
 * when its engine has no list of its own (mg_tls_set_alpn). */
mg_tls_store *mg_tls_store_new(int min_version, const unsigned char *alpn, size_t alpn_len,
                               char *err, size_t errlen);

/* Adds a certificate (takes its own reference). Order matters: the first
 * is the default, and among several for a name the first of each key type
 * is served. Returns 0 or -ENOMEM. */
int mg_tls_store_add(mg_tls_store *s, mg_tls_cert *c);

/* ACME challenges. HTTP-01: token -> key authorization. TLS-ALPN-01: the
 * challenge certificate for name (see mg_crypto in lua_crypto.c). Copies. */
int mg_tls_store_add_http01(mg_tls_store *s, const char *token, const char *key_authorization);
int mg_tls_store_add_alpn01(mg_tls_store *s, const char *name, mg_tls_cert *c);

/* Builds the name index. Returns 0 or -ENOMEM; afterwards the store is
 * immutable and may be shared between threads. */
int mg_tls_store_finalize(mg_tls_store *s);

void mg_tls_store_ref(mg_tls_store *s);
void mg_tls_store_unref(mg_tls_store *s);

/* The server SSL_CTX for mg_tls_new(ctx, 1, ...). Borrowed. */
SSL_CTX *mg_tls_store_ctx(const mg_tls_store *s);

int mg_tls_store_ncerts(const mg_tls_store *s);
mg_tls_cert *mg_tls_store_cert(const mg_tls_store *s, int i); /* borrowed */

/* Which certificates a handshake for name would get: up to 2 (one per key
 * type); indexes into the store, the default's when nothing matches.
 * Returns how many (0: the store is empty). */
int mg_tls_store_select(const mg_tls_store *s, const char *name, int out[2]);

/* The key authorization for an HTTP-01 token, or NULL. Borrowed from s. */
const char *mg_tls_store_http01(const mg_tls_store *s, const char *token, size_t len);

/* ---- publishing to workers ------------------------------------------------ */

/* Makes s the current store (main thread); takes over the caller's
 * reference. s may be NULL (no TLS). */
void mg_tls_publish(mg_tls_store *s);

/* A new reference to the current store, or NULL (any thread). */
mg_tls_store *mg_tls_current(void);

typedef struct mg_tls_holder {
    mg_tls_store *store; /* one reference, or NULL */
    uint64_t gen;
} mg_tls_holder;

/* The current store for a worker (borrowed; valid until the next call on
 * h or mg_tls_holder_release). */
mg_tls_store *mg_tls_holder_get(mg_tls_holder *h);
void mg_tls_holder_release(mg_tls_holder *h);

/* ---- client side ------------------------------------------------------------ */

/* A client SSL_CTX: TLS 1.2+, verifying the peer against ca_file (PEM, may
 * be NULL) or the system store when verify is set. Caller owns it
 * (SSL_CTX_free). NULL with err set on failure ("ca.pem: ..."). */
SSL_CTX *mg_tls_client_ctx_new(int verify, const char *ca_file, char *err, size_t errlen);
/* The same, made once per (verify, CA file) and kept for the process (a
 * few per gateway), rebuilt when the file changes: for mg.http, from any
 * thread (a lock). Returns a new reference: SSL_CTX_free it after use. */
SSL_CTX *mg_tls_client_ctx_cached(int verify, const char *ca_file, char *err, size_t errlen);

#endif
