/* Byte-level ASCII helpers shared by the parsers (URIs, rules, chunk
 * sizes): locale-free, one definition each. */
#ifndef MG_ASCII_H
#define MG_ASCII_H

static inline unsigned char mg_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* The value of a hex digit of either case, or -1. */
static inline int mg_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = mg_lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

#endif
