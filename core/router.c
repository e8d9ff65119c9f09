/* Traefik's rule language, parsed once into a tree of matchers.
 *
 * Grammar (lowest precedence first):
 *   or   := and ( "||" and )*
 *   and  := not ( "&&" not )*
 *   not  := "!" not | "(" or ")" | call
 *   call := Name "(" string ( "," string )* ")"
 * Strings are in backticks or double quotes. Literal matchers compare bytes
 * directly; only the *Regexp matchers use POSIX regexes (glibc's regexec may
 * take an internal lock: acceptable for those rare rules, and never on the
 * literal path). */
#include "router.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind {
    K_AND,
    K_OR,
    K_NOT,
    K_HOST,
    K_HOST_RE,
    K_PATH,
    K_PATH_PREFIX,
    K_PATH_RE,
    K_METHOD,
    K_HEADER,
    K_HEADER_RE,
    K_QUERY,
    K_QUERY_RE,
    K_CLIENT_IP,
};

typedef struct cidr {
    int family;
    int bits;
    uint8_t addr[16];
} cidr;

typedef struct node {
    enum kind kind;
    struct node *a, *b; /* children of AND / OR / NOT */
    char **args;        /* literal arguments (owned) */
    int nargs;
    regex_t *re; /* one per argument for *Regexp matchers */
    int nre;
    cidr *cidrs;
    int ncidrs;
} node;

typedef struct route {
    node *root;
    int priority;
    int value;
    int order;
} route;

struct mg_router {
    route *routes;
    int n, cap;
};

/* ---- matching --------------------------------------------------------- */

static int ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen) return 0;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 0;
    return 1;
}

/* The Host header without its port and trailing dot. */
static mg_str bare_host(mg_str h)
{
    if (h.len && h.p[0] == '[') {
        const char *e = memchr(h.p, ']', h.len);
        if (e) h.len = (size_t)(e - h.p) + 1;
    } else {
        const char *colon = memchr(h.p, ':', h.len);
        if (colon) h.len = (size_t)(colon - h.p);
    }
    if (h.len > 1 && h.p[h.len - 1] == '.') h.len--;
    return h;
}

static int regex_match(const regex_t *re, const char *s, size_t n)
{
    char stackbuf[1024];
    char *buf = n < sizeof(stackbuf) ? stackbuf : malloc(n + 1);
    if (!buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    int ok = regexec(re, buf, 0, NULL, 0) == 0;
    if (buf != stackbuf) free(buf);
    return ok;
}

static int host_match(const char *pat, mg_str host)
{
    size_t plen = strlen(pat);
    if (plen > 2 && pat[0] == '*' && pat[1] == '.') {
        /* "*.example.com": one or more labels before the suffix */
        size_t slen = plen - 1; /* ".example.com" */
        return host.len > slen && ieq(host.p + host.len - slen, slen, pat + 1, slen);
    }
    return ieq(host.p, host.len, pat, plen);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes (and '+' -> ' ') into out; returns the length, or -1 if
 * it does not fit. */
static int url_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o >= cap) return -1;
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    return (int)o;
}

/* Calls fn for each decoded key=value pair of the query; stops when fn
 * returns 1 and returns 1. */
static int query_any(mg_str q, const node *n,
                     int (*fn)(const node *, const char *, int, const char *, int))
{
    size_t i = 0;
    while (i <= q.len && q.len) {
        size_t s = i;
        while (i < q.len && q.p[i] != '&')
            i++;
        const char *pair = q.p + s;
        size_t plen = i - s;
        i++;
        if (!plen) continue;
        const char *eq = memchr(pair, '=', plen);
        size_t klen = eq ? (size_t)(eq - pair) : plen;
        char k[512], v[2048];
        int kl = url_decode(pair, klen, k, sizeof(k));
        int vl = eq ? url_decode(eq + 1, plen - klen - 1, v, sizeof(v)) : 0;
        if (kl < 0 || vl < 0) continue;
        if (fn(n, k, kl, v, vl)) return 1;
    }
    return 0;
}

static int query_eq(const node *n, const char *k, int kl, const char *v, int vl)
{
    return (size_t)kl == strlen(n->args[0]) && memcmp(k, n->args[0], (size_t)kl) == 0 &&
           (size_t)vl == strlen(n->args[1]) && memcmp(v, n->args[1], (size_t)vl) == 0;
}

