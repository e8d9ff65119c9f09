/* The proxy: the whole life of a request between a client-side source and
 * a backend: checks, routing, hooks, the balancer's pick, tries and
 * retries, the response parser, the relay both ways, on_log and the access
 * log. It is the only code that sees both sides, and it does not know which
 * framing a request came from: sources hand requests in through
 * mg_proxy_handler and are answered through r->src. */
#ifndef MG_PROXY_H
#define MG_PROXY_H

#include "conn.h"
#include "worker.h"

/* The handler client-side sources register. */
extern const mg_conn_handler mg_proxy_handler;

/* The worker's tick: requests whose response (or a ready target) did not
 * come in time, and targets that stalled. */
void mg_proxy_expire(mg_worker *w, uint64_t now);

/* Sends held requests again if something changed (mg_proxy_kick); the
 * worker calls it once per loop turn. */
void mg_proxy_run_held(mg_worker *w);

/* Goes on with the requests whose waiting middleware chain ended
 * (proxy_wait.c); from the worker's prepare handle, outside Lua. */
void mg_proxy_run_waits(mg_worker *w);
/* At the worker's stop, after its waits were cancelled: lets go of the
 * requests they held. */
void mg_proxy_waits_free(mg_worker *w);
static inline void mg_proxy_kick(mg_worker *w)
{
    w->held_kick = 1;
}

/* Releases the proxy's per-worker state (stall probes) at exit. */
void mg_proxy__stall_free(mg_worker *w);

/* Writes the access log line and runs on_log hooks (access_log.c). */
void mg_req_log(mg_req *r);

#endif
