/* Routing rules (router_parse.c, router_matchers.c, router_regex.c) and
 * matching (router.c): arbitrary rule text is compiled as the config
 * loader compiles it, then requests are matched against what compiled.
 *
 * Input: lines. Up to 8 rules, one a line, until an empty line; then the
 * request: method, host, path, query, then "name: value" header lines.
 * The client address is 10.1.2.3 or 2001:db8::1 (first byte's low bit).
 * Each field is copied into a buffer of its exact size (no NUL after it),
 * so a read past a string's end is a sanitizer report. Findings: those,
 * mg_ffi_rule_check and mg_router_add disagreeing, an error without a reason,
 * or a match returning a value that was never added. */
#include "ffi.h"
#include "router.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RULES   8
#define MAX_HEADERS 16

/* The next line of [*p, end) in a buffer of its own (the caller frees). */
static char *next_line(const char **p, const char *end, size_t *len, int nul)
{
    const char *s = *p;
    const char *e = memchr(s, '\n', (size_t)(end - s));
    if (!e) e = end;
    *len = (size_t)(e - s);
    *p = e < end ? e + 1 : end;
    char *out = malloc(*len + (nul ? 1 : 0) + (*len == 0 && !nul));
    if (!out) abort();
    memcpy(out, s, *len);
    if (nul) out[*len] = 0;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    mg_router *rt = mg_router_new();
    if (!rt) return 0;
    int added[MAX_RULES], nadded = 0;
    for (int i = 0; i < MAX_RULES && p < end; i++) {
        size_t len;
        char *rule = next_line(&p, end, &len, 1);
        if (!len) {
            free(rule);
            break;
        }
        char err[256] = "", err2[256] = "";
        int prio = (int)(len % 3) - 1; /* -1 (the rule's length), 0 or 1 */
        int rc = mg_router_add(rt, rule, prio, i, err, sizeof(err));
        int rc2 = mg_ffi_rule_check(rule, err2, sizeof(err2)) == MG_FFI_OK ? 0 : -1;
        if (rc != rc2 || (rc && (!err[0] || strcmp(err, err2) != 0))) {
            fprintf(stderr, "fuzz: rule %s: add %d (%s), check %d (%s)\n", rule, rc, err, rc2,
                    err2);
            abort();
        }
        if (rc == 0) {
            added[nadded++] = i;
            if (len & 4) mg_router_restrict(rt, i, 1);
        }
        free(rule);
    }
    mg_router_finalize(rt);

    mg_route_input in = {.listener = (int)(size % 3) - 1};
    char *fields[4] = {NULL, NULL, NULL, NULL};
    mg_str *slots[4] = {&in.method, &in.host, &in.path, &in.query};
    for (int i = 0; i < 4; i++) {
        size_t len = 0;
        fields[i] = next_line(&p, end, &len, 0);
        slots[i]->p = fields[i];
        slots[i]->len = len;
    }
    mg_hdr hs[MAX_HEADERS];
    char *hbuf[MAX_HEADERS];
    size_t nh = 0;
    while (p < end && nh < MAX_HEADERS) {
        size_t len;
        char *line = next_line(&p, end, &len, 0);
        const char *colon = memchr(line, ':', len);
        size_t nlen = colon ? (size_t)(colon - line) : len;
        size_t voff = colon ? nlen + 1 : len;
        while (voff < len && line[voff] == ' ')
            voff++;
        hs[nh] = (mg_hdr){line, line + voff, (uint32_t)nlen, (uint32_t)(len - voff)};
        hbuf[nh++] = line;
    }
    in.headers = hs;
    in.nheaders = nh;
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "10.1.2.3", &a4.sin_addr);
    inet_pton(AF_INET6, "2001:db8::1", &a6.sin6_addr);
    in.client = size && (data[0] & 1) ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4;

    int v = mg_router_match(rt, &in);
    int known = v == -1;
    for (int i = 0; i < nadded; i++)
        known |= v == added[i];
    if (!known) {
        fprintf(stderr, "fuzz: match returned %d, which no rule was added with\n", v);
        abort();
    }
    for (int i = 0; i < 4; i++)
        free(fields[i]);
    for (size_t i = 0; i < nh; i++)
        free(hbuf[i]);
    mg_router_free(rt);
    return 0;
}
