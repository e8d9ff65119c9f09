/* The router's public API (router.h) and match-time evaluation. Rules are
 * compiled by router_parse.c and router_matchers.c into the `prog` of
 * router_int.h; this file only reads them.
 *
 * Matching reads the router and the request and writes nothing but the
 * stack: no allocation, no lock, safe from any number of threads. The only
 * exception is inside glibc: regexec() allocates its match state and may
 * take a lock, which the rare *Regexp rules accept; literal matchers (Host,
 * Path, PathPrefix, Method, Header, Query, ClientIP) never reach it. */
#include "router_int.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Regex subjects are copied to the stack, NUL-terminated, up to this size
 * (see re_any). Decoded subjects longer than this never match. */
#define RE_COPY_MAX 8192

typedef struct route {
    prog pg;
    int priority;
    int value;
    int order;
    uint64_t listeners; /* bit i: matches on listener i */
} route;

struct mg_router {
    route *routes;
    int n, cap;
};

/* ---- matching --------------------------------------------------------- */

/* What every route looks at, computed once per mg_router_match. */
typedef struct req {
    const mg_route_input *in;
    mg_str host;      /* no port, no brackets, no trailing dot */
    mg_str path;      /* "/" when empty */
    int path_escaped; /* path holds '%': compare it decoded */
    int family;       /* 0 (unknown), 4 or 6; IPv4-mapped IPv6 counts as 4 */
    uint8_t ip[16];
} req;

/* s (any case) equals l, which is lowercase already. */
static int ieq_lc(const char *s, const char *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (mg_lower((unsigned char)s[i]) != (unsigned char)l[i]) return 0;
    return 1;
}

/* Returns the byte at s[*i], percent-decoded ("%41" -> 'A'; a '%' not
 * followed by two hex digits stays itself), and '+' as a space when `plus`
 * (query strings); advances *i past what it consumed. */
static inline unsigned char dec_byte(const char *s, size_t n, size_t *i, int plus)
{
    unsigned char c = (unsigned char)s[*i];
    if (c == '%' && *i + 2 < n) {
        int h = mg_hexval((unsigned char)s[*i + 1]), l = mg_hexval((unsigned char)s[*i + 2]);
        if (h >= 0 && l >= 0) {
            *i += 3;
            return (unsigned char)(h * 16 + l);
        }
    }
    (*i)++;
    return plus && c == '+' ? ' ' : c;
}

/* decoded(s) == l, or starts with l when `prefix`. */
static int dec_eq(const char *s, size_t n, const lit *l, int plus, int prefix)
{
    size_t i = 0, j = 0;
    while (i < n) {
        if (j == l->len) return prefix;
        if (dec_byte(s, n, &i, plus) != (unsigned char)l->p[j++]) return 0;
    }
    return j == l->len;
}

/* Whether any of the regexes matches s[0, n), percent-decoded first when
 * `decode` (2: '+' as a space too). The subject is copied to a NUL-terminated
 * stack buffer, because ASan's regexec interceptor strlen()s the subject even
 * with REG_STARTEND, and header bytes are not NUL-terminated. REG_STARTEND
 * still bounds the match, so a decoded "%00" is an ordinary byte. A raw
 * subject too long for the buffer is matched in place: glibc honours
 * REG_STARTEND, only the sanitizer's interceptor would read past it.
 * noinline: the buffer must not be part of every recursive eval() frame. */
static __attribute__((noinline)) int re_any(regex_t *const *res, int nre, const char *s, size_t n,
                                            int decode)
{
    char buf[RE_COPY_MAX];
    size_t o = 0;
    if (!s) s = "";
    if (decode) {
        for (size_t i = 0; i < n;) {
            if (o == sizeof(buf) - 1) return 0;
            buf[o++] = (char)dec_byte(s, n, &i, decode == 2);
        }
    } else if (n < sizeof(buf)) {
        memcpy(buf, s, n);
        o = n;
    }
    const char *subject = buf;
    if (!decode && n >= sizeof(buf)) {
        subject = s;
        o = n;
    } else {
        buf[o] = 0;
    }
    for (int k = 0; k < nre; k++) {
        regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)o};
        if (regexec(res[k], subject, 1, &m, REG_STARTEND) == 0) return 1;
    }
    return 0;
}

