/* See uri.h. One character table drives every check here, so the request
 * path pays a table lookup per byte and no branches per character class. */
#include "uri.h"

#include "ascii.h"

#include <string.h>
#include <strings.h>

enum {
    C_PCHAR = 1,      /* pchar without '%': unreserved, sub-delims, ':', '@' */
    C_UNRESERVED = 2, /* ALPHA DIGIT - . _ ~ */
    C_HEX = 4,
    C_DIGIT = 8,
};

static unsigned char ctab[256];

static void ctab_init(void)
{
    if (ctab['a']) return; /* idempotent; races write the same bytes */
    for (int c = 0; c < 256; c++) {
        unsigned char v = 0;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        int digit = c >= '0' && c <= '9';
        if (alpha || digit || c == '-' || c == '.' || c == '_' || c == '~') v |= C_UNRESERVED;
        if ((v & C_UNRESERVED) || strchr("!$&'()*+,;=:@", c)) v |= C_PCHAR;
        if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= C_HEX;
        if (digit) v |= C_DIGIT;
        if (c == 0) v = 0; /* strchr matches the terminator */
        ctab[c] = v;
    }
}

/* Checks t[i, n) as path characters (query: '?' too) up to stop (or the
 * end); returns the index it stopped at, or -1. */
static long scan(const char *t, size_t i, size_t n, int query, int stop, const char **why)
{
    for (; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == stop) return (long)i;
        if (ctab[c] & C_PCHAR || c == '/' || (query && c == '?')) continue;
        if (c == '%') {
            if (i + 2 >= n) {
                *why = "a truncated percent-escape in the request target";
                return -1;
            }
            if (!(ctab[(unsigned char)t[i + 1]] & C_HEX) ||
                !(ctab[(unsigned char)t[i + 2]] & C_HEX)) {
                *why = "an invalid percent-escape in the request target";
                return -1;
            }
            i += 2;
            continue;
        }
        *why = c == '#'    ? "a fragment in the request target"
               : c >= 0x80 ? "a byte outside RFC 3986 (not percent-encoded) in the request target"
                           : "an invalid character in the request target";
        return -1;
    }
    return (long)n;
}

/* Path from i (which is '/' or the end) then an optional query. */
static int path_and_query(const char *t, size_t i, size_t n, mg_uri *out, const char **why)
{
    long q = scan(t, i, n, 0, '?', why);
    if (q < 0) return -1;
    out->path.p = t + i;
    out->path.len = (size_t)q - i;
    if ((size_t)q < n) {
        if (scan(t, (size_t)q + 1, n, 1, -1, why) < 0) return -1;
        out->has_query = 1;
        out->query.p = t + q + 1;
        out->query.len = n - (size_t)q - 1;
    }
    return 0;
}

int mg_uri_parse(const char *t, size_t n, int is_options, mg_uri *out, const char **why)
{
    ctab_init();
    memset(out, 0, sizeof(*out));
    out->query.p = "";
    out->authority.p = "";
    if (!n) {
        *why = "an empty request target";
        return -1;
    }
    if (t[0] == '*') {
        if (n != 1 || !is_options) {
            *why = "an asterisk request target is only for OPTIONS";
            return -1;
        }
        out->form = MG_TARGET_ASTERISK;
        out->path.p = t;
        out->path.len = 1;
        return 0;
    }
    if (t[0] == '/') return path_and_query(t, 0, n, out, why);
    /* absolute-form: http or https only, and never userinfo */
    size_t s;
    if (n > 7 && strncasecmp(t, "http://", 7) == 0)
        s = 7;
    else if (n > 8 && strncasecmp(t, "https://", 8) == 0)
        s = 8;
    else {
        *why = "a request target that is neither a path nor an http(s) URI";
        return -1;
    }
    size_t e = s;
    while (e < n && t[e] != '/' && t[e] != '?')
        e++;
    if (e == s || mg_uri_check_host(t + s, e - s)) {
        *why = memchr(t + s, '@', e - s) ? "userinfo in the request target"
                                         : "an invalid authority in the request target";
        return -1;
    }
    out->form = MG_TARGET_ABSOLUTE;
    out->authority.p = t + s;
    out->authority.len = e - s;
    return path_and_query(t, e, n, out, why);
}

