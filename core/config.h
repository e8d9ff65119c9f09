/* The gateway's settings, read from the normalized table that
 * lua/moongate/config.lua produces. */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H

#include "addr.h"
#include "snapshot.h"

#include <netinet/in.h>
#include <stdint.h>

typedef struct mg_listen {
    char host[64];
    int port;
    int line;
    /* TLS (docs/tls.md). A plain POD so reloads can swap listener arrays. */
    int tls;                /* 1: clients speak TLS on this listener */
    int redirect_port;      /* plain listener: answer every request (but ACME HTTP-01
                               challenges) with a redirect to https://host:PORT; 0: off */
    char name[64];          /* the entry point name, "" if none */
    unsigned char alpn[64]; /* ALPN protocols in wire format, server preference */
    int alpn_len;           /* 0: the store's default ("http/1.1"); config.c sets
                               "h2,http/1.1" on a TLS listener that speaks HTTP/2 */
    int http2;              /* HTTP/2: ALPN h2 (TLS), prior-knowledge h2c (plain) */
} mg_listen;

typedef struct mg_tls_file_conf {
    char *cert, *key; /* paths, relative ones already made relative to the config's dir */
    int line;
} mg_tls_file_conf;

/* The top-level `tls` table. */
typedef struct mg_tls_conf {
    int enabled;     /* a tls table, or a listener with tls = true */
    int min_version; /* 0x0303 (TLS 1.2) or 0x0304 */
    mg_tls_file_conf *files;
    int nfiles;
    char *sources; /* { resolvers = {...}, domains = {...} } as a Lua literal, for the
                      certificate source plugins on the control plane */
} mg_tls_conf;

enum { MG_ACCESS_LOG_OFF = 0, MG_ACCESS_LOG_COMBINED, MG_ACCESS_LOG_JSON };

typedef struct mg_config {
    char *source; /* the config file, or "(embedded default)" */
    mg_listen *listen;
    int nlisten;
    int workers;
    char *plugins_dir;
    int access_log;
    int log_level;
    /* timeouts in milliseconds */
    uint64_t client_header_ms, client_idle_ms, upstream_connect_ms, upstream_response_ms, grace_ms;
    uint64_t queue_ms;          /* timeouts.queue: longest hold for a ready target */
    uint64_t upstream_stall_ms; /* timeouts.upstream_stall: silence before a probe; 0 off */
    int queue_max;              /* upstream.queue_max: held requests per worker */
    int max_connecting;         /* upstream.max_connecting: connects under way per target
                                 * per worker (0: no limit) */
    uint32_t max_header_size, max_headers;
    uint32_t h2_max_streams;    /* http2.max_concurrent_streams */
    uint8_t normalize_paths;    /* paths.normalize */
    uint8_t keep_encoded_slash; /* paths.encoded_slash == "keep" */
    int keepalive;
    uint64_t keepalive_timeout_ms;
    uint64_t keepalive_surplus_ms; /* upstream.keepalive_surplus_timeout: how long a burst's
                                    * connections beyond keepalive stay pooled (0: none) */
    int retries;
    uint32_t replay_body; /* upstream.replay_body: request body bytes kept to go again */
    mg_cidr *trusted;
    int ntrusted;
    char admin_host[64]; /* admin API listener; admin_port 0 = off */
    int admin_port;
    char *admin_token; /* NULL: no token required */
    char *providers;   /* discovery providers' settings, a Lua literal */
    mg_tls_conf tls;
    char *text;           /* the config file's text this was built from (NULL: embedded) */
    char *plugin_sources; /* the plugin files that load used, a Lua literal (name -> source) */
} mg_config;

/* Loads and validates a config file (path NULL: ./moongate.lua if present,
 * else the embedded default). On success stores a new config and a first
 * snapshot (version 1, one reference) and returns 0: the caller owns the
 * snapshot, and the snapshot owns the config (freed with its last
 * reference: never call mg_config_free on it).
 * On failure writes "FILE:LINE: reason" to err and returns -1. */
int mg_config_load(const char *path, mg_config **cfg, mg_snapshot **snap, char *err, size_t errlen);

/* The same, adding what discovery found: discovered is a Lua literal
 * { services = { name = { targets = {...}, ... } }, routes = {...} } or NULL. */
int mg_config_load_with(const char *path, const char *discovered, mg_config **cfg,
                        mg_snapshot **snap, char *err, size_t errlen);

/* The same built from what `from` was built from (NULL: read the files):
 * a membership change rebuilds from the config text and the plugin files of
 * the last good load, never from a file that is being edited or is broken
 * on disk. */
int mg_config_load_src(const char *path, const mg_config *from, const char *discovered,
                       mg_config **cfg, mg_snapshot **snap, char *err, size_t errlen);

void mg_config_free(mg_config *cfg);

/* Returns 1 if the address is inside one of the CIDRs. */

#endif
