/* Header lists as llhttp delivers them: names and values arrive in pieces
 * (a read can end mid-header), are appended to an arena and recorded as
 * offsets, so nothing points into the shared read buffer and the arena may
 * grow while parsing. One list holds a message's headers and, from
 * ntrailer_start on, its trailers. An entry whose name length is 0 was
 * removed (by a plugin, or as hop-by-hop). */
#ifndef MG_HEADERS_H
#define MG_HEADERS_H

#include "common.h"
#include "log.h" /* mg_buf */

#include <stdint.h>

/* Names the proxy looks for, classified once when a header is collected,
 * so every later "is this Host / hop-by-hop / X-Forwarded-For?" is a byte
 * compare instead of a case-insensitive string compare. */
enum mg_hkind {
    MG_HK_OTHER = 0,
    MG_HK_HOST,
    MG_HK_CONNECTION,
    MG_HK_KEEP_ALIVE,
    MG_HK_PROXY_CONNECTION,
    MG_HK_TE,
    MG_HK_TRANSFER_ENCODING,
    MG_HK_UPGRADE,
    MG_HK_TRAILER,
    MG_HK_CONTENT_LENGTH,
    MG_HK_PROXY_AUTHORIZATION,
    MG_HK_X_FORWARDED_FOR,
    MG_HK_X_FORWARDED_PROTO,
    MG_HK_X_FORWARDED_HOST,
    MG_HK_X_REAL_IP,
};

/* Hop-by-hop and framing headers (RFC 9110 7.6.1), and the credentials
 * meant for this proxy (RFC 9110 11.7.2): never forwarded as they came. */
#define MG_HK_HOP_MASK                                                                             \
    ((1u << MG_HK_CONNECTION) | (1u << MG_HK_KEEP_ALIVE) | (1u << MG_HK_PROXY_CONNECTION) |        \
     (1u << MG_HK_TE) | (1u << MG_HK_TRANSFER_ENCODING) | (1u << MG_HK_UPGRADE) |                  \
     (1u << MG_HK_TRAILER) | (1u << MG_HK_CONTENT_LENGTH) | (1u << MG_HK_PROXY_AUTHORIZATION))

typedef struct mg_hoff {
    uint32_t noff, nlen, voff, vlen;
    uint8_t kind; /* enum mg_hkind, set when the header ends */
} mg_hoff;

typedef struct mg_headers {
    mg_buf arena;
    mg_hoff *h;
    uint32_t n, cap;
    uint32_t ntrailer_start; /* headers at or after this index are trailers */
    uint8_t in_field;        /* a field is being collected */
} mg_headers;

void mg_headers_reset(mg_headers *h);
void mg_headers_free(mg_headers *h);
/* Appends a piece of a name, or of a value; 0 or -1 (out of memory). */
int mg_headers_field(mg_headers *h, const char *p, size_t n);
int mg_headers_value(mg_headers *h, const char *p, size_t n);
/* Ends the current header (trailing whitespace of the value is dropped). */
void mg_headers_value_done(mg_headers *h);
/* Appends a complete header after parsing ended; 0 or -1. */
int mg_headers_append(mg_headers *h, const char *name, size_t nlen, const char *v, size_t vlen);

static inline const char *mg_hname(const mg_headers *h, uint32_t i)
{
    return h->arena.p + h->h[i].noff;
}
static inline const char *mg_hvalue(const mg_headers *h, uint32_t i)
{
    return h->arena.p + h->h[i].voff;
}
/* The number of entries before the trailers. */
static inline uint32_t mg_headers_end(const mg_headers *h)
{
    return h->ntrailer_start < h->n ? h->ntrailer_start : h->n;
}
static inline int mg_hkind(const mg_headers *h, uint32_t i)
{
    return h->h[i].kind;
}

static inline int mg_hkind_is_hop(int kind)
{
    return (MG_HK_HOP_MASK >> kind) & 1u;
}

/* The kind of a header name (classification of mg_headers_value_done). */
int mg_hkind_of(const char *name, size_t len);

/* Case-insensitive name comparison. */
int mg_hname_is(const mg_headers *h, uint32_t i, const char *name, size_t len);
/* Returns the index of the first header (not trailer) with that name, or -1. */
int mg_headers_find(const mg_headers *h, const char *name, size_t len);
/* The same by kind (a known name): a byte compare per header. */
int mg_headers_find_kind(const mg_headers *h, int kind);
/* True if a comma-separated header value contains token (case-insensitive). */
int mg_value_has_token(const char *v, size_t vlen, const char *tok, size_t toklen);

/* Validates a header name (RFC 9110 token) and value (no CTL but HTAB). */
int mg_header_valid(const char *name, size_t nlen, const char *value, size_t vlen);

#endif
