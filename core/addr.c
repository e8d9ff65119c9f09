/* See addr.h. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

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

int mg_addr_bytes(const struct sockaddr *sa, uint8_t ip[16])
{
    if (sa && sa->sa_family == AF_INET) {
        memcpy(ip, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(ip, a->s6_addr + 12, 4);
            return 4;
        }
        memcpy(ip, a->s6_addr, 16);
        return 6;
    }
    return 0;
}

int mg_cidr_parse(const char *s, mg_cidr *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t l = slash ? (size_t)(slash - s) : strlen(s);
    if (l == 0 || l >= sizeof(buf)) return -1;
    memcpy(buf, s, l);
    buf[l] = 0;
    memset(out, 0, sizeof(*out));
    int max;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->v6 = 1;
        max = 128;
    } else {
        return -1;
    }
    int bits = max;
    if (slash) {
        const char *d = slash + 1;
        if (!*d || strlen(d) > 3) return -1;
        bits = 0;
        for (; *d; d++) {
            if (*d < '0' || *d > '9') return -1;
            bits = bits * 10 + (*d - '0');
        }
        if (bits > max) return -1;
    }
    out->bits = (uint8_t)bits;
    /* ::ffff:a.b.c.d: compared bytewise, since out->addr has no in6_addr alignment */
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (out->v6 && bits >= 96 && memcmp(out->addr, v4mapped, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->v6 = 0;
        out->bits = (uint8_t)(bits - 96);
    }
    return 0;
}

int mg_cidr_match(const mg_cidr *list, int n, int family, const uint8_t ip[16])
{
    if (family != 4 && family != 6) return 0;
    int v6 = family == 6;
    for (int i = 0; i < n; i++) {
        if (list[i].v6 != v6) continue;
        int bits = list[i].bits, b = 0;
        for (; bits >= 8; bits -= 8, b++)
            if (ip[b] != list[i].addr[b]) break;
        if (bits >= 8) continue; /* a whole byte differed */
        if (bits && ((ip[b] ^ list[i].addr[b]) & (0xff00 >> bits) & 0xff)) continue;
        return 1;
    }
    return 0;
}

int mg_cidr_match_sa(const mg_cidr *list, int n, const struct sockaddr *sa)
{
    uint8_t ip[16];
    int family = mg_addr_bytes(sa, ip);
    return mg_cidr_match(list, n, family, ip);
}