static int query_re(const node *n, const char *k, int kl, const char *v, int vl)
{
    return (size_t)kl == strlen(n->args[0]) && memcmp(k, n->args[0], (size_t)kl) == 0 &&
           regex_match(&n->re[0], v, (size_t)vl);
}

static int cidr_match(const cidr *c, int n, const struct sockaddr *sa)
{
    uint8_t a[16];
    int family;
    if (!sa) return 0;
    if (sa->sa_family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        family = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(v6)) {
            memcpy(a, v6->s6_addr + 12, 4);
            family = AF_INET;
        } else {
            memcpy(a, v6->s6_addr, 16);
            family = AF_INET6;
        }
    } else {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (c[i].family != family) continue;
        int bits = c[i].bits, byte = 0, ok = 1;
        for (; bits >= 8; bits -= 8, byte++)
            if (a[byte] != c[i].addr[byte]) ok = 0;
        if (ok && bits && ((a[byte] ^ c[i].addr[byte]) & (0xff << (8 - bits)) & 0xff)) ok = 0;
        if (ok) return 1;
    }
    return 0;
}

static int eval(const node *n, const mg_route_input *in)
{
    switch (n->kind) {
    case K_AND:
        return eval(n->a, in) && eval(n->b, in);
    case K_OR:
        return eval(n->a, in) || eval(n->b, in);
    case K_NOT:
        return !eval(n->a, in);
    case K_HOST: {
        mg_str h = bare_host(in->host);
        for (int i = 0; i < n->nargs; i++)
            if (host_match(n->args[i], h)) return 1;
        return 0;
    }
    case K_HOST_RE: {
        mg_str h = bare_host(in->host);
        char lower[256];
        if (h.len >= sizeof(lower)) return 0;
        for (size_t i = 0; i < h.len; i++)
            lower[i] = (char)tolower((unsigned char)h.p[i]);
        for (int i = 0; i < n->nre; i++)
            if (regex_match(&n->re[i], lower, h.len)) return 1;
        return 0;
    }
    case K_PATH:
        for (int i = 0; i < n->nargs; i++)
            if (strlen(n->args[i]) == in->path.len &&
                memcmp(n->args[i], in->path.p, in->path.len) == 0)
                return 1;
        return 0;
    case K_PATH_PREFIX:
        for (int i = 0; i < n->nargs; i++) {
            size_t l = strlen(n->args[i]);
            if (l <= in->path.len && memcmp(n->args[i], in->path.p, l) == 0) return 1;
        }
        return 0;
    case K_PATH_RE:
        for (int i = 0; i < n->nre; i++)
            if (regex_match(&n->re[i], in->path.p, in->path.len)) return 1;
        return 0;
    case K_METHOD:
        for (int i = 0; i < n->nargs; i++)
            if (ieq(n->args[i], strlen(n->args[i]), in->method.p, in->method.len)) return 1;
        return 0;
    case K_HEADER:
    case K_HEADER_RE: {
        size_t nl = strlen(n->args[0]);
        for (size_t i = 0; i < in->nheaders; i++) {
            const mg_hdr *h = &in->headers[i];
            if (!ieq(h->name, h->name_len, n->args[0], nl)) continue;
            if (n->kind == K_HEADER ? (strlen(n->args[1]) == h->value_len &&
                                       memcmp(h->value, n->args[1], h->value_len) == 0)
                                    : regex_match(&n->re[0], h->value, h->value_len))
                return 1;
        }
        return 0;
    }
    case K_QUERY:
        return query_any(in->query, n, query_eq);
    case K_QUERY_RE:
        return query_any(in->query, n, query_re);
    case K_CLIENT_IP:
        return cidr_match(n->cidrs, n->ncidrs, in->client);
    }
    return 0;
}

/* ---- parsing ---------------------------------------------------------- */

typedef struct parser {
    const char *src, *p;
    char *err;
    size_t errlen;
    int failed;
} parser;

static void fail(parser *ps, const char *what)
{
    if (ps->failed) return;
    ps->failed = 1;
    snprintf(ps->err, ps->errlen, "%s at column %d", what, (int)(ps->p - ps->src) + 1);
}

