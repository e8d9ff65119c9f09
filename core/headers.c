/* Header collection for both directions: llhttp hands names and values in
 * pieces (a read can end mid-header); they are appended to an arena and
 * recorded as offsets, so nothing points into the shared read buffer. */
#include "headers.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void mg_headers_reset(mg_headers *h)
{
    h->arena.len = 0;
    h->n = 0;
    h->ntrailer_start = UINT32_MAX;
    h->in_field = 0;
}

void mg_headers_free(mg_headers *h)
{
    mg_buf_free(&h->arena);
    free(h->h);
    h->h = NULL;
    h->n = h->cap = 0;
}

int mg_headers_field(mg_headers *h, const char *p, size_t n)
{
    if (!h->in_field) {
        if (h->n == h->cap) {
            uint32_t cap = h->cap ? h->cap * 2 : 16;
            mg_hoff *nh = realloc(h->h, cap * sizeof(*nh));
            if (!nh) return -1;
            h->h = nh;
            h->cap = cap;
        }
        mg_hoff *o = &h->h[h->n];
        o->noff = (uint32_t)h->arena.len;
        o->nlen = 0;
        o->voff = 0;
        o->vlen = 0;
        h->in_field = 1;
    }
    if (mg_buf_append(&h->arena, p, n)) return -1;
    h->h[h->n].nlen += (uint32_t)n;
    return 0;
}

int mg_headers_value(mg_headers *h, const char *p, size_t n)
{
    mg_hoff *o = &h->h[h->n];
    if (h->in_field == 1) {
        /* first piece of the value */
        h->in_field = 2;
        o->voff = (uint32_t)h->arena.len;
    }
    if (mg_buf_append(&h->arena, p, n)) return -1;
    o->vlen += (uint32_t)n;
    return 0;
}

static inline unsigned char lc(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* name (any case) equals lit (lowercase), both len bytes. */
static int ieq(const char *name, const char *lit, size_t len)
{
    for (size_t k = 0; k < len; k++)
        if (lc((unsigned char)name[k]) != (unsigned char)lit[k]) return 0;
    return 1;
}

int mg_hkind_of(const char *n, size_t len)
{
    /* by length first: most headers are ruled out without a compare */
    switch (len) {
    case 2:
        return ieq(n, "te", 2) ? MG_HK_TE : MG_HK_OTHER;
    case 4:
        return ieq(n, "host", 4) ? MG_HK_HOST : MG_HK_OTHER;
    case 7:
        return ieq(n, "upgrade", 7)   ? MG_HK_UPGRADE
               : ieq(n, "trailer", 7) ? MG_HK_TRAILER
                                      : MG_HK_OTHER;
    case 9:
        return ieq(n, "x-real-ip", 9) ? MG_HK_X_REAL_IP : MG_HK_OTHER;
    case 10:
        return ieq(n, "connection", 10)   ? MG_HK_CONNECTION
               : ieq(n, "keep-alive", 10) ? MG_HK_KEEP_ALIVE
                                          : MG_HK_OTHER;
    case 14:
        return ieq(n, "content-length", 14) ? MG_HK_CONTENT_LENGTH : MG_HK_OTHER;
    case 15:
        return ieq(n, "x-forwarded-for", 15) ? MG_HK_X_FORWARDED_FOR : MG_HK_OTHER;
    case 16:
        return ieq(n, "proxy-connection", 16)   ? MG_HK_PROXY_CONNECTION
               : ieq(n, "x-forwarded-host", 16) ? MG_HK_X_FORWARDED_HOST
                                                : MG_HK_OTHER;
    case 17:
        return ieq(n, "transfer-encoding", 17)   ? MG_HK_TRANSFER_ENCODING
               : ieq(n, "x-forwarded-proto", 17) ? MG_HK_X_FORWARDED_PROTO
                                                 : MG_HK_OTHER;
    case 19:
        return ieq(n, "proxy-authorization", 19) ? MG_HK_PROXY_AUTHORIZATION : MG_HK_OTHER;
    default:
        return MG_HK_OTHER;
    }
}

int mg_headers_find_kind(const mg_headers *h, int kind)
{
    uint32_t end = mg_headers_end(h);
    for (uint32_t i = 0; i < end; i++)
        if (h->h[i].kind == kind && h->h[i].nlen) return (int)i;
    return -1;
}

/* Called at the end of each header line, even for an empty value. */
void mg_headers_value_done(mg_headers *h)
{
    mg_hoff *o = &h->h[h->n];
    o->kind = (uint8_t)mg_hkind_of(h->arena.p + o->noff, o->nlen);
    if (h->in_field == 1) o->voff = (uint32_t)h->arena.len; /* empty value */
    /* llhttp strips leading whitespace; strip trailing whitespace too. */
    while (o->vlen &&
           (h->arena.p[o->voff + o->vlen - 1] == ' ' || h->arena.p[o->voff + o->vlen - 1] == '\t'))
        o->vlen--;
    h->n++;
    h->in_field = 0;
}

int mg_headers_append(mg_headers *h, const char *name, size_t nlen, const char *v, size_t vlen)
{
    h->in_field = 0;
    if (mg_headers_field(h, name, nlen) || mg_headers_value(h, v, vlen)) return -1;
    if (!vlen) h->in_field = 1; /* an empty value: value_done sets the offset */
    mg_headers_value_done(h);
    return 0;
}

int mg_hname_is(const mg_headers *h, uint32_t i, const char *name, size_t len)
{
    if (h->h[i].nlen != len) return 0;
    const char *p = h->arena.p + h->h[i].noff;
    for (size_t k = 0; k < len; k++)
        if (lc((unsigned char)p[k]) != lc((unsigned char)name[k])) return 0;
    return 1;
}

int mg_headers_find(const mg_headers *h, const char *name, size_t len)
{
    uint32_t end = h->ntrailer_start < h->n ? h->ntrailer_start : h->n;
    for (uint32_t i = 0; i < end; i++)
        if (mg_hname_is(h, i, name, len)) return (int)i;
    return -1;
}

int mg_value_has_token(const char *v, size_t vlen, const char *tok, size_t toklen)
{
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == toklen) {
            size_t k = 0;
            while (k < toklen && lc((unsigned char)v[start + k]) == lc((unsigned char)tok[k]))
                k++;
            if (k == toklen) return 1;
        }
    }
    return 0;
}

