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

/* Called at the end of each header line, even for an empty value. */
void mg_headers_value_done(mg_headers *h)
{
    mg_hoff *o = &h->h[h->n];
    if (h->in_field == 1) o->voff = (uint32_t)h->arena.len; /* empty value */
    /* llhttp strips leading whitespace; strip trailing whitespace too. */
    while (o->vlen &&
           (h->arena.p[o->voff + o->vlen - 1] == ' ' || h->arena.p[o->voff + o->vlen - 1] == '\t'))
        o->vlen--;
    h->n++;
    h->in_field = 0;
}

static inline unsigned char lc(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
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

int mg_header_valid(const char *name, size_t nlen, const char *value, size_t vlen)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (!nlen) return 0;
    for (size_t i = 0; i < nlen; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch && strchr(tchar, ch))))
            return 0;
    }
    for (size_t i = 0; i < vlen; i++) {
        unsigned char ch = (unsigned char)value[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return 0;
    }
    return 1;
}
