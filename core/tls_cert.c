/* Certificates: a key pair and its chain loaded from PEM files or text,
 * checked to belong together, with the names it covers; and the client
 * contexts for https:// targets. See tls_certs.h. */
#include "ascii.h"
#include "tls.h"
#include "tls_cert_int.h"
#include "tls_ocsp.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <sys/stat.h>

/* ---- certificates --------------------------------------------------------------- */

void mg_tls_cert_ref(mg_tls_cert *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void mg_tls_cert_unref(mg_tls_cert *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    X509_free(c->leaf);
    sk_X509_pop_free(c->chain, X509_free);
    EVP_PKEY_free(c->key);
    for (int i = 0; i < c->nnames; i++)
        free(c->names[i]);
    free(c->names);
    free(c->origin);
    mg_tls__ocsp_free(c);
    free(c);
}

int mg_tls_cert_nnames(const mg_tls_cert *c)
{
    return c->nnames;
}

const char *mg_tls_cert_name(const mg_tls_cert *c, int i)
{
    return i >= 0 && i < c->nnames ? c->names[i] : NULL;
}

time_t mg_tls_cert_not_after(const mg_tls_cert *c)
{
    return c->not_after;
}

const char *mg_tls_cert_origin(const mg_tls_cert *c)
{
    return c->origin;
}

void mg_tls_cert_fingerprint(const mg_tls_cert *c, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = 0;
    if (X509_digest(c->leaf, EVP_sha256(), md, &n) != 1 || n != 32) return;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

const char *mg_tls_cert_key_type(const mg_tls_cert *c)
{
    int id = EVP_PKEY_get_base_id(c->key);
    return id == EVP_PKEY_EC ? "ECDSA" : id == EVP_PKEY_RSA ? "RSA" : "other";
}

char *mg_tls__name_dup(const char *s, size_t n)
{
    char *r = malloc(n + 1);
    if (!r) return NULL;
    for (size_t i = 0; i < n; i++)
        r[i] = (char)mg_lower((unsigned char)s[i]);
    r[n] = 0;
    if (n && r[n - 1] == '.') r[n - 1] = 0; /* "example.com." is example.com */
    return r;
}

static int add_name(mg_tls_cert *c, const char *s, size_t n)
{
    if (n == 0 || memchr(s, 0, n)) return 0; /* embedded NUL: never trust it */
    char **nn = realloc(c->names, (size_t)(c->nnames + 1) * sizeof(*nn));
    if (!nn) return -ENOMEM;
    c->names = nn;
    if (!(c->names[c->nnames] = mg_tls__name_dup(s, n))) return -ENOMEM;
    c->nnames++;
    return 0;
}

/* DNS SANs; the subject CN only when the certificate has no SAN at all. */
static int collect_names(mg_tls_cert *c)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(c->leaf, NID_subject_alt_name, NULL, NULL);
    if (sans) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            if (g->type != GEN_DNS) continue;
            const unsigned char *p = ASN1_STRING_get0_data(g->d.dNSName);
            if (add_name(c, (const char *)p, (size_t)ASN1_STRING_length(g->d.dNSName))) {
                GENERAL_NAMES_free(sans);
                return -ENOMEM;
            }
        }
        GENERAL_NAMES_free(sans);
        return 0;
    }
    X509_NAME *subj = X509_get_subject_name(c->leaf);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0) return 0;
    ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    return add_name(c, (const char *)ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
}

/* Builds a certificate from PEM BIOs; cert_name/key_name are for errors. */
static mg_tls_cert *from_bios(BIO *cb, BIO *kb, const char *cert_name, const char *key_name,
                              const char *origin, char *err, size_t errlen)
{
    mg_tls_cert *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    mg_tls__ocsp_init(c);
    ERR_clear_error();
    c->leaf = PEM_read_bio_X509_AUX(cb, NULL, NULL, NULL);
    if (!c->leaf) {
        char prefix[300];
        snprintf(prefix, sizeof(prefix), "%s: no PEM certificate in it", cert_name);
        mg_tls_openssl_error(err, errlen, prefix);
        goto fail;
    }
    c->chain = sk_X509_new_null();
    if (!c->chain) goto oom;
    for (;;) {
        X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
        if (!x) break;
        if (!sk_X509_push(c->chain, x)) {
            X509_free(x);
            goto oom;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        char prefix[300];
        snprintf(prefix, sizeof(prefix), "%s: a chain certificate does not parse", cert_name);
        mg_tls_openssl_error(err, errlen, prefix);
        goto fail;
    }
    ERR_clear_error();
    c->key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (!c->key) {
        char prefix[300];
        snprintf(prefix, sizeof(prefix), "%s: no PEM private key in it", key_name);
        mg_tls_openssl_error(err, errlen, prefix);
        goto fail;
    }
    if (X509_check_private_key(c->leaf, c->key) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "%s: the private key does not match the certificate in %s", key_name,
                 cert_name);
        goto fail;
    }
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(c->leaf), &tm) == 1) c->not_after = timegm(&tm);
    if (collect_names(c) || mg_tls__ocsp_read_url(c)) goto oom;
    if (!(c->origin = strdup(origin))) goto oom;
    return c;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    mg_tls_cert_unref(c);
    return NULL;
}

