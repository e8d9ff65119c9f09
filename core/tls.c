/* See tls.h. The BIO under the SSL object is our own memory BIO: its read
 * side takes from the borrowed feed (then from the kept remainder), its
 * write side hands records to the sink or to the out buffer. */
#include "tls.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mg_tls {
    SSL *ssl; /* owns the BIO */
    BIO *bio;
    const char *feed; /* borrowed from the caller until mg_tls_feed_end */
    size_t feed_len, feed_off;
    mg_buf kept; /* fed bytes OpenSSL had not consumed, from kept_off */
    size_t kept_off;
    mg_buf out; /* ciphertext waiting (no sink), from out_off */
    size_t out_off;
    mg_tls_sink sink;
    void *sink_ud;
    int sink_err;        /* the sink's failure, returned by the call that hit it */
    unsigned char *alpn; /* wire format, owned */
    size_t alpn_len;
    void *user;
    int done;
    char err[256];
};

static BIO_METHOD *bio_method;
static int ex_index = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len)
{
    mg_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) return 0;
    if (t->sink) {
        int rc = t->sink(t->sink_ud, data, (size_t)len);
        if (rc < 0) {
            t->sink_err = rc;
            return -1;
        }
        return len;
    }
    if (mg_buf_append(&t->out, data, (size_t)len)) {
        t->sink_err = -ENOMEM;
        return -1;
    }
    return len;
}

static int bio_read(BIO *b, char *dst, int len)
{
    mg_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t want = len > 0 ? (size_t)len : 0, got = 0;
    if (t->kept_off < t->kept.len) {
        size_t n = t->kept.len - t->kept_off;
        if (n > want) n = want;
        memcpy(dst, t->kept.p + t->kept_off, n);
        t->kept_off += n;
        got += n;
        if (t->kept_off == t->kept.len) t->kept.len = t->kept_off = 0;
    }
    if (got < want && t->feed_off < t->feed_len) {
        size_t n = t->feed_len - t->feed_off;
        if (n > want - got) n = want - got;
        memcpy(dst + got, t->feed + t->feed_off, n);
        t->feed_off += n;
        got += n;
    }
    if (got == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    return (int)got;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    mg_tls *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)mg_tls_in_pending(t) : 0;
    case BIO_CTRL_WPENDING:
        return 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void init_once(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "moongate");
    if (bio_method) {
        BIO_meth_set_write(bio_method, bio_write);
        BIO_meth_set_read(bio_method, bio_read);
        BIO_meth_set_ctrl(bio_method, bio_ctrl);
        BIO_meth_set_create(bio_method, bio_create);
    }
    ex_index = SSL_get_ex_new_index(0, "moongate engine", NULL, NULL, NULL);
}

void mg_tls_openssl_error(char *err, size_t errlen, const char *prefix)
{
    unsigned long e, last = 0;
    const char *data = NULL;
    int flags = 0;
    /* the first error is the root cause; later ones are its context */
    while ((e = ERR_get_error_all(NULL, NULL, NULL, last ? NULL : &data, last ? NULL : &flags)))
        if (!last) last = e;
    char reason[200] = "";
    if (last) ERR_error_string_n(last, reason, sizeof(reason));
    const char *r = last ? ERR_reason_error_string(last) : NULL;
    snprintf(err, errlen, "%s%s%s%s%s", prefix ? prefix : "", prefix && (r || last) ? ": " : "",
             r ? r : (last ? reason : (prefix ? "" : "unknown TLS error")),
             data && (flags & ERR_TXT_STRING) && *data ? " " : "",
             data && (flags & ERR_TXT_STRING) ? data : "");
}

static int ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