static int needs_decoding(const char *s, size_t n, int plus)
{
    return memchr(s, '%', n) || (plus && memchr(s, '+', n));
}

static int host_match(const lit *l, mg_str h)
{
    if (l->wild) /* l->p is ".example.com": one or more labels before it */
        return h.len > l->len && ieq_lc(h.p + h.len - l->len, l->p, l->len);
    return h.len == l->len && ieq_lc(h.p, l->p, l->len);
}

static int path_match(const lit *l, const req *rq, int prefix)
{
    if (rq->path_escaped) return dec_eq(rq->path.p, rq->path.len, l, 0, prefix);
    if (prefix) return rq->path.len >= l->len && memcmp(rq->path.p, l->p, l->len) == 0;
    return rq->path.len == l->len && memcmp(rq->path.p, l->p, l->len) == 0;
}

static int header_match(const prog *pg, const node *n, const mg_route_input *in)
{
    const lit *name = &pg->lits[n->first];
    for (size_t i = 0; i < in->nheaders; i++) {
        const mg_hdr *h = &in->headers[i];
        if (h->name_len != name->len || !ieq_lc(h->name, name->p, name->len)) continue;
        if (n->kind == K_HEADER_RE) {
            if (re_any(&pg->res[n->aux], 1, h->value, h->value_len, 0)) return 1;
        } else {
            const lit *v = &pg->lits[n->first + 1];
            if (v->wild || (h->value_len == v->len && memcmp(h->value, v->p, v->len) == 0))
                return 1;
        }
    }
    return 0;
}

/* Walks the k=v pairs of the query ('&'-separated, both sides decoded)
 * and matches any pair whose key is the node's key. */
static int query_match(const prog *pg, const node *n, mg_str q)
{
    const lit *key = &pg->lits[n->first];
    size_t i = 0;
    while (i < q.len) {
        size_t s = i;
        while (i < q.len && q.p[i] != '&')
            i++;
        const char *pair = q.p + s;
        size_t plen = i - s;
        i++; /* past '&' */
        if (!plen) continue;
        const char *eq = memchr(pair, '=', plen);
        size_t klen = eq ? (size_t)(eq - pair) : plen;
        if (!dec_eq(pair, klen, key, 1, 0)) continue;
        const char *v = eq ? eq + 1 : "";
        size_t vlen = eq ? plen - klen - 1 : 0;
        if (n->kind == K_QUERY_RE) {
            if (re_any(&pg->res[n->aux], 1, v, vlen, needs_decoding(v, vlen, 1) ? 2 : 0)) return 1;
        } else {
            const lit *want = &pg->lits[n->first + 1];
            if (want->wild || dec_eq(v, vlen, want, 1, 0)) return 1;
        }
    }
    return 0;
}

static int eval(const prog *pg, int32_t idx, const req *rq)
{
    const node *n = &pg->nodes[idx];
    const lit *l = n->kind > K_NOT && pg->lits ? &pg->lits[n->first] : NULL;
    switch ((enum kind)n->kind) {
    case K_AND:
        for (int32_t c = (int32_t)n->first; c >= 0; c = pg->nodes[c].next)
            if (!eval(pg, c, rq)) return 0;
        return 1;
    case K_OR:
        for (int32_t c = (int32_t)n->first; c >= 0; c = pg->nodes[c].next)
            if (eval(pg, c, rq)) return 1;
        return 0;
    case K_NOT:
        return !eval(pg, (int32_t)n->first, rq);
    case K_HOST:
        for (int i = 0; i < n->n; i++)
            if (host_match(&l[i], rq->host)) return 1;
        return 0;
    case K_HOST_RE:
        return re_any(&pg->res[n->aux], n->n, rq->host.p, rq->host.len, 0);
    case K_PATH:
    case K_PATH_PREFIX:
        for (int i = 0; i < n->n; i++)
            if (path_match(&l[i], rq, n->kind == K_PATH_PREFIX)) return 1;
        return 0;
    case K_PATH_RE:
        return re_any(&pg->res[n->aux], n->n, rq->path.p, rq->path.len, rq->path_escaped);
    case K_METHOD:
        for (int i = 0; i < n->n; i++)
            if (rq->in->method.len == l[i].len && memcmp(rq->in->method.p, l[i].p, l[i].len) == 0)
                return 1;
        return 0;
    case K_HEADER:
    case K_HEADER_RE:
        return header_match(pg, n, rq->in);
    case K_QUERY:
    case K_QUERY_RE:
        return query_match(pg, n, rq->in->query);
    case K_CLIENT_IP:
        return mg_cidr_match(&pg->cidrs[n->aux], (int)n->n, rq->family, rq->ip);
    }
    return 0;
}

