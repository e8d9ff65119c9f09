/* Upstream connections: connect with a timeout, and keep idle keep-alive
 * connections in a per-worker pool per target. It parses nothing: bytes
 * and events go to the owner (a request) through the table it registers.
 *
 * Lifetime: an mg_upconn is allocated by mg_up_get and freed in its
 * stream's close event; while a request uses it, u->owner points back to
 * that request, and mg_up_release/mg_up_close end that (no event follows).
 * Idle pooled connections keep reading, so a backend closing one is
 * noticed before it is reused. */
#ifndef MG_UPSTREAM_H
#define MG_UPSTREAM_H

#include "snapshot.h"
#include "stream.h"
#include "tq.h"

typedef struct mg_upconn mg_upconn;
struct ssl_ctx_st;
typedef struct mg_worker mg_worker;

/* What an upstream connection reports to its owner. */
typedef struct mg_up_events {
    void (*connected)(void *owner, int status); /* 0, or a connect error */
    void (*data)(void *owner, const char *p, size_t n);
    void (*eof)(void *owner);
    void (*error)(void *owner, int err);
    void (*drained)(void *owner); /* everything sent was written */
    void (*timeout)(void *owner); /* the connect did not finish in time */
} mg_up_events;

enum mg_up_state { MG_U_CONNECTING = 0, MG_U_ACTIVE, MG_U_IDLE, MG_U_CLOSING };

struct mg_upconn {
    mg_stream s;
    uv_connect_t connect_req;
    mg_tq_node tq; /* connect or idle timeout */
    mg_worker *w;
    void *owner; /* the request using it, NULL when pooled */
    const mg_up_events *ev;
    mg_upconn *pnext, *pprev; /* pool list */
    uint32_t uid;
    uint8_t state;
    uint8_t reused;     /* served a request before this one */
    uint8_t connecting; /* counted in its pool's nconnecting */
};

typedef struct mg_pool {
    mg_upconn *idle; /* most recently used first */
    int nidle;
    int nconnecting; /* connects under way */
} mg_pool;

/* A connection to t for owner: a pooled one (state ACTIVE, reused) or a new
 * one (state CONNECTING: a connected event follows). NULL when it cannot
 * even start (the reason is in *err). */
mg_upconn *mg_up_get(mg_worker *w, const mg_target *t, void *owner, const mg_up_events *ev,
                     int *err);

/* The same for a target that speaks TLS: a new connection does its
 * handshake (verified as tls_ctx says, SNI server_name) before the
 * connected event, which carries UV_EPROTO when the handshake failed. */
mg_upconn *mg_up_get_tls(mg_worker *w, const mg_target *t, struct ssl_ctx_st *tls_ctx,
                         const char *server_name, void *owner, const mg_up_events *ev, int *err);

/* Whether mg_up_get would give a connection to uid now: one is idle, or
 * fewer than upstream.max_connecting connects are under way (a burst of
 * new connects would overflow a small backend's listen backlog). When it
 * says no, wait for the worker's up_slot hook: it runs when a connect ends
 * or a connection goes back to a pool. */
int mg_up_available(mg_worker *w, uint32_t uid);

/* Sends bytes (the caller keeps bufs): 0, 1 when queued (a drained event
 * follows), or a negative error (the read side reports the failure too). */
int mg_up_send(mg_upconn *u, const uv_buf_t *bufs, unsigned n);

/* Ends the owner's use: back to the pool when reusable (and the pool has
 * room), else closed. No event reaches the old owner afterwards. */
void mg_up_release(mg_upconn *u, int reusable);
void mg_up_close(mg_upconn *u);

static inline void mg_up_ack_now(mg_upconn *u)
{
    mg_stream_ack_now(&u->s);
}

static inline int mg_up_unacked(const mg_upconn *u)
{
    return mg_stream_unacked(&u->s);
}

void mg_up_read_start(mg_upconn *u);
void mg_up_read_stop(mg_upconn *u);
static inline size_t mg_up_queued(const mg_upconn *u)
{
    return mg_stream_queued(&u->s);
}

/* Closes the idle pooled connections to a target uid (it went away). */
void mg_up_close_idle(mg_worker *w, uint32_t uid);

/* The worker's tick: connect and idle timeouts. */
void mg_up_expire(mg_worker *w, uint64_t now);

/* Closes every pooled connection (the worker stops). */
void mg_up_close_all(mg_worker *w);

/* The pool of a target uid (grown on demand), or NULL past the limit. */
mg_pool *mg_up_pool(mg_worker *w, uint32_t uid);

#endif
