/* See h1.h. */
#include "h1.h"

#include <string.h>

int mg_h1_chunk_line(char out[24], size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[20];
    int k = 0, len = 0;
    do {
        tmp[k++] = hex[n & 15];
        n >>= 4;
    } while (n);
    while (k)
        out[len++] = tmp[--k];
    out[len++] = '\r';
    out[len++] = '\n';
    return len;
}

void mg_h1_header(mg_buf *b, const char *name, size_t nlen, const char *v, size_t vlen)
{
    if (mg_buf_reserve(b, nlen + vlen + 4)) return;
    char *o = b->p + b->len;
    memcpy(o, name, nlen);
    o[nlen] = ':';
    o[nlen + 1] = ' ';
    memcpy(o + nlen + 2, v, vlen);
    o[nlen + 2 + vlen] = '\r';
    o[nlen + 3 + vlen] = '\n';
    b->len += nlen + vlen + 4;
}

int mg_h1_u64(char out[24], uint64_t n)
{
    char tmp[24];
    int k = 0, len = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (k)
        out[len++] = tmp[--k];
    return len;
}

void mg_h1_status_line(mg_buf *b, int minor, int status, const char *reason, size_t rlen)
{
    if (mg_buf_reserve(b, 15 + rlen)) return;
    char *o = b->p + b->len;
    memcpy(o, "HTTP/1.1 ", 9);
    if (!minor) o[7] = '0';
    o[9] = (char)('0' + status / 100 % 10);
    o[10] = (char)('0' + status / 10 % 10);
    o[11] = (char)('0' + status % 10);
    o[12] = ' ';
    memcpy(o + 13, reason, rlen);
    o[13 + rlen] = '\r';
    o[14 + rlen] = '\n';
    b->len += 15 + rlen;
}
