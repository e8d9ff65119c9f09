/* Socket addresses as text: the one formatter for client and target
 * addresses (logs, X-Forwarded-For, the Lua API, health checks). */
#ifndef MG_ADDR_H
#define MG_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Writes the IP of sa without a port; an IPv4-mapped IPv6 address is
 * written as IPv4. Returns 0, or -1 (out is then ""). */
int mg_addr_ip(const struct sockaddr *sa, char *out, size_t len);

#endif
