/* See admin.h. One request per connection (answered with Connection:
 * close): the admin API is for people and scrapers, not for throughput. */
#include "admin.h"
#include "admin_api.h"
#include "h1.h"
#include "log.h"
#include "lua_env.h"
#include "uri.h"

#include <jansson.h>
#include <limits.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADMIN_MAX_REQUEST 65536

typedef struct admin_conn {
    uv_tcp_t tcp;
    llhttp_t parser;
    mg_admin *a;
    char url[512];
    size_t url_len;
    char field[64];
    size_t field_len;
    char auth[256];
    size_t auth_len;
    int in_auth;
    int done;
    int compact; /* ?compact=1: JSON without indentation (the dashboard) */
    size_t bytes;
} admin_conn;

static llhttp_settings_t settings;

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_written(uv_write_t *w, int status)
{
    admin_conn *c = w->data;
    free(w);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void respond(admin_conn *c, int status, const char *ctype, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     status, mg_status_reason(status), ctype, len,
                     status == 401 ? "WWW-Authenticate: Bearer\r\n" : "");
    /* Ownership: one block holds the write request, head and body; freed
     * in on_written. */
    uv_write_t *w = malloc(sizeof(*w) + (size_t)n + len);
    if (!w) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    char *p = (char *)(w + 1);
    memcpy(p, head, (size_t)n);
    memcpy(p + n, body, len);
    uv_buf_t b = uv_buf_init(p, (unsigned)(n + len));
    w->data = c;
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
        free(w);
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static void respond_json(admin_conn *c, int status, json_t *j)
{
    /* 15 digits: timestamps keep their milliseconds, rates stay short */
    size_t flags = (c->compact ? JSON_COMPACT : JSON_INDENT(2)) | JSON_REAL_PRECISION(15);
    char *s = j ? json_dumps(j, flags) : NULL;
    json_decref(j);
    respond(c, status, "application/json", s ? s : "{}", s ? strlen(s) : 2);
    free(s);
}

static void api_reload(admin_conn *c)
{
    mg_reloader *rl = c->a->rl;
    int rc = mg_reload_now(rl);
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(rc == 0));
    json_object_set_new(o, "snapshot_version", json_integer((json_int_t)rl->version));
    if (rc) json_object_set_new(o, "error", json_string(rl->last_error));
    mg_track_observe(c->a->track, rl, 0); /* the timeline shows it at once */
    respond_json(c, rc ? 500 : 200, o);
}

static void metrics(admin_conn *c)
{
    mg_buf b = {0};
    mg_admin_metrics(c->a->rl, c->a->track, &b);
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.p ? b.p : "", b.len);
    mg_buf_free(&b);
}

/* The value of ?name=... in a query string as a number, or def. */
static long query_num(const char *query, const char *name, long def, long min, long max)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            char *end;
            long v = strtol(p + n + 1, &end, 10);
            if (end == p + n + 1) return def;
            return v < min ? min : v > max ? max : v;
        }
        p = strchr(p, '&');
        if (p) p++;
    }
    return def;
}

static int authorized(admin_conn *c)
{
    const char *token = c->a->rl->cfg->admin_token;
    if (!token) return 1;
    size_t tl = strlen(token);
    return c->auth_len == tl + 7 && strncasecmp(c->auth, "Bearer ", 7) == 0 &&
           memcmp(c->auth + 7, token, tl) == 0;
}

static void dispatch(admin_conn *c)
{
    const char *m = llhttp_method_name(llhttp_get_method(&c->parser));
    mg_uri u;
    mg_uri_split(c->url, c->url_len, &u);
    char path[512], query[512];
    snprintf(path, sizeof(path), "%.*s", (int)u.path.len, u.path.p);
    snprintf(query, sizeof(query), "%.*s", (int)u.query.len, u.query.p);
    int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    if (strcmp(path, "/ping") == 0) {
        if (c->a->stopping)
            respond(c, 503, "text/plain", "stopping\n", 9);
        else
            respond(c, 200, "text/plain", "ok\n", 3);
        return;
    }
    if (get && (strcmp(path, "/") == 0 || strcmp(path, "/dashboard") == 0)) {
        /* the page holds no data; it asks for the token if the API wants one */
        size_t len = 0;
        const char *page = mg_lua_env_embedded("core/dashboard.html", &len);
        if (!page) return respond(c, 500, "text/plain", "no dashboard built in\n", 22);
        return respond(c, 200, "text/html; charset=utf-8", page, len);
    }
    if (!authorized(c)) {
        respond(c, 401, "text/plain", "a bearer token is required\n", 27);
        return;
    }
    mg_admin *a = c->a;
    c->compact = (int)query_num(query, "compact", 0, 0, 1);
    /* the tracker catches up first, so an answer shows what just happened */
    mg_track_observe(a->track, a->rl, 0);
    if (get && strcmp(path, "/api/services") == 0)
        return respond_json(c, 200,
                            mg_admin_services(a->rl, a->track,
                                              (int)query_num(query, "history", 0, 0, 3600),
                                              (int)query_num(query, "removed", 0, 0, 1)));
    if (get && strcmp(path, "/api/routes") == 0)
        return respond_json(c, 200, mg_admin_routes(a->rl, a->track));
    if (get && strcmp(path, "/api/plugins") == 0)
        return respond_json(c, 200, mg_admin_plugins(a->rl));
    if (get && strcmp(path, "/api/events") == 0)
        return respond_json(
            c, 200, mg_admin_events(a->track, (uint64_t)query_num(query, "since", 0, 0, LONG_MAX)));
    if (get && strcmp(path, "/api/errors") == 0)
        return respond_json(c, 200, mg_admin_errors(a->track));
    if (get && strcmp(path, "/metrics") == 0) return metrics(c);
    if (strcmp(path, "/api/reload") == 0) {
        if (strcmp(m, "POST") == 0) return api_reload(c);
        return respond(c, 405, "text/plain", "use POST\n", 9);
    }
    respond(c, 404, "text/plain", "not found\n", 10);
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    admin_conn *c = p->data;
    if (c->url_len + n >= sizeof(c->url)) return HPE_USER;
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    return 0;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    admin_conn *c = p->data;
    if (c->in_auth == 2 || c->field_len == 0) {
        c->in_auth = 0;
    }
    if (c->field_len + n < sizeof(c->field)) {
        memcpy(c->field + c->field_len, at, n);
        c->field_len += n;
    }
    return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    admin_conn *c = p->data;
    if (c->field_len == 13 && strncasecmp(c->field, "authorization", 13) == 0 &&
        c->auth_len + n < sizeof(c->auth)) {
        memcpy(c->auth + c->auth_len, at, n);
        c->auth_len += n;
    }
    return 0;
}

