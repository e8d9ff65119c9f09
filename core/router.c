/* Traefik's rule language (v3, and the v2 forms), compiled once into small
 * matcher trees.
 *
 * Grammar (lowest precedence first):
 *   or   := and ( "||" and )*
 *   and  := not ( "&&" not )*
 *   not  := "!" not | "(" or ")" | call
 *   call := Name "(" [ string ( "," string )* ] ")"
 * Strings are in backticks (raw) or double quotes (Go escapes).
 *
 * A compiled rule is a `prog`: flat arrays of nodes, literal arguments,
 * regexes and CIDRs, indexed rather than pointed to, so the parser can grow
 * them freely and a failed parse is undone by freeing the prog. Operators
 * are n-ary (children chained through `next`), so `a && b && c ...` stays
 * one level deep however long it is.
 *
 * Matching reads the router and the request and writes nothing but the
 * stack: no allocation, no lock, safe from any number of threads. The only
 * exception is inside glibc: regexec() allocates its match state and may
 * take a lock, which the rare *Regexp rules accept; literal matchers (Host,
 * Path, PathPrefix, Method, Header, Query, ClientIP) never reach it. */
#include "router.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ARGS  255 /* arguments of one matcher */
#define MAX_DEPTH 64  /* nesting of '!' and '(' */
/* Regex subjects are copied to the stack, NUL-terminated, up to this size
 * (see re_any). Decoded subjects longer than this never match. */
#define RE_COPY_MAX 8192

enum kind {
    K_AND,
    K_OR,
    K_NOT,
    K_HOST,        /* lits: lowercase names, `wild` = "*.suffix" */
    K_HOST_RE,     /* res */
    K_PATH,        /* lits */
    K_PATH_PREFIX, /* lits */
    K_PATH_RE,     /* res */
    K_METHOD,      /* lits: uppercase */
    K_HEADER,      /* lits: name, value (`wild` = any value) */
    K_HEADER_RE,   /* lits: name; res: value */
    K_QUERY,       /* lits: key, value (`wild` = any value) */
    K_QUERY_RE,    /* lits: key; res: value */
    K_CLIENT_IP,   /* cidrs */
};

typedef struct lit {
    char *p; /* owned, NUL-terminated */
    uint32_t len;
    uint8_t wild;
} lit;

typedef struct cidr {
    uint8_t v6; /* 0: IPv4 (addr[0..3]), 1: IPv6 */
    uint8_t bits;
    uint8_t addr[16];
} cidr;

typedef struct node {
    uint8_t kind;
    uint16_t n;     /* children (operators) or arguments (matchers) */
    int32_t next;   /* next sibling under the same operator, -1 = last */
    uint32_t first; /* operators: first child; matchers: first lit */
    uint32_t aux;   /* first regex or first cidr */
} node;

typedef struct prog {
    node *nodes;
    lit *lits;
    regex_t **res;
    cidr *cidrs;
    uint32_t nnodes, nlits, nres, ncidrs;
    uint32_t capnodes, caplits, capres, capcidrs;
    int32_t root;
} prog;

