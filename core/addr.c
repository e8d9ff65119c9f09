/* See addr.h. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

int mg_addr_ip(const struct sockaddr *sa, char *out, size_t len)
{
    const char *ok = NULL;
    if (len) out[0] = 0;
    if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            ok = inet_ntop(AF_INET, a->s6_addr + 12, out, (socklen_t)len);
        else
            ok = inet_ntop(AF_INET6, a, out, (socklen_t)len);
    } else if (sa && sa->sa_family == AF_INET) {
        ok = inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    }
    if (!ok && len) out[0] = 0;
    return ok ? 0 : -1;
}
