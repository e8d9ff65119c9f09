/* Socket addresses: the one formatter for client and target addresses
 * (logs, X-Forwarded-For, the Lua API, health checks) and the one CIDR
 * parser and matcher (trusted_proxies, the ClientIP rule). */
#ifndef MG_ADDR_H
#define MG_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Writes the IP of sa without a port; an IPv4-mapped IPv6 address is
 * written as IPv4. Returns 0, or -1 (out is then ""). */
int mg_addr_ip(const struct sockaddr *sa, char *out, size_t len);

/* The raw bytes of sa's IP in ip; returns 4 or 6 (the family), or 0 when
 * sa is not an IP address. An IPv4-mapped IPv6 address counts as IPv4, so
 * a dual-stack listener matches IPv4 ranges. */
int mg_addr_bytes(const struct sockaddr *sa, uint8_t ip[16]);

typedef struct mg_cidr {
    uint8_t v6;   /* 0: IPv4 in addr[0..3], 1: IPv6 */
    uint8_t bits; /* prefix length */
    uint8_t addr[16];
} mg_cidr;

/* Parses "addr" or "addr/bits" (IPv4 dotted quad without leading zeros,
 * or IPv6). An IPv4-mapped IPv6 range of /96 or longer becomes the IPv4
 * range it covers (see mg_addr_bytes). Returns 0, or -1 if s is invalid. */
int mg_cidr_parse(const char *s, mg_cidr *out);

/* 1 if the IP (family and bytes as mg_addr_bytes gives) is in any of the
 * n ranges. */
int mg_cidr_match(const mg_cidr *list, int n, int family, const uint8_t ip[16]);

/* mg_cidr_match for a socket address. */
int mg_cidr_match_sa(const mg_cidr *list, int n, const struct sockaddr *sa);

#endif