/* Byte classes for header validation: 1 = tchar (RFC 9110 5.6.2), 2 = a
 * byte a field value may hold (VCHAR, SP, HTAB, obs-text). */
static const unsigned char hclass[256] = {
    ['\t'] = 2, [' '] = 2,           ['!'] = 3,         ['"'] = 2,  ['#'] = 3, ['$'] = 3,
    ['%'] = 3,  ['&'] = 3,           ['\''] = 3,        ['('] = 2,  [')'] = 2, ['*'] = 3,
    ['+'] = 3,  [','] = 2,           ['-'] = 3,         ['.'] = 3,  ['/'] = 2, ['0' ... '9'] = 3,
    [':'] = 2,  [';'] = 2,           ['<'] = 2,         ['='] = 2,  ['>'] = 2, ['?'] = 2,
    ['@'] = 2,  ['A' ... 'Z'] = 3,   ['['] = 2,         ['\\'] = 2, [']'] = 2, ['^'] = 3,
    ['_'] = 3,  ['`'] = 3,           ['a' ... 'z'] = 3, ['{'] = 2,  ['|'] = 3, ['}'] = 2,
    ['~'] = 3,  [0x80 ... 0xff] = 2,
};

/* True when no byte of the 8 in x is below 0x20 or 0x7f (the usual value
 * bytes: one test per 8 instead of a lookup per byte). */
static inline int plain8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t lt20 = (x - ones * 0x20) & ~x & high; /* a byte < 0x20 */
    uint64_t y = x ^ (ones * 0x7f);
    uint64_t is7f = (y - ones) & ~y & high; /* a byte == 0x7f */
    return !(lt20 | is7f);
}

int mg_header_valid(const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (!nlen) return 0;
    unsigned ok = 1;
    for (size_t i = 0; i < nlen; i++)
        ok &= hclass[(unsigned char)name[i]];
    if (!(ok & 1)) return 0;
    size_t i = 0;
    for (; i + 8 <= vlen; i += 8) {
        uint64_t x;
        memcpy(&x, value + i, 8);
        if (!plain8(x)) break; /* a tab, or a refusal: byte by byte from here */
    }
    ok = 2;
    for (; i < vlen; i++)
        ok &= hclass[(unsigned char)value[i]];
    return ok == 2;
}
