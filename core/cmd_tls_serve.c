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
 * One request per connection, over the transport layer (stream.h): plain
 * TCP streams, wrapped as TLS streams (tls_stream.h) on TLS listeners, as
 * the gateway's connections will be. */
#define _GNU_SOURCE /* memmem */
#include "cmd.h"
#include "config.h"
#include "control.h"
#include "log.h"
#include "reload.h"
#include "stream.h"
#include "tls.h"
#include "tls_certs.h"
#include "tls_stream.h"
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
    mg_stream s;              /* plain TCP, wrapped as a TLS stream on TLS listeners */
    struct conn *prev, *next; /* every open connection, for shutdown */
    const mg_listen *conf;
    mg_buf in; /* plaintext request head */
    int answered;
} conn;

static mg_tls_holder holder; /* the main loop's view of the published store */
static conn conns = {.prev = &conns, .next = &conns};
static char readbuf[65536];

static conn *of_stream(mg_stream *s)
{
    return mg_container_of(s, conn, s);
}

static void respond(conn *c, int status, const char *reason, const char *extra, const char *body)
{
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status,
                     reason, strlen(body), extra ? extra : "");
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)n), uv_buf_init((char *)body, strlen(body))};
    if (mg_stream_write(&c->s, bufs, 2) < 0) {
        mg_stream_close(&c->s);
        return;
    }
    mg_stream_shutdown(&c->s); /* TLS: close_notify, then the socket once written */
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
    mg_tls *t = mg_tls_stream_engine(&c->s);
    static const char acme[] = "/.well-known/acme-challenge/";
    if (!t && strncmp(path, acme, sizeof(acme) - 1) == 0) {
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
    if (!t && c->conf->redirect_port) {
        if (c->conf->redirect_port == 443)
            snprintf(extra, sizeof(extra), "Location: https://%s%s\r\n", host, path);
        else
            snprintf(extra, sizeof(extra), "Location: https://%s:%d%s\r\n", host,
                     c->conf->redirect_port, path);
        respond(c, 301, "Moved Permanently", extra, "");
        return;
    }
    size_t alen = 0;
    const char *alpn = t ? mg_tls_alpn(t, &alen) : NULL;
    const char *sni = t ? mg_tls_sni(t) : NULL;
    snprintf(body, sizeof(body),
             "{\"scheme\":\"%s\",\"sni\":\"%s\",\"version\":\"%s\",\"alpn\":\"%.*s\","
             "\"cipher\":\"%s\",\"resumed\":%s,\"host\":\"%s\",\"path\":\"%s\"}\n",
             t ? "https" : "http", sni ? sni : "", t ? mg_tls_version(t) : "", (int)alen,
             alpn ? alpn : "", t ? mg_tls_cipher(t) : "", t && mg_tls_resumed(t) ? "true" : "false",
             host, path);
    respond(c, 200, "OK", "Content-Type: application/json\r\n", body);
}

/* ---- stream events: plaintext, whatever the listener ---------------------- */

static void on_read(mg_stream *s, const char *p, size_t n)
{
    conn *c = of_stream(s);
    if (c->answered) return;
    mg_buf_append(&c->in, p, n);
    if (c->in.len > 16384) {
        mg_stream_close(s);
        return;
    }
    if (c->in.len >= 4 && memmem(c->in.p, c->in.len, "\r\n\r\n", 4)) answer(c);
}

static void on_eof(mg_stream *s)
{
    mg_stream_close(s);
}

static void on_error(mg_stream *s, int err)
{
    mg_tls *t = mg_tls_stream_engine(s);
    if (err == UV_EPROTO && t) mg_log(MG_LOG_INFO, -1, 0, "tls-test-server: %s", mg_tls_error(t));
    mg_stream_close(s);
}

static void on_closed(mg_stream *s)
{
    conn *c = of_stream(s);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    mg_buf_free(&c->in);
    free(c);
}

static const mg_stream_events conn_events = {
    .read = on_read,
    .eof = on_eof,
    .error = on_error,
    .close = on_closed,
};

static void on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    if (status < 0) return;
    /* Ownership: freed in on_closed. */
    conn *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->conf = l->conf;
    c->next = conns.next;
    c->prev = &conns;
    conns.next->prev = c;
    conns.next = c;
    mg_stream_tcp_init(&c->s, server->loop, &conn_events, readbuf, sizeof(readbuf));
    if (mg_stream_accept(&c->s, server)) {
        mg_stream_close(&c->s);
        return;
    }
    if (l->conf->tls) {
        /* the one call a TLS listener adds */
        mg_tls_store *st = mg_tls_holder_get(&holder);
        if (!st || mg_tls_stream_server(&c->s, mg_tls_store_ctx(st), l->conf->alpn,
                                        (size_t)l->conf->alpn_len)) {
            mg_log(MG_LOG_ERROR, -1, 0, "tls-test-server: no certificate store");
            mg_stream_close(&c->s);
            return;
        }
    }
    mg_stream_read_start(&c->s);
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
        mg_stream_close(&c->s);
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
