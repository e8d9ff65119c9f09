/* Services as the config loader reads them (config.c): targets resolved
 * to addresses (a name may give several: Docker's DNS for a scaled Compose
 * service), their labels, per-service TLS to the targets, balancer,
 * health and protocol settings. */
#include "addr.h"
#include "config.h"
#include "config_int.h"
#include "log.h"
#include "tls.h"
#include "tls_certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ADDRS_PER_NAME 64

/* Resolves host:port to up to max addresses of one family (IPv4 when there
 * are any: a backend on 127.0.0.1 is not also on ::1). A name with several
 * records (Docker's DNS for a scaled Compose service) gives several. */
static int resolve_all(const char *host, uint16_t port_num, struct sockaddr_storage *out,
                       socklen_t *lens, int max, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", port_num);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc == EAI_BADFLAGS || (rc && strcmp(host, "localhost") == 0)) {
        hints.ai_flags = 0;
        rc = getaddrinfo(host, port, &hints, &res);
    }
    if (rc || !res) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return 0;
    }
    int family = AF_INET6;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) family = AF_INET;
    int n = 0;
    for (struct addrinfo *a = res; a && n < max; a = a->ai_next) {
        if (a->ai_family != family) continue;
        int dup = 0;
        for (int k = 0; k < n; k++)
            if (lens[k] == a->ai_addrlen && memcmp(&out[k], a->ai_addr, a->ai_addrlen) == 0)
                dup = 1;
        if (dup) continue;
        memcpy(&out[n], a->ai_addr, a->ai_addrlen);
        lens[n++] = a->ai_addrlen;
    }
    freeaddrinfo(res);
    /* a stable order, so round robin sequences survive a re-resolve */
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && memcmp(&out[k - 1], &out[k], sizeof(out[k])) > 0; k--) {
            struct sockaddr_storage t = out[k];
            socklen_t tl = lens[k];
            out[k] = out[k - 1];
            lens[k] = lens[k - 1];
            out[k - 1] = t;
            lens[k - 1] = tl;
        }
    return n;
}

static char **read_labels(lua_State *L, int t_idx)
{
    char **labels = NULL;
    lua_getfield(L, t_idx, "labels");
    if (lua_istable(L, -1)) {
        int nl = 0;
        for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1))
            nl++;
        labels = calloc((size_t)nl * 2 + 1, sizeof(char *));
        int k = 0;
        for (lua_pushnil(L); labels && lua_next(L, -2); lua_pop(L, 1)) {
            if (!lua_isstring(L, -2) || !lua_isstring(L, -1)) continue;
            lua_pushvalue(L, -2);
            labels[k++] = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
            labels[k++] = strdup(lua_tostring(L, -1));
        }
    }
    lua_pop(L, 1);
    return labels;
}

static char **copy_labels(char **l)
{
    if (!l) return NULL;
    int n = 0;
    while (l[n])
        n++;
    char **c = calloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; c && i < n; i++)
        c[i] = strdup(l[i]);
    return c;
}

/* A service's upstream TLS settings (snapshot-owned strings and context). */
static int read_service_tls(lua_State *L, int idx, mg_service *svc, const char *source, char *err,
                            size_t errlen)
{
    lua_getfield(L, idx, "tls");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    int t = lua_gettop(L);
    svc->tls = 1;
    lua_getfield(L, t, "verify");
    svc->tls_verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    svc->tls_ca_file = mg_config__dup_field(L, t, "ca_file", NULL);
    svc->tls_server_name = mg_config__dup_field(L, t, "server_name", NULL);
    lua_pop(L, 1);
    char why[512];
    svc->tls_ctx = mg_tls_client_ctx_new(svc->tls_verify, svc->tls_ca_file, why, sizeof(why));
    if (!svc->tls_ctx) {
        snprintf(err, errlen, "%s:%d: services.%s.tls: %s", source, svc->line, svc->name, why);
        return -1;
    }
    return 0;
}

