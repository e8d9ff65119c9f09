/* Unit tests of the TLS engine and the certificate store: a client engine
 * and a server engine handshake in memory (no sockets), with certificates
 * made at run time. Built by the Makefile as build/tls_engine_test and run
 * by spec/tls/engine_spec.lua; prints one line per test and
 * "N passed, N failed". */
#include "log.h"
#include "tls.h"
#include "tls_certs.h"
#include "tls_crypto.h"
#include "tls_stream.h"
#include "tls_tickets.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed, failed;
static const char *current;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: %s: check failed: %s\n", __FILE__, __LINE__, current,        \
                    #cond);                                                                        \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static mg_tls_cert *make_cert(const char *type, const char *const *names, int n, char *pem_out,
                              size_t pem_cap)
{
    char err[256];
    mg_bytes key = {0}, cert = {0};
    if (mg_crypto_keygen(type, 2048, &key, err, sizeof(err))) return NULL;
    EVP_PKEY *k = mg_crypto_key_load((const char *)key.p, key.len, err, sizeof(err));
    mg_tls_cert *c = NULL;
    if (k && mg_crypto_self_signed(k, names, n, 2, NULL, &cert, err, sizeof(err)) == 0)
        c = mg_tls_cert_from_pem((const char *)cert.p, cert.len, (const char *)key.p, key.len,
                                 names[0], err, sizeof(err));
    if (pem_out && cert.p && cert.len < pem_cap) {
        memcpy(pem_out, cert.p, cert.len);
        pem_out[cert.len] = 0;
    }
    if (!c) fprintf(stderr, "make_cert: %s\n", err);
    EVP_PKEY_free(k);
    mg_bytes_free(&key);
    mg_bytes_free(&cert);
    return c;
}

static mg_tls_cert *ec_a, *rsa_a, *ec_wild, *ec_default;

static mg_tls_store *make_store(int min_version)
{
    char err[256];
    mg_tls_store *s = mg_tls_store_new(min_version, NULL, 0, err, sizeof(err));
    if (!s) return NULL;
    mg_tls_store_add(s, ec_default);
    mg_tls_store_add(s, ec_a);
    mg_tls_store_add(s, rsa_a);
    mg_tls_store_add(s, ec_wild);
    mg_tls_store_finalize(s);
    return s;
}

/* Moves ciphertext from one engine's out buffer into the other, n bytes
 * at a time (1: every record arrives in pieces). */
static int shuttle(mg_tls *from, mg_tls *to, size_t chunk)
{
    size_t len;
    const char *p = mg_tls_out_peek(from, &len);
    int moved = 0;
    while (len) {
        size_t n = len < chunk ? len : chunk;
        char copy[65536];
        memcpy(copy, p, n); /* the feed is borrowed: prove nothing reads it later */
        mg_tls_feed(to, copy, n);
        if (!mg_tls_handshake_done(to)) {
            int rc = mg_tls_handshake(to);
            if (rc && rc != -EAGAIN) {
                mg_tls_feed_end(to);
                return rc;
            }
        }
        mg_tls_feed_end(to);
        memset(copy, 0xAA, n);
        mg_tls_out_consume(from, n);
        p = mg_tls_out_peek(from, &len);
        moved = 1;
    }
    return moved;
}

/* Runs both handshakes to completion (or failure). */
static int handshake(mg_tls *c, mg_tls *s, size_t chunk)
{
    int rc = mg_tls_handshake(c);
    if (rc && rc != -EAGAIN) return rc;
    for (int round = 0; round < 50; round++) {
        int a = shuttle(c, s, chunk);
        if (a < 0) return a;
        int b = shuttle(s, c, chunk);
        if (b < 0) return b;
        if (mg_tls_handshake_done(c) && mg_tls_handshake_done(s) && !a && !b) return 0;
    }
    return -ETIMEDOUT;
}

