/* One access log line per request, appended to the worker's buffer and
 * written to stdout once per loop turn. */
#include "proxy.h"
#include "stats.h"
#include "uri.h"
#include "worker.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void mg_worker_refresh_time(mg_worker *w)
{
    time_t now = time(NULL);
    if (now == w->time_cached) return;
    w->time_cached = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(w->clf_time, sizeof(w->clf_time), "%d/%b/%Y:%H:%M:%S +0000", &tm);
    strftime(w->iso_time, sizeof(w->iso_time), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Appends s with quotes and control characters escaped, as nginx does. */
static void append_escaped(mg_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)
            mg_buf_printf(b, "\\x%02X", ch);
        else
            mg_buf_append(b, &s[i], 1);
    }
}

static mg_str header_or_dash(const mg_req *r, const char *name, size_t len)
{
    int i = mg_headers_find(&r->in, name, len);
    mg_str s = {"-", 1};
    if (i >= 0) {
        s.p = mg_hvalue(&r->in, (uint32_t)i);
        s.len = r->in.h[i].vlen;
    }
    return s;
}

void mg_req_log(mg_req *r)
{
    mg_worker *w = r->w;
    /* a chain still waiting forgets the request when its wait ends */
    if ((r->hook_flags & 2) && !r->hook_wait) mg_lua_on_log(&w->lua, r);
    if (r->svc >= 0 && r->target >= 0 && r->snap) {
        mg_stats_request(r->snap->services[r->svc].targets[r->target].suid, r->status,
                         (double)(uv_hrtime() - r->start_ns) / 1e9);
    } else {
        atomic_fetch_add_explicit(&mg_stats.requests, 1, memory_order_relaxed);
        if (r->responded || r->svc >= 0)
            atomic_fetch_add_explicit(&mg_stats.local_answers, 1, memory_order_relaxed);
        else if (r->method_len)
            atomic_fetch_add_explicit(&mg_stats.no_route, 1, memory_order_relaxed);
    }
    if (w->cfg->access_log == MG_ACCESS_LOG_OFF) return;
    mg_worker_refresh_time(w);
    char ip[64];
    mg_req_client_ip(r, ip, sizeof(ip));
    double dur = (double)(uv_hrtime() - r->start_ns) / 1e9;
    const char *svc = r->svc >= 0 && r->snap ? r->snap->services[r->svc].name : NULL;
    mg_str ref = header_or_dash(r, "referer", 7), ua = header_or_dash(r, "user-agent", 10);
    mg_buf *b = &w->access;
    if (w->cfg->access_log == MG_ACCESS_LOG_JSON) {
        const char *url = r->in.arena.p ? r->in.arena.p + r->method_len : "";
        mg_uri u; /* the target as the client sent it, split as req.path/req.query are */
        mg_uri_split(url, r->url_len, &u);
        int hi = mg_headers_find(&r->in, "host", 4);
        json_t *o = json_object();
        json_object_set_new(o, "time", json_string(w->iso_time));
        json_object_set_new(o, "client", json_string(ip));
        json_object_set_new(o, "method",
                            json_stringn(r->in.arena.p ? r->in.arena.p : "", r->method_len));
        json_object_set_new(o, "path", json_stringn(u.path.p, u.path.len));
        json_object_set_new(o, "query", json_stringn(u.query.p, u.query.len));
        json_object_set_new(o, "protocol",
                            json_string(r->http_major == 2 ? "HTTP/2.0"
                                        : r->http_minor    ? "HTTP/1.1"
                                                           : "HTTP/1.0"));
        if (r->stream_id) json_object_set_new(o, "stream", json_integer(r->stream_id));
        json_object_set_new(o, "host",
                            hi >= 0
                                ? json_stringn(mg_hvalue(&r->in, (uint32_t)hi), r->in.h[hi].vlen)
                                : json_null());
        json_object_set_new(o, "status", json_integer(r->status));
        json_object_set_new(o, "bytes", json_integer((json_int_t)r->bytes_out));
        json_object_set_new(o, "referer",
                            ref.len == 1 && ref.p[0] == '-' ? json_null()
                                                            : json_stringn(ref.p, ref.len));
        json_object_set_new(o, "user_agent",
                            ua.len == 1 && ua.p[0] == '-' ? json_null()
                                                          : json_stringn(ua.p, ua.len));
        json_object_set_new(o, "service", svc ? json_string(svc) : json_null());
        json_object_set_new(o, "upstream",
                            r->upstreams.len ? json_stringn(r->upstreams.p, r->upstreams.len)
                                             : json_null());
        json_object_set_new(o, "duration", json_real(dur));
        json_object_set_new(o, "tries", json_integer(r->tries));
        char *s = json_dumps(o, JSON_COMPACT);
        if (s) {
            mg_buf_append(b, s, strlen(s));
            mg_buf_append(b, "\n", 1);
            free(s);
        }
        json_decref(o);
    } else {
        mg_buf_printf(b, "%s - - [%s] \"", ip, w->clf_time);
        if (r->method_len) {
            append_escaped(b, r->in.arena.p, r->method_len);
            mg_buf_append(b, " ", 1);
            append_escaped(b, r->in.arena.p + r->method_len, r->url_len);
            mg_buf_printf(b, " HTTP/%d.%d", r->http_major ? r->http_major : 1, r->http_minor);
        } else {
            mg_buf_append(b, "-", 1);
        }
        mg_buf_printf(b, "\" %d %llu \"", r->status, (unsigned long long)r->bytes_out);
        append_escaped(b, ref.p, ref.len);
        mg_buf_append(b, "\" \"", 3);
        append_escaped(b, ua.p, ua.len);
        mg_buf_printf(b, "\" \"%s\" ", svc ? svc : "-");
        if (r->upstreams.len)
            mg_buf_append(b, r->upstreams.p, r->upstreams.len);
        else
            mg_buf_append(b, "-", 1);
        mg_buf_printf(b, " %.3f\n", dur);
    }
    if (b->len > 32768) mg_buf_flush_fd(b, 1);
}