mg_tls *mg_tls_new(SSL_CTX *ctx, int server, const char *server_name, char *err, size_t errlen)
{
    pthread_once(&once, init_once);
    if (!bio_method || ex_index < 0) {
        snprintf(err, errlen, "TLS: cannot set up the BIO method");
        return NULL;
    }
    mg_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->ssl = SSL_new(ctx);
    t->bio = t->ssl ? BIO_new(bio_method) : NULL;
    if (!t->bio) {
        mg_tls_openssl_error(err, errlen, "TLS: cannot create a connection");
        if (t->ssl) SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    BIO_set_data(t->bio, t);
    SSL_set_bio(t->ssl, t->bio, t->bio); /* one BIO for both directions, owned by ssl */
    SSL_set_ex_data(t->ssl, ex_index, t);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (server_name && *server_name) {
            int ok;
            if (ip_literal(server_name)) {
                ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), server_name);
            } else {
                ok = SSL_set_tlsext_host_name(t->ssl, server_name) &&
                     SSL_set1_host(t->ssl, server_name);
            }
            if (!ok) {
                mg_tls_openssl_error(err, errlen, "TLS: bad server name");
                mg_tls_free(t);
                return NULL;
            }
        }
    }
    return t;
}

void mg_tls_free(mg_tls *t)
{
    if (!t) return;
    SSL_free(t->ssl); /* frees the BIO, drops the reference on the SSL_CTX */
    mg_buf_free(&t->kept);
    mg_buf_free(&t->out);
    free(t->alpn);
    free(t);
}

void mg_tls_set_sink(mg_tls *t, mg_tls_sink sink, void *ud)
{
    t->sink = sink;
    t->sink_ud = ud;
}

int mg_tls_set_alpn(mg_tls *t, const unsigned char *wire, size_t len)
{
    unsigned char *copy = len ? malloc(len) : NULL;
    if (len && !copy) return -ENOMEM;
    if (len) memcpy(copy, wire, len);
    free(t->alpn);
    t->alpn = copy;
    t->alpn_len = len;
    if (!SSL_is_server(t->ssl) && SSL_set_alpn_protos(t->ssl, wire, (unsigned)len) != 0)
        return -ENOMEM;
    return 0;
}

void mg_tls_feed(mg_tls *t, const char *data, size_t len)
{
    if (t->feed_off < t->feed_len && mg_tls_feed_end(t)) return; /* keeps order */
    if (t->kept_off < t->kept.len) {
        /* bytes are already kept: append, so OpenSSL reads them in order */
        if (mg_buf_append(&t->kept, data, len)) t->sink_err = -ENOMEM;
        t->feed = NULL;
        t->feed_len = t->feed_off = 0;
        return;
    }
    t->feed = data;
    t->feed_len = len;
    t->feed_off = 0;
}

int mg_tls_feed_end(mg_tls *t)
{
    int rc = 0;
    if (t->feed_off < t->feed_len) {
        if (t->kept_off == t->kept.len) t->kept.len = t->kept_off = 0;
        rc =
            mg_buf_append(&t->kept, t->feed + t->feed_off, t->feed_len - t->feed_off) ? -ENOMEM : 0;
    }
    t->feed = NULL;
    t->feed_len = t->feed_off = 0;
    return rc;
}

size_t mg_tls_in_pending(const mg_tls *t)
{
    return (t->kept.len - t->kept_off) + (t->feed_len - t->feed_off);
}

/* Maps an SSL_* failure to the return convention and records why. */
static int failure(mg_tls *t, int ret, const char *what)
{
    int e = SSL_get_error(t->ssl, ret);
    if (t->sink_err) {
        int rc = t->sink_err;
        t->sink_err = 0;
        ERR_clear_error();
        snprintf(t->err, sizeof(t->err), "TLS %s: write failed (%d)", what, rc);
        return rc;
    }
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: /* never with our BIO; treat as "more input" */
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default: {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "TLS %s", what);
        long vr = SSL_get_verify_result(t->ssl);
        if (!SSL_is_server(t->ssl) && vr != X509_V_OK) {
            ERR_clear_error();
            snprintf(t->err, sizeof(t->err), "%s: certificate verify failed: %s", prefix,
                     X509_verify_cert_error_string(vr));
        } else {
            mg_tls_openssl_error(t->err, sizeof(t->err), prefix);
        }
        return -EPROTO;
    }
    }
}

