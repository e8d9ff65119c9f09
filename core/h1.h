/* HTTP/1 serialisation shared by both sides: response heads to clients
 * (conn_response.c) and request heads to backends (proxy_head.c). */
#ifndef MG_H1_H
#define MG_H1_H

#include "headers.h"

#include <stddef.h>

/* Formats n as a chunk-size line ("1f4\r\n"); returns its length (<= 18). */
int mg_h1_chunk_line(char out[24], size_t n);

/* Appends "Name: value\r\n" without printf (this runs on every request). */
void mg_h1_header(mg_buf *b, const char *name, size_t nlen, const char *v, size_t vlen);
#define MG_H1_HEADER(b, lit, v, vlen) mg_h1_header(b, lit, sizeof(lit) - 1, v, vlen)

/* Appends entry i of h. */
static inline void mg_h1_header_at(mg_buf *b, const mg_headers *h, uint32_t i)
{
    mg_h1_header(b, mg_hname(h, i), h->h[i].nlen, mg_hvalue(h, i), h->h[i].vlen);
}

/* Writes n in decimal (no NUL); returns the length (<= 20). */
int mg_h1_u64(char out[24], uint64_t n);

/* Appends "HTTP/1.x NNN Reason\r\n". */
void mg_h1_status_line(mg_buf *b, int minor, int status, const char *reason, size_t rlen);

/* The reason phrase of a status code (RFC 9110 15 and the registered
 * extensions; an unknown code gets its class's name). */
const char *mg_status_reason(int status);

#endif
