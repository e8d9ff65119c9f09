/* The membership snapshot: services, their targets, and the compiled routes.
 *
 * A snapshot is immutable once published. The control side builds it; every
 * worker holds one reference to the newest it has adopted, and every request
 * pins the snapshot it started with for all its tries. */
#ifndef MG_SNAPSHOT_H
#define MG_SNAPSHOT_H

#include "router.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

/* Targets are identified process-wide by a uid derived from their address,
 * stable across snapshots: workers index their connection pools and passive
 * failure marks by it, and the gateway-wide in-flight counters live here. */
#define MG_MAX_TARGET_UIDS 65536

typedef struct mg_target {
    char *id;      /* configured id, "127.0.0.1:9001" by default */
    char *host;    /* as configured (a name or an address literal) */
    char *address; /* "host:port", for logs */
    uint16_t port;
    int weight;
    uint8_t tls;   /* 1: connect with TLS (an https:// target or a service with tls) */
    uint32_t uid;  /* the address: pools, passive marks, in-flight counts */
    uint32_t suid; /* the (service, address) pair: request statistics */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char **labels; /* key, value, key, value, ..., NULL */
} mg_target;

/* What a service's targets speak (services.NAME.protocol). */
enum { MG_PROTO_HTTP1 = 0, MG_PROTO_H2C, MG_PROTO_H2 };

typedef struct mg_service {
    char *name;
    char *balancer;       /* plugin name */
    char *balancer_opts;  /* a Lua table literal, "{}" by default */
    char *health;         /* health check settings as a Lua literal, or NULL */
    char *autoscale;      /* autoscale settings as a Lua literal, or NULL */
    int passive_failures; /* consecutive failures that eject a target; 0: off */
    uint64_t passive_cooldown_ms;
    /* upstream TLS (docs/tls.md): settings, and the client context built
     * from them at load (owned by the snapshot; mg_tls_new takes its own
     * reference per connection) */
    int tls, tls_verify;
    char *tls_ca_file, *tls_server_name; /* NULL: system CAs / the target's host */
    struct ssl_ctx_st *tls_ctx;
    int protocol; /* MG_PROTO_*: what the targets speak */
    mg_target *targets;
    int ntargets;
    int line;
} mg_service;

enum { MG_ROUTE_ALLOW_TRACE = 1 }; /* TRACE is forwarded (else 405) */

typedef struct mg_snapshot {
    uint64_t version;
    uint64_t plugin_gen; /* changes only when plugin files (or the config file) changed */
    atomic_int refs;
    mg_service *services;
    int nservices;
    mg_router *router;    /* route value = route index */
    int *route_service;   /* route index -> service index */
    uint8_t *route_hooks; /* route index -> 1 if middlewares run on it */
    uint8_t *route_flags; /* route index -> MG_ROUTE_* bits */
    char **route_rule;    /* route index -> rule text (admin API) */
    int *route_priority;
    int nroutes;
    char *plugins_literal; /* middleware chains, a Lua literal for the workers */
    /* The config this snapshot was built with, freed with the snapshot:
     * workers read it (limits, timeouts) for as long as they hold the
     * snapshot, so its lifetime is the snapshot's reference count. */
    struct mg_config *cfg;
    void (*cfg_free)(struct mg_config *cfg);
} mg_snapshot;

/* Gateway-wide in-flight requests per target uid (incremented by workers). */
extern atomic_int mg_target_inflight[MG_MAX_TARGET_UIDS];

/* Returns the uid for an address key such as "127.0.0.1:9001", allocating a
 * new one the first time; thread-safe. Returns UINT32_MAX when full. */
uint32_t mg_target_uid(const char *key);

/* Takes and drops references. The last mg_snapshot_unref frees it. */
void mg_snapshot_ref(mg_snapshot *s);
void mg_snapshot_unref(mg_snapshot *s);

/* Publishes membership to the gateway-wide target state (targets.h): every
 * target of next is present and not draining; every target of prev that
 * next lacks drains (its address is absent when no service has it). Main
 * thread, before next goes to the workers. prev may be NULL. */
void mg_snapshot_mark_membership(const mg_snapshot *prev, const mg_snapshot *next);

/* Returns the index of the named service or -1. */
int mg_snapshot_service(const mg_snapshot *s, const char *name);

#endif