int mg_tls_handshake(mg_tls *t)
{
    if (t->done) return 0;
    t->err[0] = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->done = 1;
        return t->sink_err ? failure(t, r, "handshake") : 0;
    }
    int rc = failure(t, r, "handshake");
    return rc == 0 ? -EPROTO : rc; /* close_notify during the handshake is a failure */
}

int mg_tls_handshake_done(const mg_tls *t)
{
    return t->done;
}

ssize_t mg_tls_read(mg_tls *t, char *buf, size_t len)
{
    if (!t->done) {
        int rc = mg_tls_handshake(t);
        if (rc) return rc;
    }
    size_t n = 0;
    t->err[0] = 0;
    if (SSL_read_ex(t->ssl, buf, len, &n) == 1) {
        if (t->sink_err) return failure(t, 0, "read");
        return (ssize_t)n;
    }
    return failure(t, 0, "read");
}

ssize_t mg_tls_write(mg_tls *t, const char *buf, size_t len)
{
    if (!t->done) {
        int rc = mg_tls_handshake(t);
        if (rc) return rc;
    }
    if (len == 0) return 0;
    size_t n = 0;
    t->err[0] = 0;
    if (SSL_write_ex(t->ssl, buf, len, &n) == 1 && !t->sink_err) return (ssize_t)n;
    return failure(t, 0, "write");
}

int mg_tls_shutdown(mg_tls *t)
{
    if (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN) return 0;
    /* Before the handshake finished there is nothing to close politely. */
    if (!t->done) return 0;
    int r = SSL_shutdown(t->ssl);
    if (r >= 0 && !t->sink_err) return 0;
    return failure(t, r, "shutdown");
}

const char *mg_tls_out_peek(const mg_tls *t, size_t *len)
{
    *len = t->out.len - t->out_off;
    return *len ? t->out.p + t->out_off : NULL;
}

void mg_tls_out_consume(mg_tls *t, size_t n)
{
    t->out_off += n;
    if (t->out_off >= t->out.len) t->out.len = t->out_off = 0;
}

const char *mg_tls_error(const mg_tls *t)
{
    return t->err;
}

const char *mg_tls_alpn(const mg_tls *t, size_t *len)
{
    const unsigned char *p = NULL;
    unsigned n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    *len = n;
    return n ? (const char *)p : NULL;
}

const char *mg_tls_sni(const mg_tls *t)
{
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *mg_tls_version(const mg_tls *t)
{
    return t->done ? SSL_get_version(t->ssl) : NULL;
}

int mg_tls_version_number(const mg_tls *t)
{
    return t->done ? SSL_version(t->ssl) : 0;
}

const char *mg_tls_cipher(const mg_tls *t)
{
    return t->done ? SSL_get_cipher_name(t->ssl) : NULL;
}

int mg_tls_resumed(const mg_tls *t)
{
    return t->done && SSL_session_reused(t->ssl);
}

void mg_tls_set_user(mg_tls *t, void *user)
{
    t->user = user;
}

void *mg_tls_user(const mg_tls *t)
{
    return t->user;
}

mg_tls *mg_tls_from_ssl(const SSL *ssl)
{
    return ex_index < 0 ? NULL : SSL_get_ex_data(ssl, ex_index);
}

SSL *mg_tls_ssl(const mg_tls *t)
{
    return t->ssl;
}

/* The engine's own ALPN list, for the store's selection callback. */
const unsigned char *mg_tls__alpn_list(const mg_tls *t, size_t *len)
{
    *len = t->alpn_len;
    return t->alpn;
}

int mg_tls_alpn_wire(const char *const *names, int n, unsigned char *out, size_t outlen)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (l == 0 || l > 255) return -EINVAL;
        if (off + 1 + l > outlen) return -ENOSPC;
        out[off++] = (unsigned char)l;
        memcpy(out + off, names[i], l);
        off += l;
    }
    return (int)off;
}
