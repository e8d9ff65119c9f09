/* A test hook for specs: evaluates one rule against a described request,
 * or a set of rules with priorities, through LuaJIT's FFI. Not used by the
 * request path. */
#include "router.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

/* headers: "Name: value\n" lines. Returns 1 match, 0 no match, -1 error. */
MG_EXPORT int mg_router_eval(const char *rule, const char *method, const char *host,
                             const char *path, const char *query, const char *headers,
                             const char *client_ip, char *err, size_t errlen);

/* rules: n rules with priorities (-1 = default). Returns the index of the
 * winning rule, -1 if none matches, -2 on a parse error. */
MG_EXPORT int mg_router_pick(const char **rules, const int *priorities, int n, const char *method,
                             const char *host, const char *path, char *err, size_t errlen);

static int fill_input(mg_route_input *in, const char *method, const char *host, const char *path,
                      const char *query, const char *headers, const char *client_ip, mg_hdr *hdrs,
                      int maxh, struct sockaddr_storage *ss)
{
    memset(in, 0, sizeof(*in));
    in->method.p = method ? method : "GET";
    in->method.len = strlen(in->method.p);
    in->host.p = host ? host : "";
    in->host.len = strlen(in->host.p);
    in->path.p = path ? path : "/";
    in->path.len = strlen(in->path.p);
    in->query.p = query ? query : "";
    in->query.len = strlen(in->query.p);
    int n = 0;
    for (const char *p = headers; p && *p && n < maxh;) {
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon) {
            const char *v = colon + 1;
            while (v < eol && *v == ' ')
                v++;
            hdrs[n].name = p;
            hdrs[n].name_len = (uint32_t)(colon - p);
            hdrs[n].value = v;
            hdrs[n].value_len = (uint32_t)(eol - v);
            n++;
        }
        p = *eol ? eol + 1 : eol;
    }
    in->headers = hdrs;
    in->nheaders = (size_t)n;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    const char *ip = client_ip ? client_ip : "127.0.0.1";
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    in->client = (const struct sockaddr *)ss;
    return 0;
}

int mg_router_eval(const char *rule, const char *method, const char *host, const char *path,
                   const char *query, const char *headers, const char *client_ip, char *err,
                   size_t errlen)
{
    mg_router *r = mg_router_new();
    if (!r) return -1;
    if (mg_router_add(r, rule, -1, 1, err, errlen)) {
        mg_router_free(r);
        return -1;
    }
    mg_router_finalize(r);
    mg_route_input in;
    mg_hdr hdrs[32];
    struct sockaddr_storage ss;
    fill_input(&in, method, host, path, query, headers, client_ip, hdrs, 32, &ss);
    int m = mg_router_match(r, &in);
    mg_router_free(r);
    return m == 1 ? 1 : 0;
}

int mg_router_pick(const char **rules, const int *priorities, int n, const char *method,
                   const char *host, const char *path, char *err, size_t errlen)
{
    mg_router *r = mg_router_new();
    if (!r) return -2;
    for (int i = 0; i < n; i++) {
        if (mg_router_add(r, rules[i], priorities ? priorities[i] : -1, i, err, errlen)) {
            mg_router_free(r);
            return -2;
        }
    }
    mg_router_finalize(r);
    mg_route_input in;
    mg_hdr hdrs[1];
    struct sockaddr_storage ss;
    fill_input(&in, method, host, path, NULL, NULL, NULL, hdrs, 1, &ss);
    int m = mg_router_match(r, &in);
    mg_router_free(r);
    return m;
}