void mg_uri_split(const char *t, size_t n, mg_uri *out)
{
    memset(out, 0, sizeof(*out));
    out->query.p = "";
    out->authority.p = "";
    size_t i = 0;
    if (n == 1 && t[0] == '*') {
        out->form = MG_TARGET_ASTERISK;
    } else if (n && t[0] != '/') {
        size_t s = (n > 4 && (t[4] | 0x20) == 's') ? 8 : 7;
        if (s > n) s = n;
        i = s;
        while (i < n && t[i] != '/' && t[i] != '?')
            i++;
        out->form = MG_TARGET_ABSOLUTE;
        out->authority.p = t + s;
        out->authority.len = i - s;
    }
    const char *q = memchr(t + i, '?', n - i);
    out->path.p = t + i;
    out->path.len = q ? (size_t)(q - (t + i)) : n - i;
    if (q) {
        out->has_query = 1;
        out->query.p = q + 1;
        out->query.len = n - (size_t)(q + 1 - t);
    }
}

int mg_uri_check_host(const char *h, size_t n)
{
    ctab_init();
    if (!n) return 0;
    size_t i = 0;
    if (h[0] == '[') {
        /* IPv6 literal: hex digits, ':' and '.' (a trailing IPv4 part) */
        i = 1;
        while (i < n && h[i] != ']') {
            unsigned char c = (unsigned char)h[i];
            if (!(ctab[c] & C_HEX) && c != ':' && c != '.') return -1;
            i++;
        }
        if (i >= n || i < 3) return -1;
        i++;
    } else {
        while (i < n && h[i] != ':') {
            unsigned char c = (unsigned char)h[i];
            if (c == '%') {
                if (i + 2 >= n || !(ctab[(unsigned char)h[i + 1]] & C_HEX) ||
                    !(ctab[(unsigned char)h[i + 2]] & C_HEX))
                    return -1;
                i += 3;
                continue;
            }
            if (!(ctab[c] & C_UNRESERVED)) return -1;
            i++;
        }
        if (i == 0) return -1;
    }
    if (i == n) return 0;
    if (h[i] != ':') return -1;
    size_t digits = n - i - 1;
    if (digits > 5) return -1;
    unsigned port = 0;
    for (size_t k = i + 1; k < n; k++) {
        if (!(ctab[(unsigned char)h[k]] & C_DIGIT)) return -1;
        port = port * 10 + (unsigned)(h[k] - '0');
    }
    return port > 65535 ? -1 : 0;
}

int mg_uri_path_needs_normalizing(const char *path, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = path[i];
        if (c == '%') return 1;
        if (c == '/' && i + 1 < n && (path[i + 1] == '/' || path[i + 1] == '.')) return 1;
    }
    return 0;
}

long mg_uri_normalize_path(const char *path, size_t n, char *out, int flags, const char **why)
{
    ctab_init();
    if (!n || path[0] != '/') {
        *why = "a path that does not start with '/'";
        return -1;
    }
    /* 1. percent-escapes: decode unreserved ones, upper-case the rest */
    size_t d = 0;
    char *dec = out; /* decoded bytes are written to out, then compacted in place */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c != '%') {
            dec[d++] = (char)c;
            continue;
        }
        if (i + 2 >= n || !(ctab[(unsigned char)path[i + 1]] & C_HEX) ||
            !(ctab[(unsigned char)path[i + 2]] & C_HEX)) {
            *why = "an invalid percent-escape in the path";
            return -1;
        }
        unsigned char v = (unsigned char)(mg_hexval((unsigned char)path[i + 1]) * 16 +
                                          mg_hexval((unsigned char)path[i + 2]));
        if (ctab[v] & C_UNRESERVED) {
            dec[d++] = (char)v;
        } else {
            if (v == 0 || ((v == '/' || v == '\\') && !(flags & MG_PATH_KEEP_ENCODED_SLASH))) {
                *why = v == 0 ? "an encoded NUL in the path" : "an encoded slash in the path";
                return -1;
            }
            static const char hex[] = "0123456789ABCDEF";
            dec[d++] = '%';
            dec[d++] = hex[v >> 4];
            dec[d++] = hex[v & 15];
        }
        i += 2;
    }
    /* 2. segments: merge empty ones and resolve "." and ".." in place; the
     * write position never passes the read position. */
    size_t o = 0, i = 1;
    int trailing = 0;
    for (;;) {
        size_t j = i;
        while (j < d && dec[j] != '/')
            j++;
        size_t len = j - i;
        int last = j >= d;
        if (len == 0 || (len == 1 && dec[i] == '.')) {
            if (last) trailing = 1;
        } else if (len == 2 && dec[i] == '.' && dec[i + 1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0) o--;
            if (last) trailing = 1;
        } else {
            out[o++] = '/';
            memmove(out + o, dec + i, len);
            o += len;
            if (last) trailing = 0;
        }
        if (last) break;
        i = j + 1;
    }
    if (o == 0 || trailing) out[o++] = '/';
    return (long)o;
}
