/* See tls_watch.h. */
#include "tls_watch.h"
#include "log.h"
#include "tls_certs.h"
#include "tls_crypto.h"
#include "tls_tickets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define POLL_MS       500
#define ROTATE_MS     (12ULL * 3600 * 1000)
#define FALLBACK_NAME "moongate-default.invalid"
#define FALLBACK_DAYS 3650

typedef struct file_sig {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    int missing;
} file_sig;

typedef struct file_ent {
    char *cert, *key;
    mg_tls_cert *good; /* the last pair that loaded, or NULL */
    file_sig sc, sk;   /* of the last attempt */
    char last_err[512];
} file_ent;

typedef struct named_cert {
    char *id;
    mg_tls_cert *c;
} named_cert;

static struct {
    uv_loop_t *loop;
    uv_timer_t poll, rotate;
    int timers;
    int enabled, min_version;
    file_ent *files;
    int nfiles;
    named_cert *dyn; /* set_certificate, in the order first set */
    int ndyn;
    named_cert *alpn01; /* id = the name */
    int nalpn01;
    char **tokens, **keyauths;
    int nhttp;
    mg_tls_cert *fallback;
} M;

static void sig_of(const char *path, file_sig *s)
{
    struct stat st;
    memset(s, 0, sizeof(*s));
    if (stat(path, &st)) {
        s->missing = 1;
        return;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->size = st.st_size;
    s->mtime = st.st_mtim;
    s->ctime = st.st_ctim;
}

static int sig_eq(const file_sig *a, const file_sig *b)
{
    return a->missing == b->missing && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static void free_files(file_ent *f, int n)
{
    for (int i = 0; i < n; i++) {
        free(f[i].cert);
        free(f[i].key);
        mg_tls_cert_unref(f[i].good);
    }
    free(f);
}

static mg_tls_cert *make_fallback(void)
{
    char err[256];
    mg_bytes key = {0}, cert = {0};
    const char *names[] = {FALLBACK_NAME};
    mg_tls_cert *c = NULL;
    EVP_PKEY *k = NULL;
    if (mg_crypto_keygen("ec", 0, &key, err, sizeof(err)) == 0 &&
        (k = mg_crypto_key_load((const char *)key.p, key.len, err, sizeof(err))) &&
        mg_crypto_self_signed(k, names, 1, FALLBACK_DAYS, NULL, &cert, err, sizeof(err)) == 0)
        c = mg_tls_cert_from_pem((const char *)cert.p, cert.len, (const char *)key.p, key.len,
                                 "self-signed default", err, sizeof(err));
    if (!c) mg_log(MG_LOG_ERROR, -1, 0, "tls: cannot make the default certificate: %s", err);
    EVP_PKEY_free(k);
    mg_bytes_free(&key);
    mg_bytes_free(&cert);
    return c;
}

/* Builds a store from what the manager holds and publishes it. */
static int rebuild(void)
{
    if (!M.min_version) M.min_version = MG_TLS_MIN_12;
    if (!M.enabled) {
        mg_tls_publish(NULL);
        return 0;
    }
    char err[256];
    mg_tls_store *s = mg_tls_store_new(M.min_version, NULL, 0, err, sizeof(err));
    if (!s) {
        mg_log(MG_LOG_ERROR, -1, 0, "tls: %s; the previous certificates keep serving", err);
        return -1;
    }
    int rc = 0, n = 0;
    for (int i = 0; i < M.nfiles && !rc; i++)
        if (M.files[i].good) rc = mg_tls_store_add(s, M.files[i].good), n++;
    for (int i = 0; i < M.ndyn && !rc; i++)
        rc = mg_tls_store_add(s, M.dyn[i].c), n++;
    if (!rc && n == 0) {
        if (!M.fallback) M.fallback = make_fallback();
        if (M.fallback) rc = mg_tls_store_add(s, M.fallback);
    }
    for (int i = 0; i < M.nhttp && !rc; i++)
        rc = mg_tls_store_add_http01(s, M.tokens[i], M.keyauths[i]);
    for (int i = 0; i < M.nalpn01 && !rc; i++)
        rc = mg_tls_store_add_alpn01(s, M.alpn01[i].id, M.alpn01[i].c);
    if (!rc) rc = mg_tls_store_finalize(s);
    if (rc) {
        mg_log(MG_LOG_ERROR, -1, 0, "tls: out of memory; the previous certificates keep serving");
        mg_tls_store_unref(s);
        return -1;
    }
    mg_tls_publish(s);
    return 0;
}

/* Tries one file pair; returns 1 if the served certificate changed. */
static int check_file(file_ent *f, int force)
{
    file_sig sc, sk;
    sig_of(f->cert, &sc);
    sig_of(f->key, &sk);
    if (!force && sig_eq(&sc, &f->sc) && sig_eq(&sk, &f->sk)) return 0;
    f->sc = sc;
    f->sk = sk;
    char err[512];
    mg_tls_cert *c = mg_tls_cert_load_files(f->cert, f->key, err, sizeof(err));
    if (!c) {
        if (strcmp(err, f->last_err) != 0)
            mg_log(MG_LOG_ERROR, -1, 0, "tls: %s%s", err,
                   f->good ? "; the previous certificate keeps serving" : "");
        snprintf(f->last_err, sizeof(f->last_err), "%s", err);
        return 0;
    }
    f->last_err[0] = 0;
    int was = f->good != NULL;
    mg_tls_cert_unref(f->good);
    f->good = c;
    if (was) {
        char when[32] = "?";
        time_t na = mg_tls_cert_not_after(c);
        struct tm tm;
        if (gmtime_r(&na, &tm)) strftime(when, sizeof(when), "%Y-%m-%d", &tm);
        mg_log(MG_LOG_INFO, -1, 0, "tls: serving the renewed certificate %s (%s, until %s)",
               f->cert, mg_tls_cert_nnames(c) ? mg_tls_cert_name(c, 0) : "no names", when);
    }
    return 1;
}

void mg_tls_watch_check(void)
{
    int changed = 0;
    for (int i = 0; i < M.nfiles; i++)
        changed |= check_file(&M.files[i], 0);
    if (changed) rebuild();
}

static void on_poll(uv_timer_t *t)
{
    mg_tls_watch_check();
}

static void on_rotate(uv_timer_t *t)
{
    if (mg_tls_rotate_tickets() == 0)
        MG_LOG(MG_LOG_DEBUG, -1, 0, "tls: rotated the session ticket key");
}

int mg_tls_rotate_tickets(void)
{
    return mg_tls_tickets_rotate();
}

/* Takes cfg's file list; an entry whose paths did not change keeps its
 * last good certificate if its files fail now. */
static int take_config(const mg_config *cfg, char *err, size_t errlen)
{
    int enabled = cfg->tls.enabled;
    for (int i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].tls) enabled = 1;
    file_ent *files = calloc(cfg->tls.nfiles ? (size_t)cfg->tls.nfiles : 1, sizeof(*files));
    if (!files) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < cfg->tls.nfiles; i++) {
        file_ent *f = &files[i];
        f->cert = strdup(cfg->tls.files[i].cert);
        f->key = strdup(cfg->tls.files[i].key);
        if (!f->cert || !f->key) {
            free_files(files, cfg->tls.nfiles);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        check_file(f, 1);
        if (f->good) continue;
        for (int k = 0; k < M.nfiles; k++)
            if (M.files[k].good && strcmp(M.files[k].cert, f->cert) == 0 &&
                strcmp(M.files[k].key, f->key) == 0) {
                f->good = M.files[k].good;
                mg_tls_cert_ref(f->good);
            }
        if (!f->good) {
            snprintf(err, errlen, "%s:%d: tls.certificates[%d]: %s", cfg->source,
                     cfg->tls.files[i].line, i + 1, f->last_err);
            free_files(files, cfg->tls.nfiles);
            return -1;
        }
    }
    free_files(M.files, M.nfiles);
    M.files = files;
    M.nfiles = cfg->tls.nfiles;
    M.enabled = enabled;
    M.min_version = cfg->tls.min_version ? cfg->tls.min_version : MG_TLS_MIN_12;
    return 0;
}

int mg_tls_watch_start(uv_loop_t *loop, const mg_config *cfg, char *err, size_t errlen)
{
    if (mg_tls_tickets_init()) {
        snprintf(err, errlen, "tls: cannot make a session ticket key");
        return -1;
    }
    if (take_config(cfg, err, errlen) || rebuild()) return -1;
    M.loop = loop;
    if (loop && !M.timers) {
        uv_timer_init(loop, &M.poll);
        uv_timer_init(loop, &M.rotate);
        uv_timer_start(&M.poll, on_poll, POLL_MS, POLL_MS);
        uv_timer_start(&M.rotate, on_rotate, ROTATE_MS, ROTATE_MS);
        uv_unref((uv_handle_t *)&M.poll); /* neither keeps a loop alive by itself */
        uv_unref((uv_handle_t *)&M.rotate);
        M.timers = 1;
    }
    return 0;
}

void mg_tls_watch_configure(const mg_config *cfg)
{
    char err[600];
    if (take_config(cfg, err, sizeof(err))) {
        mg_log(MG_LOG_ERROR, -1, 0, "tls: %s; the previous certificates keep serving", err);
        return;
    }
    rebuild();
}

void mg_tls_watch_stop(void)
{
    if (!M.timers) return;
    uv_close((uv_handle_t *)&M.poll, NULL);
    uv_close((uv_handle_t *)&M.rotate, NULL);
    M.timers = 0;
}

static void free_named(named_cert *a, int n)
{
    for (int i = 0; i < n; i++) {
        free(a[i].id);
        mg_tls_cert_unref(a[i].c);
    }
    free(a);
}

void mg_tls_watch_free(void)
{
    mg_tls_publish(NULL);
    free_files(M.files, M.nfiles);
    free_named(M.dyn, M.ndyn);
    free_named(M.alpn01, M.nalpn01);
    for (int i = 0; i < M.nhttp; i++) {
        free(M.tokens[i]);
        free(M.keyauths[i]);
    }
    free(M.tokens);
    free(M.keyauths);
    mg_tls_cert_unref(M.fallback);
    memset(&M, 0, sizeof(M));
}

/* Sets or replaces id -> c in a named list (takes over the reference). */
static int named_set(named_cert **a, int *n, const char *id, mg_tls_cert *c)
{
    for (int i = 0; i < *n; i++)
        if (strcmp((*a)[i].id, id) == 0) {
            mg_tls_cert_unref((*a)[i].c);
            (*a)[i].c = c;
            return 0;
        }
    named_cert *na = realloc(*a, (size_t)(*n + 1) * sizeof(*na));
    if (!na) return -ENOMEM;
    *a = na;
    if (!(na[*n].id = strdup(id))) return -ENOMEM;
    na[*n].c = c;
    (*n)++;
    return 0;
}

static int named_remove(named_cert *a, int *n, const char *id)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(a[i].id, id) == 0) {
            free(a[i].id);
            mg_tls_cert_unref(a[i].c);
            memmove(&a[i], &a[i + 1], (size_t)(*n - i - 1) * sizeof(*a));
            (*n)--;
            return 0;
        }
    return -1;
}

