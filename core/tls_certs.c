/* The certificate store: SNI and ALPN selection, ACME challenge answers,
 * and publishing a store to the workers. See tls_certs.h. */
#include "ascii.h"
#include "tls.h"
#include "tls_cert_int.h"
#include "tls_tickets.h"
#include "tls_ocsp.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Mozilla's "intermediate" configuration (TLS 1.2 part; TLS 1.3 suites are
 * OpenSSL's defaults, which are the same three). */
#define MOZ_INTERMEDIATE_CIPHERS                                                                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS       "X25519:P-256:P-384"
#define ACME_ALPN    "acme-tls/1"

typedef struct name_ent {
    const char *name; /* borrowed from the certificate */
    int cert;
} name_ent;

struct mg_tls_store {
    SSL_CTX *ctx; /* its reference count is the store's */
    mg_tls_cert **certs;
    int ncerts, cap;
    name_ent *index; /* sorted by name, then certificate order */
    int nindex;
    char **tokens, **keyauths;
    int nhttp;
    char **anames;
    mg_tls_cert **acerts;
    int nalpn;
    unsigned char *alpn;
    size_t alpn_len;
    int finalized;
};

static int ctx_index = -1, ssl_acme_index = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* ---- the store -------------------------------------------------------------------- */

static void free_store(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    mg_tls_store *s = ptr;
    if (!s) return;
    for (int i = 0; i < s->ncerts; i++)
        mg_tls_cert_unref(s->certs[i]);
    free(s->certs);
    free(s->index);
    for (int i = 0; i < s->nhttp; i++) {
        free(s->tokens[i]);
        free(s->keyauths[i]);
    }
    free(s->tokens);
    free(s->keyauths);
    for (int i = 0; i < s->nalpn; i++) {
        free(s->anames[i]);
        mg_tls_cert_unref(s->acerts[i]);
    }
    free(s->anames);
    free(s->acerts);
    free(s->alpn);
    free(s);
}

static void init_once(void)
{
    ctx_index = SSL_CTX_get_ex_new_index(0, "moongate store", NULL, NULL, free_store);
    ssl_acme_index = SSL_get_ex_new_index(0, "moongate acme", NULL, NULL, NULL);
}

/* Reads the first host_name of a server_name extension into out. */
static int parse_sni(const unsigned char *p, size_t len, char *out, size_t outlen)
{
    if (len < 2) return -1;
    size_t list = (size_t)p[0] << 8 | p[1];
    p += 2;
    len -= 2;
    if (list > len) return -1;
    while (list >= 3) {
        unsigned type = p[0];
        size_t n = (size_t)p[1] << 8 | p[2];
        if (n + 3 > list) return -1;
        if (type == 0) {
            if (n == 0 || n >= outlen || memchr(p + 3, 0, n)) return -1;
            for (size_t i = 0; i < n; i++)
                out[i] = (char)mg_lower(p[3 + i]);
            out[n] = 0;
            if (out[n - 1] == '.') out[n - 1] = 0;
            return 0;
        }
        p += 3 + n;
        list -= 3 + n;
    }
    return -1;
}

/* 1 if the ALPN extension offers exactly one protocol: acme-tls/1. */
static int offers_acme_only(const unsigned char *p, size_t len)
{
    if (len < 2) return 0;
    size_t list = (size_t)p[0] << 8 | p[1];
    return list == len - 2 && list == 1 + strlen(ACME_ALPN) && p[2] == strlen(ACME_ALPN) &&
           memcmp(p + 3, ACME_ALPN, strlen(ACME_ALPN)) == 0;
}

static int set_cert(SSL *ssl, const mg_tls_cert *c)
{
    return SSL_use_cert_and_key(ssl, c->leaf, c->key, c->chain, 1) == 1;
}

/* Chooses the certificates for this handshake from the SNI name, before
 * OpenSSL picks a cipher and a signature algorithm. A client that offers
 * only "acme-tls/1" for a name with a pending TLS-ALPN-01 challenge gets
 * the challenge certificate instead. */