static void skip_ws(parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

static void free_node(node *n)
{
    if (!n) return;
    free_node(n->a);
    free_node(n->b);
    for (int i = 0; i < n->nargs; i++)
        free(n->args[i]);
    free(n->args);
    for (int i = 0; i < n->nre; i++)
        regfree(&n->re[i]);
    free(n->re);
    free(n->cidrs);
    free(n);
}

static node *new_node(enum kind k, node *a, node *b)
{
    node *n = calloc(1, sizeof(*n));
    if (!n) return NULL;
    n->kind = k;
    n->a = a;
    n->b = b;
    return n;
}

static char *parse_string(parser *ps)
{
    char q = *ps->p;
    if (q != '`' && q != '"') {
        fail(ps, "expected a string in backticks or double quotes");
        return NULL;
    }
    const char *start = ++ps->p;
    size_t cap = 16, len = 0;
    char *out = malloc(cap);
    while (*ps->p && *ps->p != q) {
        char ch = *ps->p;
        if (q == '"' && ch == '\\' && ps->p[1]) ch = *++ps->p;
        if (len + 1 >= cap) {
            char *n2 = realloc(out, cap *= 2);
            if (!n2) break;
            out = n2;
        }
        out[len++] = ch;
        ps->p++;
    }
    if (*ps->p != q) {
        ps->p = start - 1;
        fail(ps, "unterminated string");
        free(out);
        return NULL;
    }
    ps->p++;
    out[len] = 0;
    return out;
}

static int add_regex(parser *ps, node *n, const char *pattern, int icase)
{
    regex_t *nr = realloc(n->re, (size_t)(n->nre + 1) * sizeof(regex_t));
    if (!nr) return -1;
    n->re = nr;
    int rc = regcomp(&n->re[n->nre], pattern, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
    if (rc) {
        char why[160], msg[256];
        regerror(rc, &n->re[n->nre], why, sizeof(why));
        snprintf(msg, sizeof(msg), "invalid regular expression '%s': %s", pattern, why);
        fail(ps, msg);
        return -1;
    }
    n->nre++;
    return 0;
}

/* Traefik v2 HostRegexp(`{sub:[a-z]+}.example.com`): {name:re} parts are
 * regexes, the rest literal; becomes an anchored POSIX regex. */
static char *v2_host_pattern(const char *s)
{
    size_t cap = strlen(s) * 2 + 8, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[o++] = '^';
    for (const char *p = s; *p;) {
        if (*p == '{') {
            const char *colon = strchr(p, ':'), *end = strchr(p, '}');
            if (colon && end && colon < end) {
                size_t l = (size_t)(end - colon - 1);
                if (o + l + 4 >= cap) out = realloc(out, cap = cap + l + 16);
                out[o++] = '(';
                memcpy(out + o, colon + 1, l);
                o += l;
                out[o++] = ')';
                p = end + 1;
                continue;
            }
            if (end) { /* {name}: any label */
                const char *any = "([^.]+)";
                if (o + 8 >= cap) out = realloc(out, cap += 16);
                memcpy(out + o, any, 7);
                o += 7;
                p = end + 1;
                continue;
            }
        }
        if (o + 3 >= cap) out = realloc(out, cap *= 2);
        if (strchr(".+*?()[]^$|\\", *p)) out[o++] = '\\';
        out[o++] = (char)tolower((unsigned char)*p);
        p++;
    }
    out[o++] = '$';
    out[o] = 0;
    return out;
}

static int parse_cidr(const char *s, cidr *c)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t l = slash ? (size_t)(slash - s) : strlen(s);
    if (l >= sizeof(buf)) return -1;
    memcpy(buf, s, l);
    buf[l] = 0;
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        c->bits = 32;
    } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        c->bits = 128;
    } else {
        return -1;
    }
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || b < 0 || b > c->bits) return -1;
        c->bits = (int)b;
    }
    return 0;
}

