/* `moongate tls-test-server -c FILE` (hidden): a test harness for the TLS
 * layer until the data plane's transport speaks TLS. It runs what the
 * gateway's main thread runs for TLS (the config, the TLS manager with its
 * file watching, the control plane with certificate sources such as the
 * ACME client, reloads) and, on the main loop, answers on every configured
 * listener with the real engine and the published store:
 *   TLS listeners: 200 and a JSON description of the session (SNI, TLS
 *                  version, ALPN, cipher, resumed);
 *   plain ones:    ACME HTTP-01 answers from the store's challenge table,
 *                  the listener's HTTPS redirect, or the same JSON.
 * One request per connection. It is also the reference for wiring the
 * engine into a transport: see on_read and tls_sink. */
#define _GNU_SOURCE /* memmem */
#include "cmd.h"
#include "config.h"
#include "control.h"
#include "log.h"
#include "reload.h"
#include "stream_write.h"
#include "tls.h"
#include "tls_certs.h"
#include "tls_watch.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

typedef struct listener {
    uv_tcp_t tcp;
    const mg_listen *conf;
} listener;

typedef struct conn {
    uv_tcp_t tcp;
    struct conn *prev, *next; /* every open connection, for shutdown */
    const mg_listen *conf;
    mg_tls *tls; /* NULL on plain listeners; owned */
    mg_buf in;   /* plaintext request head */
    int answered;
} conn;

static mg_tls_holder holder; /* the main loop's view of the published store */
static conn conns = {.prev = &conns, .next = &conns};
static char readbuf[65536];

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    mg_tls_free(c->tls);
    mg_buf_free(&c->in);
    free(c);
}

static void conn_close(conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_shut(uv_shutdown_t *req, int status)
{
    conn_close(req->data);
    free(req);
}

/* Ciphertext from the engine: written at once, the rest queued (copied). */
static int tls_sink(void *ud, const char *data, size_t len)
{
    conn *c = ud;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int rc = mg_write((uv_stream_t *)&c->tcp, &b, 1, NULL, c);
    return rc < 0 ? rc : 0;
}

static void send_plain(conn *c, const char *data, size_t len)
{
    if (c->tls) {
        if (mg_tls_write(c->tls, data, len) < 0 || mg_tls_shutdown(c->tls) < 0) {
            conn_close(c);
            return;
        }
    } else {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        if (mg_write((uv_stream_t *)&c->tcp, &b, 1, NULL, c) < 0) {
            conn_close(c);
            return;
        }
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shut)) {
        free(req);
        conn_close(c);
        return;
    }
    req->data = c;
}

static void respond(conn *c, int status, const char *reason, const char *extra, const char *body)
{
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status,
                     reason, strlen(body), extra ? extra : "");
    mg_buf out = {0};
    mg_buf_append(&out, head, (size_t)n);
    mg_buf_append(&out, body, strlen(body));
    send_plain(c, out.p, out.len);
    mg_buf_free(&out);
}

/* Pulls the path and Host out of a complete request head (harness only). */
static void parse_head(const char *p, char *path, size_t plen, char *host, size_t hlen)
{
    path[0] = host[0] = 0;
    const char *sp = strchr(p, ' ');
    const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
    if (sp && sp2 && (size_t)(sp2 - sp - 1) < plen) {
        memcpy(path, sp + 1, (size_t)(sp2 - sp - 1));
        path[sp2 - sp - 1] = 0;
    }
    for (const char *l = strstr(p, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "host:", 5) != 0) continue;
        const char *v = l + 7;
        while (*v == ' ')
            v++;
        size_t n = strcspn(v, ":\r");
        if (n >= hlen) n = hlen - 1;
        memcpy(host, v, n);
        host[n] = 0;
        break;
    }
}

static void answer(conn *c)
{
    c->answered = 1;
    mg_buf_append(&c->in, "", 1);
    char path[1024], host[256], body[2048], extra[1400];
    parse_head(c->in.p, path, sizeof(path), host, sizeof(host));
    static const char acme[] = "/.well-known/acme-challenge/";
    if (!c->tls && strncmp(path, acme, sizeof(acme) - 1) == 0) {
        /* what the data plane must do on plain listeners, before redirects */
        mg_tls_store *s = mg_tls_holder_get(&holder);
        const char *tok = path + sizeof(acme) - 1;
        const char *ka = s ? mg_tls_store_http01(s, tok, strlen(tok)) : NULL;
        if (ka)
            respond(c, 200, "OK", "Content-Type: text/plain\r\n", ka);
        else
            respond(c, 404, "Not Found", NULL, "no such challenge\n");
        return;
    }
    if (!c->tls && c->conf->redirect_port) {
        if (c->conf->redirect_port == 443)
            snprintf(extra, sizeof(extra), "Location: https://%s%s\r\n", host, path);
        else
            snprintf(extra, sizeof(extra), "Location: https://%s:%d%s\r\n", host,
                     c->conf->redirect_port, path);
        respond(c, 301, "Moved Permanently", extra, "");
        return;
    }
    size_t alen = 0;
    const char *alpn = c->tls ? mg_tls_alpn(c->tls, &alen) : NULL;
    const char *sni = c->tls ? mg_tls_sni(c->tls) : NULL;
    snprintf(body, sizeof(body),
             "{\"scheme\":\"%s\",\"sni\":\"%s\",\"version\":\"%s\",\"alpn\":\"%.*s\","
             "\"cipher\":\"%s\",\"resumed\":%s,\"host\":\"%s\",\"path\":\"%s\"}\n",
             c->tls ? "https" : "http", sni ? sni : "", c->tls ? mg_tls_version(c->tls) : "",
             (int)alen, alpn ? alpn : "", c->tls ? mg_tls_cipher(c->tls) : "",
             c->tls && mg_tls_resumed(c->tls) ? "true" : "false", host, path);
    respond(c, 200, "OK", "Content-Type: application/json\r\n", body);
}

