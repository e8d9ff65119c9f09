/* See tls_ocsp.h. */
#include "tls_ocsp.h"
#include "tls.h"
#include "tls_cert_int.h"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mg_tls__ocsp_init(mg_tls_cert *c)
{
    pthread_mutex_init(&c->ocsp_lock, NULL);
}

int mg_tls__ocsp_read_url(mg_tls_cert *c)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(c->leaf);
    if (!urls) return 0;
    const char *u = sk_OPENSSL_STRING_num(urls) > 0 ? sk_OPENSSL_STRING_value(urls, 0) : NULL;
    /* Ownership: c->ocsp_url is c's, freed by mg_tls__ocsp_free. */
    if (u && !(c->ocsp_url = strdup(u))) {
        X509_email_free(urls);
        return -1;
    }
    X509_email_free(urls); /* frees a list of OpenSSL strings */
    return 0;
}

void mg_tls__ocsp_free(mg_tls_cert *c)
{
    free(c->ocsp_url);
    free(c->ocsp_der);
    pthread_mutex_destroy(&c->ocsp_lock);
}

const char *mg_tls_ocsp_url(const mg_tls_cert *c)
{
    return c->ocsp_url;
}

/* The certificate in c's chain that issued its leaf, or NULL. */
static X509 *issuer_of(const mg_tls_cert *c)
{
    for (int i = 0; i < sk_X509_num(c->chain); i++) {
        X509 *x = sk_X509_value(c->chain, i);
        if (X509_check_issued(x, c->leaf) == X509_V_OK) return x;
    }
    return NULL;
}

int mg_tls_ocsp_request(const mg_tls_cert *c, unsigned char **der, size_t *len, char *err,
                        size_t errlen)
{
    X509 *issuer = issuer_of(c);
    if (!issuer) {
        snprintf(err, errlen, "its issuer's certificate is not in the chain");
        return -1;
    }
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, c->leaf, issuer);
    int n = -1;
    if (req && id && OCSP_request_add0_id(req, id)) {
        id = NULL; /* the request owns it now */
        n = i2d_OCSP_REQUEST(req, NULL);
    }
    *der = n > 0 ? malloc((size_t)n) : NULL;
    if (*der) {
        unsigned char *p = *der;
        *len = (size_t)i2d_OCSP_REQUEST(req, &p);
    }
    OCSP_CERTID_free(id);
    OCSP_REQUEST_free(req);
    if (!*der) {
        mg_tls_openssl_error(err, errlen, "cannot make the OCSP request");
        return -1;
    }
    return 0;
}

static time_t to_time(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    return t && ASN1_TIME_to_tm(t, &tm) == 1 ? timegm(&tm) : 0;
}

/* Checks resp for c; 0 and *next_update, or -1 with err. */
static int check(const mg_tls_cert *c, OCSP_RESPONSE *resp, time_t *next_update, char *err,
                 size_t errlen)
{
    int rs = OCSP_response_status(resp);
    if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(err, errlen, "the responder answered %s", OCSP_response_status_str(rs));
        return -1;
    }
    X509 *issuer = issuer_of(c);
    OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
    X509_STORE *st = X509_STORE_new();
    OCSP_CERTID *id = issuer ? OCSP_cert_to_id(NULL, c->leaf, issuer) : NULL;
    int rc = -1;
    if (!bs || !st || !id || !X509_STORE_add_cert(st, issuer)) {
        mg_tls_openssl_error(err, errlen, "cannot read the OCSP response");
        goto done;
    }
    /* the issuer is the anchor, whether or not it is a root itself */
    X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
    if (OCSP_basic_verify(bs, c->chain, st, 0) <= 0) {
        mg_tls_openssl_error(err, errlen,
                             "the response is not signed by the issuer or its responder");
        goto done;
    }
    int status, reason;
    ASN1_GENERALIZEDTIME *rev, *this_upd, *next_upd;
    if (!OCSP_resp_find_status(bs, id, &status, &reason, &rev, &this_upd, &next_upd)) {
        snprintf(err, errlen, "the response has no status for this certificate");
        goto done;
    }
    if (!OCSP_check_validity(this_upd, next_upd, 300, -1)) {
        ERR_clear_error();
        snprintf(err, errlen, "the response is not valid now (thisUpdate/nextUpdate)");
        goto done;
    }
    if (status != V_OCSP_CERTSTATUS_GOOD) {
        snprintf(err, errlen, "the responder says the certificate is %s",
                 OCSP_cert_status_str(status));
        goto done;
    }
    *next_update = to_time(next_upd);
    rc = 0;