/* Reads services[i] at the top of the stack into svc. */
int mg_config__read_service(lua_State *L, mg_service *svc, const char *source, char *err,
                            size_t errlen)
{
    int idx = lua_gettop(L);
    svc->name = mg_config__dup_field(L, idx, "name", "?");
    svc->balancer = mg_config__dup_field(L, idx, "balancer", "roundrobin");
    char *proto = mg_config__dup_field(L, idx, "protocol", "http1");
    svc->protocol = !proto                      ? MG_PROTO_HTTP1
                    : strcmp(proto, "h2c") == 0 ? MG_PROTO_H2C
                    : strcmp(proto, "h2") == 0  ? MG_PROTO_H2
                                                : MG_PROTO_HTTP1;
    free(proto);
    svc->line = (int)mg_config__num_field(L, idx, "line", 0);
    svc->balancer_opts = mg_config__dup_field(L, idx, "_opts_literal", "{}");
    svc->health = mg_config__dup_field(L, idx, "_health_literal", NULL);
    svc->autoscale = mg_config__dup_field(L, idx, "_autoscale_literal", NULL);
    svc->passive_failures = (int)mg_config__num_field(L, idx, "_passive_failures", 0);
    svc->passive_cooldown_ms = mg_config__ms_field(L, idx, "_passive_cooldown", 5);
    if (read_service_tls(L, idx, svc, source, err, errlen)) return -1;
    lua_getfield(L, idx, "targets");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    int cap = n ? n : 1;
    svc->targets = calloc((size_t)cap, sizeof(mg_target));
    if (!svc->targets) return -1;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int t_idx = lua_gettop(L);
        char *host = mg_config__dup_field(L, t_idx, "host", "?");
        char *id = mg_config__dup_field(L, t_idx, "id", "?");
        char *address = mg_config__dup_field(L, t_idx, "address", "?");
        uint16_t port = (uint16_t)mg_config__num_field(L, t_idx, "port", 0);
        int weight = (int)mg_config__num_field(L, t_idx, "weight", 1);
        int line = (int)mg_config__num_field(L, t_idx, "line", svc->line);
        lua_getfield(L, t_idx, "tls");
        int target_tls = lua_toboolean(L, -1);
        lua_pop(L, 1);
        char **labels = read_labels(L, t_idx);
        struct sockaddr_storage addrs[MAX_ADDRS_PER_NAME];
        socklen_t lens[MAX_ADDRS_PER_NAME];
        char why[200];
        int na = resolve_all(host, port, addrs, lens, MAX_ADDRS_PER_NAME, why, sizeof(why));
        if (!na)
            /* Not fatal: in a container world a name may appear later. The
             * target fails its connects (and rests) until a reload. */
            mg_log(MG_LOG_WARN, -1, 0, "%s:%d: services.%s.targets[%d]: %s", source, line,
                   svc->name, i, why);
        int count = na ? na : 1;
        if (svc->ntargets + count > cap) {
            cap = (svc->ntargets + count) * 2;
            mg_target *nt = realloc(svc->targets, (size_t)cap * sizeof(mg_target));
            if (!nt) return -1;
            memset(nt + svc->ntargets, 0, (size_t)(cap - svc->ntargets) * sizeof(mg_target));
            svc->targets = nt;
        }
        for (int k = 0; k < count; k++) {
            mg_target *t = &svc->targets[svc->ntargets++];
            char key[300], ip[INET6_ADDRSTRLEN] = "";
            t->host = strdup(host);
            t->port = port;
            t->weight = weight;
            t->tls = (uint8_t)target_tls;
            t->labels = k == 0 ? labels : copy_labels(labels);
            if (na) {
                memcpy(&t->addr, &addrs[k], lens[k]);
                t->addrlen = lens[k];
                mg_addr_ip((const struct sockaddr *)&addrs[k], ip, sizeof(ip));
                snprintf(key, sizeof(key), "%s|%u%s", ip, port, target_tls ? "|tls" : "");
            } else {
                t->addr.ss_family = AF_UNSPEC;
                snprintf(key, sizeof(key), "unresolved|%s|%u%s", host, port,
                         target_tls ? "|tls" : "");
            }
            /* (TLS is in the key: a plain and a TLS target on one address
             * must not share pooled connections) */
            if (na > 1) {
                /* one name, several instances: each is its own target */
                char a[300];
                snprintf(a, sizeof(a), addrs[k].ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
                         port);
                t->address = strdup(a);
                t->id = strdup(a);
            } else {
                t->address = strdup(address);
                t->id = strdup(id);
            }
            t->uid = mg_target_uid(key);
            char skey[400];
            snprintf(skey, sizeof(skey), "%s@%s", svc->name, key);
            t->suid = mg_target_uid(skey);
            if (t->uid == UINT32_MAX || t->suid == UINT32_MAX) {
                snprintf(err, errlen, "%s:%d: too many distinct targets", source, line);
                free(host);
                free(id);
                free(address);
                lua_pop(L, 1);
                return -1;
            }
        }
        free(host);
        free(id);
        free(address);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}