static int on_client_hello(SSL *ssl, int *al, void *arg)
{
    const mg_tls_store *s = arg;
    const unsigned char *p;
    size_t len;
    char name[256] = "";
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) &&
        parse_sni(p, len, name, sizeof(name)))
        name[0] = 0;
    if (name[0] && s->nalpn &&
        SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                  &len) &&
        offers_acme_only(p, len)) {
        for (int i = 0; i < s->nalpn; i++) {
            if (strcmp(s->anames[i], name) != 0) continue;
            if (!set_cert(ssl, s->acerts[i])) break;
            SSL_set_ex_data(ssl, ssl_acme_index, (void *)1);
            return SSL_CLIENT_HELLO_SUCCESS;
        }
    }
    int sel[2];
    int n = mg_tls_store_select(s, name[0] ? name : NULL, sel);
    for (int i = 0; i < n; i++)
        if (!set_cert(ssl, s->certs[sel[i]])) {
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
    if (n == 0) {
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* The first protocol of the listener's list (or the store's) that the
 * client offers; none in common: go on without ALPN, as nginx does. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    const mg_tls_store *s = arg;
    if (SSL_get_ex_data(ssl, ssl_acme_index)) {
        static const unsigned char acme[] = "\x0a" ACME_ALPN;
        if (SSL_select_next_proto((unsigned char **)out, outlen, acme, sizeof(acme) - 1, in,
                                  inlen) == OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_OK;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    const unsigned char *list = s->alpn;
    size_t n = s->alpn_len;
    mg_tls *t = mg_tls_from_ssl(ssl);
    if (t) {
        size_t tn;
        const unsigned char *tl = mg_tls__alpn_list(t, &tn);
        if (tl) {
            list = tl;
            n = tn;
        }
    }
    if (n && SSL_select_next_proto((unsigned char **)out, outlen, list, (unsigned)n, in, inlen) ==
                 OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;
}

mg_tls_store *mg_tls_store_new(int min_version, const unsigned char *alpn, size_t alpn_len,
                               char *err, size_t errlen)
{
    pthread_once(&once, init_once);
    if (ctx_index < 0 || ssl_acme_index < 0 || mg_tls_tickets_init()) {
        snprintf(err, errlen, "TLS: cannot initialize OpenSSL");
        return NULL;
    }
    mg_tls_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    static const unsigned char http11[] = "\x08http/1.1";
    if (!alpn) {
        alpn = http11;
        alpn_len = sizeof(http11) - 1;
    }
    s->alpn = malloc(alpn_len ? alpn_len : 1);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!s->alpn || !ctx) {
        mg_tls_openssl_error(err, errlen, "TLS: cannot create a context");
        SSL_CTX_free(ctx);
        free(s->alpn);
        free(s);
        return NULL;
    }
    memcpy(s->alpn, alpn, alpn_len);
    s->alpn_len = alpn_len;
    s->ctx = ctx;
    SSL_CTX_set_ex_data(ctx, ctx_index, s); /* freed with the context */
    int ok = SSL_CTX_set_min_proto_version(ctx, min_version) &&
             SSL_CTX_set_cipher_list(ctx, MOZ_INTERMEDIATE_CIPHERS) &&
             SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) && SSL_CTX_set1_groups_list(ctx, GROUPS) &&
             SSL_CTX_set_dh_auto(ctx, 1) &&
             SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"moongate", 8);
    if (!ok) {
        mg_tls_openssl_error(err, errlen, "TLS: cannot configure the context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    /* Idle connections give their read and write buffers back (~34 KiB). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Stateless resumption only: no server-side cache and its lock. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, 12 * 3600);
    mg_tls_tickets_attach(ctx);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, s);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, s);
    mg_tls_ocsp_attach(ctx, s);
    return s;
}

int mg_tls_store_add(mg_tls_store *s, mg_tls_cert *c)
{
    if (s->finalized) return -EINVAL;
    if (s->ncerts == s->cap) {
        int cap = s->cap ? s->cap * 2 : 4;
        mg_tls_cert **n = realloc(s->certs, (size_t)cap * sizeof(*n));
        if (!n) return -ENOMEM;
        s->certs = n;
        s->cap = cap;
    }
    mg_tls_cert_ref(c);
    s->certs[s->ncerts++] = c;
    return 0;
}

static int push_str(char ***arr, int n, const char *v)
{
    char **a = realloc(*arr, (size_t)(n + 1) * sizeof(*a));
    if (!a) return -ENOMEM;
    *arr = a;
    return (a[n] = strdup(v)) ? 0 : -ENOMEM;
}

int mg_tls_store_add_http01(mg_tls_store *s, const char *token, const char *key_authorization)
{
    if (s->finalized) return -EINVAL;
    if (push_str(&s->tokens, s->nhttp, token)) return -ENOMEM;
    if (push_str(&s->keyauths, s->nhttp, key_authorization)) {
        free(s->tokens[s->nhttp]);
        return -ENOMEM;
    }
    s->nhttp++;
    return 0;
}

int mg_tls_store_add_alpn01(mg_tls_store *s, const char *name, mg_tls_cert *c)
{
    if (s->finalized) return -EINVAL;
    mg_tls_cert **a = realloc(s->acerts, (size_t)(s->nalpn + 1) * sizeof(*a));
    if (!a) return -ENOMEM;
    s->acerts = a;
    char *lname = mg_tls__name_dup(name, strlen(name));
    if (!lname || push_str(&s->anames, s->nalpn, lname)) {
        free(lname);
        return -ENOMEM;
    }
    free(lname);
    mg_tls_cert_ref(c);
    s->acerts[s->nalpn++] = c;
    return 0;
}

static int cmp_ent(const void *a, const void *b)
{
    const name_ent *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->cert - y->cert;
}