static SSL_CTX *client_ctx(void)
{
    char err[256];
    SSL_CTX *ctx = mg_tls_client_ctx_new(0, NULL, err, sizeof(err));
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

typedef struct pair {
    mg_tls *c, *s;
} pair;

static int open_pair(pair *p, mg_tls_store *st, SSL_CTX *cctx, const char *sni)
{
    char err[256];
    p->s = mg_tls_new(mg_tls_store_ctx(st), 1, NULL, err, sizeof(err));
    p->c = mg_tls_new(cctx, 0, sni, err, sizeof(err));
    return p->s && p->c ? 0 : -1;
}

static void close_pair(pair *p)
{
    mg_tls_free(p->c);
    mg_tls_free(p->s);
}

static const char *leaf_name(mg_tls *t)
{
    static char cn[256];
    X509 *x = SSL_get1_peer_certificate(mg_tls_ssl(t));
    cn[0] = 0;
    if (x) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        if (EVP_PKEY_get_base_id(X509_get0_pubkey(x)) == EVP_PKEY_RSA) strcat(cn, " (RSA)");
        X509_free(x);
    }
    return cn;
}

/* ---- tests ---------------------------------------------------------------------- */

static int t_handshake_defaults(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    pair p;
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    mg_tls_store_unref(st); /* the connection keeps its store alive */
    static const unsigned char offer[] = "\x02h2\x08http/1.1";
    CHECK(mg_tls_set_alpn(p.c, offer, sizeof(offer) - 1) == 0);
    CHECK(handshake(p.c, p.s, 65536) == 0);
    CHECK(strcmp(mg_tls_version(p.s), "TLSv1.3") == 0);
    size_t n;
    const char *alpn = mg_tls_alpn(p.s, &n);
    CHECK(alpn && n == 8 && memcmp(alpn, "http/1.1", 8) == 0);
    CHECK(mg_tls_sni(p.s) && strcmp(mg_tls_sni(p.s), "a.test") == 0);
    CHECK(strcmp(leaf_name(p.c), "a.test") == 0);
    CHECK(!mg_tls_resumed(p.s));
    close_pair(&p);
    SSL_CTX_free(cctx);
    return 0;
}