mg_tls_cert *mg_tls_cert_load_files(const char *cert_path, const char *key_path, char *err,
                                    size_t errlen)
{
    BIO *cb = BIO_new_file(cert_path, "r");
    if (!cb) {
        ERR_clear_error();
        snprintf(err, errlen, "%s: cannot read: %s", cert_path, strerror(errno));
        return NULL;
    }
    BIO *kb = BIO_new_file(key_path, "r");
    if (!kb) {
        ERR_clear_error();
        snprintf(err, errlen, "%s: cannot read: %s", key_path, strerror(errno));
        BIO_free(cb);
        return NULL;
    }
    mg_tls_cert *c = from_bios(cb, kb, cert_path, key_path, cert_path, err, errlen);
    BIO_free(cb);
    BIO_free(kb);
    return c;
}

mg_tls_cert *mg_tls_cert_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem,
                                  size_t key_len, const char *origin, char *err, size_t errlen)
{
    BIO *cb = BIO_new_mem_buf(cert_pem, (int)cert_len);
    BIO *kb = BIO_new_mem_buf(key_pem, (int)key_len);
    mg_tls_cert *c = NULL;
    if (cb && kb) {
        char cn[300], kn[300];
        snprintf(cn, sizeof(cn), "%s (certificate)", origin);
        snprintf(kn, sizeof(kn), "%s (key)", origin);
        c = from_bios(cb, kb, cn, kn, origin, err, errlen);
    } else {
        snprintf(err, errlen, "out of memory");
    }
    BIO_free(cb);
    BIO_free(kb);
    return c;
}

/* ---- client contexts -------------------------------------------------------------- */

SSL_CTX *mg_tls_client_ctx_new(int verify, const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) {
        mg_tls_openssl_error(err, errlen, "TLS: cannot create a client context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (verify) {
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
        int ok;
        if (ca_file) {
            FILE *f = fopen(ca_file, "r");
            if (!f) {
                snprintf(err, errlen, "%s: cannot read: %s", ca_file, strerror(errno));
                SSL_CTX_free(c);
                return NULL;
            }
            fclose(f);
            ok = SSL_CTX_load_verify_locations(c, ca_file, NULL);
        } else {
            ok = SSL_CTX_set_default_verify_paths(c);
        }
        if (ok != 1) {
            char prefix[300];
            snprintf(prefix, sizeof(prefix), "%s: no usable CA certificate in it",
                     ca_file ? ca_file : "the system CA store");
            mg_tls_openssl_error(err, errlen, prefix);
            SSL_CTX_free(c);
            return NULL;
        }
    }
    return c;
}

/* Client contexts for HTTPS, one per (verify, CA file), rebuilt when the
 * file changes; they live as long as the process (a few per gateway). */
typedef struct client_ctx {
    int verify;
    char *ca_file;
    struct timespec mtime;
    SSL_CTX *ctx;
} client_ctx;

static client_ctx *ctxs;
static int nctxs;

static SSL_CTX *client_ctx_cached(int verify, const char *ca_file, char *err, size_t errlen)
{
    struct stat st = {0};
    if (ca_file && stat(ca_file, &st)) {
        snprintf(err, errlen, "%s: cannot read: %s", ca_file, strerror(errno));
        return NULL;
    }
    for (int i = 0; i < nctxs; i++) {
        client_ctx *c = &ctxs[i];
        if (c->verify != verify || (!c->ca_file) != (!ca_file) ||
            (ca_file && strcmp(c->ca_file, ca_file)))
            continue;
        if (!ca_file ||
            (c->mtime.tv_sec == st.st_mtim.tv_sec && c->mtime.tv_nsec == st.st_mtim.tv_nsec))
            return c->ctx;
        SSL_CTX *n = mg_tls_client_ctx_new(verify, ca_file, err, errlen);
        if (!n) return NULL;
        SSL_CTX_free(c->ctx);
        c->ctx = n;
        c->mtime = st.st_mtim;
        return n;
    }
    SSL_CTX *n = mg_tls_client_ctx_new(verify, ca_file, err, errlen);
    client_ctx *grown = n ? realloc(ctxs, (size_t)(nctxs + 1) * sizeof(*ctxs)) : NULL;
    if (!grown) {
        if (n) snprintf(err, errlen, "out of memory");
        SSL_CTX_free(n);
        return NULL;
    }
    ctxs = grown;
    ctxs[nctxs] = (client_ctx){verify, ca_file ? strdup(ca_file) : NULL, st.st_mtim, n};
    return ctxs[nctxs++].ctx;
}

/* Workers' request hooks (mg.http in forward_auth) and the control plane
 * share the cache: one lock around it. An SSL made from a context holds a
 * reference, so replacing one in use is safe. */
static uv_mutex_t ctxs_lock;
static uv_once_t ctxs_once = UV_ONCE_INIT;

static void ctxs_lock_init(void)
{
    uv_mutex_init(&ctxs_lock);
}

SSL_CTX *mg_tls_client_ctx_cached(int verify, const char *ca_file, char *err, size_t errlen)
{
    uv_once(&ctxs_once, ctxs_lock_init);
    uv_mutex_lock(&ctxs_lock);
    SSL_CTX *c = client_ctx_cached(verify, ca_file, err, errlen);
    if (c) SSL_CTX_up_ref(c); /* the caller's, so that a replacement cannot free it */
    uv_mutex_unlock(&ctxs_lock);
    return c;
}
