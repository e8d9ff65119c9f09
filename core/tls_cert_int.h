/* The parsed certificate behind the opaque mg_tls_cert, shared by
 * tls_cert.c (which builds it) and tls_certs.c (the store that indexes
 * and serves it). Not an API. */
#ifndef MG_TLS_CERT_INT_H
#define MG_TLS_CERT_INT_H

#include "tls_certs.h"

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

struct mg_tls_cert {
    atomic_int refs;
    X509 *leaf;
    STACK_OF(X509) * chain; /* intermediates, may be empty */
    EVP_PKEY *key;
    char **names;
    int nnames;
    time_t not_after;
    char *origin;
    /* OCSP stapling (tls_ocsp.c): the responder named by the leaf, and the
     * current staple, replaced under ocsp_lock */
    char *ocsp_url;
    pthread_mutex_t ocsp_lock;
    unsigned char *ocsp_der; /* malloc'd, NULL: no staple */
    size_t ocsp_len;
    time_t ocsp_next; /* the staple's nextUpdate, 0: none given */
};

/* A malloc'd lowercase copy of the host name s[0, n) without a trailing
 * dot, as names are compared; NULL when out of memory. */
char *mg_tls__name_dup(const char *s, size_t n);

#endif
