/* OCSP stapling. A certificate whose leaf names an OCSP responder (its
 * Authority Information Access extension) gets a staple: the control
 * plane asks the responder (lua/moongate/ocsp.lua, with mg.http), hands
 * the DER answer here, and it is checked (signed by the issuer or a
 * responder the issuer delegated to, for this certificate, valid now,
 * status good) before handshakes that ask for a status (the client's
 * status_request extension) get it.
 *
 * The staple is the one mutable part of an otherwise immutable
 * mg_tls_cert: it is replaced on the main thread and copied by workers
 * during handshakes, under the certificate's own mutex. */
#ifndef MG_TLS_OCSP_H
#define MG_TLS_OCSP_H

#include "tls_certs.h"

#include <stddef.h>
#include <time.h>

/* The responder's URL, or NULL when the certificate names none. */
const char *mg_tls_ocsp_url(const mg_tls_cert *c);

/* A DER OCSP request for c, malloc'd into *der (the caller frees it).
 * Returns 0, or -1 with err (no issuer in the chain, ...). */
int mg_tls_ocsp_request(const mg_tls_cert *c, unsigned char **der, size_t *len, char *err,
                        size_t errlen);

/* Checks a DER OCSP response for c and staples it. *next_update: when it
 * stops being valid (0 when the responder gave no nextUpdate). Returns 0,
 * or -1 with err; the previous staple, if any, stays. */
int mg_tls_ocsp_set(mg_tls_cert *c, const unsigned char *der, size_t len, time_t *next_update,
                    char *err, size_t errlen);

/* When the current staple stops being valid: 0 when there is none (or it
 * had no nextUpdate, then see mg_tls_ocsp_stapled). */
time_t mg_tls_ocsp_next_update(mg_tls_cert *c);
int mg_tls_ocsp_stapled(mg_tls_cert *c);

/* Hooks a store's handshakes up: the status callback of its ctx serves
 * the staple of whichever of the store's certificates a handshake chose. */
void mg_tls_ocsp_attach(SSL_CTX *ctx, mg_tls_store *s);

/* What mg_tls_cert needs: init at creation, then the responder's URL
 * read from the leaf (0, or -1 when out of memory), free at the end. */
void mg_tls__ocsp_init(mg_tls_cert *c);
int mg_tls__ocsp_read_url(mg_tls_cert *c);
void mg_tls__ocsp_free(mg_tls_cert *c);

#endif
