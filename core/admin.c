/* See admin.h. One request per connection (answered with Connection:
 * close): the admin API is for people and scrapers, not for throughput. */
#include "admin.h"
#include "log.h"
#include "stats.h"

#include <jansson.h>
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
    size_t bytes;
} admin_conn;

extern const char mg_admin_dashboard[];

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
    static const char *reasons[600];
    if (!reasons[200]) {
        reasons[200] = "OK";
        reasons[400] = "Bad Request";
        reasons[401] = "Unauthorized";
        reasons[404] = "Not Found";
        reasons[405] = "Method Not Allowed";
        reasons[500] = "Internal Server Error";
        reasons[503] = "Service Unavailable";
    }
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     status, reasons[status] ? reasons[status] : "OK", ctype, len,
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
    char *s = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    respond(c, status, "application/json", s ? s : "{}", s ? strlen(s) : 2);
    free(s);
}

static uint64_t ld(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static json_t *target_json(const mg_target *t, uint64_t now_ms_unused)
{
    mg_target_stats *s = mg_target_stats_of(t->suid);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "address", json_string(t->address));
    json_object_set_new(o, "weight", json_integer(t->weight));
    json_t *labels = json_object();
    if (t->labels)
        for (char **l = t->labels; l[0] && l[1]; l += 2)
            json_object_set_new(labels, l[0], json_string(l[1]));
    json_object_set_new(o, "labels", labels);
    json_object_set_new(
        o, "inflight",
        json_integer(atomic_load(&mg_target_inflight[t->uid < MG_MAX_TARGET_UIDS ? t->uid : 0])));
    static const char *const hs[] = {"unchecked", "up", "down"};
    int hstate = mg_health_get(t->suid);
    int ejected = mg_passive_ejected(t->suid, uv_hrtime() / 1000000);
    json_object_set_new(o, "health",
                        json_string(!t->addr.ss_family ? "unresolved"
                                    : ejected          ? "ejected"
                                    : hstate <= 2      ? hs[hstate]
                                                       : "unchecked"));
    json_object_set_new(o, "draining", json_false());
    if (s) {
        uint64_t req = ld(&s->requests);
        json_object_set_new(o, "requests", json_integer((json_int_t)req));
        json_t *st = json_object();
        static const char *cls[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
        for (int i = 0; i < 6; i++)
            json_object_set_new(st, cls[i], json_integer((json_int_t)ld(&s->status[i])));
        json_object_set_new(o, "status", st);
        json_object_set_new(o, "errors",
                            json_integer((json_int_t)(ld(&s->status[5]) + ld(&s->status[0]))));
        json_object_set_new(o, "connect_errors", json_integer((json_int_t)ld(&s->connect_errors)));
        json_object_set_new(o, "timeouts", json_integer((json_int_t)ld(&s->timeouts)));
        json_object_set_new(o, "retries", json_integer((json_int_t)ld(&s->retries)));
        json_object_set_new(o, "latency_avg_ms",
                            json_real(req ? (double)ld(&s->lat_sum_us) / 1000.0 / (double)req : 0));
    }
    return o;
}

static void api_services(admin_conn *c)
{
    const mg_snapshot *snap = c->a->rl->snap;
    json_t *arr = json_array();
    for (int i = 0; i < snap->nservices; i++) {
        const mg_service *svc = &snap->services[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(svc->name));
        json_object_set_new(o, "balancer", json_string(svc->balancer));
        json_t *ts = json_array();
        json_int_t req = 0, err = 0;
        for (int k = 0; k < svc->ntargets; k++) {
            json_t *t = target_json(&svc->targets[k], 0);
            req += json_integer_value(json_object_get(t, "requests"));
            err += json_integer_value(json_object_get(t, "errors"));
            json_array_append_new(ts, t);
        }
        json_object_set_new(o, "requests", json_integer(req));
        json_object_set_new(o, "errors", json_integer(err));
        json_object_set_new(o, "targets", ts);
        json_array_append_new(arr, o);
    }
    respond_json(c, 200, arr);
}

static void api_routes(admin_conn *c)
{
    const mg_snapshot *snap = c->a->rl->snap;
    json_t *arr = json_array();
    for (int i = 0; i < snap->nroutes; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "rule", json_string(snap->route_rule[i] ? snap->route_rule[i] : ""));
        int s = snap->route_service[i];
        json_object_set_new(o, "service",
                            s >= 0 ? json_string(snap->services[s].name) : json_null());
        json_object_set_new(o, "priority", json_integer(snap->route_priority[i]));
        json_object_set_new(o, "middlewares", json_boolean(snap->route_hooks[i]));
        json_array_append_new(arr, o);
    }
    respond_json(c, 200, arr);
}

