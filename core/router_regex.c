/* Go (RE2) regexes and Traefik v2 (gorilla/mux) host and path templates,
 * translated to POSIX extended regexes for glibc's regcomp. Pure string
 * work: no parser state, no regex compiled here (router_matchers.c does
 * that and reports errors with their column).
 *
 * Traefik rules are written for Go's regexp. The common subset carries over
 * to POSIX ERE as is; what does not, we translate: \d \w \s (and their
 * negations) outside and inside brackets, escaped punctuation inside
 * brackets (POSIX takes a backslash there literally), (?:...) groups and a
 * leading (?i). Non-greedy marks are dropped (glibc would read `a+?` as
 * `(a+)?`): only whether a regex matches is asked, never where. Anything
 * else Go-only is refused with a reason rather than silently meaning
 * something else. */
#include "router_int.h"

#include <stdlib.h>
#include <string.h>

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

/* glibc's regcomp copies the operand of every '+' and of every {m,n} (n
 * times), so stacked repetitions grow exponentially: a rule from a Docker
 * label could take gigabytes to compile. As Go's regexp (Traefik's) does,
 * a repetition of a repetition is refused, counts are at most 1000, and
 * the copies the whole regex asks for are bounded. */
#define RE_MAX_COUNT 1000
#define RE_MAX_COST  4096.0

/* The largest count of an interval "{m}", "{m,}" or "{m,n}" at s (its
 * length is known valid), or -1 past RE_MAX_COUNT. */
static long interval_max(const char *s)
{
    long m = 0, n = -1;
    const char *p = s + 1;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((m = m * 10 + (*p - '0')) > RE_MAX_COUNT) return -1;
    if (*p == ',') {
        p++;
        if (*p >= '0' && *p <= '9') n = 0;
        for (; *p >= '0' && *p <= '9'; p++)
            if ((n = n * 10 + (*p - '0')) > RE_MAX_COUNT) return -1;
        return n < 0 ? m + 1 : n; /* {m,} compiles as m copies and a star */
    }
    return m;
}

/* Appends the translation of src to out; *icase set by a leading (?i).
 * Returns 0, or -1 with *why. */
static int re2_to_ere(const char *src, sbuf *out, int *icase, const char **why)
{
    const char *s = src;
    int rc = 0, quantified = 0; /* the last token was a repetition */
    double cost = 1;            /* how many copies regcomp will make, at most */
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
            s++;            /* non-greedy: where the match ends is never asked, drop it */
            quantified = 1; /* still a repetition for what follows */
        } else if (*s == '*' || *s == '+' || *s == '?') {
            if (was_quantified) {
                *why = "invalid nested repetition operator";
                return -1;
            }
            if (*s == '+') cost *= 2;
            rc = sb_put(out, s++, 1);
            quantified = 1;
        } else if (*s == '{' && (ilen = interval_len(s))) {
            long n = interval_max(s);
            if (n < 0) {
                *why = "repetition count over 1000";
                return -1;
            }
            if (was_quantified) {
                *why = "invalid nested repetition operator";
                return -1;
            }
            cost *= (double)(n + 1);
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
    if (cost > RE_MAX_COST) {
        *why = "regex too large (its repetitions multiply past 4096 copies)";
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

int mg_router__has_template(const char *s)
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

int mg_router__to_ere(const char *src, enum re_form form, int *icase, char **ere, const char **why)
{
    sbuf out = {0};
    int rc;
    *why = NULL;
    switch (form) {
    case RE_GO:
        rc = re2_to_ere(src, &out, icase, why);
        break;
    case RE_HOST_TEMPLATE:
        rc = template_to_ere(src, "[^.]+", 0, &out, why);
        break;
    case RE_PATH_TEMPLATE:
        rc = template_to_ere(src, "[^/]+", 0, &out, why);
        break;
    default:
        rc = template_to_ere(src, "[^/]+", 1, &out, why);
        break;
    }
    if (!rc && !out.p) rc = sb_puts(&out, ""); /* an empty pattern */
    if (rc) {
        free(out.p);
        *ere = NULL;
        if (!*why) *why = "out of memory";
        return -1;
    }
    *ere = out.p;
    return 0;
}