int mg_tls_set_certificate(const char *id, const char *cert_pem, size_t cert_len,
                           const char *key_pem, size_t key_len, char *err, size_t errlen)
{
    M.enabled = 1; /* a certificate source runs: TLS is in use */
    mg_tls_cert *c = mg_tls_cert_from_pem(cert_pem, cert_len, key_pem, key_len, id, err, errlen);
    if (!c) return -1;
    if (named_set(&M.dyn, &M.ndyn, id, c)) {
        mg_tls_cert_unref(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return rebuild();
}

int mg_tls_remove_certificate(const char *id)
{
    if (named_remove(M.dyn, &M.ndyn, id)) return -1;
    return rebuild();
}

int mg_tls_set_alpn01(const char *name, const char *cert_pem, size_t cert_len, const char *key_pem,
                      size_t key_len, char *err, size_t errlen)
{
    M.enabled = 1; /* a certificate source runs: TLS is in use */
    if (!cert_pem) {
        if (named_remove(M.alpn01, &M.nalpn01, name)) return 0;
        return rebuild();
    }
    char origin[300];
    snprintf(origin, sizeof(origin), "TLS-ALPN-01 challenge for %s", name);
    mg_tls_cert *c =
        mg_tls_cert_from_pem(cert_pem, cert_len, key_pem, key_len, origin, err, errlen);
    if (!c) return -1;
    if (named_set(&M.alpn01, &M.nalpn01, name, c)) {
        mg_tls_cert_unref(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return rebuild();
}

int mg_tls_set_http01(const char *token, const char *key_authorization)
{
    M.enabled = 1; /* a certificate source runs: TLS is in use */
    for (int i = 0; i < M.nhttp; i++) {
        if (strcmp(M.tokens[i], token) != 0) continue;
        free(M.tokens[i]);
        free(M.keyauths[i]);
        memmove(&M.tokens[i], &M.tokens[i + 1], (size_t)(M.nhttp - i - 1) * sizeof(char *));
        memmove(&M.keyauths[i], &M.keyauths[i + 1], (size_t)(M.nhttp - i - 1) * sizeof(char *));
        M.nhttp--;
        break;
    }
    if (key_authorization) {
        char **t = realloc(M.tokens, (size_t)(M.nhttp + 1) * sizeof(char *));
        if (t) M.tokens = t;
        char **k = realloc(M.keyauths, (size_t)(M.nhttp + 1) * sizeof(char *));
        if (k) M.keyauths = k;
        if (!t || !k) return -ENOMEM;
        M.tokens[M.nhttp] = strdup(token);
        M.keyauths[M.nhttp] = strdup(key_authorization);
        if (!M.tokens[M.nhttp] || !M.keyauths[M.nhttp]) {
            free(M.tokens[M.nhttp]);
            free(M.keyauths[M.nhttp]);
            return -ENOMEM;
        }
        M.nhttp++;
    }
    return rebuild();
}
