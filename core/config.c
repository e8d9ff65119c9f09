/* Config loading: runs lua/moongate/config.lua in a scratch Lua state, then
 * copies the normalized table into C structs and builds the first snapshot.
 * Nothing here runs on the request path. */
#include "config.h"
#include "addr.h"
#include "log.h"
#include "lua_env.h"
#include "tls.h"
#include "tls_certs.h"
#include "stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *dup_field(lua_State *L, int idx, const char *key, const char *def)
{
    lua_getfield(L, idx, key);
    const char *s = lua_isstring(L, -1) ? lua_tostring(L, -1) : def;
    char *r = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    return r;
}

static double num_field(lua_State *L, int idx, const char *key, double def)
{
    lua_getfield(L, idx, key);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

static uint64_t ms_field(lua_State *L, int idx, const char *key, double def_s)
{
    return (uint64_t)(num_field(L, idx, key, def_s) * 1000.0 + 0.5);
}

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

/* The TLS fields of listen[i] at idx. */
static void read_listen_tls(lua_State *L, int idx, mg_listen *l)
{
    lua_getfield(L, idx, "tls");
    l->tls = lua_toboolean(L, -1);
    lua_pop(L, 1);
    l->redirect_port = (int)num_field(L, idx, "redirect_port", 0);
    char *name = dup_field(L, idx, "name", "");
    snprintf(l->name, sizeof(l->name), "%s", name ? name : "");
    free(name);
    lua_getfield(L, idx, "alpn");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    const char *names[8];
    int k = 0;
    for (int i = 1; i <= n && k < 8; i++) {
        lua_rawgeti(L, -1, i);
        names[k++] = lua_tostring(L, -1); /* anchored by the table until the pop below */
        lua_pop(L, 1);
    }
    if (!k && l->tls) {
        /* the default: h2 first when the listener speaks it (docs/http2.md) */
        if (l->http2) names[k++] = "h2";
        names[k++] = "http/1.1";
    }
    int len = k ? mg_tls_alpn_wire(names, k, l->alpn, sizeof(l->alpn)) : 0;
    l->alpn_len = len > 0 ? len : 0;
    lua_pop(L, 1);
}

/* The top-level tls table. When the config comes from its file (start,
 * `moongate check`, a file reload: check_files), certificate files are
 * loaded once so a broken pair is reported with its file and line; a
 * membership change rebuilds from the last good text without reading them,
 * so a certificate being replaced never holds back discovery (the TLS
 * manager watches the files). */
static int read_tls(lua_State *L, int top, mg_config *cfg, int check_files, char *err,
                    size_t errlen)
{
    cfg->tls.min_version = 0x0303;
    lua_getfield(L, top, "tls");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    int t = lua_gettop(L);
    cfg->tls.enabled = 1;
    cfg->tls.min_version = (int)num_field(L, t, "min_version", 0x0303);
    cfg->tls.sources = dup_field(L, top, "_tls_sources_literal", NULL);
    lua_getfield(L, t, "certificates");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    cfg->tls.files = calloc(n ? (size_t)n : 1, sizeof(mg_tls_file_conf));
    if (!cfg->tls.files) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int c = lua_gettop(L);
        mg_tls_file_conf *f = &cfg->tls.files[cfg->tls.nfiles++];
        f->cert = dup_field(L, c, "cert", "");
        f->key = dup_field(L, c, "key", "");
        f->line = (int)num_field(L, c, "line", 0);
        lua_pop(L, 1);
        if (!check_files) continue;
        char why[512];
        mg_tls_cert *cert = mg_tls_cert_load_files(f->cert, f->key, why, sizeof(why));
        if (!cert) {
            snprintf(err, errlen, "%s:%d: tls.certificates[%d]: %s", cfg->source, f->line, i, why);
            lua_settop(L, top);
            return -1;
        }
        mg_tls_cert_unref(cert);
    }
    lua_settop(L, top);
    return 0;
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
    svc->tls_ca_file = dup_field(L, t, "ca_file", NULL);
    svc->tls_server_name = dup_field(L, t, "server_name", NULL);
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
static int read_service(lua_State *L, mg_service *svc, const char *source, char *err, size_t errlen)
{
    int idx = lua_gettop(L);
    svc->name = dup_field(L, idx, "name", "?");
    svc->balancer = dup_field(L, idx, "balancer", "roundrobin");
    char *proto = dup_field(L, idx, "protocol", "http1");
    svc->protocol = !proto                      ? MG_PROTO_HTTP1
                    : strcmp(proto, "h2c") == 0 ? MG_PROTO_H2C
                    : strcmp(proto, "h2") == 0  ? MG_PROTO_H2
                                                : MG_PROTO_HTTP1;
    free(proto);
    svc->line = (int)num_field(L, idx, "line", 0);
    svc->balancer_opts = dup_field(L, idx, "_opts_literal", "{}");
    svc->health = dup_field(L, idx, "_health_literal", NULL);
    svc->autoscale = dup_field(L, idx, "_autoscale_literal", NULL);
    svc->passive_failures = (int)num_field(L, idx, "_passive_failures", 0);
    svc->passive_cooldown_ms = ms_field(L, idx, "_passive_cooldown", 5);
    if (read_service_tls(L, idx, svc, source, err, errlen)) return -1;
    lua_getfield(L, idx, "targets");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    int cap = n ? n : 1;
    svc->targets = calloc((size_t)cap, sizeof(mg_target));
    if (!svc->targets) return -1;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int t_idx = lua_gettop(L);
        char *host = dup_field(L, t_idx, "host", "?");
        char *id = dup_field(L, t_idx, "id", "?");
        char *address = dup_field(L, t_idx, "address", "?");
        uint16_t port = (uint16_t)num_field(L, t_idx, "port", 0);
        int weight = (int)num_field(L, t_idx, "weight", 1);
        int line = (int)num_field(L, t_idx, "line", svc->line);
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

/* The listeners route r (at index r on the stack) matches on: the ones its
 * entrypoints name (all when none), and only TLS ones when it has tls. */
static uint64_t route_listeners(lua_State *L, int r, const mg_config *cfg)
{
    uint64_t mask = UINT64_MAX;
    lua_getfield(L, r, "entrypoints");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    if (n) {
        mask = 0;
        for (int k = 1; k <= n; k++) {
            lua_rawgeti(L, -1, k);
            const char *name = lua_tostring(L, -1);
            for (int j = 0; name && j < cfg->nlisten && j < 64; j++)
                if (strcmp(cfg->listen[j].name, name) == 0) mask |= (uint64_t)1 << j;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, r, "tls");
    if (lua_istable(L, -1)) {
        uint64_t tls = 0;
        for (int j = 0; j < cfg->nlisten && j < 64; j++)
            if (cfg->listen[j].tls) tls |= (uint64_t)1 << j;
        mask &= tls;
    }
    lua_pop(L, 1);
    return mask;
}

static int read_config(lua_State *L, mg_config *cfg, mg_snapshot *snap, int from_file, char *err,
                       size_t errlen)
{
    int top = lua_gettop(L);
    cfg->source = dup_field(L, top, "source", "(embedded default)");
    cfg->workers = (int)num_field(L, top, "workers", 1);
    cfg->plugins_dir = dup_field(L, top, "plugins_dir", "plugins");
    cfg->providers = dup_field(L, top, "_providers_literal", "{}");
    cfg->plugin_sources = dup_field(L, top, "_plugin_sources", NULL);
    char *al = dup_field(L, top, "access_log", NULL);
    cfg->access_log = !al                       ? MG_ACCESS_LOG_OFF
                      : strcmp(al, "json") == 0 ? MG_ACCESS_LOG_JSON
                                                : MG_ACCESS_LOG_COMBINED;
    free(al);
    char *lvl = dup_field(L, top, "log_level", "info");
    cfg->log_level = mg_log_level_parse(lvl);
    if (cfg->log_level < 0) cfg->log_level = MG_LOG_INFO;
    free(lvl);

    lua_getfield(L, top, "http2");
    lua_getfield(L, -1, "enabled");
    int h2_on = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    cfg->h2_max_streams = (uint32_t)num_field(L, lua_gettop(L), "max_concurrent_streams", 128);
    lua_pop(L, 1);

    lua_getfield(L, top, "listen");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    cfg->listen = calloc(n ? (size_t)n : 1, sizeof(mg_listen));
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        mg_listen *l = &cfg->listen[cfg->nlisten++];
        char *h = dup_field(L, lua_gettop(L), "host", "0.0.0.0");
        snprintf(l->host, sizeof(l->host), "%s", h);
        free(h);
        l->port = (int)num_field(L, lua_gettop(L), "port", 8080);
        l->line = (int)num_field(L, lua_gettop(L), "line", 0);
        lua_getfield(L, -1, "http2");
        l->http2 = h2_on && (lua_isnil(L, -1) || lua_toboolean(L, -1));
        lua_pop(L, 1);
        read_listen_tls(L, lua_gettop(L), l);
        if (l->tls) cfg->tls.enabled = 1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (read_tls(L, top, cfg, from_file, err, errlen)) return -1;

    lua_getfield(L, top, "timeouts");
    int t = lua_gettop(L);
    cfg->client_header_ms = ms_field(L, t, "client_header", 10);
    cfg->client_idle_ms = ms_field(L, t, "client_idle", 60);
    cfg->upstream_connect_ms = ms_field(L, t, "upstream_connect", 3);
    cfg->upstream_response_ms = ms_field(L, t, "upstream_response", 60);
    cfg->grace_ms = ms_field(L, t, "grace", 10);
    cfg->queue_ms = ms_field(L, t, "queue", 10);
    cfg->upstream_stall_ms = ms_field(L, t, "upstream_stall", 1);
    lua_pop(L, 1);

    lua_getfield(L, top, "limits");
    cfg->max_header_size = (uint32_t)num_field(L, lua_gettop(L), "max_header_size", 32768);
    cfg->max_headers = (uint32_t)num_field(L, lua_gettop(L), "max_headers", 100);
    lua_pop(L, 1);

    lua_getfield(L, top, "paths");
    lua_getfield(L, -1, "normalize");
    cfg->normalize_paths = (uint8_t)lua_toboolean(L, -1);
    lua_pop(L, 1);
    char *es = dup_field(L, lua_gettop(L), "encoded_slash", "reject");
    cfg->keep_encoded_slash = strcmp(es, "keep") == 0;
    free(es);
    lua_pop(L, 1);

    lua_getfield(L, top, "upstream");
    cfg->keepalive = (int)num_field(L, lua_gettop(L), "keepalive", 64);
    cfg->keepalive_timeout_ms = ms_field(L, lua_gettop(L), "keepalive_timeout", 60);
    cfg->retries = (int)num_field(L, lua_gettop(L), "retries", 2);
    cfg->queue_max = (int)num_field(L, lua_gettop(L), "queue_max", 10000);
    cfg->max_connecting = (int)num_field(L, lua_gettop(L), "max_connecting", 64);
    cfg->replay_body = (uint32_t)num_field(L, lua_gettop(L), "replay_body", 65536);
    lua_pop(L, 1);

    lua_getfield(L, top, "admin");
    if (lua_istable(L, -1)) {
        int a = lua_gettop(L);
        char *h = dup_field(L, a, "host", "127.0.0.1");
        snprintf(cfg->admin_host, sizeof(cfg->admin_host), "%s", h);
        free(h);
        cfg->admin_port = (int)num_field(L, a, "port", 8081);
        cfg->admin_token = dup_field(L, a, "token", NULL);
    }
    lua_pop(L, 1);

    lua_getfield(L, top, "trusted_proxies");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    cfg->trusted = calloc(n ? (size_t)n : 1, sizeof(mg_cidr));
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int c = lua_gettop(L);
        /* config.lua validated the text, so a failure here is a bug in one
         * of the two parsers: say so rather than trust fewer proxies */
        char *a = dup_field(L, c, "cidr", "");
        if (mg_cidr_parse(a, &cfg->trusted[cfg->ntrusted]) == 0)
            cfg->ntrusted++;
        else
            mg_log(MG_LOG_ERROR, -1, 0,
                   "config: trusted_proxies[%d]: '%s' is not an address or CIDR, ignored", i, a);
        free(a);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    /* services: a list sorted by name */
    lua_getfield(L, top, "services");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    snap->services = calloc(n ? (size_t)n : 1, sizeof(mg_service));
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int rc = read_service(L, &snap->services[snap->nservices++], cfg->source, err, errlen);
        lua_settop(L, top + 1);
        if (rc) return -1;
    }
    lua_pop(L, 1);

    snap->router = mg_router_new();
    lua_getfield(L, top, "routes");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    snap->route_service = calloc(n ? (size_t)n : 1, sizeof(int));
    snap->route_hooks = calloc(n ? (size_t)n : 1, 1);
    snap->route_flags = calloc(n ? (size_t)n : 1, 1);
    snap->route_rule = calloc(n ? (size_t)n : 1, sizeof(char *));
    snap->route_priority = calloc(n ? (size_t)n : 1, sizeof(int));
    snap->nroutes = n;
    snap->plugins_literal = dup_field(L, top, "_plugins_literal", "{}");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int r = lua_gettop(L);
        char *rule = dup_field(L, r, "rule", "");
        char *svc = dup_field(L, r, "service", "");
        int prio = (int)num_field(L, r, "priority", -1);
        int line = (int)num_field(L, r, "line", 0);
        int sidx = mg_snapshot_service(snap, svc);
        snap->route_service[i - 1] = sidx;
        snap->route_rule[i - 1] = strdup(rule);
        snap->route_priority[i - 1] = prio >= 0 ? prio : (int)strlen(rule);
        snap->route_hooks[i - 1] = (uint8_t)num_field(L, r, "_hooks", 0);
        lua_getfield(L, r, "allow_trace");
        if (lua_toboolean(L, -1)) snap->route_flags[i - 1] |= MG_ROUTE_ALLOW_TRACE;
        lua_pop(L, 1);
        char why[256] = "";
        int rc = sidx < 0 ? (snprintf(why, sizeof(why), "unknown service '%s'", svc), -1)
                          : mg_router_add(snap->router, rule, prio, i - 1, why, sizeof(why));
        if (rc) snprintf(err, errlen, "%s:%d: routes[%d]: %s", cfg->source, line, i, why);
        if (!rc) mg_router_restrict(snap->router, i - 1, route_listeners(L, r, cfg));
        free(rule);
        free(svc);
        lua_pop(L, 1);
        if (rc) return -1;
    }
    lua_pop(L, 1);
    mg_router_finalize(snap->router);
    return 0;
}

/* Lua side of loading: returns the normalized config with each service's
 * balancer_opts serialized, after checking that every balancer plugin loads. */
static const char *const load_chunk =
    "local path, ncpu, discovered, docker, source, plugin_sources = ...\n"
    "if discovered then discovered = require('moongate.plugins').deserialize(discovered) end\n"
    "local config = require('moongate.config')\n"
    "local plugins = require('moongate.plugins')\n"
    "plugins.capture(plugin_sources and plugins.deserialize(plugin_sources))\n"
    "local cfg, err\n"
    "local opts = { ncpu = ncpu, discovered = discovered, docker_socket_present = docker,\n"
    "               source = source }\n"
    "if path then cfg, err = config.load(path, opts)\n"
    "else cfg, err = config.default(opts) end\n"
    "if not cfg then return nil, err end\n"
    "for _, svc in ipairs(cfg.services) do\n"
    "  local ok, perr = plugins.check(svc.balancer, cfg.plugins_dir, 'balancer')\n"
    "  if not ok then return nil, string.format('%s:%d: services.%s.balancer: %s',\n"
    "    cfg.source or '?', svc.line or 0, svc.name, perr) end\n"
    "  svc._opts_literal = plugins.serialize(svc.balancer_opts or {})\n"
    "  if svc.health then\n"
    "    local hc, herr = require('moongate.health').settings(svc.health, cfg.plugins_dir)\n"
    "    if not hc then return nil, string.format('%s:%d: services.%s.health: %s',\n"
    "      cfg.source or '?', svc.line or 0, svc.name, herr) end\n"
    "    svc._health_literal = plugins.serialize(hc)\n"
    "    svc._passive_failures = hc.passive_failures\n"
    "    svc._passive_cooldown = hc.passive_cooldown\n"
    "  end\n"
    "  if svc.autoscale then\n"
    "    local ok, perr = plugins.check(svc.autoscale.policy, cfg.plugins_dir, 'autoscaler')\n"
    "    if not ok then return nil, string.format('%s:%d: services.%s.autoscale.policy: %s',\n"
    "      cfg.source or '?', svc.line or 0, svc.name, perr) end\n"
    "    svc.autoscale.plugins_dir = cfg.plugins_dir\n"
    "    svc._autoscale_literal = plugins.serialize(svc.autoscale)\n"
    "  end\n"
    "end\n"
    "for name, p in pairs(cfg.providers or {}) do\n"
    "  if type(p) ~= 'table' then return nil, string.format('%s:0: providers.%s: expected a "
    "table', cfg.source or '?', tostring(name)) end\n"
    "  local ok, perr = plugins.check(p.plugin or name, cfg.plugins_dir, 'discovery')\n"
    "  if not ok then return nil, string.format('%s:%d: providers.%s: %s', cfg.source or '?',\n"
    "    require('moongate.config_lines').lookup(cfg._lines or {}, 'providers.' .. name), name, "
    "perr) end\n"
    "end\n"
    "cfg._providers_literal = plugins.serialize(cfg.providers or {})\n"
    "if cfg.tls then\n"
    "  for name, r in pairs(cfg.tls.acme) do\n"
    "    local ok, perr = plugins.check(r.plugin, cfg.plugins_dir, 'certificates')\n"
    "    if not ok then return nil, string.format('%s:%d: tls.acme.%s: %s', cfg.source or '?',\n"
    "      require('moongate.config_lines').lookup(cfg._lines or {}, 'tls.acme.' .. name), name, "
    "perr) end\n"
    "  end\n"
    "  cfg._tls_sources_literal = plugins.serialize({ resolvers = cfg.tls.acme, domains = "
    "cfg.tls.domains, ocsp_stapling = cfg.tls.ocsp_stapling })\n"
    "end\n"
    "local ok, lit = pcall(require('moongate.chains').build, cfg)\n"
    "if not ok then return nil, lit end\n"
    "cfg._plugins_literal = lit\n"
    "cfg._plugin_sources = plugins.serialize(plugins.captured())\n"
    "return cfg\n";

int mg_config_load(const char *path, mg_config **out_cfg, mg_snapshot **out_snap, char *err,
                   size_t errlen)
{
    return mg_config_load_with(path, NULL, out_cfg, out_snap, err, errlen);
}

int mg_config_load_with(const char *path, const char *discovered, mg_config **out_cfg,
                        mg_snapshot **out_snap, char *err, size_t errlen)
{
    return mg_config_load_src(path, NULL, discovered, out_cfg, out_snap, err, errlen);
}

/* Reads a whole file. Returns a NUL-terminated copy the caller frees, or
 * NULL with "path:0: cannot read config: reason" in err. */
static char *read_text(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (f) {
        for (;;) {
            if (len + 4096 + 1 > cap) {
                cap = cap ? cap * 2 : 8192;
                char *nb = realloc(buf, cap);
                if (!nb) break;
                buf = nb;
            }
            size_t k = fread(buf + len, 1, cap - len - 1, f);
            len += k;
            if (k == 0) break;
        }
        int bad = ferror(f);
        fclose(f);
        if (!bad && buf) {
            buf[len] = 0;
            return buf;
        }
    }
    snprintf(err, errlen, "%s:0: cannot read config: %s", path, strerror(errno ? errno : EIO));
    free(buf);
    return NULL;
}

#define CONFIG_TIME_LIMIT_S 10 /* a config (or its balancer plugins) must load in this */

int mg_config_load_src(const char *path, const mg_config *from, const char *discovered,
                       mg_config **out_cfg, mg_snapshot **out_snap, char *err, size_t errlen)
{
    if (!path && access("moongate.lua", R_OK) == 0) path = "moongate.lua";
    const char *source = from ? from->text : NULL;
    char *text = NULL;
    if (path) {
        text = source ? strdup(source) : read_text(path, err, errlen);
        if (!text) return -1;
    }
    lua_State *L = mg_lua_env_new();
    if (!L) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    mg_lua_env_limit(L, CONFIG_TIME_LIMIT_S);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int rc = -1;
    mg_config *cfg = calloc(1, sizeof(*cfg));
    mg_snapshot *snap = calloc(1, sizeof(*snap));
    if (cfg) atomic_fetch_add(&mg_stats.configs_alive, 1);
    if (!cfg || !snap) goto done;
    if (luaL_loadbuffer(L, load_chunk, strlen(load_chunk), "=config_loader")) goto lua_err;
    if (path)
        lua_pushstring(L, path);
    else
        lua_pushnil(L);
    lua_pushinteger(L, ncpu > 0 ? ncpu : 1);
    if (discovered)
        lua_pushstring(L, discovered);
    else
        lua_pushnil(L);
    /* zero config: the embedded default turns Docker discovery on */
    lua_pushboolean(L, !path && access("/var/run/docker.sock", F_OK) == 0);
    if (text)
        lua_pushstring(L, text);
    else
        lua_pushnil(L);
    if (from && from->plugin_sources)
        lua_pushstring(L, from->plugin_sources);
    else
        lua_pushnil(L);
    if (lua_pcall(L, 6, 2, 0)) goto lua_err;
    if (lua_isnil(L, -2)) {
        snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "invalid config");
        goto done;
    }
    lua_pop(L, 1);
    if (read_config(L, cfg, snap, source == NULL, err, errlen)) goto done;
    snap->version = 1;
    atomic_init(&snap->refs, 1);
    cfg->text = text; /* the config owns it now */
    text = NULL;
    snap->cfg = cfg; /* the snapshot owns the config */
    snap->cfg_free = mg_config_free;
    *out_cfg = cfg;
    *out_snap = snap;
    cfg = NULL;
    snap = NULL;
    rc = 0;
    goto done;
lua_err:
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
done:
    if (cfg) mg_config_free(cfg);
    if (snap) {
        atomic_init(&snap->refs, 1);
        mg_snapshot_unref(snap);
    }
    lua_close(L);
    free(text);
    return rc;
}

void mg_config_free(mg_config *cfg)
{
    if (!cfg) return;
    free(cfg->source);
    free(cfg->listen);
    free(cfg->plugins_dir);
    free(cfg->trusted);
    free(cfg->admin_token);
    free(cfg->providers);
    for (int i = 0; i < cfg->tls.nfiles; i++) {
        free(cfg->tls.files[i].cert);
        free(cfg->tls.files[i].key);
    }
    free(cfg->tls.files);
    free(cfg->tls.sources);
    atomic_fetch_sub(&mg_stats.configs_alive, 1);
    free(cfg->text);
    free(cfg->plugin_sources);
    free(cfg);
}