int mg_tls_store_finalize(mg_tls_store *s)
{
    int n = 0;
    for (int i = 0; i < s->ncerts; i++)
        n += s->certs[i]->nnames;
    s->index = calloc(n ? (size_t)n : 1, sizeof(name_ent));
    if (!s->index) return -ENOMEM;
    for (int i = 0; i < s->ncerts; i++)
        for (int k = 0; k < s->certs[i]->nnames; k++)
            s->index[s->nindex++] = (name_ent){s->certs[i]->names[k], i};
    qsort(s->index, (size_t)s->nindex, sizeof(name_ent), cmp_ent);
    s->finalized = 1;
    return 0;
}

/* Adds the certificates indexed under exactly this name, one per key type. */
static int pick(const mg_tls_store *s, const char *name, int out[2], int n)
{
    int lo = 0, hi = s->nindex;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strcmp(s->index[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (int i = lo; i < s->nindex && n < 2 && strcmp(s->index[i].name, name) == 0; i++) {
        int c = s->index[i].cert;
        int type = EVP_PKEY_get_base_id(s->certs[c]->key);
        int dup = 0;
        for (int k = 0; k < n; k++)
            if (EVP_PKEY_get_base_id(s->certs[out[k]]->key) == type) dup = 1;
        if (!dup) out[n++] = c;
    }
    return n;
}

int mg_tls_store_select(const mg_tls_store *s, const char *name, int out[2])
{
    if (s->ncerts == 0) return 0;
    int n = 0;
    if (name && *name) {
        char lname[256];
        size_t l = strlen(name);
        if (l < sizeof(lname)) {
            for (size_t i = 0; i <= l; i++)
                lname[i] = (char)mg_lower((unsigned char)name[i]);
            if (l && lname[l - 1] == '.') lname[l - 1] = 0;
            n = pick(s, lname, out, 0);
            const char *dot = strchr(lname, '.');
            if (n == 0 && dot && dot != lname) {
                char wild[258];
                snprintf(wild, sizeof(wild), "*%s", dot);
                n = pick(s, wild, out, 0);
            }
        }
    }
    if (n) return n;
    /* the default: the first certificate, with its twin of the other key
     * type if one serves the same first name */
    out[0] = 0;
    n = 1;
    if (s->certs[0]->nnames) {
        int alt[2];
        int m = pick(s, s->certs[0]->names[0], alt, 0);
        for (int i = 0; i < m; i++)
            if (EVP_PKEY_get_base_id(s->certs[alt[i]]->key) !=
                EVP_PKEY_get_base_id(s->certs[0]->key))
                out[n++] = alt[i];
    }
    return n;
}

const char *mg_tls_store_http01(const mg_tls_store *s, const char *token, size_t len)
{
    for (int i = 0; i < s->nhttp; i++)
        if (strlen(s->tokens[i]) == len && memcmp(s->tokens[i], token, len) == 0)
            return s->keyauths[i];
    return NULL;
}

void mg_tls_store_ref(mg_tls_store *s)
{
    SSL_CTX_up_ref(s->ctx);
}

void mg_tls_store_unref(mg_tls_store *s)
{
    if (s) SSL_CTX_free(s->ctx); /* the last reference frees s (free_store) */
}

SSL_CTX *mg_tls_store_ctx(const mg_tls_store *s)
{
    return s->ctx;
}

int mg_tls_store_ncerts(const mg_tls_store *s)
{
    return s->ncerts;
}

mg_tls_cert *mg_tls_store_cert(const mg_tls_store *s, int i)
{
    return i >= 0 && i < s->ncerts ? s->certs[i] : NULL;
}

/* ---- publishing ------------------------------------------------------------------- */

static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static mg_tls_store *published;
static atomic_uint_fast64_t pub_gen = 1;

void mg_tls_publish(mg_tls_store *s)
{
    pthread_mutex_lock(&pub_lock);
    mg_tls_store *old = published;
    published = s;
    atomic_fetch_add_explicit(&pub_gen, 1, memory_order_release);
    pthread_mutex_unlock(&pub_lock);
    mg_tls_store_unref(old);
}

mg_tls_store *mg_tls_current(void)
{
    pthread_mutex_lock(&pub_lock);
    mg_tls_store *s = published;
    if (s) mg_tls_store_ref(s);
    pthread_mutex_unlock(&pub_lock);
    return s;
}

mg_tls_store *mg_tls_holder_get(mg_tls_holder *h)
{
    if (atomic_load_explicit(&pub_gen, memory_order_acquire) == h->gen) return h->store;
    pthread_mutex_lock(&pub_lock);
    mg_tls_store *s = published;
    if (s) mg_tls_store_ref(s);
    h->gen = atomic_load_explicit(&pub_gen, memory_order_relaxed);
    pthread_mutex_unlock(&pub_lock);
    mg_tls_store_unref(h->store);
    h->store = s;
    return s;
}

void mg_tls_holder_release(mg_tls_holder *h)
{
    mg_tls_store_unref(h->store);
    h->store = NULL;
    h->gen = 0;
}
