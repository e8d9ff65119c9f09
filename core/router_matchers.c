/* The matchers a rule can call (Host, PathPrefix, Header, Query, ClientIP,
 * ...) and what each one's arguments compile to: lowercased host names and
 * wildcards, uppercased methods, v2 Query pairs and path templates, POSIX
 * regexes (regcomp of what router_regex.c translates), CIDRs. The grammar
 * around them is router_parse.c's. */
#include "router_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum arity { ONE_OR_MORE, EXACTLY_TWO, ONE_OR_TWO, ANY_QUERY };

struct matcher {
    const char *name;
    enum kind kind;
    enum arity arity;
};

static const matcher matchers[] = {
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

/* Moves a string out of its slot, so the caller's cleanup skips it. */
static char *take(char **slot)
{
    char *s = *slot;
    *slot = NULL;
    return s;
}

/* Compiles one regex argument; `form` says how to read it. */
static int add_regex(parser *ps, const char *at, const char *arg, enum re_form form, int icase)
{
    char *ere;
    const char *why;
    if (mg_router__to_ere(arg, form, &icase, &ere, &why)) {
        mg_router__fail_at(ps, at, "invalid regular expression `%.80s`: %s", arg, why);
        return -1;
    }
    prog *pg = ps->pg;
    regex_t *re = malloc(sizeof(*re));
    int64_t i =
        re ? mg_router__grow((void **)&pg->res, &pg->nres, &pg->capres, sizeof(regex_t *)) : -1;
    if (i < 0) {
        free(re);
        free(ere);
        mg_router__oom(ps);
        return -1;
    }
    int err = regcomp(re, ere, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
    free(ere);
    if (err) {
        char reason[128];
        regerror(err, re, reason, sizeof(reason));
        regfree(re);
        free(re);
        pg->nres--;
        mg_router__fail_at(ps, at, "invalid regular expression `%.80s`: %s", arg, reason);
        return -1;
    }
    pg->res[i] = re;
    return 0;
}

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
        *c = (char)mg_lower((unsigned char)*c);
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
        mg_router__fail_at(ps, at, "%s", why);
        free(h);
        return -1;
    }
    if (h[0] == '*') {
        memmove(h, h + 1, l); /* keep the dot: ".example.com" */
        return mg_router__add_lit(ps, h, 1);
    }
    return mg_router__add_lit(ps, h, 0);
}

/* v2 Query(`k=v`, ...) pairs, v3 Query(`k`) and Query(`k`, `v`). Builds one
 * query node per pair (under an AND node when there are several). */