static void got_plain(conn *c, const char *p, size_t n)
{
    if (c->answered) return;
    mg_buf_append(&c->in, p, n);
    if (c->in.len > 16384) {
        conn_close(c);
        return;
    }
    if (c->in.len >= 4 && memmem(c->in.p, c->in.len, "\r\n\r\n", 4)) answer(c);
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    b->base = readbuf;
    b->len = sizeof(readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0) return;
    if (!c->tls) {
        got_plain(c, buf->base, (size_t)nread);
        return;
    }
    /* The transport's whole job: ciphertext in, plaintext out, keep what
     * the engine has not consumed before the shared buffer is reused. */
    mg_tls_feed(c->tls, buf->base, (size_t)nread);
    int rc = mg_tls_handshake(c->tls);
    if (rc == 0) {
        char plain[16384];
        ssize_t n;
        while (!c->answered && (n = mg_tls_read(c->tls, plain, sizeof(plain))) > 0)
            got_plain(c, plain, (size_t)n);
    } else if (rc != -EAGAIN) {
        mg_log(MG_LOG_INFO, -1, 0, "tls-test-server: %s", mg_tls_error(c->tls));
        conn_close(c);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) mg_tls_feed_end(c->tls);
}

static void on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    if (status < 0) return;
    conn *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->conf = l->conf;
    c->next = conns.next;
    c->prev = &conns;
    conns.next->prev = c;
    conns.next = c;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    if (l->conf->tls) {
        mg_tls_store *st = mg_tls_holder_get(&holder);
        char err[256] = "no certificate store";
        c->tls = st ? mg_tls_new(mg_tls_store_ctx(st), 1, NULL, err, sizeof(err)) : NULL;
        if (!c->tls ||
            (l->conf->alpn_len && mg_tls_set_alpn(c->tls, l->conf->alpn, l->conf->alpn_len))) {
            mg_log(MG_LOG_ERROR, -1, 0, "tls-test-server: %s", err);
            conn_close(c);
            return;
        }
        mg_tls_set_sink(c->tls, tls_sink, c);
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void on_signal(uv_signal_t *s, int signum)
{
    uv_stop(s->loop);
}

static void on_reload(void *ud)
{
    mg_control *ctl = ud;
    mg_control_reconfigure(ctl);
    mg_tls_watch_configure(ctl->rl->cfg);
}

int mg_cmd_tls_serve(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], "-c") == 0) path = argv[i + 1];
    signal(SIGPIPE, SIG_IGN);
    mg_config *cfg = NULL;
    mg_snapshot *snap = NULL;
    char err[1024];
    if (mg_config_load(path, &cfg, &snap, err, sizeof(err))) {
        fprintf(stderr, "moongate: %s\n", err);
        return 1;
    }
    mg_log_set_level(cfg->log_level);
    uv_loop_t *loop = uv_default_loop();
    if (mg_tls_watch_start(loop, cfg, err, sizeof(err))) {
        fprintf(stderr, "moongate: %s\n", err);
        return 1;
    }
    listener *ls = calloc((size_t)cfg->nlisten, sizeof(*ls));
    for (int i = 0; ls && i < cfg->nlisten; i++) {
        struct sockaddr_storage ss;
        const mg_listen *lc = &cfg->listen[i];
        if (uv_ip4_addr(lc->host, lc->port, (struct sockaddr_in *)&ss) &&
            uv_ip6_addr(lc->host, lc->port, (struct sockaddr_in6 *)&ss)) {
            fprintf(stderr, "moongate: bad listen address %s\n", lc->host);
            return 1;
        }
        ls[i].conf = lc; /* the first config's listeners: reloads keep them (restart to change) */
        uv_tcp_init(loop, &ls[i].tcp);
        ls[i].tcp.data = NULL;
        int rc = uv_tcp_bind(&ls[i].tcp, (struct sockaddr *)&ss, 0);
        if (!rc) rc = uv_listen((uv_stream_t *)&ls[i].tcp, 128, on_connection);
        if (rc) {
            fprintf(stderr, "moongate: cannot listen on %s:%d: %s\n", lc->host, lc->port,
                    uv_strerror(rc));
            return 1;
        }
        ls[i].tcp.data = &ls[i];
        mg_log(MG_LOG_INFO, -1, 0, "tls-test-server: listening on %s:%d%s", lc->host, lc->port,
               lc->tls ? " (TLS)" : "");
    }
    mg_reloader rl;
    mg_reload_start(&rl, loop, path, cfg, snap, NULL, 0);
    mg_control control;
    mg_control_start(&control, loop, &rl);
    rl.on_reload = on_reload;
    rl.on_reload_ud = &control;
    mg_snapshot_unref(snap);
    uv_signal_t sigterm, sigint;
    uv_signal_init(loop, &sigterm);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    mg_control_stop(&control);
    mg_reload_stop(&rl);
    mg_tls_watch_stop();
    for (int i = 0; i < cfg->nlisten; i++) {
        ls[i].tcp.data = NULL;
        if (!uv_is_closing((uv_handle_t *)&ls[i].tcp)) uv_close((uv_handle_t *)&ls[i].tcp, NULL);
    }
    for (conn *c = conns.next; c != &conns; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    mg_control_close(&control);
    mg_tls_holder_release(&holder);
    uv_loop_close(loop);
    mg_reload_free(&rl);
    mg_tls_watch_free();
    free(ls);
    return 0;
}