static const struct {
    const char *name;
    enum kind kind;
    int min, max; /* argument counts */
} matchers[] = {
    {"Host", K_HOST, 1, 64},
    {"HostRegexp", K_HOST_RE, 1, 64},
    {"Path", K_PATH, 1, 64},
    {"PathPrefix", K_PATH_PREFIX, 1, 64},
    {"PathRegexp", K_PATH_RE, 1, 64},
    {"Method", K_METHOD, 1, 64},
    {"Header", K_HEADER, 2, 2},
    {"Headers", K_HEADER, 2, 2},
    {"HeaderRegexp", K_HEADER_RE, 2, 2},
    {"HeadersRegexp", K_HEADER_RE, 2, 2},
    {"Query", K_QUERY, 1, 2},
    {"QueryRegexp", K_QUERY_RE, 2, 2},
    {"ClientIP", K_CLIENT_IP, 1, 64},
};

static node *parse_call(parser *ps)
{
    const char *start = ps->p;
    while (isalnum((unsigned char)*ps->p))
        ps->p++;
    size_t nlen = (size_t)(ps->p - start);
    if (!nlen) {
        fail(ps,
             *ps->p ? "expected a matcher such as Host or PathPrefix" : "unexpected end of rule");
        return NULL;
    }
    int m = -1;
    for (size_t i = 0; i < sizeof(matchers) / sizeof(matchers[0]); i++)
        if (strlen(matchers[i].name) == nlen && memcmp(matchers[i].name, start, nlen) == 0)
            m = (int)i;
    if (m < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "unknown matcher '%.*s'", (int)(nlen > 40 ? 40 : nlen), start);
        ps->p = start;
        fail(ps, msg);
        return NULL;
    }
    skip_ws(ps);
    if (*ps->p != '(') {
        fail(ps, "expected '('");
        return NULL;
    }
    ps->p++;
    node *n = new_node(matchers[m].kind, NULL, NULL);
    if (!n) return NULL;
    for (;;) {
        skip_ws(ps);
        if (*ps->p == ')' && n->nargs == 0) break;
        char *s = parse_string(ps);
        if (!s) goto bad;
        char **na = realloc(n->args, (size_t)(n->nargs + 1) * sizeof(char *));
        if (!na) {
            free(s);
            goto bad;
        }
        n->args = na;
        n->args[n->nargs++] = s;
        skip_ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        break;
    }
    if (*ps->p != ')') {
        fail(ps, "expected ',' or ')'");
        goto bad;
    }
    ps->p++;
    if (n->nargs < matchers[m].min || n->nargs > matchers[m].max) {
        char msg[96];
        if (matchers[m].min == matchers[m].max)
            snprintf(msg, sizeof(msg), "%s expects %d arguments", matchers[m].name,
                     matchers[m].min);
        else if (matchers[m].max == 2)
            snprintf(msg, sizeof(msg), "%s expects 1 or 2 arguments", matchers[m].name);
        else
            snprintf(msg, sizeof(msg), "%s expects 1 or more arguments", matchers[m].name);
        ps->p = start;
        fail(ps, msg);
        goto bad;
    }
    /* per-matcher preparation */
    switch (n->kind) {
    case K_HOST:
        for (int i = 0; i < n->nargs; i++) {
            for (char *c = n->args[i]; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            size_t l = strlen(n->args[i]);
            if (l > 1 && n->args[i][l - 1] == '.') n->args[i][l - 1] = 0;
        }
        break;
    case K_HOST_RE:
        for (int i = 0; i < n->nargs; i++) {
            char *pat = strchr(n->args[i], '{') ? v2_host_pattern(n->args[i]) : strdup(n->args[i]);
            int rc = pat ? add_regex(ps, n, pat, 1) : -1;
            free(pat);
            if (rc) goto bad;
        }
        break;
    case K_PATH_RE:
        for (int i = 0; i < n->nargs; i++)
            if (add_regex(ps, n, n->args[i], 0)) goto bad;
        break;
    case K_HEADER_RE:
    case K_QUERY_RE:
        if (add_regex(ps, n, n->args[1], 0)) goto bad;
        break;
    case K_QUERY:
        if (n->nargs == 1) {
            /* v2: Query(`k=v`) */
            char *eq = strchr(n->args[0], '=');
            char **na = realloc(n->args, 2 * sizeof(char *));
            if (!na) goto bad;
            n->args = na;
            n->args[1] = strdup(eq ? eq + 1 : "");
            if (eq) *eq = 0;
            n->nargs = 2;
        }
        break;
    case K_CLIENT_IP:
        n->cidrs = calloc((size_t)n->nargs, sizeof(cidr));
        for (int i = 0; i < n->nargs; i++) {
            if (parse_cidr(n->args[i], &n->cidrs[i])) {
                char msg[128];
                snprintf(msg, sizeof(msg), "invalid IP or CIDR '%.60s'", n->args[i]);
                ps->p = start;
                fail(ps, msg);
                goto bad;
            }
        }
        n->ncidrs = n->nargs;
        break;
    default:
        break;
    }
    return n;
bad:
    free_node(n);
    return NULL;
}