static int t_sni_selection(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    struct {
        const char *sni, *want;
    } cases[] = {{"a.test", "a.test"},       {"A.TEST", "a.test"},
                 {"x.w.test", "*.w.test"},   {"deep.x.w.test", "default.test"},
                 {"w.test", "default.test"}, {"other.test", "default.test"},
                 {NULL, "default.test"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pair p;
        CHECK(open_pair(&p, st, cctx, cases[i].sni) == 0);
        CHECK(handshake(p.c, p.s, 65536) == 0);
        if (strcmp(leaf_name(p.c), cases[i].want) != 0)
            fprintf(stderr, "  sni %s: got %s, want %s\n", cases[i].sni ? cases[i].sni : "(none)",
                    leaf_name(p.c), cases[i].want);
        CHECK(strcmp(leaf_name(p.c), cases[i].want) == 0);
        close_pair(&p);
    }
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

static int t_ecdsa_and_rsa_side_by_side(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    const char *algs[] = {"ECDSA+SHA256", "RSA-PSS+SHA256:RSA+SHA256"};
    const char *want[] = {"a.test", "a.test (RSA)"};
    for (int i = 0; i < 2; i++) {
        pair p;
        CHECK(open_pair(&p, st, cctx, "a.test") == 0);
        CHECK(SSL_set1_sigalgs_list(mg_tls_ssl(p.c), algs[i]) == 1);
        CHECK(handshake(p.c, p.s, 65536) == 0);
        CHECK(strcmp(leaf_name(p.c), want[i]) == 0);
        close_pair(&p);
    }
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

/* Handshake and data with every record fed one byte at a time, and a
 * reader that takes plaintext in small pieces (back-pressure). */
static int t_partial_records_and_backpressure(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    pair p;
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    CHECK(handshake(p.c, p.s, 1) == 0);
    static char big[300000], got[300000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7 + 3);
    CHECK(mg_tls_write(p.c, big, sizeof(big)) == (ssize_t)sizeof(big));
    size_t len, have = 0;
    const char *ct = mg_tls_out_peek(p.c, &len);
    CHECK(len > sizeof(big));
    /* all ciphertext in at once, read 1000 bytes, then stop (the caller's
     * buffer is about to be reused) */
    char *copy = malloc(len);
    memcpy(copy, ct, len);
    mg_tls_feed(p.s, copy, len);
    ssize_t n = mg_tls_read(p.s, got, 1000);
    CHECK(n > 0);
    have += (size_t)n;
    CHECK(mg_tls_feed_end(p.s) == 0);
    memset(copy, 0, len);
    free(copy);
    mg_tls_out_consume(p.c, len);
    CHECK(mg_tls_in_pending(p.s) > 0);
    while (have < sizeof(big) && (n = mg_tls_read(p.s, got + have, 777)) > 0)
        have += (size_t)n;
    CHECK(have == sizeof(big));
    CHECK(memcmp(big, got, sizeof(big)) == 0);
    CHECK(mg_tls_read(p.s, got, 10) == -EAGAIN);
    close_pair(&p);
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

static int t_close_notify(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    pair p;
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    CHECK(handshake(p.c, p.s, 65536) == 0);
    CHECK(mg_tls_write(p.c, "bye", 3) == 3);
    CHECK(mg_tls_shutdown(p.c) == 0);
    shuttle(p.c, p.s, 65536);
    char buf[16];
    CHECK(mg_tls_read(p.s, buf, sizeof(buf)) == 3);
    CHECK(mg_tls_read(p.s, buf, sizeof(buf)) == 0);
    close_pair(&p);
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

/* A full handshake, then the session it left behind. TLS 1.3 tickets come
 * after the handshake: the client reads them with its first read. */
static SSL_SESSION *session_from(mg_tls_store *st, SSL_CTX *cctx, int max_version, int *resumed,
                                 SSL_SESSION *use)
{
    pair p;
    if (open_pair(&p, st, cctx, "a.test")) return NULL;
    if (max_version) SSL_set_max_proto_version(mg_tls_ssl(p.c), max_version);
    if (use) SSL_set_session(mg_tls_ssl(p.c), use);
    SSL_SESSION *out = NULL;
    if (handshake(p.c, p.s, 65536) == 0) {
        char buf[8];
        mg_tls_write(p.s, "x", 1);
        shuttle(p.s, p.c, 65536);
        mg_tls_read(p.c, buf, sizeof(buf));
        *resumed = mg_tls_resumed(p.s);
        mg_tls_shutdown(p.c); /* an SSL freed without close_notify spoils its session */
        out = SSL_get1_session(mg_tls_ssl(p.c));
    }
    close_pair(&p);
    return out;
}

static int resumption(int version)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    int resumed = -1;
    /* three tickets under the first key (a TLS 1.3 client uses each once) */
    SSL_SESSION *s[3], *r[3];
    for (int i = 0; i < 3; i++) {
        s[i] = session_from(st, cctx, version, &resumed, NULL);
        CHECK(s[i] && resumed == 0);
    }
    /* a newer store (a certificate was renewed) still resumes: the keys are shared */
    mg_tls_store *st2 = make_store(MG_TLS_MIN_12);
    r[0] = session_from(st2, cctx, version, &resumed, s[0]);
    CHECK(r[0] && resumed == 1);
    /* one rotation: the previous key still decrypts */
    CHECK(mg_tls_tickets_rotate() == 0);
    r[1] = session_from(st2, cctx, version, &resumed, s[1]);
    CHECK(r[1] && resumed == 1);
    /* two rotations: that key is gone, a full handshake follows */
    CHECK(mg_tls_tickets_rotate() == 0);
    r[2] = session_from(st2, cctx, version, &resumed, s[2]);
    CHECK(r[2] && resumed == 0);
    for (int i = 0; i < 3; i++) {
        SSL_SESSION_free(s[i]);
        SSL_SESSION_free(r[i]);
    }
    mg_tls_store_unref(st);
    mg_tls_store_unref(st2);
    SSL_CTX_free(cctx);
    return 0;
}

static int t_resumption_tls13(void)
{
    return resumption(0);
}

static int t_resumption_tls12(void)
{
    return resumption(TLS1_2_VERSION);
}

static int t_min_version_13(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_13);
    SSL_CTX *cctx = client_ctx();
    pair p;
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    SSL_set_max_proto_version(mg_tls_ssl(p.c), TLS1_2_VERSION);
    CHECK(handshake(p.c, p.s, 65536) == -EPROTO);
    CHECK(strstr(mg_tls_error(p.s), "protocol") != NULL);
    close_pair(&p);
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

static int t_old_versions_refused(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    SSL_CTX_set_security_level(cctx, 0); /* let the client try TLS 1.0/1.1 */
    SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
    int versions[] = {TLS1_VERSION, TLS1_1_VERSION};
    for (int i = 0; i < 2; i++) {
        pair p;
        CHECK(open_pair(&p, st, cctx, "a.test") == 0);
        SSL_set_max_proto_version(mg_tls_ssl(p.c), versions[i]);
        CHECK(handshake(p.c, p.s, 65536) == -EPROTO);
        close_pair(&p);
    }
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

static int t_alpn_listener_list(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    pair p;
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    static const unsigned char server[] = "\x02h2\x08http/1.1", client[] = "\x08http/1.1\x02h2";
    CHECK(mg_tls_set_alpn(p.s, server, sizeof(server) - 1) == 0);
    CHECK(mg_tls_set_alpn(p.c, client, sizeof(client) - 1) == 0);
    CHECK(handshake(p.c, p.s, 65536) == 0);
    size_t n;
    const char *a = mg_tls_alpn(p.c, &n);
    CHECK(a && n == 2 && memcmp(a, "h2", 2) == 0); /* the server's preference wins */
    close_pair(&p);
    /* nothing in common: the handshake goes on without ALPN */
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    static const unsigned char other[] = "\x06spdy/1";
    CHECK(mg_tls_set_alpn(p.c, other, sizeof(other) - 1) == 0);
    CHECK(handshake(p.c, p.s, 65536) == 0);
    CHECK(mg_tls_alpn(p.c, &n) == NULL);
    close_pair(&p);
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

static int t_acme_tls_alpn01(void)
{
    char err[256];
    mg_tls_store *st = mg_tls_store_new(MG_TLS_MIN_12, NULL, 0, err, sizeof(err));
    mg_tls_store_add(st, ec_default);
    const char *names[] = {"a.test"};
    mg_bytes key = {0}, cert = {0};
    unsigned char digest[32] = {1, 2, 3};
    CHECK(mg_crypto_keygen("ec", 0, &key, err, sizeof(err)) == 0);
    EVP_PKEY *k = mg_crypto_key_load((const char *)key.p, key.len, err, sizeof(err));
    CHECK(mg_crypto_self_signed(k, names, 1, 7, digest, &cert, err, sizeof(err)) == 0);
    mg_tls_cert *chal = mg_tls_cert_from_pem((const char *)cert.p, cert.len, (const char *)key.p,
                                             key.len, "challenge", err, sizeof(err));
    CHECK(chal);
    CHECK(mg_tls_store_add_alpn01(st, "a.test", chal) == 0);
    CHECK(mg_tls_store_add_http01(st, "tok", "tok.thumb") == 0);
    mg_tls_store_finalize(st);
    CHECK(strcmp(mg_tls_store_http01(st, "tok", 3), "tok.thumb") == 0);
    CHECK(mg_tls_store_http01(st, "to", 2) == NULL);
    SSL_CTX *cctx = client_ctx();
    static const unsigned char acme[] = "\x0a"
                                        "acme-tls/1";
    pair p;
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    CHECK(mg_tls_set_alpn(p.c, acme, sizeof(acme) - 1) == 0);
    CHECK(handshake(p.c, p.s, 65536) == 0);
    size_t n;
    const char *a = mg_tls_alpn(p.c, &n);
    CHECK(a && n == 10 && memcmp(a, "acme-tls/1", 10) == 0);
    X509 *x = SSL_get1_peer_certificate(mg_tls_ssl(p.c));
    ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int idx = X509_get_ext_by_OBJ(x, obj, -1);
    CHECK(idx >= 0);
    X509_EXTENSION *ext = X509_get_ext(x, idx);
    CHECK(X509_EXTENSION_get_critical(ext));
    ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
    CHECK(ASN1_STRING_length(v) == 34 && ASN1_STRING_get0_data(v)[0] == 0x04 &&
          memcmp(ASN1_STRING_get0_data(v) + 2, digest, 32) == 0);
    ASN1_OBJECT_free(obj);
    X509_free(x);
    close_pair(&p);
    /* a normal client for the same name gets the normal certificate */
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    CHECK(handshake(p.c, p.s, 65536) == 0);
    CHECK(strcmp(leaf_name(p.c), "default.test") == 0);
    close_pair(&p);
    EVP_PKEY_free(k);
    mg_bytes_free(&key);
    mg_bytes_free(&cert);
    mg_tls_cert_unref(chal);
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

static int sink_count;
static int failing_sink(void *ud, const char *data, size_t len)
{
    sink_count++;
    return -ECONNRESET;
}

static int t_sink_errors(void)
{
    mg_tls_store *st = make_store(MG_TLS_MIN_12);
    SSL_CTX *cctx = client_ctx();
    pair p;
    CHECK(open_pair(&p, st, cctx, "a.test") == 0);
    mg_tls_set_sink(p.c, failing_sink, NULL);
    CHECK(mg_tls_handshake(p.c) == -ECONNRESET);
    CHECK(sink_count == 1);
    close_pair(&p);
    mg_tls_store_unref(st);
    SSL_CTX_free(cctx);
    return 0;
}

static int t_client_verifies(void)
{
    char err[256], pem[8192];
    const char *names[] = {"v.test"};
    mg_tls_cert *c = make_cert("ec", names, 1, pem, sizeof(pem));
    CHECK(c);
    mg_tls_store *st = mg_tls_store_new(MG_TLS_MIN_12, NULL, 0, err, sizeof(err));
    mg_tls_store_add(st, c);
    mg_tls_store_finalize(st);
    char path[] = "/tmp/mg-tls-ca-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, pem, strlen(pem)) == (ssize_t)strlen(pem));
    close(fd);
    SSL_CTX *good = mg_tls_client_ctx_new(1, path, err, sizeof(err));
    CHECK(good);
    pair p;
    CHECK(open_pair(&p, st, good, "v.test") == 0);
    CHECK(handshake(p.c, p.s, 65536) == 0);
    close_pair(&p);
    /* the right CA but another name: refused */
    CHECK(open_pair(&p, st, good, "w.test") == 0);
    CHECK(handshake(p.c, p.s, 65536) == -EPROTO);
    CHECK(strstr(mg_tls_error(p.c), "certificate verify failed") != NULL);
    close_pair(&p);
    /* the system store does not know this CA */
    SSL_CTX *sys = mg_tls_client_ctx_new(1, NULL, err, sizeof(err));
    CHECK(open_pair(&p, st, sys, "v.test") == 0);
    CHECK(handshake(p.c, p.s, 65536) == -EPROTO);
    close_pair(&p);
    CHECK(mg_tls_client_ctx_new(1, "/nonexistent/ca.pem", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
    unlink(path);
    SSL_CTX_free(good);
    SSL_CTX_free(sys);
    mg_tls_store_unref(st);
    mg_tls_cert_unref(c);
    return 0;
}

static int t_cert_errors_name_the_file(void)
{
    char err[512];
    CHECK(mg_tls_cert_load_files("/nonexistent/c.pem", "/nonexistent/k.pem", err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "/nonexistent/c.pem: cannot read") != NULL);
    /* a pair that does not match */
    char a_pem[8192], b_pem[8192];
    const char *n1[] = {"one.test"}, *n2[] = {"two.test"};
    mg_tls_cert *a = make_cert("ec", n1, 1, a_pem, sizeof(a_pem));
    mg_bytes key = {0};
    CHECK(mg_crypto_keygen("ec", 0, &key, err, sizeof(err)) == 0);
    mg_tls_cert *bad = mg_tls_cert_from_pem(a_pem, strlen(a_pem), (const char *)key.p, key.len,
                                            "pair.pem", err, sizeof(err));
    CHECK(bad == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    mg_tls_cert *b = make_cert("rsa", n2, 1, b_pem, sizeof(b_pem));
    CHECK(b && strcmp(mg_tls_cert_key_type(b), "RSA") == 0);
    CHECK(mg_tls_cert_from_pem("junk", 4, (const char *)key.p, key.len, "junk.pem", err,
                               sizeof(err)) == NULL);
    CHECK(strstr(err, "junk.pem (certificate): no PEM certificate") != NULL);
    mg_bytes_free(&key);
    mg_tls_cert_unref(a);
    mg_tls_cert_unref(b);
    return 0;
}

/* ---- TLS streams over a real loopback socket --------------------------------------- */

typedef struct peer {
    mg_stream s;
    mg_buf got;
    int connected, eof, closed, errors, pause_at;
    uv_loop_t *loop;
} peer;

static char sbuf[65536], cbuf[65536];
static peer srv, cli;
static uv_tcp_t listener_tcp;
static uv_timer_t resume_timer;

static void resume_cb(uv_timer_t *t)
{
    mg_stream_read_start(&srv.s); /* the engine's kept plaintext comes first */
}

static peer *of(mg_stream *s)
{
    return (peer *)s; /* s is the first member */
}

static void p_read(mg_stream *s, const char *d, size_t n)
{
    peer *p = of(s);
    mg_buf_append(&p->got, d, n);
    if (s == &srv.s && p->got.len == 200000) {
        /* everything arrived: answer, then close_notify */
        uv_buf_t b = uv_buf_init((char *)"ok", 2);
        mg_stream_write(s, &b, 1);
        mg_stream_shutdown(s);
        return;
    }
    if (p->pause_at && p->got.len >= (size_t)p->pause_at) {
        p->pause_at = 0;
        mg_stream_read_stop(s); /* back-pressure: the rest waits in the engine */
        uv_timer_start(&resume_timer, resume_cb, 0, 0);
    }
}
static void p_eof(mg_stream *s)
{
    of(s)->eof = 1;
    mg_stream_close(s);
}
static void p_error(mg_stream *s, int err)
{
    of(s)->errors++;
    mg_tls *t = mg_tls_stream_engine(s);
    fprintf(stderr, "  %s: error %s: %s\n", s == &srv.s ? "server" : "client", uv_strerror(err),
            t ? mg_tls_error(t) : "");
    mg_stream_close(s);
}
static void p_connect(mg_stream *s, int status)
{
    peer *p = of(s);
    p->connected = status == 0 ? 1 : status;
    if (status) return;
    mg_stream_read_start(s);
    static char big[200000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i % 251);
    uv_buf_t b = uv_buf_init(big, sizeof(big));
    mg_stream_write(s, &b, 1);
}
static void p_close(mg_stream *s)
{
    of(s)->closed = 1;
    if (s == &srv.s) uv_close((uv_handle_t *)&listener_tcp, NULL);
}

static const mg_stream_events p_events = {
    .read = p_read, .eof = p_eof, .error = p_error, .connect = p_connect, .close = p_close};

static mg_tls_store *stream_store;

static void on_accept(uv_stream_t *server, int status)
{
    mg_stream_tcp_init(&srv.s, server->loop, &p_events, sbuf, sizeof(sbuf));
    mg_stream_accept(&srv.s, server);
    mg_tls_stream_server(&srv.s, mg_tls_store_ctx(stream_store), NULL, 0);
    mg_stream_read_start(&srv.s);
}


/* A TLS server stream on an ephemeral loopback port; its address in a. */
static int listen_loopback(uv_loop_t *loop, struct sockaddr_in *a)
{
    uv_ip4_addr("127.0.0.1", 0, a);
    uv_tcp_init(loop, &listener_tcp);
    if (uv_tcp_bind(&listener_tcp, (struct sockaddr *)a, 0) ||
        uv_listen((uv_stream_t *)&listener_tcp, 8, on_accept))
        return -1;
    int alen = sizeof(*a);
    return uv_tcp_getsockname(&listener_tcp, (struct sockaddr *)a, &alen);
}

static int t_streams(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    stream_store = make_store(MG_TLS_MIN_12);
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    srv.pause_at = 50000;
    uv_timer_init(&loop, &resume_timer);
    struct sockaddr_in a;
    CHECK(listen_loopback(&loop, &a) == 0);
    SSL_CTX *cctx = client_ctx();
    mg_stream_tcp_init(&cli.s, &loop, &p_events, cbuf, sizeof(cbuf));
    CHECK(mg_tls_stream_client(&cli.s, cctx, "a.test") == 0);
    uv_connect_t req;
    CHECK(mg_stream_connect(&cli.s, &req, (struct sockaddr *)&a) == 0);
    for (int i = 0; i < 2000 && !(srv.closed && cli.closed); i++)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&resume_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&listener_tcp)) uv_close((uv_handle_t *)&listener_tcp, NULL);
    if (!cli.closed) mg_stream_close(&cli.s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    CHECK(cli.connected == 1);
    if (srv.got.len != 200000) fprintf(stderr, "  got %zu eof %d errors %d/%d\n", srv.got.len, srv.eof, srv.errors, cli.errors);
    CHECK(srv.got.len == 200000);
    for (size_t i = 0; i < srv.got.len; i++)
        CHECK(srv.got.p[i] == (char)(i % 251));
    CHECK(cli.got.len == 2 && memcmp(cli.got.p, "ok", 2) == 0);
    CHECK(cli.eof == 1); /* the server's close_notify */
    CHECK(srv.errors == 0 && cli.errors == 0);
    mg_buf_free(&srv.got);
    mg_buf_free(&cli.got);
    mg_tls_store_unref(stream_store);
    SSL_CTX_free(cctx);
    return 0;
}

/* A client that verifies gets its connect event with UV_EPROTO when the
 * certificate is not trusted. */
static int t_stream_verify_fails(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    stream_store = make_store(MG_TLS_MIN_12);
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    uv_timer_init(&loop, &resume_timer);
    struct sockaddr_in a;
    CHECK(listen_loopback(&loop, &a) == 0);
    char err[256];
    SSL_CTX *cctx = mg_tls_client_ctx_new(1, NULL, err, sizeof(err));
    mg_stream_tcp_init(&cli.s, &loop, &p_events, cbuf, sizeof(cbuf));
    CHECK(mg_tls_stream_client(&cli.s, cctx, "a.test") == 0);
    uv_connect_t req;
    CHECK(mg_stream_connect(&cli.s, &req, (struct sockaddr *)&a) == 0);
    for (int i = 0; i < 2000 && cli.connected == 0; i++)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(cli.connected == UV_EPROTO);
    CHECK(strstr(mg_tls_error(mg_tls_stream_engine(&cli.s)), "verify failed") != NULL);
    mg_stream_close(&cli.s);
    for (int i = 0; i < 2000 && !srv.closed; i++)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&resume_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&listener_tcp)) uv_close((uv_handle_t *)&listener_tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    CHECK(srv.closed && cli.closed);
    mg_buf_free(&srv.got);
    mg_tls_store_unref(stream_store);
    SSL_CTX_free(cctx);
    return 0;
}

int main(void)
{
    const char *d[] = {"default.test"}, *a[] = {"a.test"}, *w[] = {"*.w.test"};
    ec_default = make_cert("ec", d, 1, NULL, 0);
    ec_a = make_cert("ec", a, 1, NULL, 0);
    rsa_a = make_cert("rsa", a, 1, NULL, 0);
    ec_wild = make_cert("ec", w, 1, NULL, 0);
    if (!ec_default || !ec_a || !rsa_a || !ec_wild || mg_tls_tickets_init()) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    struct {
        const char *name;
        int (*fn)(void);
    } tests[] = {
        {"a handshake negotiates TLS 1.3, ALPN http/1.1 and sees the SNI name",
         t_handshake_defaults},
        {"SNI picks exact names, one-label wildcards, else the default", t_sni_selection},
        {"ECDSA and RSA certificates for one name serve by the client's algorithms",
         t_ecdsa_and_rsa_side_by_side},
        {"records fed one byte at a time and plaintext read under back-pressure arrive intact",
         t_partial_records_and_backpressure},
        {"close_notify reads as the end of the stream", t_close_notify},
        {"TLS 1.3 tickets resume across stores and one key rotation, not two",
         t_resumption_tls13},
        {"TLS 1.2 tickets resume across stores and one key rotation, not two",
         t_resumption_tls12},
        {"min_version 1.3 refuses a TLS 1.2 client", t_min_version_13},
        {"TLS 1.0 and 1.1 are refused", t_old_versions_refused},
        {"a listener's ALPN list is preferred, no overlap means no ALPN", t_alpn_listener_list},
        {"acme-tls/1 gets the TLS-ALPN-01 certificate; HTTP-01 tokens are looked up",
         t_acme_tls_alpn01},
        {"a failing sink's error is returned", t_sink_errors},
        {"a client verifies the chain and the name", t_client_verifies},
        {"certificate errors name the file", t_cert_errors_name_the_file},
        {"TLS streams carry 200 kB through back-pressure, answer, and end with close_notify",
         t_streams},
        {"a verifying client stream reports the failed handshake as its connect status",
         t_stream_verify_fails},
    };
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        current = tests[i].name;
        int rc = tests[i].fn();
        printf("%s %s\n", rc == 0 ? "ok  " : "FAIL", tests[i].name);
        if (rc == 0)
            passed++;
        else
            failed++;
    }
    mg_tls_cert_unref(ec_default);
    mg_tls_cert_unref(ec_a);
    mg_tls_cert_unref(rsa_a);
    mg_tls_cert_unref(ec_wild);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
