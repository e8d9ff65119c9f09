/* Test hooks for specs: evaluate one rule, or pick among several rules with
 * priorities, against a request described by plain strings, through
 * LuaJIT's FFI. The request path never calls these. */
#include "ffi.h"
#include "router.h"
#include "router_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define MAX_HEADERS 64

/* A request described by strings. NULL method, path or client_ip mean
 * "GET", "/" and 127.0.0.1; an empty client_ip means no peer address.
 * headers: "Name: value" lines separated by '\n'. */
typedef struct fake_req {
    mg_route_input in;
    mg_hdr hdrs[MAX_HEADERS];
    struct sockaddr_storage peer;
} fake_req;

static mg_str str_or(const char *s, const char *dflt)
{
    s = s ? s : dflt;
    return (mg_str){s, strlen(s)};
}

static void fill_input(fake_req *f, const char *method, const char *host, const char *path,
                       const char *query, const char *headers, const char *client_ip)
{
    memset(f, 0, sizeof(*f));
    mg_route_input *in = &f->in;
    in->listener = -1;
    in->method = str_or(method, "GET");
    in->host = str_or(host, "");
    in->path = str_or(path, "/");
    in->query = str_or(query, "");
    size_t n = 0;
    for (const char *p = headers; p && *p && n < MAX_HEADERS;) {
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon) {
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            f->hdrs[n].name = p;
            f->hdrs[n].name_len = (uint32_t)(colon - p);
            f->hdrs[n].value = v;
            f->hdrs[n].value_len = (uint32_t)(ve - v);
            n++;
        }
        p = *eol ? eol + 1 : eol;
    }
    in->headers = f->hdrs;
    in->nheaders = n;
    const char *ip = client_ip ? client_ip : "127.0.0.1";
    struct sockaddr_in *v4 = (struct sockaddr_in *)&f->peer;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&f->peer;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    in->client = f->peer.ss_family ? (const struct sockaddr *)&f->peer : NULL;
}

int mg_ffi_rule_check(const char *rule, char *err, size_t errlen)
{
    prog pg;
    if (mg_router__compile(&pg, rule, err, errlen)) return MG_FFI_INVALID;
    mg_router__prog_free(&pg);
    return MG_FFI_OK;
}

int mg_ffi_router_eval(const char *rule, const char *method, const char *host, const char *path,
                       const char *query, const char *headers, const char *client_ip, char *err,
                       size_t errlen)
{
    mg_router *r = mg_router_new();
    if (!r) return MG_FFI_NO_MEMORY;
    if (mg_router_add(r, rule, -1, 1, err, errlen)) {
        mg_router_free(r);
        return MG_FFI_INVALID;
    }
    mg_router_finalize(r);
    fake_req f;
    fill_input(&f, method, host, path, query, headers, client_ip);
    int m = mg_router_match(r, &f.in);
    mg_router_free(r);
    return m == 1;
}

int mg_ffi_router_pick(const char **rules, const int *priorities, int n, const char *method,
                       const char *host, const char *path, const char *query, const char *headers,
                       const char *client_ip, char *err, size_t errlen)
{
    mg_router *r = mg_router_new();
    if (!r) return MG_FFI_NO_MEMORY;
    for (int i = 0; i < n; i++) {
        char why[256];
        if (mg_router_add(r, rules[i], priorities ? priorities[i] : -1, i, why, sizeof(why))) {
            if (err && errlen) snprintf(err, errlen, "rule %d: %s", i + 1, why);
            mg_router_free(r);
            return MG_FFI_INVALID;
        }
    }
    mg_router_finalize(r);
    fake_req f;
    fill_input(&f, method, host, path, query, headers, client_ip);
    int m = mg_router_match(r, &f.in);
    mg_router_free(r);
    return m >= 0 ? m : MG_FFI_DECLINED;
}