static node *parse_or(parser *ps);

static node *parse_not(parser *ps)
{
    skip_ws(ps);
    if (*ps->p == '!') {
        ps->p++;
        node *a = parse_not(ps);
        if (!a) return NULL;
        node *n = new_node(K_NOT, a, NULL);
        if (!n) free_node(a);
        return n;
    }
    if (*ps->p == '(') {
        ps->p++;
        node *n = parse_or(ps);
        if (!n) return NULL;
        skip_ws(ps);
        if (*ps->p != ')') {
            fail(ps, "expected ')'");
            free_node(n);
            return NULL;
        }
        ps->p++;
        return n;
    }
    return parse_call(ps);
}

static node *parse_and(parser *ps)
{
    node *a = parse_not(ps);
    while (a) {
        skip_ws(ps);
        if (ps->p[0] != '&' || ps->p[1] != '&') break;
        ps->p += 2;
        node *b = parse_not(ps);
        if (!b) {
            free_node(a);
            return NULL;
        }
        node *n = new_node(K_AND, a, b);
        if (!n) {
            free_node(a);
            free_node(b);
            return NULL;
        }
        a = n;
    }
    return a;
}

static node *parse_or(parser *ps)
{
    node *a = parse_and(ps);
    while (a) {
        skip_ws(ps);
        if (ps->p[0] != '|' || ps->p[1] != '|') break;
        ps->p += 2;
        node *b = parse_and(ps);
        if (!b) {
            free_node(a);
            return NULL;
        }
        node *n = new_node(K_OR, a, b);
        if (!n) {
            free_node(a);
            free_node(b);
            return NULL;
        }
        a = n;
    }
    return a;
}

static node *compile(const char *rule, char *err, size_t errlen)
{
    parser ps = {rule, rule, err, errlen, 0};
    node *n = parse_or(&ps);
    if (n) {
        skip_ws(&ps);
        if (*ps.p) {
            fail(&ps, *ps.p == '&' || *ps.p == '|' ? "expected '&&' or '||'" : "unexpected text");
            free_node(n);
            return NULL;
        }
    } else if (!ps.failed) {
        fail(&ps, "invalid rule");
    }
    return n;
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
        free_node(r->routes[i].root);
    free(r->routes);
    free(r);
}

int mg_router_add(mg_router *r, const char *rule, int priority, int value, char *err, size_t errlen)
{
    node *n = compile(rule, err, errlen);
    if (!n) return -1;
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 8;
        route *nr = realloc(r->routes, (size_t)cap * sizeof(route));
        if (!nr) {
            free_node(n);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        r->routes = nr;
        r->cap = cap;
    }
    route *rt = &r->routes[r->n];
    rt->root = n;
    rt->priority = priority >= 0 ? priority : (int)strlen(rule);
    rt->value = value;
    rt->order = r->n++;
    return 0;
}

static int by_priority(const void *a, const void *b)
{
    const route *x = a, *y = b;
    if (x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    return x->order - y->order;
}

void mg_router_finalize(mg_router *r)
{
    if (r->n > 1) qsort(r->routes, (size_t)r->n, sizeof(route), by_priority);
}

int mg_router_match(const mg_router *r, const mg_route_input *in)
{
    for (int i = 0; i < r->n; i++)
        if (eval(r->routes[i].root, in)) return r->routes[i].value;
    return -1;
}

MG_EXPORT int mg_rule_check(const char *rule, char *err, size_t errlen)
{
    node *n = compile(rule, err, errlen);
    if (!n) return -1;
    free_node(n);
    return 0;
}
