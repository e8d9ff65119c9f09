/* The router's insides, shared by router*.c and by nothing else: the
 * compiled form of a rule, the parser state the rule compiler threads
 * through, and the functions one router file calls in another (prefix
 * mg_router__). Users of the router include router.h only.
 *
 * Who owns what:
 *   router.c          the public API and match-time evaluation
 *   router_parse.c    the grammar: strings, operators, nesting, errors
 *   router_matchers.c the matcher table and what each matcher's arguments
 *                     compile to (hosts, methods, regexes, CIDRs, ...)
 *   router_regex.c    Go (RE2) regexes and v2 templates to POSIX ERE
 *
 * A compiled rule is a `prog`: flat arrays of nodes, literal arguments,
 * regexes and CIDRs, indexed rather than pointed to, so the parser can grow
 * them freely and a failed parse is undone by freeing the prog. Operators
 * are n-ary (children chained through `next`), so `a && b && c ...` stays
 * one level deep however long it is. */
#ifndef MG_ROUTER_INT_H
#define MG_ROUTER_INT_H

#include "addr.h"
#include "ascii.h"
#include "router.h"

#include <regex.h>

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
    mg_cidr *cidrs;
    uint32_t nnodes, nlits, nres, ncidrs;
    uint32_t capnodes, caplits, capres, capcidrs;
    int32_t root;
} prog;

/* ---- router_parse.c: compiling a rule ------------------------------------ */

/* Compiles rule into *pg, which the caller then owns (mg_router__prog_free).
 * Returns 0, or -1 with a one-line reason in err and *pg left empty. */
int mg_router__compile(prog *pg, const char *rule, char *err, size_t errlen);

/* Frees what pg holds (not pg itself) and leaves it empty. */
void mg_router__prog_free(prog *pg);

typedef struct parser {
    const char *src, *p;
    prog *pg;
    char *err;
    size_t errlen;
    int failed;
    int depth;
} parser;

/* Records the first error only: "<message> at column N" of `at`. */
void mg_router__fail_at(parser *ps, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mg_router__oom(parser *ps);

/* Makes room for one more element; returns its index or -1. */
int64_t mg_router__grow(void **arr, uint32_t *len, uint32_t *cap, size_t size);

/* Appends a node whose first lit is the next one added; returns its index,
 * or -1 (failed). */
int32_t mg_router__new_node(parser *ps, enum kind k);

/* Appends a literal argument. Takes ownership of s, also when it fails. */
int mg_router__add_lit(parser *ps, char *s, uint8_t wild);

/* ---- router_matchers.c: what a matcher's arguments compile to ------------ */

typedef struct matcher matcher;

/* The matcher called name[0, len) exactly, or NULL and, when one differs
 * only in case, its name in *near (else NULL). */
const matcher *mg_router__find_matcher(const char *name, size_t len, const char **near);

/* Checks the argument count and builds the node for matcher m, whose name
 * stands at `name` in the rule and whose arguments args[i] were read at
 * at[i]. Takes the strings it keeps (setting their slot to NULL); the
 * caller frees the rest. Returns the node, or -1 (failed). */
int32_t mg_router__build_matcher(parser *ps, const matcher *m, const char *name, char **args,
                                 const char **at, int nargs);

/* ---- router_regex.c: Go regexes and templates to POSIX ERE --------------- */

/* How to read a regex argument. */
enum re_form { RE_GO, RE_HOST_TEMPLATE, RE_PATH_TEMPLATE, RE_PATH_PREFIX_TEMPLATE };

/* Translates src, read as `form`, to a POSIX extended regex in *ere, which
 * the caller owns (free). A leading (?i) of an RE_GO regex sets *icase.
 * Returns 0, or -1 with *why (a static string) and *ere NULL. */
int mg_router__to_ere(const char *src, enum re_form form, int *icase, char **ere, const char **why);

/* Whether s holds a v2 template variable, "{name}" or "{name:regex}". */
int mg_router__has_template(const char *s);

#endif
