/* Workers: one thread, one libuv loop, one Lua state and one SO_REUSEPORT
 * listening socket per configured address each. A worker shares nothing
 * mutable with another; it reads the published snapshot and the config. */
#ifndef MG_WORKER_H
#define MG_WORKER_H

#include "config.h"
#include "lua_io.h"
#include "lua_bridge.h"
#include "log.h"
#include "snapshot.h"
#include "tls_certs.h"
#include "tq.h"

#include <stdatomic.h>
#include <uv.h>

#define MG_READ_BUF_SIZE 65536

typedef struct mg_conn mg_conn;
typedef struct mg_upconn mg_upconn;
typedef struct mg_pool mg_pool;

/* A listening socket of a worker; index: its entry in cfg->listen (listen
 * changes wait for a restart, so the index stays valid across reloads). */
typedef struct mg_listener {
    uv_tcp_t tcp;
    struct mg_worker *w;
    int index;
} mg_listener;

typedef struct mg_worker {
    int id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;               /* new snapshot or stop request */
    uv_timer_t tick;               /* checks the timeout queues */
    uv_prepare_t flush;            /* flushes the access log before the loop polls */
    struct mg_listener *listeners; /* one per cfg->listen entry, same order */
    int nlisteners;
    mg_tls_holder tls; /* the certificate store TLS listeners serve from */
    const mg_config *cfg;
    mg_snapshot *snap; /* one reference held */
    mg_lua lua;
    atomic_int stop_requested; /* set by the main thread */
    atomic_int exited;         /* the thread's loop has ended */
    /* A newer snapshot (and config) handed over by the main thread; the
     * worker takes it at its next loop turn (wake-up) or tick. */
    _Atomic(mg_snapshot *) pending_snap;
    int stopping; /* worker-local view: 0 running, 1 draining */
    uint64_t stop_deadline;

    /* timeout queues: one per kind of wait */
    mg_tq q_client_idle, q_client_header, q_client_io;
    mg_tq q_up_connect, q_up_response, q_up_idle;
    mg_tq q_up_surplus; /* pooled beyond upstream.keepalive after a burst (upstream.c) */

    mg_conn *conns;           /* every open client connection */
    struct mg_h2 *h2_pending; /* HTTP/2 sessions with frames to write this turn (h2_conn.c) */
    int nconns;
    uint64_t next_conn_id;
    uint64_t next_req_id;

    mg_pool *pools;            /* upstream connection pools by target uid (upstream.c) */
    struct mg_h2up_conn *h2up; /* HTTP/2 connections to backends (h2_upstream.c) */
    uint32_t npools;
    /* Called by upstream.c when a connection becomes available (a connect
     * ended, one went back to a pool): the proxy's held requests may go. */
    void (*up_slot)(struct mg_worker *w);

    /* requests held until a target is ready (proxy_hold.c), by deadline */
    mg_tq q_held;
    int nheld;
    uint8_t held_kick; /* something changed: retry the held requests soon */
    mg_tq q_probe;     /* stall probes waiting for a first byte (proxy_stall.c) */
    void *stall;       /* proxy_stall.c's per-worker state */

    /* requests whose middleware chain waits on I/O (proxy_wait.c): slots
     * the runtime names them by, free slots, and those whose chain ended,
     * to go on from the next loop turn */
    struct mg_req **waits;
    int *wait_free;
    int nwait_cap, nwait_free, nwaiting;
    struct mg_req *wait_ready, *wait_ready_tail;
    mg_io_hooks io_hooks; /* around resumes of this worker's coroutines */
    unsigned ticks;

    struct mg_req *req_free; /* recycled requests, arenas kept */
    void *conn_parse_free;   /* recycled request-parser states (conn.c) */
    int nconn_parse_free;
    int nreq_free;

    mg_buf scratch;   /* serialized response heads */
    mg_hdr *hdr_view; /* headers as pointers, for the router */
    uint32_t hdr_view_cap;
    uint32_t rr_fallback; /* round robin used when a balancer fails */

    mg_buf access; /* access log lines waiting for the flush */
    char clf_time[40];
    char iso_time[40];
    time_t time_cached;

    char readbuf[MG_READ_BUF_SIZE]; /* every read of this worker lands here */
    int readbuf_busy;
} mg_worker;

/* Checks that no other socket listens on cfg's addresses (a bind without
 * SO_REUSEPORT). Returns 0, or -1 with "FILE:LINE: listen HOST:PORT:
 * address already in use ..." in err. */
int mg_listeners_check_free(const mg_config *cfg, char *err, size_t errlen);

/* Starts n workers for cfg with snapshot snap (each takes its own
 * reference). Returns the array (caller owns; mg_workers_join frees it), or
 * NULL with err set. */
mg_worker *mg_workers_start(const mg_config *cfg, mg_snapshot *snap, char *err, size_t errlen);

/* Hands a new snapshot (one reference taken per worker) to every worker;
 * its config (snap->cfg) comes with it and lives as long as it. */
void mg_workers_publish(mg_worker *ws, int n, mg_snapshot *snap);

/* Asks every worker to stop accepting and finish in-flight requests. */
void mg_workers_stop(mg_worker *ws, int n);

/* 1 when every worker's loop has ended. */
int mg_workers_all_exited(mg_worker *ws, int n);

/* Waits for every worker thread to end and frees the array. Returns -1
 * (without joining or freeing) if some worker is still running after
 * timeout_ms: a plugin stuck in a loop. */
int mg_workers_join(mg_worker *ws, int n, uint64_t timeout_ms);

/* Refreshes the cached log timestamps (once a second at most). */
void mg_worker_refresh_time(mg_worker *w);

#endif