static void api_plugins(admin_conn *c)
{
    mg_reloader *rl = c->a->rl;
    json_t *o = json_object();
    json_object_set_new(o, "plugins_dir", json_string(rl->cfg->plugins_dir));
    json_object_set_new(o, "snapshot_version", json_integer((json_int_t)rl->version));
    json_object_set_new(o, "reloads", json_integer(rl->reloads));
    json_object_set_new(o, "reload_failures", json_integer(rl->failures));
    json_object_set_new(o, "last_reload",
                        rl->last_reload ? json_real(rl->last_reload) : json_null());
    json_object_set_new(o, "last_reload_ok", json_boolean(!rl->last_error[0]));
    json_object_set_new(o, "last_error",
                        rl->last_error[0] ? json_string(rl->last_error) : json_null());
    json_t *bal = json_object();
    for (int i = 0; i < rl->snap->nservices; i++)
        json_object_set_new(bal, rl->snap->services[i].name,
                            json_string(rl->snap->services[i].balancer));
    json_object_set_new(o, "balancers", bal);
    respond_json(c, 200, o);
}

static void api_reload(admin_conn *c)
{
    mg_reloader *rl = c->a->rl;
    int rc = mg_reload_now(rl);
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(rc == 0));
    json_object_set_new(o, "snapshot_version", json_integer((json_int_t)rl->version));
    if (rc) json_object_set_new(o, "error", json_string(rl->last_error));
    respond_json(c, rc ? 500 : 200, o);
}

