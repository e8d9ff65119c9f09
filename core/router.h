/* Routing rules in Traefik's language (v3 and v2 forms), compiled once into
 * matcher trees. docs/routing.md is the user's reference.
 *
 * A router is built by the control thread, then shared read-only by every
 * worker: mg_router_match() neither allocates nor takes a lock (except
 * inside glibc's regexec, for *Regexp rules only). */
#ifndef MG_ROUTER_H
#define MG_ROUTER_H

#include "common.h"
#include <sys/socket.h>

/* The request as the router sees it. Nothing needs to be NUL-terminated
 * and every string is taken as received: the router strips the port from
 * host and percent-decodes path (as Go's URL.Path, which Traefik matches)
 * and query keys and values itself, so callers must not decode first. */
typedef struct mg_route_input {
    mg_str method;         /* "GET" */
    mg_str host;           /* Host header as received (may carry ":port") */
    mg_str path;           /* raw request-target path, without the query; empty = "/" */
    mg_str query;          /* raw query without '?', may be empty */
    const mg_hdr *headers; /* request headers, in arrival order */
    size_t nheaders;
    const struct sockaddr *client; /* AF_INET or AF_INET6 peer, or NULL */
    int listener;                  /* the listener's index (cfg->listen), -1: unknown */
} mg_route_input;

typedef struct mg_router mg_router;

/* Returns a new empty router that the caller owns (mg_router_free), or NULL. */
mg_router *mg_router_new(void);
void mg_router_free(mg_router *r);

/* Compiles `rule` and appends it with `value` (what mg_router_match returns
 * when it wins). priority < 0 means the default: the rule's length, as in
 * Traefik. Returns 0, or -1 with a one-line reason written to err. */
int mg_router_add(mg_router *r, const char *rule, int priority, int value, char *err,
                  size_t errlen);

/* Restricts the route added with `value` to the listeners whose bits are
 * set in mask (bit i: cfg->listen[i]); by default a route matches on every
 * listener. Returns 0, or -1 when no route has that value. */
int mg_router_restrict(mg_router *r, int value, uint64_t mask);

/* Orders the routes by priority (highest first, ties in insertion order).
 * Call once after the last mg_router_add. */
void mg_router_finalize(mg_router *r);

/* Returns the value of the highest-priority rule that matches, or -1. */
int mg_router_match(const mg_router *r, const mg_route_input *in);

/* Checking a rule without a router: mg_ffi_rule_check (ffi.h). */

#endif