/* The Host header without its port, the brackets of an IPv6 literal and a
 * trailing dot. */
static mg_str bare_host(mg_str h)
{
    if (!h.p) return (mg_str){"", 0};
    if (h.len && h.p[0] == '[') {
        const char *e = memchr(h.p, ']', h.len);
        if (e) return (mg_str){h.p + 1, (size_t)(e - h.p) - 1};
        return h;
    }
    const char *colon = memchr(h.p, ':', h.len);
    if (colon) h.len = (size_t)(colon - h.p);
    if (h.len && h.p[h.len - 1] == '.') h.len--;
    return h;
}

static void prepare(req *rq, const mg_route_input *in)
{
    rq->in = in;
    rq->host = bare_host(in->host);
    rq->path = in->path;
    if (!rq->path.p || !rq->path.len) rq->path = (mg_str){"/", 1};
    rq->path_escaped = memchr(rq->path.p, '%', rq->path.len) != NULL;
    rq->family = in->client ? mg_addr_bytes(in->client, rq->ip) : 0;
}

/* ---- the router --------------------------------------------------------- */

mg_router *mg_router_new(void)
{
    return calloc(1, sizeof(mg_router));
}

void mg_router_free(mg_router *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++)
        mg_router__prog_free(&r->routes[i].pg);
    free(r->routes);
    free(r);
}

int mg_router_add(mg_router *r, const char *rule, int priority, int value, char *err, size_t errlen)
{
    if (!r) return -1;
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 8;
        route *nr = realloc(r->routes, (size_t)cap * sizeof(route));
        if (!nr) {
            if (err && errlen) snprintf(err, errlen, "out of memory");
            return -1;
        }
        r->routes = nr;
        r->cap = cap;
    }
    route *rt = &r->routes[r->n];
    if (mg_router__compile(&rt->pg, rule, err, errlen)) return -1;
    rt->listeners = UINT64_MAX;
    size_t len = strlen(rule);
    rt->priority = priority >= 0 ? priority : (len > 0x7fffffff ? 0x7fffffff : (int)len);
    rt->value = value;
    rt->order = r->n++;
    return 0;
}

static int by_priority(const void *a, const void *b)
{
    const route *x = a, *y = b;
    if (x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

void mg_router_finalize(mg_router *r)
{
    if (r && r->n > 1) qsort(r->routes, (size_t)r->n, sizeof(route), by_priority);
}

int mg_router_restrict(mg_router *r, int value, uint64_t mask)
{
    for (int i = 0; r && i < r->n; i++)
        if (r->routes[i].value == value) {
            r->routes[i].listeners = mask;
            return 0;
        }
    return -1;
}

int mg_router_match(const mg_router *r, const mg_route_input *in)
{
    if (!r || !r->n) return -1;
    req rq;
    prepare(&rq, in);
    uint64_t bit = in->listener >= 0 && in->listener < 64 ? (uint64_t)1 << in->listener : 0;
    for (int i = 0; i < r->n; i++) {
        const route *rt = &r->routes[i];
        if (rt->listeners != UINT64_MAX && !(rt->listeners & bit)) continue;
        if (eval(&rt->pg, rt->pg.root, &rq)) return rt->value;
    }
    return -1;
}
