/* A strict check of HTTP/1 framing (RFC 9112), run over the same bytes
 * llhttp parses: message heads and chunked bodies. llhttp 8.1 accepts
 * framing that other parsers read differently (a bare CR ending a head, CR
 * CR or a bare LF after a chunk size, a bare LF ending the last chunk or
 * the trailers, no CRLF after chunk data): that is how a request is
 * smuggled past a proxy. This check refuses all of it and says where each
 * head and each chunked body ends, so the two parsers cannot disagree.
 *
 * Responses may use bare LF line ends (RFC 9112 2.2 lets a recipient accept
 * them); llhttp refuses them, so for a response the check can also write a
 * copy of the bytes with every bare LF of the framing turned into CRLF. */
#ifndef MG_H1CHECK_H
#define MG_H1CHECK_H

#include "common.h"

#include <stddef.h>
#include <stdint.h>

typedef struct mg_buf mg_buf;

typedef struct mg_h1check {
    uint64_t left;    /* data bytes left in the current chunk */
    uint32_t linelen; /* bytes in the current chunk-size or trailer line */
    uint8_t state;    /* 0: idle (nothing being checked) */
    uint8_t ndigits;  /* hex digits of the current chunk size */
    uint8_t lf_ok;    /* a bare LF ends a line (responses) */
    uint8_t head;     /* checking (or checked) a head, not a body */
} mg_h1check;

/* Starts checking a message head (leading empty lines are skipped, as
 * llhttp does), or a chunked body. lf_ok: bare LF line ends are accepted. */
void mg_h1check_head(mg_h1check *c, int lf_ok);
void mg_h1check_chunked(mg_h1check *c, int lf_ok);

/* Feeds the next n bytes. Returns how many belong to the head or body being
 * checked (n unless it ended inside them), or -1 with *why on a framing
 * error. With lf_ok and fix non-NULL, a bare LF line end makes the check
 * write those bytes to fix (appended, CRLF in place of each bare LF): when
 * fix grew, parse fix's new bytes instead of p. */
long mg_h1check_feed(mg_h1check *c, const char *p, size_t n, mg_buf *fix, const char **why);

/* True between a start and the end of what is checked. */
int mg_h1check_active(const mg_h1check *c);
/* True once the head or body ended (and until the next start). */
int mg_h1check_done(const mg_h1check *c);

#endif
