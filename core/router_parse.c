/* The grammar of Traefik's rule language (v3, and the v2 forms), and the
 * growth and freeing of the compiled `prog` (see router_int.h). Which
 * matchers exist and what their arguments mean is router_matchers.c's.
 *
 * Grammar (lowest precedence first):
 *   or   := and ( "||" and )*
 *   and  := not ( "&&" not )*
 *   not  := "!" not | "(" or ")" | call
 *   call := Name "(" [ string ( "," string )* ] ")"
 * Strings are in backticks (raw) or double quotes (Go escapes). */
#include "router_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS  255 /* arguments of one matcher */
#define MAX_DEPTH 64  /* nesting of '!' and '(' */

void mg_router__prog_free(prog *pg)
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

int64_t mg_router__grow(void **arr, uint32_t *len, uint32_t *cap, size_t size)
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

void mg_router__fail_at(parser *ps, const char *at, const char *fmt, ...)
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

void mg_router__oom(parser *ps)
{
    mg_router__fail_at(ps, ps->p, "out of memory");
}

static void skip_ws(parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

int32_t mg_router__new_node(parser *ps, enum kind k)
{
    prog *pg = ps->pg;
    int64_t i = mg_router__grow((void **)&pg->nodes, &pg->nnodes, &pg->capnodes, sizeof(node));
    if (i < 0) {
        mg_router__oom(ps);
        return -1;
    }
    pg->nodes[i] = (node){.kind = (uint8_t)k, .next = -1, .first = pg->nlits, .aux = 0};
    return (int32_t)i;
}

int mg_router__add_lit(parser *ps, char *s, uint8_t wild)
{
    prog *pg = ps->pg;
    int64_t i = mg_router__grow((void **)&pg->lits, &pg->nlits, &pg->caplits, sizeof(lit));
    if (i < 0) {
        free(s);
        mg_router__oom(ps);
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
        mg_router__fail_at(ps, open,
                           *open ? "expected a string in backticks or double quotes"
                                 : "unexpected end of rule, expected a string");
        return NULL;
    }
    const char *s = open + 1, *e = s;
    while (*e && *e != q && !(q == '"' && *e == '\n'))
        e += (q == '"' && e[0] == '\\' && e[1]) ? 2 : 1;
    if (*e != q) {
        mg_router__fail_at(ps, open, "unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(e - s) + 1), *o = out;
    if (!out) {
        mg_router__oom(ps);
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
        int h = *c == 'x' && c + 2 < e ? mg_hexval((unsigned char)c[1]) : -1;
        int l = h >= 0 ? mg_hexval((unsigned char)c[2]) : -1;
        if (l >= 0 && (h | l)) { /* \xHH, but no NUL inside a string */
            *o++ = (char)(h * 16 + l);
            c += 2;
            continue;
        }
        free(out);
        mg_router__fail_at(
            ps, esc, "invalid escape '\\%c' in a double-quoted string (use backticks for regexes)",
            *c);
        return NULL;
    }
    *o = 0;
    ps->p = e + 1;
    return out;
}

static int32_t parse_call(parser *ps)
{
    const char *start = ps->p;
    while ((*ps->p >= 'a' && *ps->p <= 'z') || (*ps->p >= 'A' && *ps->p <= 'Z') ||
           (*ps->p >= '0' && *ps->p <= '9') || *ps->p == '_')
        ps->p++;
    size_t nlen = (size_t)(ps->p - start);
    if (!nlen) {
        mg_router__fail_at(ps, start,
                           *start ? "expected a matcher such as Host or PathPrefix"
                                  : "unexpected end of rule");
        return -1;
    }
    const char *near;
    const matcher *m = mg_router__find_matcher(start, nlen, &near);
    if (!m) {
        if (near)
            mg_router__fail_at(ps, start, "unknown matcher '%.*s' (did you mean '%s'?)", (int)nlen,
                               start, near);
        else
            mg_router__fail_at(ps, start, "unknown matcher '%.*s'", (int)(nlen > 40 ? 40 : nlen),
                               start);
        return -1;
    }
    skip_ws(ps);
    if (*ps->p != '(') {
        mg_router__fail_at(ps, ps->p, "expected '(' after %.*s", (int)nlen, start);
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
                mg_router__fail_at(ps, ps->p, "%.*s takes at most %d arguments", (int)nlen, start,
                                   MAX_ARGS);
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
            mg_router__fail_at(
                ps, ps->p, *ps->p ? "expected ',' or ')'" : "unexpected end of rule, expected ')'");
            goto out;
        }
    }
    ps->p++;
    n = mg_router__build_matcher(ps, m, start, args, at, nargs);
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
        mg_router__fail_at(ps, ps->p, "rule nests deeper than %d levels", MAX_DEPTH);
        return -1;
    }
    int32_t n;
    if (*ps->p == '!') {
        ps->p++;
        n = mg_router__new_node(ps, K_NOT);
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
                mg_router__fail_at(ps, ps->p, "expected ')', '&&' or '||'");
            else
                mg_router__fail_at(ps, open, "unclosed '('");
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
    int32_t n = mg_router__new_node(ps, k);
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

int mg_router__compile(prog *pg, const char *rule, char *err, size_t errlen)
{
    memset(pg, 0, sizeof(*pg));
    if (!rule) rule = "";
    parser ps = {.src = rule, .p = rule, .pg = pg, .err = err, .errlen = errlen};
    skip_ws(&ps);
    if (!*ps.p) {
        mg_router__fail_at(&ps, ps.p, "empty rule");
    } else {
        pg->root = parse_or(&ps);
        skip_ws(&ps);
        if (!ps.failed && *ps.p) {
            if (*ps.p == ')')
                mg_router__fail_at(&ps, ps.p, "unexpected ')'");
            else if (*ps.p == '&' || *ps.p == '|')
                mg_router__fail_at(&ps, ps.p, "expected '&&' or '||'");
            else
                mg_router__fail_at(&ps, ps.p, "expected '&&' or '||' before this");
        }
    }
    if (ps.failed || pg->root < 0) {
        if (!ps.failed) mg_router__fail_at(&ps, ps.p, "invalid rule");
        mg_router__prog_free(pg);
        return -1;
    }
    return 0;
}