typedef struct route {
    prog pg;
    int priority;
    int value;
    int order;
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

static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* s (any case) equals l, which is lowercase already. */
static int ieq_lc(const char *s, const char *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != (unsigned char)l[i]) return 0;
    return 1;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Returns the byte at s[*i], percent-decoded ("%41" -> 'A'; a '%' not
 * followed by two hex digits stays itself), and '+' as a space when `plus`
 * (query strings); advances *i past what it consumed. */
static inline unsigned char dec_byte(const char *s, size_t n, size_t *i, int plus)
{
    unsigned char c = (unsigned char)s[*i];
    if (c == '%' && *i + 2 < n) {
        int h = hexval((unsigned char)s[*i + 1]), l = hexval((unsigned char)s[*i + 2]);
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

static int cidr_match(const cidr *c, int n, const req *rq)
{
    if (!rq->family) return 0;
    int v6 = rq->family == 6;
    for (int i = 0; i < n; i++) {
        if (c[i].v6 != v6) continue;
        int bits = c[i].bits, b = 0;
        for (; bits >= 8; bits -= 8, b++)
            if (rq->ip[b] != c[i].addr[b]) break;
        if (bits >= 8) continue; /* a whole byte differed */
        if (bits && ((rq->ip[b] ^ c[i].addr[b]) & (0xff00 >> bits) & 0xff)) continue;
        return 1;
    }
    return 0;
}

static int eval(const prog *pg, int32_t idx, const req *rq)
{
    const node *n = &pg->nodes[idx];
    const lit *l = n->kind > K_NOT ? &pg->lits[n->first] : NULL;
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
        return cidr_match(&pg->cidrs[n->aux], n->n, rq);
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
    rq->family = 0;
    const struct sockaddr *sa = in->client;
    if (!sa) return;
    if (sa->sa_family == AF_INET) {
        memcpy(rq->ip, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        rq->family = 4;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(rq->ip, a->s6_addr + 12, 4);
            rq->family = 4;
        } else {
            memcpy(rq->ip, a->s6_addr, 16);
            rq->family = 6;
        }
    }
}

/* ---- compiled rules ----------------------------------------------------- */

static void prog_free(prog *pg)
{
    for (uint32_t i = 0; i < pg->nlits; i++)
        free(pg->lits[i].p);
    for (uint32_t i = 0; i < pg->nres; i++) {
        regfree(pg->res[i]);
        free(pg->res[i]);
    }
    free(pg->nodes);
    free(pg->lits);
    free(pg->res);
    free(pg->cidrs);
    memset(pg, 0, sizeof(*pg));
}

/* Makes room for one more element; returns its index or -1. */
static int64_t grow(void **arr, uint32_t *len, uint32_t *cap, size_t size)
{
    if (*len == *cap) {
        uint32_t nc = *cap ? *cap * 2 : 4;
        void *na = realloc(*arr, nc * size);
        if (!na) return -1;
        *arr = na;
        *cap = nc;
    }
    return (*len)++;
}

/* ---- parsing ---------------------------------------------------------- */

typedef struct parser {
    const char *src, *p;
    prog *pg;
    char *err;
    size_t errlen;
    int failed;
    int depth;
} parser;

static void __attribute__((format(printf, 3, 4)))
fail_at(parser *ps, const char *at, const char *fmt, ...)
{
    if (ps->failed) return;
    ps->failed = 1;
    if (!ps->err || !ps->errlen) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%s at column %d", msg, (int)(at - ps->src) + 1);
}

static void oom(parser *ps)
{
    fail_at(ps, ps->p, "out of memory");
}

static void skip_ws(parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

static int32_t new_node(parser *ps, enum kind k)
{
    prog *pg = ps->pg;
    int64_t i = grow((void **)&pg->nodes, &pg->nnodes, &pg->capnodes, sizeof(node));
    if (i < 0) {
        oom(ps);
        return -1;
    }
    pg->nodes[i] = (node){.kind = (uint8_t)k, .next = -1, .first = pg->nlits, .aux = 0};
    return (int32_t)i;
}

/* Moves a string out of its slot, so the caller's cleanup skips it. */
static char *take(char **slot)
{
    char *s = *slot;
    *slot = NULL;
    return s;
}

/* Takes ownership of s, also when it fails. */
static int add_lit(parser *ps, char *s, uint8_t wild)
{
    prog *pg = ps->pg;
    int64_t i = grow((void **)&pg->lits, &pg->nlits, &pg->caplits, sizeof(lit));
    if (i < 0) {
        free(s);
        oom(ps);
        return -1;
    }
    pg->lits[i] = (lit){s, (uint32_t)strlen(s), wild};
    return 0;
}

/* A string in backticks (raw) or double quotes (Go escapes: \" \\ \n \t
 * \r \xHH ...; any other escape is an error, so a regex written as "\." in
 * double quotes fails loudly instead of silently losing its backslash). */
static char *parse_string(parser *ps)
{
    const char *open = ps->p;
    char q = *open;
    if (q != '`' && q != '"') {
        fail_at(ps, open,
                *open ? "expected a string in backticks or double quotes"
                      : "unexpected end of rule, expected a string");
        return NULL;
    }
    const char *s = open + 1, *e = s;
    while (*e && *e != q && !(q == '"' && *e == '\n'))
        e += (q == '"' && e[0] == '\\' && e[1]) ? 2 : 1;
    if (*e != q) {
        fail_at(ps, open, "unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(e - s) + 1), *o = out;
    if (!out) {
        oom(ps);
        return NULL;
    }
    for (const char *c = s; c < e; c++) {
        if (q == '`' || *c != '\\') {
            *o++ = *c;
            continue;
        }
        static const char from[] = "\"\\ntrabfv", to[] = "\"\\\n\t\r\a\b\f\v";
        const char *esc = c++, *k = *c ? strchr(from, *c) : NULL;
        if (k) {
            *o++ = to[k - from];
            continue;
        }
        int h = *c == 'x' && c + 2 < e ? hexval((unsigned char)c[1]) : -1;
        int l = h >= 0 ? hexval((unsigned char)c[2]) : -1;
        if (l >= 0 && (h | l)) { /* \xHH, but no NUL inside a string */
            *o++ = (char)(h * 16 + l);
            c += 2;
            continue;
        }
        free(out);
        fail_at(ps, esc,
                "invalid escape '\\%c' in a double-quoted string (use backticks for regexes)", *c);
        return NULL;
    }
    *o = 0;
    ps->p = e + 1;
    return out;
}

/* ---- regexes: Go (RE2) syntax to POSIX extended ---------------------------
 *
 * Traefik rules are written for Go's regexp. The common subset carries over
 * to POSIX ERE as is; what does not, we translate: \d \w \s (and their
 * negations) outside and inside brackets, escaped punctuation inside
 * brackets (POSIX takes a backslash there literally), (?:...) groups and a
 * leading (?i). Non-greedy marks are dropped (glibc would read `a+?` as
 * `(a+)?`): only whether a regex matches is asked, never where. Anything
 * else Go-only is refused with a reason rather than silently meaning
 * something else. */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 64) + n;
        char *np = realloc(b->p, nc);
        if (!np) return -1;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

static int sb_puts(sbuf *b, const char *s)
{
    return sb_put(b, s, strlen(s));
}

static int is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Go escapes and what they become in POSIX ERE, outside and inside brackets
 * (NULL: not valid there). Other escaped punctuation is the character. */
static const struct re_escape {
    char c;
    const char *outside, *inside;
} re_escapes[] = {
    {'d', "[0-9]", "0-9"},
    {'D', "[^0-9]", NULL},
    {'w', "[[:alnum:]_]", "[:alnum:]_"},
    {'W', "[^[:alnum:]_]", NULL},
    {'s', "[[:space:]]", "[:space:]"},
    {'S', "[^[:space:]]", NULL},
    {'b', "\\b", NULL},
    {'B', "\\B", NULL},
    {'A', "^", NULL},
    {'z', "$", NULL},
    {'n', "\n", "\n"},
    {'t', "\t", "\t"},
    {'r', "\r", "\r"},
};

static const struct re_escape *find_escape(char c)
{
    for (size_t i = 0; i < MG_ARRAY_SIZE(re_escapes); i++)
        if (re_escapes[i].c == c) return &re_escapes[i];
    return NULL;
}

/* One bracket expression starting at s ('['); returns the end, or NULL
 * with *why set. POSIX takes a backslash inside brackets literally, so Go's
 * escapes are resolved here; ']' must come first, '^' anywhere but first
 * and '-' last, so those three are collected and placed at the end. */
static const char *bracket_to_ere(const char *s, sbuf *out, const char **why)
{
    sbuf body = {0};
    int neg = 0, rb = 0, dash = 0, caret = 0, rc = 0;
    s++;
    if (*s == '^') {
        neg = 1;
        s++;
    }
    if (*s == ']') {
        rb = 1;
        s++;
    }
    *why = NULL;
    while (*s && *s != ']' && !rc && !*why) {
        if (s[0] == '[' && s[1] == ':') {
            const char *e = strstr(s + 2, ":]");
            if (!e) break;
            rc = sb_put(&body, s, (size_t)(e + 2 - s));
            s = e + 2;
        } else if (*s == '\\') {
            char c = s[1];
            const struct re_escape *esc = find_escape(c);
            if (c == ']')
                rb = 1;
            else if (c == '-')
                dash = 1;
            else if (c == '^')
                caret = 1;
            else if (!c)
                *why = "trailing backslash";
            else if (esc && esc->inside)
                rc = sb_puts(&body, esc->inside);
            else if (esc || is_alnum(c))
                *why = "unsupported escape inside brackets (POSIX regex)";
            else
                rc = sb_put(&body, &s[1], 1);
            s += c ? 2 : 1;
        } else if (*s == '^') {
            caret = 1;
            s++;
        } else if (*s == '-' && (body.len == 0 || s[1] == ']')) {
            dash = 1;
            s++;
        } else {
            rc = sb_put(&body, s++, 1);
        }
    }
    if (!*why && !rc && *s != ']') *why = "missing ']'";
    if (!*why && !rc) {
        if (!neg && !rb && !body.len && caret && !dash) {
            rc = sb_puts(out, "\\^");
        } else {
            rc |= sb_puts(out, neg ? "[^" : "[");
            if (rb) rc |= sb_puts(out, "]");
            if (!neg && !rb && !body.len && caret) { /* "[-^]", never "[^" */
                rc |= sb_puts(out, "-^");
                dash = caret = 0;
            }
            if (body.len) rc |= sb_put(out, body.p, body.len);
            if (caret) rc |= sb_puts(out, "^");
            if (dash) rc |= sb_puts(out, "-");
            rc |= sb_puts(out, "]");
        }
    }
    free(body.p);
    if (rc) *why = "out of memory";
    return *why ? NULL : s + 1;
}

/* Length of a "{m}", "{m,}" or "{m,n}" repetition at s, else 0 (Go then
 * reads the brace literally). */
static size_t interval_len(const char *s)
{
    const char *p = s + 1;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == ',')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    return *p == '}' ? (size_t)(p + 1 - s) : 0;
}

/* Appends the translation of src to out; *icase set by a leading (?i).
 * Returns 0, or -1 with *why. */
static int re2_to_ere(const char *src, sbuf *out, int *icase, const char **why)
{
    const char *s = src;
    int rc = 0, quantified = 0; /* the last token was a repetition */
    if (icase && strncmp(s, "(?i)", 4) == 0) {
        *icase = 1;
        s += 4;
    }
    while (*s && !rc) {
        int was_quantified = quantified;
        quantified = 0;
        size_t ilen;
        if (*s == '\\') {
            char c = s[1];
            const struct re_escape *esc = find_escape(c);
            if (!c) {
                *why = "trailing backslash";
                return -1;
            }
            if (!esc && is_alnum(c)) {
                *why = "unsupported escape (POSIX regex)";
                return -1;
            }
            rc = esc ? sb_puts(out, esc->outside) : sb_put(out, s, 2);
            s += 2;
        } else if (*s == '[') {
            s = bracket_to_ere(s, out, why);
            if (!s) return -1;
        } else if (s[0] == '(' && s[1] == '?') {
            if (s[2] != ':') {
                *why = "unsupported group '(?' (only (?:...) and a leading (?i))";
                return -1;
            }
            rc = sb_puts(out, "(");
            s += 3;
        } else if (*s == '?' && was_quantified) {
            s++; /* non-greedy: where the match ends is never asked, drop it */
        } else if (*s == '*' || *s == '+' || *s == '?') {
            rc = sb_put(out, s++, 1);
            quantified = 1;
        } else if (*s == '{' && (ilen = interval_len(s))) {
            rc = sb_put(out, s, ilen);
            s += ilen;
            quantified = 1;
        } else if (*s == '{' || *s == '}') {
            rc = sb_puts(out, *s++ == '{' ? "\\{" : "\\}");
        } else {
            rc = sb_put(out, s++, 1);
        }
    }
    if (rc) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

/* Traefik v2 (gorilla/mux) templates: "{sub:[a-z]+}.example.com" or
 * "/users/{id}". A template variable is "{name}" or "{name:regex}" with an
 * identifier for a name, which tells it apart from a "{2,3}" repetition. */
static const char *template_var(const char *s)
{
    if (*s != '{') return NULL;
    const char *p = s + 1;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')) return NULL;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_')
        p++;
    return *p == ':' || *p == '}' ? p : NULL;
}

static int has_template(const char *s)
{
    for (; *s; s++)
        if (template_var(s)) return 1;
    return 0;
}

/* Literal text with every ERE metacharacter escaped. */
static int sb_put_quoted(sbuf *b, const char *s, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (strchr(".[]()*+?{}|^$\\", s[i])) rc = sb_put(b, "\\", 1);
        rc |= sb_put(b, s + i, 1);
    }
    return rc;
}

/* "{sub:[a-z]+}.example.com" -> "^([a-z]+)\.example\.com$". `anyvar` is
 * the pattern of a bare "{name}"; `prefix` leaves the end open. */
static int template_to_ere(const char *s, const char *anyvar, int prefix, sbuf *out,
                           const char **why)
{
    int rc = sb_puts(out, "^");
    while (*s && !rc) {
        const char *name_end = template_var(s);
        if (!name_end) {
            const char *lit_end = s + 1;
            while (*lit_end && !template_var(lit_end))
                lit_end++;
            rc = sb_put_quoted(out, s, (size_t)(lit_end - s));
            s = lit_end;
            continue;
        }
        if (*name_end == '}') {
            rc = sb_puts(out, "(");
            rc |= sb_puts(out, anyvar);
            rc |= sb_puts(out, ")");
            s = name_end + 1;
            continue;
        }
        /* {name:pattern}: the pattern may hold balanced braces, "{2,3}" */
        const char *p = name_end + 1, *e = p;
        int depth = 1;
        for (; *e; e++) {
            if (*e == '\\' && e[1]) {
                e++;
                continue;
            }
            if (*e == '{') depth++;
            if (*e == '}' && --depth == 0) break;
        }
        if (!*e) {
            *why = "unbalanced braces in template";
            return -1;
        }
        char *pat = strndup(p, (size_t)(e - p));
        if (!pat) {
            *why = "out of memory";
            return -1;
        }
        rc = sb_puts(out, "(");
        if (!rc && re2_to_ere(pat, out, NULL, why)) {
            free(pat);
            return -1;
        }
        free(pat);
        rc |= sb_puts(out, ")");
        s = e + 1;
    }
    if (!rc && !prefix) rc = sb_puts(out, "$");
    if (rc) *why = "out of memory";
    return rc ? -1 : 0;
}

/* Compiles one regex argument; `kind` says how to read it. */
enum re_form { RE_GO, RE_HOST_TEMPLATE, RE_PATH_TEMPLATE, RE_PATH_PREFIX_TEMPLATE };

static int add_regex(parser *ps, const char *at, const char *arg, enum re_form form, int icase)
{
    sbuf ere = {0};
    const char *why = NULL;
    int rc;
    switch (form) {
    case RE_GO:
        rc = re2_to_ere(arg, &ere, &icase, &why);
        break;
    case RE_HOST_TEMPLATE:
        rc = template_to_ere(arg, "[^.]+", 0, &ere, &why);
        break;
    case RE_PATH_TEMPLATE:
        rc = template_to_ere(arg, "[^/]+", 0, &ere, &why);
        break;
    default:
        rc = template_to_ere(arg, "[^/]+", 1, &ere, &why);
        break;
    }
    if (!rc && !ere.p) rc = sb_puts(&ere, ""); /* an empty pattern */
    if (rc) {
        free(ere.p);
        fail_at(ps, at, "invalid regular expression `%.80s`: %s", arg, why ? why : "out of memory");
        return -1;
    }
    prog *pg = ps->pg;
    regex_t *re = malloc(sizeof(*re));
    int64_t i = re ? grow((void **)&pg->res, &pg->nres, &pg->capres, sizeof(regex_t *)) : -1;
    if (i < 0) {
        free(re);
        free(ere.p);
        oom(ps);
        return -1;
    }
    int err = regcomp(re, ere.p, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
    free(ere.p);
    if (err) {
        char reason[128];
        regerror(err, re, reason, sizeof(reason));
        regfree(re);
        free(re);
        pg->nres--;
        fail_at(ps, at, "invalid regular expression `%.80s`: %s", arg, reason);
        return -1;
    }
    pg->res[i] = re;
    return 0;
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
    int max;
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        max = 32;
    } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->v6 = 1;
        max = 128;
    } else {
        return -1;
    }
    int bits = max;
    if (slash) {
        const char *d = slash + 1;
        if (!*d || strlen(d) > 3) return -1;
        bits = 0;
        for (; *d; d++) {
            if (*d < '0' || *d > '9') return -1;
            bits = bits * 10 + (*d - '0');
        }
        if (bits > max) return -1;
    }
    /* "::ffff:10.0.0.0/104" is an IPv4 range written as IPv6 */
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c->v6 && bits >= 96 && memcmp(c->addr, v4mapped, 12) == 0) {
        memmove(c->addr, c->addr + 12, 4);
        memset(c->addr + 4, 0, 12);
        c->v6 = 0;
        bits -= 96;
    }
    c->bits = (uint8_t)bits;
    return 0;
}

enum arity { ONE_OR_MORE, EXACTLY_TWO, ONE_OR_TWO, ANY_QUERY };

static const struct matcher {
    const char *name;
    enum kind kind;
    enum arity arity;
} matchers[] = {
    {"Host", K_HOST, ONE_OR_MORE},
    {"HostHeader", K_HOST, ONE_OR_MORE}, /* v2 */
    {"HostRegexp", K_HOST_RE, ONE_OR_MORE},
    {"Path", K_PATH, ONE_OR_MORE},
    {"PathPrefix", K_PATH_PREFIX, ONE_OR_MORE},
    {"PathRegexp", K_PATH_RE, ONE_OR_MORE},
    {"Method", K_METHOD, ONE_OR_MORE},
    {"Header", K_HEADER, EXACTLY_TWO},
    {"Headers", K_HEADER, EXACTLY_TWO}, /* v2 */
    {"HeaderRegexp", K_HEADER_RE, EXACTLY_TWO},
    {"HeadersRegexp", K_HEADER_RE, EXACTLY_TWO}, /* v2 */
    {"Query", K_QUERY, ANY_QUERY},
    {"QueryRegexp", K_QUERY_RE, ONE_OR_TWO},
    {"ClientIP", K_CLIENT_IP, ONE_OR_MORE},
};

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

static void upcase(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z') *s = (char)(*s - 32);
}

/* Host(`*.Example.com.`) -> lit ".example.com", wild. */
static int add_host(parser *ps, const char *at, char *h)
{
    size_t l = strlen(h);
    for (char *c = h; *c; c++)
        *c = (char)lower((unsigned char)*c);
    if (l > 1 && h[l - 1] == '.') h[--l] = 0;
    if (l > 2 && h[0] == '[' && h[l - 1] == ']') {
        memmove(h, h + 1, l - 2);
        h[l -= 2] = 0;
    }
    const char *why = NULL;
    struct in6_addr a6;
    if (!l)
        why = "Host expects a non-empty name";
    else if (!is_ascii(h))
        why = "Host names must be ASCII (use the punycode form)";
    else if (strchr(h, ':') && inet_pton(AF_INET6, h, &a6) != 1)
        why = "Host names carry no port";
    else if (strchr(h + (h[0] == '*' && h[1] == '.' && l > 2 ? 1 : 0), '*'))
        why = "'*' is only allowed as the whole first label, as in *.example.com";
    if (why) {
        fail_at(ps, at, "%s", why);
        free(h);
        return -1;
    }
    if (h[0] == '*') {
        memmove(h, h + 1, l); /* keep the dot: ".example.com" */
        return add_lit(ps, h, 1);
    }
    return add_lit(ps, h, 0);
}

/* v2 Query(`k=v`, ...) pairs, v3 Query(`k`) and Query(`k`, `v`). Builds one
 * query node per pair (under an AND node when there are several). */
static int32_t build_query(parser *ps, char **args, const char **at, int nargs)
{
    int v2 = strchr(args[0], '=') != NULL;
    if (!v2 && nargs > 2) {
        fail_at(ps, at[0], "Query expects (`key`, `value`) or `key=value` pairs");
        return -1;
    }
    if (!v2) {
        int32_t n = new_node(ps, K_QUERY);
        if (n < 0) return -1;
        ps->pg->nodes[n].n = 2;
        if (add_lit(ps, take(&args[0]), 0)) return -1;
        char *v = nargs == 2 ? take(&args[1]) : strdup("");
        if (!v) {
            oom(ps);
            return -1;
        }
        return add_lit(ps, v, 0) ? -1 : n;
    }
    int32_t conj = -1, prev = -1;
    if (nargs > 1 && (conj = new_node(ps, K_AND)) < 0) return -1;
    for (int i = 0; i < nargs; i++) {
        char *eq = strchr(args[i], '=');
        if (!eq) {
            fail_at(ps, at[i], "Query expects `key=value` pairs here");
            return -1;
        }
        int32_t n = new_node(ps, K_QUERY);
        if (n < 0) return -1;
        ps->pg->nodes[n].n = 2;
        /* gorilla/mux: `k=` asks for the key with any value */
        char *v = strdup(eq + 1);
        *eq = 0;
        if (!v) {
            oom(ps);
            return -1;
        }
        int any = !*v;
        if (add_lit(ps, take(&args[i]), 0)) {
            free(v);
            return -1;
        }
        if (add_lit(ps, v, (uint8_t)any)) return -1;
        if (conj < 0) return n;
        if (prev < 0)
            ps->pg->nodes[conj].first = (uint32_t)n;
        else
            ps->pg->nodes[prev].next = n;
        ps->pg->nodes[conj].n++;
        prev = n;
    }
    return conj;
}

/* Builds the node for a matcher whose arguments were read. Takes the
 * strings it keeps (setting their slot to NULL); the caller frees the rest. */
static int32_t build_matcher(parser *ps, const struct matcher *m, char **args, const char **at,
                             int nargs)
{
    prog *pg = ps->pg;
    if (m->kind == K_QUERY) return build_query(ps, args, at, nargs);
    if (m->kind == K_QUERY_RE && nargs == 1) {
        struct matcher q = {m->name, K_QUERY, ONE_OR_TWO};
        return build_matcher(ps, &q, args, at, nargs);
    }
    /* Path templates of v2 make a regex node: "/users/{id:[0-9]+}". */
    enum kind kind = m->kind;
    int templated = 0;
    if (kind == K_PATH || kind == K_PATH_PREFIX || kind == K_HOST_RE)
        for (int i = 0; i < nargs; i++)
            templated |= has_template(args[i]);
    if (templated && kind != K_HOST_RE) kind = K_PATH_RE;

    int32_t n = new_node(ps, kind);
    if (n < 0) return -1;
    pg->nodes[n].n = (uint16_t)nargs;
    pg->nodes[n].aux = kind == K_CLIENT_IP ? pg->ncidrs : pg->nres;

    switch (m->kind) {
    case K_HOST:
        for (int i = 0; i < nargs; i++)
            if (add_host(ps, at[i], take(&args[i]))) return -1;
        return n;
    case K_HOST_RE:
        for (int i = 0; i < nargs; i++) {
            if (!is_ascii(args[i])) {
                fail_at(ps, at[i], "HostRegexp must be ASCII");
                return -1;
            }
            if (add_regex(ps, at[i], args[i], templated ? RE_HOST_TEMPLATE : RE_GO, 1)) return -1;
        }
        return n;
    case K_PATH:
    case K_PATH_PREFIX:
        for (int i = 0; i < nargs; i++) {
            if (args[i][0] != '/') {
                fail_at(ps, at[i], "%s expects a path starting with '/'", m->name);
                return -1;
            }
            if (templated) {
                enum re_form f = m->kind == K_PATH ? RE_PATH_TEMPLATE : RE_PATH_PREFIX_TEMPLATE;
                if (add_regex(ps, at[i], args[i], f, 0)) return -1;
            } else if (add_lit(ps, take(&args[i]), 0)) {
                return -1;
            }
        }
        return n;
    case K_PATH_RE:
        for (int i = 0; i < nargs; i++)
            if (add_regex(ps, at[i], args[i], RE_GO, 0)) return -1;
        return n;
    case K_METHOD:
        for (int i = 0; i < nargs; i++) {
            if (!args[i][0]) {
                fail_at(ps, at[i], "Method expects a method name");
                return -1;
            }
            upcase(args[i]);
            if (add_lit(ps, take(&args[i]), 0)) return -1;
        }
        return n;
    case K_HEADER:
    case K_HEADER_RE:
    case K_QUERY_RE: {
        if (!args[0][0]) {
            fail_at(ps, at[0], "%s expects a non-empty name", m->name);
            return -1;
        }
        if (m->kind != K_QUERY_RE) /* header names are case-insensitive */
            for (char *c = args[0]; *c; c++)
                *c = (char)lower((unsigned char)*c);
        if (add_lit(ps, take(&args[0]), 0)) return -1;
        if (m->kind == K_HEADER) {
            /* gorilla/mux: an empty value asks only that the header exists */
            int any = !args[1][0];
            if (add_lit(ps, take(&args[1]), (uint8_t)any)) return -1;
        } else if (add_regex(ps, at[1], args[1], RE_GO, 0)) {
            return -1;
        }
        return n;
    }
    case K_CLIENT_IP:
        for (int i = 0; i < nargs; i++) {
            cidr c;
            if (parse_cidr(args[i], &c)) {
                fail_at(ps, at[i], "invalid IP or CIDR '%.60s'", args[i]);
                return -1;
            }
            int64_t k = grow((void **)&pg->cidrs, &pg->ncidrs, &pg->capcidrs, sizeof(cidr));
            if (k < 0) {
                oom(ps);
                return -1;
            }
            pg->cidrs[k] = c;
        }
        return n;
    default:
        return -1;
    }
}

static int32_t parse_call(parser *ps)
{
    const char *start = ps->p;
    while ((*ps->p >= 'a' && *ps->p <= 'z') || (*ps->p >= 'A' && *ps->p <= 'Z') ||
           (*ps->p >= '0' && *ps->p <= '9') || *ps->p == '_')
        ps->p++;
    size_t nlen = (size_t)(ps->p - start);
    if (!nlen) {
        fail_at(ps, start,
                *start ? "expected a matcher such as Host or PathPrefix"
                       : "unexpected end of rule");
        return -1;
    }
    const struct matcher *m = NULL, *near = NULL;
    for (size_t i = 0; i < MG_ARRAY_SIZE(matchers); i++) {
        if (strlen(matchers[i].name) != nlen) continue;
        if (memcmp(matchers[i].name, start, nlen) == 0)
            m = &matchers[i];
        else if (strncasecmp(matchers[i].name, start, nlen) == 0)
            near = &matchers[i];
    }
    if (!m) {
        if (near)
            fail_at(ps, start, "unknown matcher '%.*s' (did you mean '%s'?)", (int)nlen, start,
                    near->name);
        else
            fail_at(ps, start, "unknown matcher '%.*s'", (int)(nlen > 40 ? 40 : nlen), start);
        return -1;
    }
    skip_ws(ps);
    if (*ps->p != '(') {
        fail_at(ps, ps->p, "expected '(' after %s", m->name);
        return -1;
    }
    ps->p++;
    char *args[MAX_ARGS + 1];
    const char *at[MAX_ARGS + 1];
    int nargs = 0;
    int32_t n = -1;
    skip_ws(ps);
    if (*ps->p != ')') {
        for (;;) {
            skip_ws(ps);
            if (nargs == MAX_ARGS) {
                fail_at(ps, ps->p, "%s takes at most %d arguments", m->name, MAX_ARGS);
                goto out;
            }
            at[nargs] = ps->p;
            if (!(args[nargs] = parse_string(ps))) goto out;
            nargs++;
            skip_ws(ps);
            if (*ps->p != ',') break;
            ps->p++;
        }
        if (*ps->p != ')') {
            fail_at(ps, ps->p,
                    *ps->p ? "expected ',' or ')'" : "unexpected end of rule, expected ')'");
            goto out;
        }
    }
    ps->p++;
    const char *want = NULL;
    switch (m->arity) {
    case ONE_OR_MORE:
    case ANY_QUERY:
        if (nargs < 1) want = "1 or more arguments";
        break;
    case EXACTLY_TWO:
        if (nargs != 2) want = "2 arguments";
        break;
    case ONE_OR_TWO:
        if (nargs < 1 || nargs > 2) want = "1 or 2 arguments";
        break;
    }
    if (want) {
        fail_at(ps, start, "%s expects %s, got %d", m->name, want, nargs);
        goto out;
    }
    n = build_matcher(ps, m, args, at, nargs);
out:
    for (int i = 0; i < nargs; i++)
        free(args[i]);
    return ps->failed ? -1 : n;
}

static int32_t parse_or(parser *ps);

static int32_t parse_not(parser *ps)
{
    skip_ws(ps);
    if (*ps->p != '!' && *ps->p != '(') return parse_call(ps);
    if (++ps->depth > MAX_DEPTH) {
        fail_at(ps, ps->p, "rule nests deeper than %d levels", MAX_DEPTH);
        return -1;
    }
    int32_t n;
    if (*ps->p == '!') {
        ps->p++;
        n = new_node(ps, K_NOT);
        int32_t a = n < 0 ? -1 : parse_not(ps);
        if (a < 0) return -1;
        ps->pg->nodes[n].first = (uint32_t)a;
        ps->pg->nodes[n].n = 1;
    } else {
        const char *open = ps->p++;
        n = parse_or(ps);
        if (n < 0) return -1;
        skip_ws(ps);
        if (*ps->p != ')') {
            if (*ps->p)
                fail_at(ps, ps->p, "expected ')', '&&' or '||'");
            else
                fail_at(ps, open, "unclosed '('");
            return -1;
        }
        ps->p++;
    }
    ps->depth--;
    return n;
}

/* One operator level: operands joined by `op` ("&&" or "||"). */
static int32_t parse_chain(parser *ps, enum kind k, const char *op, int32_t (*operand)(parser *))
{
    int32_t a = operand(ps);
    if (a < 0) return -1;
    skip_ws(ps);
    if (ps->p[0] != op[0] || ps->p[1] != op[1]) return a;
    int32_t n = new_node(ps, k);
    if (n < 0) return -1;
    ps->pg->nodes[n].first = (uint32_t)a;
    ps->pg->nodes[n].n = 1;
    int32_t prev = a;
    while (ps->p[0] == op[0] && ps->p[1] == op[1]) {
        ps->p += 2;
        int32_t b = operand(ps);
        if (b < 0) return -1;
        ps->pg->nodes[prev].next = b;
        ps->pg->nodes[n].n++;
        prev = b;
        skip_ws(ps);
    }
    return n;
}

static int32_t parse_and(parser *ps)
{
    return parse_chain(ps, K_AND, "&&", parse_not);
}

static int32_t parse_or(parser *ps)
{
    return parse_chain(ps, K_OR, "||", parse_and);
}

static int compile(prog *pg, const char *rule, char *err, size_t errlen)
{
    memset(pg, 0, sizeof(*pg));
    if (!rule) rule = "";
    parser ps = {.src = rule, .p = rule, .pg = pg, .err = err, .errlen = errlen};
    skip_ws(&ps);
    if (!*ps.p) {
        fail_at(&ps, ps.p, "empty rule");
    } else {
        pg->root = parse_or(&ps);
        skip_ws(&ps);
        if (!ps.failed && *ps.p) {
            if (*ps.p == ')')
                fail_at(&ps, ps.p, "unexpected ')'");
            else if (*ps.p == '&' || *ps.p == '|')
                fail_at(&ps, ps.p, "expected '&&' or '||'");
            else
                fail_at(&ps, ps.p, "expected '&&' or '||' before this");
        }
    }
    if (ps.failed || pg->root < 0) {
        if (!ps.failed) fail_at(&ps, ps.p, "invalid rule");
        prog_free(pg);
        return -1;
    }
    return 0;
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
        prog_free(&r->routes[i].pg);
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
    if (compile(&rt->pg, rule, err, errlen)) return -1;
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

int mg_router_match(const mg_router *r, const mg_route_input *in)
{
    if (!r || !r->n) return -1;
    req rq;
    prepare(&rq, in);
    for (int i = 0; i < r->n; i++)
        if (eval(&r->routes[i].pg, r->routes[i].pg.root, &rq)) return r->routes[i].value;
    return -1;
}

MG_EXPORT int mg_rule_check(const char *rule, char *err, size_t errlen)
{
    prog pg;
    if (compile(&pg, rule, err, errlen)) return -1;
    prog_free(&pg);
    return 0;
}