static int32_t build_query(parser *ps, char **args, const char **at, int nargs)
{
    int v2 = strchr(args[0], '=') != NULL;
    if (!v2 && nargs > 2) {
        mg_router__fail_at(ps, at[0], "Query expects (`key`, `value`) or `key=value` pairs");
        return -1;
    }
    if (!v2) {
        int32_t n = mg_router__new_node(ps, K_QUERY);
        if (n < 0) return -1;
        ps->pg->nodes[n].n = 2;
        if (mg_router__add_lit(ps, take(&args[0]), 0)) return -1;
        char *v = nargs == 2 ? take(&args[1]) : strdup("");
        if (!v) {
            mg_router__oom(ps);
            return -1;
        }
        return mg_router__add_lit(ps, v, 0) ? -1 : n;
    }
    int32_t conj = -1, prev = -1;
    if (nargs > 1 && (conj = mg_router__new_node(ps, K_AND)) < 0) return -1;
    for (int i = 0; i < nargs; i++) {
        char *eq = strchr(args[i], '=');
        if (!eq) {
            mg_router__fail_at(ps, at[i], "Query expects `key=value` pairs here");
            return -1;
        }
        int32_t n = mg_router__new_node(ps, K_QUERY);
        if (n < 0) return -1;
        ps->pg->nodes[n].n = 2;
        /* gorilla/mux: `k=` asks for the key with any value */
        char *v = strdup(eq + 1);
        *eq = 0;
        if (!v) {
            mg_router__oom(ps);
            return -1;
        }
        int any = !*v;
        if (mg_router__add_lit(ps, take(&args[i]), 0)) {
            free(v);
            return -1;
        }
        if (mg_router__add_lit(ps, v, (uint8_t)any)) return -1;
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
static int32_t build_matcher(parser *ps, const matcher *m, char **args, const char **at, int nargs)
{
    prog *pg = ps->pg;
    if (m->kind == K_QUERY) return build_query(ps, args, at, nargs);
    if (m->kind == K_QUERY_RE && nargs == 1) {
        matcher q = {m->name, K_QUERY, ONE_OR_TWO};
        return build_matcher(ps, &q, args, at, nargs);
    }
    /* Path templates of v2 make a regex node: "/users/{id:[0-9]+}". */
    enum kind kind = m->kind;
    int templated = 0;
    if (kind == K_PATH || kind == K_PATH_PREFIX || kind == K_HOST_RE)
        for (int i = 0; i < nargs; i++)
            templated |= mg_router__has_template(args[i]);
    if (templated && kind != K_HOST_RE) kind = K_PATH_RE;

    int32_t n = mg_router__new_node(ps, kind);
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
                mg_router__fail_at(ps, at[i], "HostRegexp must be ASCII");
                return -1;
            }
            if (add_regex(ps, at[i], args[i], templated ? RE_HOST_TEMPLATE : RE_GO, 1)) return -1;
        }
        return n;
    case K_PATH:
    case K_PATH_PREFIX:
        for (int i = 0; i < nargs; i++) {
            if (args[i][0] != '/') {
                mg_router__fail_at(ps, at[i], "%s expects a path starting with '/'", m->name);
                return -1;
            }
            if (templated) {
                enum re_form f = m->kind == K_PATH ? RE_PATH_TEMPLATE : RE_PATH_PREFIX_TEMPLATE;
                if (add_regex(ps, at[i], args[i], f, 0)) return -1;
            } else if (mg_router__add_lit(ps, take(&args[i]), 0)) {
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
                mg_router__fail_at(ps, at[i], "Method expects a method name");
                return -1;
            }
            upcase(args[i]);
            if (mg_router__add_lit(ps, take(&args[i]), 0)) return -1;
        }
        return n;
    case K_HEADER:
    case K_HEADER_RE:
    case K_QUERY_RE: {
        if (!args[0][0]) {
            mg_router__fail_at(ps, at[0], "%s expects a non-empty name", m->name);
            return -1;
        }
        if (m->kind != K_QUERY_RE) /* header names are case-insensitive */
            for (char *c = args[0]; *c; c++)
                *c = (char)mg_lower((unsigned char)*c);
        if (mg_router__add_lit(ps, take(&args[0]), 0)) return -1;
        if (m->kind == K_HEADER) {
            /* gorilla/mux: an empty value asks only that the header exists */
            int any = !args[1][0];
            if (mg_router__add_lit(ps, take(&args[1]), (uint8_t)any)) return -1;
        } else if (add_regex(ps, at[1], args[1], RE_GO, 0)) {
            return -1;
        }
        return n;
    }
    case K_CLIENT_IP:
        for (int i = 0; i < nargs; i++) {
            mg_cidr c;
            if (mg_cidr_parse(args[i], &c) != 0) {
                mg_router__fail_at(ps, at[i], "invalid IP or CIDR '%.60s'", args[i]);
                return -1;
            }
            int64_t k =
                mg_router__grow((void **)&pg->cidrs, &pg->ncidrs, &pg->capcidrs, sizeof(mg_cidr));
            if (k < 0) {
                mg_router__oom(ps);
                return -1;
            }
            pg->cidrs[k] = c;
        }
        return n;
    default:
        return -1;
    }
}

const matcher *mg_router__find_matcher(const char *name, size_t len, const char **near)
{
    const matcher *m = NULL;
    *near = NULL;
    for (size_t i = 0; i < MG_ARRAY_SIZE(matchers); i++) {
        if (strlen(matchers[i].name) != len) continue;
        if (memcmp(matchers[i].name, name, len) == 0)
            m = &matchers[i];
        else if (strncasecmp(matchers[i].name, name, len) == 0)
            *near = matchers[i].name;
    }
    return m;
}

int32_t mg_router__build_matcher(parser *ps, const matcher *m, const char *name, char **args,
                                 const char **at, int nargs)
{
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
        mg_router__fail_at(ps, name, "%s expects %s, got %d", m->name, want, nargs);
        return -1;
    }
    return build_matcher(ps, m, args, at, nargs);
}