done:
    OCSP_CERTID_free(id);
    X509_STORE_free(st);
    OCSP_BASICRESP_free(bs);
    return rc;
}

int mg_tls_ocsp_set(mg_tls_cert *c, const unsigned char *der, size_t len, time_t *next_update,
                    char *err, size_t errlen)
{
    const unsigned char *p = der;
    ERR_clear_error();
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    if (!resp) {
        mg_tls_openssl_error(err, errlen, "the answer is not a DER OCSP response");
        return -1;
    }
    int rc = check(c, resp, next_update, err, errlen);
    OCSP_RESPONSE_free(resp);
    if (rc) return -1;
    /* Ownership: the staple is c's, replaced here, freed with c. */
    unsigned char *copy = malloc(len);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(copy, der, len);
    pthread_mutex_lock(&c->ocsp_lock);
    unsigned char *old = c->ocsp_der;
    c->ocsp_der = copy;
    c->ocsp_len = len;
    c->ocsp_next = *next_update;
    pthread_mutex_unlock(&c->ocsp_lock);
    free(old);
    return 0;
}

time_t mg_tls_ocsp_next_update(mg_tls_cert *c)
{
    pthread_mutex_lock(&c->ocsp_lock);
    time_t t = c->ocsp_der ? c->ocsp_next : 0;
    pthread_mutex_unlock(&c->ocsp_lock);
    return t;
}

int mg_tls_ocsp_stapled(mg_tls_cert *c)
{
    pthread_mutex_lock(&c->ocsp_lock);
    int has = c->ocsp_der != NULL;
    pthread_mutex_unlock(&c->ocsp_lock);
    return has;
}

/* An OpenSSL-allocated copy of c's staple while it is valid; 0 if none. */
static size_t staple_copy(mg_tls_cert *c, unsigned char **out)
{
    size_t n = 0;
    pthread_mutex_lock(&c->ocsp_lock);
    if (c->ocsp_der && (!c->ocsp_next || c->ocsp_next > time(NULL))) {
        *out = OPENSSL_malloc(c->ocsp_len);
        if (*out) {
            memcpy(*out, c->ocsp_der, c->ocsp_len);
            n = c->ocsp_len;
        }
    }
    pthread_mutex_unlock(&c->ocsp_lock);
    return n;
}

/* The handshake asked for a status: the chosen certificate's staple. */
static int on_status(SSL *ssl, void *arg)
{
    mg_tls_store *s = arg;
    X509 *x = SSL_get_certificate(ssl);
    for (int i = 0; x && i < mg_tls_store_ncerts(s); i++) {
        mg_tls_cert *c = mg_tls_store_cert(s, i);
        if (c->leaf != x) continue;
        unsigned char *der = NULL;
        size_t n = staple_copy(c, &der);
        if (!n) break;
        SSL_set_tlsext_status_ocsp_resp(ssl, der, (long)n); /* OpenSSL frees der */
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

void mg_tls_ocsp_attach(SSL_CTX *ctx, mg_tls_store *s)
{
    SSL_CTX_set_tlsext_status_cb(ctx, on_status);
    SSL_CTX_set_tlsext_status_arg(ctx, s);
}