static int on_value_complete(llhttp_t *p)
{
    admin_conn *c = p->data;
    c->field_len = 0;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    admin_conn *c = p->data;
    c->done = 1;
    return HPE_PAUSED;
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    static char buf[16384];
    b->base = buf;
    b->len = sizeof(buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    admin_conn *c = s->data;
    if (nread < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    if (nread == 0 || c->done) return;
    c->bytes += (size_t)nread;
    llhttp_errno_t e = llhttp_execute(&c->parser, buf->base, (size_t)nread);
    if (c->done) {
        uv_read_stop(s);
        dispatch(c);
    } else if ((e != HPE_OK && e != HPE_PAUSED) || c->bytes > ADMIN_MAX_REQUEST) {
        uv_read_stop(s);
        respond(c, 400, "text/plain", "bad request\n", 12);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    mg_admin *a = server->data;
    if (status < 0) return;
    admin_conn *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->a = a;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void on_tick(uv_timer_t *t)
{
    mg_admin *a = t->data;
    mg_track_observe(a->track, a->rl, 1);
}

static void on_tick_closed(uv_handle_t *h)
{
    mg_admin *a = h->data;
    mg_track_free(a->track);
    a->track = NULL;
}

int mg_admin_start(mg_admin *a, uv_loop_t *loop, mg_reloader *rl)
{
    memset(a, 0, sizeof(*a));
    a->rl = rl;
    const mg_config *cfg = rl->cfg;
    if (!cfg->admin_port) return 0;
    a->track = mg_track_new();
    if (!a->track) {
        mg_log(MG_LOG_ERROR, -1, 0, "admin API: out of memory; continuing without it");
        return -1;
    }
    llhttp_settings_init(&settings);
    settings.on_url = on_url;
    settings.on_header_field = on_field;
    settings.on_header_value = on_value;
    settings.on_header_value_complete = on_value_complete;
    settings.on_message_complete = on_message_complete;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(cfg->admin_host, cfg->admin_port, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(cfg->admin_host, cfg->admin_port, (struct sockaddr_in6 *)&ss)) {
        mg_log(MG_LOG_ERROR, -1, 0, "admin API: invalid address %s", cfg->admin_host);
        return -1;
    }
    uv_tcp_init(loop, &a->server);
    a->server.data = a;
    int rc = uv_tcp_bind(&a->server, (struct sockaddr *)&ss, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&a->server, 128, on_connection);
    if (rc) {
        mg_log(MG_LOG_ERROR, -1, 0, "admin API: cannot listen on %s:%d: %s; continuing without it",
               cfg->admin_host, cfg->admin_port, uv_strerror(rc));
        uv_close((uv_handle_t *)&a->server, NULL);
        mg_track_free(a->track);
        a->track = NULL;
        return -1;
    }
    a->running = 1;
    mg_track_observe(a->track, rl, 0);
    uv_timer_init(loop, &a->tick);
    a->tick.data = a;
    uv_timer_start(&a->tick, on_tick, 1000, 1000);
    uv_unref((uv_handle_t *)&a->tick); /* it never keeps the loop alive by itself */
    mg_log(MG_LOG_INFO, -1, 0, "admin API on http://%s:%d/%s", cfg->admin_host, cfg->admin_port,
           cfg->admin_token ? " (bearer token required)" : "");
    return 0;
}

void mg_admin_stopping(mg_admin *a)
{
    a->stopping = 1;
}

void mg_admin_stop(mg_admin *a)
{
    if (a->running) {
        uv_close((uv_handle_t *)&a->server, NULL);
        uv_close((uv_handle_t *)&a->tick, on_tick_closed);
    }
    a->running = 0;
}
