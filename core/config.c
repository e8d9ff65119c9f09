/* Config loading: runs lua/moongate/config.lua in a scratch Lua state, then
 * copies the normalized table into C structs and builds the first snapshot.
 * Nothing here runs on the request path. */
#include "config.h"
#include "config_int.h"
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

char *mg_config__dup_field(lua_State *L, int idx, const char *key, const char *def)
{
    lua_getfield(L, idx, key);
    const char *s = lua_isstring(L, -1) ? lua_tostring(L, -1) : def;
    char *r = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    return r;
}

double mg_config__num_field(lua_State *L, int idx, const char *key, double def)
{
    lua_getfield(L, idx, key);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

uint64_t mg_config__ms_field(lua_State *L, int idx, const char *key, double def_s)
{
    return (uint64_t)(mg_config__num_field(L, idx, key, def_s) * 1000.0 + 0.5);
}

/* The TLS fields of listen[i] at idx. */
static void read_listen_tls(lua_State *L, int idx, mg_listen *l)
{
    lua_getfield(L, idx, "tls");
    l->tls = lua_toboolean(L, -1);
    lua_pop(L, 1);
    l->redirect_port = (int)mg_config__num_field(L, idx, "redirect_port", 0);
    char *name = mg_config__dup_field(L, idx, "name", "");
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
    cfg->tls.min_version = (int)mg_config__num_field(L, t, "min_version", 0x0303);
    cfg->tls.sources = mg_config__dup_field(L, top, "_tls_sources_literal", NULL);
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
        f->cert = mg_config__dup_field(L, c, "cert", "");
        f->key = mg_config__dup_field(L, c, "key", "");
        f->line = (int)mg_config__num_field(L, c, "line", 0);
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
    cfg->source = mg_config__dup_field(L, top, "source", "(embedded default)");
    cfg->workers = (int)mg_config__num_field(L, top, "workers", 1);
    cfg->plugins_dir = mg_config__dup_field(L, top, "plugins_dir", "plugins");
    cfg->providers = mg_config__dup_field(L, top, "_providers_literal", "{}");
    cfg->plugin_sources = mg_config__dup_field(L, top, "_plugin_sources", NULL);
    char *al = mg_config__dup_field(L, top, "access_log", NULL);
    cfg->access_log = !al                       ? MG_ACCESS_LOG_OFF
                      : strcmp(al, "json") == 0 ? MG_ACCESS_LOG_JSON
                                                : MG_ACCESS_LOG_COMBINED;
    free(al);
    char *lvl = mg_config__dup_field(L, top, "log_level", "info");
    cfg->log_level = mg_log_level_parse(lvl);
    if (cfg->log_level < 0) cfg->log_level = MG_LOG_INFO;
    free(lvl);

    lua_getfield(L, top, "http2");
    lua_getfield(L, -1, "enabled");
    int h2_on = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    cfg->h2_max_streams =
        (uint32_t)mg_config__num_field(L, lua_gettop(L), "max_concurrent_streams", 128);
    lua_pop(L, 1);

    lua_getfield(L, top, "listen");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    cfg->listen = calloc(n ? (size_t)n : 1, sizeof(mg_listen));
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        mg_listen *l = &cfg->listen[cfg->nlisten++];
        char *h = mg_config__dup_field(L, lua_gettop(L), "host", "0.0.0.0");
        snprintf(l->host, sizeof(l->host), "%s", h);
        free(h);
        l->port = (int)mg_config__num_field(L, lua_gettop(L), "port", 8080);
        l->line = (int)mg_config__num_field(L, lua_gettop(L), "line", 0);
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
    cfg->client_header_ms = mg_config__ms_field(L, t, "client_header", 10);
    cfg->client_idle_ms = mg_config__ms_field(L, t, "client_idle", 60);
    cfg->upstream_connect_ms = mg_config__ms_field(L, t, "upstream_connect", 3);
    cfg->upstream_response_ms = mg_config__ms_field(L, t, "upstream_response", 60);
    cfg->grace_ms = mg_config__ms_field(L, t, "grace", 10);
    cfg->queue_ms = mg_config__ms_field(L, t, "queue", 10);
    cfg->upstream_stall_ms = mg_config__ms_field(L, t, "upstream_stall", 1);
    lua_pop(L, 1);

    lua_getfield(L, top, "limits");
    cfg->max_header_size =
        (uint32_t)mg_config__num_field(L, lua_gettop(L), "max_header_size", 32768);
    cfg->max_headers = (uint32_t)mg_config__num_field(L, lua_gettop(L), "max_headers", 100);
    lua_pop(L, 1);

    lua_getfield(L, top, "paths");
    lua_getfield(L, -1, "normalize");
    cfg->normalize_paths = (uint8_t)lua_toboolean(L, -1);
    lua_pop(L, 1);
    char *es = mg_config__dup_field(L, lua_gettop(L), "encoded_slash", "reject");
    cfg->keep_encoded_slash = strcmp(es, "keep") == 0;
    free(es);
    lua_pop(L, 1);

    lua_getfield(L, top, "upstream");
    cfg->keepalive = (int)mg_config__num_field(L, lua_gettop(L), "keepalive", 64);
    cfg->keepalive_timeout_ms = mg_config__ms_field(L, lua_gettop(L), "keepalive_timeout", 60);
    cfg->keepalive_surplus_ms =
        mg_config__ms_field(L, lua_gettop(L), "keepalive_surplus_timeout", 2);
    cfg->retries = (int)mg_config__num_field(L, lua_gettop(L), "retries", 2);
    cfg->queue_max = (int)mg_config__num_field(L, lua_gettop(L), "queue_max", 10000);
    cfg->max_connecting = (int)mg_config__num_field(L, lua_gettop(L), "max_connecting", 64);
    cfg->replay_body = (uint32_t)mg_config__num_field(L, lua_gettop(L), "replay_body", 65536);
    lua_pop(L, 1);

    lua_getfield(L, top, "admin");
    if (lua_istable(L, -1)) {
        int a = lua_gettop(L);
        char *h = mg_config__dup_field(L, a, "host", "127.0.0.1");
        snprintf(cfg->admin_host, sizeof(cfg->admin_host), "%s", h);
        free(h);
        cfg->admin_port = (int)mg_config__num_field(L, a, "port", 8081);
        cfg->admin_token = mg_config__dup_field(L, a, "token", NULL);
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
        char *a = mg_config__dup_field(L, c, "cidr", "");
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
        int rc = mg_config__read_service(L, &snap->services[snap->nservices++], cfg->source, err,
                                         errlen);
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
    snap->plugins_literal = mg_config__dup_field(L, top, "_plugins_literal", "{}");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int r = lua_gettop(L);
        char *rule = mg_config__dup_field(L, r, "rule", "");
        char *svc = mg_config__dup_field(L, r, "service", "");
        int prio = (int)mg_config__num_field(L, r, "priority", -1);
        int line = (int)mg_config__num_field(L, r, "line", 0);
        int sidx = mg_snapshot_service(snap, svc);
        snap->route_service[i - 1] = sidx;
        snap->route_rule[i - 1] = strdup(rule);
        snap->route_priority[i - 1] = prio >= 0 ? prio : (int)strlen(rule);
        snap->route_hooks[i - 1] = (uint8_t)mg_config__num_field(L, r, "_hooks", 0);
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