/* Prometheus text format, version 0.0.4. */
static void metrics(admin_conn *c)
{
    const mg_snapshot *snap = c->a->rl->snap;
    mg_buf b = {0};
    mg_buf_printf(
        &b,
        "# HELP moongate_requests_total Requests answered, by service, target and status class.\n"
        "# TYPE moongate_requests_total counter\n");
    static const char *cls[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < snap->nservices; i++)
        for (int k = 0; k < snap->services[i].ntargets; k++) {
            const mg_target *t = &snap->services[i].targets[k];
            mg_target_stats *s = mg_target_stats_of(t->suid);
            for (int x = 0; s && x < 6; x++)
                mg_buf_printf(
                    &b, "moongate_requests_total{service=\"%s\",target=\"%s\",code=\"%s\"} %llu\n",
                    snap->services[i].name, t->address, cls[x],
                    (unsigned long long)ld(&s->status[x]));
        }
    mg_buf_printf(&b,
                  "# HELP moongate_request_duration_seconds Request duration through the gateway.\n"
                  "# TYPE moongate_request_duration_seconds histogram\n");
    for (int i = 0; i < snap->nservices; i++)
        for (int k = 0; k < snap->services[i].ntargets; k++) {
            const mg_target *t = &snap->services[i].targets[k];
            mg_target_stats *s = mg_target_stats_of(t->suid);
            if (!s) continue;
            uint64_t cum = 0;
            for (int x = 0; x < MG_LAT_BUCKETS; x++) {
                cum += ld(&s->lat[x]);
                if (x == MG_LAT_BUCKETS - 1)
                    mg_buf_printf(&b,
                                  "moongate_request_duration_seconds_bucket{service=\"%s\",target="
                                  "\"%s\",le=\"+Inf\"} %llu\n",
                                  snap->services[i].name, t->address, (unsigned long long)cum);
                else
                    mg_buf_printf(&b,
                                  "moongate_request_duration_seconds_bucket{service=\"%s\",target="
                                  "\"%s\",le=\"%g\"} %llu\n",
                                  snap->services[i].name, t->address, mg_lat_bounds[x],
                                  (unsigned long long)cum);
            }
            mg_buf_printf(
                &b, "moongate_request_duration_seconds_sum{service=\"%s\",target=\"%s\"} %.6f\n",
                snap->services[i].name, t->address, (double)ld(&s->lat_sum_us) / 1e6);
            mg_buf_printf(
                &b, "moongate_request_duration_seconds_count{service=\"%s\",target=\"%s\"} %llu\n",
                snap->services[i].name, t->address, (unsigned long long)cum);
        }
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"moongate_upstream_connect_errors_total", "Failed connects to a target.",
         offsetof(mg_target_stats, connect_errors)},
        {"moongate_upstream_timeouts_total", "Responses that did not come in time.",
         offsetof(mg_target_stats, timeouts)},
        {"moongate_retries_total", "Requests sent to another target after a failure.",
         offsetof(mg_target_stats, retries)},
    };
    for (size_t m = 0; m < sizeof(counters) / sizeof(counters[0]); m++) {
        mg_buf_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", counters[m].name, counters[m].help,
                      counters[m].name);
        for (int i = 0; i < snap->nservices; i++)
            for (int k = 0; k < snap->services[i].ntargets; k++) {
                const mg_target *t = &snap->services[i].targets[k];
                mg_target_stats *s = mg_target_stats_of(t->suid);
                if (!s) continue;
                mg_buf_printf(
                    &b, "%s{service=\"%s\",target=\"%s\"} %llu\n", counters[m].name,
                    snap->services[i].name, t->address,
                    (unsigned long long)ld((atomic_uint_fast64_t *)((char *)s + counters[m].off)));
            }
    }
    mg_buf_printf(&b, "# HELP moongate_target_inflight Requests in flight to a target.\n"
                      "# TYPE moongate_target_inflight gauge\n");
    for (int i = 0; i < snap->nservices; i++)
        for (int k = 0; k < snap->services[i].ntargets; k++) {
            const mg_target *t = &snap->services[i].targets[k];
            mg_buf_printf(&b, "moongate_target_inflight{service=\"%s\",target=\"%s\"} %d\n",
                          snap->services[i].name, t->address,
                          t->uid < MG_MAX_TARGET_UIDS ? atomic_load(&mg_target_inflight[t->uid])
                                                      : 0);
        }
    mg_buf_printf(&b, "# HELP moongate_target_up 1 when a target may get traffic, 0 when a health "
                      "check failed or it was ejected passively.\n"
                      "# TYPE moongate_target_up gauge\n");
    uint64_t now_ms = uv_hrtime() / 1000000;
    for (int i = 0; i < snap->nservices; i++)
        for (int k = 0; k < snap->services[i].ntargets; k++) {
            const mg_target *t = &snap->services[i].targets[k];
            int up =
                mg_health_get(t->suid) != MG_HEALTH_DOWN && !mg_passive_ejected(t->suid, now_ms);
            mg_buf_printf(&b, "moongate_target_up{service=\"%s\",target=\"%s\"} %d\n",
                          snap->services[i].name, t->address, up);
        }
    mg_buf_printf(&b,
                  "# HELP moongate_open_connections Client connections open.\n"
                  "# TYPE moongate_open_connections gauge\nmoongate_open_connections %d\n",
                  atomic_load(&mg_stats.open_connections));
    mg_buf_printf(
        &b,
        "# HELP moongate_requests_unrouted_total Requests answered by the gateway itself.\n"
        "# TYPE moongate_requests_unrouted_total counter\n"
        "moongate_requests_unrouted_total{reason=\"no_route\"} %llu\n"
        "moongate_requests_unrouted_total{reason=\"local\"} %llu\n",
        (unsigned long long)ld(&mg_stats.no_route),
        (unsigned long long)ld(&mg_stats.local_answers));
    mg_buf_printf(&b,
                  "# HELP moongate_reloads_total Config and plugin reloads.\n"
                  "# TYPE moongate_reloads_total counter\n"
                  "moongate_reloads_total{result=\"ok\"} "
                  "%llu\nmoongate_reloads_total{result=\"failed\"} %llu\n",
                  (unsigned long long)ld(&mg_stats.reloads_ok),
                  (unsigned long long)ld(&mg_stats.reloads_failed));
    mg_buf_printf(&b,
                  "# HELP moongate_snapshot_version Version of the membership snapshot in use.\n"
                  "# TYPE moongate_snapshot_version gauge\nmoongate_snapshot_version %llu\n",
                  (unsigned long long)ld(&mg_stats.snapshot_version));
    mg_buf_printf(&b,
                  "# HELP moongate_configs_alive Loaded configs still held by a snapshot.\n"
                  "# TYPE moongate_configs_alive gauge\nmoongate_configs_alive %d\n",
                  atomic_load(&mg_stats.configs_alive));
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.p ? b.p : "", b.len);
    mg_buf_free(&b);
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
    char path[512];
    snprintf(path, sizeof(path), "%.*s", (int)c->url_len, c->url);
    char *q = strchr(path, '?');
    if (q) *q = 0;
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
        return respond(c, 200, "text/html; charset=utf-8", mg_admin_dashboard,
                       strlen(mg_admin_dashboard));
    }
    if (!authorized(c)) {
        respond(c, 401, "text/plain", "a bearer token is required\n", 27);
        return;
    }
    if (get && strcmp(path, "/api/services") == 0) return api_services(c);
    if (get && strcmp(path, "/api/routes") == 0) return api_routes(c);
    if (get && strcmp(path, "/api/plugins") == 0) return api_plugins(c);
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

int mg_admin_start(mg_admin *a, uv_loop_t *loop, mg_reloader *rl)
{
    memset(a, 0, sizeof(*a));
    a->rl = rl;
    const mg_config *cfg = rl->cfg;
    if (!cfg->admin_port) return 0;
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
        return -1;
    }
    a->running = 1;
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
    if (a->running) uv_close((uv_handle_t *)&a->server, NULL);
    a->running = 0;
}
