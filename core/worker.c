/* Worker threads: each owns a loop, its listening sockets (SO_REUSEPORT, so
 * the kernel spreads connections without a shared accept lock), a Lua
 * state, connection pools and timeout queues. */
#include "worker.h"
#include "conn.h"
#include "h2.h"
#include "h2_upstream.h"
#include "lua_ffi.h"
#include "proxy.h"
#include "stats.h"
#include "targets.h"
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TICK_MS 100

static void on_accept(uv_stream_t *server, int status)
{
    mg_listener *l = mg_container_of((uv_tcp_t *)server, mg_listener, tcp);
    mg_worker *w = l->w;
    if (status < 0 || w->stopping) return;
    mg_conn_accept(w, server, &mg_proxy_handler, l->index);
}

/* Resolves a listen address; the caller frees *res. */
static int listen_addr(const mg_listen *l, struct addrinfo **res, char *err, size_t errlen)
{
    struct addrinfo hints = {0};
    char port[8];
    snprintf(port, sizeof(port), "%d", l->port);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    int rc = getaddrinfo(l->host, port, &hints, res);
    if (rc) {
        hints.ai_flags = AI_PASSIVE;
        rc = getaddrinfo(l->host, port, &hints, res);
    }
    if (rc || !*res) {
        snprintf(err, errlen, "listen %s:%d: %s", l->host, l->port, gai_strerror(rc));
        return -1;
    }
    return 0;
}

int mg_listeners_check_free(const mg_config *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->nlisten; i++) {
        const mg_listen *l = &cfg->listen[i];
        struct addrinfo *res = NULL;
        if (listen_addr(l, &res, err, errlen)) return -1;
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1, busy = 0;
        if (fd >= 0) {
            /* SO_REUSEADDR (as the real listener has) only passes TIME_WAIT
             * sockets: any listener makes this bind fail */
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (res->ai_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
            busy = bind(fd, res->ai_addr, res->ai_addrlen) != 0 && errno == EADDRINUSE;
            close(fd);
        }
        freeaddrinfo(res);
        if (busy) {
            snprintf(err, errlen,
                     "%s:%d: listen %s:%d: address already in use (another process listens "
                     "there; to share it for a zero-downtime upgrade, start with --takeover)",
                     cfg->source, l->line, l->host, l->port);
            return -1;
        }
    }
    return 0;
}

/* libuv 1.44 has no UV_TCP_REUSEPORT: make the socket, set SO_REUSEPORT,
 * bind and listen, then hand the descriptor to uv_tcp_open. */
static int open_listener(mg_worker *w, const mg_listen *l, mg_listener *ml, char *err,
                         size_t errlen)
{
    struct addrinfo *res = NULL;
    if (listen_addr(l, &res, err, errlen)) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
        (res->ai_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one))) ||
        bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 4096)) {
        snprintf(err, errlen, "%s:%d: listen on %s:%d: %s", w->cfg->source, l->line, l->host,
                 l->port, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    uv_tcp_t *tcp = &ml->tcp;
    uv_tcp_init(&w->loop, tcp);
    ml->w = w;
    if (uv_tcp_open(tcp, fd) || uv_listen((uv_stream_t *)tcp, 4096, on_accept)) {
        snprintf(err, errlen, "listen on %s:%d failed", l->host, l->port);
        return -1;
    }
    return 0;
}

static void adopt_pending(mg_worker *w);

static void on_tick(uv_timer_t *t)
{
    mg_worker *w = t->data;
    uint64_t now = uv_now(&w->loop);
    adopt_pending(w); /* in case a wake-up was coalesced away: versions, not events */
    mg_conn_expire(w, now);
    mg_up_expire(w, now);
    mg_h2up_expire(w, now);
    mg_proxy_expire(w, now);
    mg_lua_tick(&w->lua);
    mg_lua_flush_log_limits(&w->lua);
    if (w->id >= 1 && w->id <= MG_STATS_MAX_WORKERS) {
        atomic_store_explicit(&mg_stats.lua_bytes[w->id],
                              (uint64_t)lua_gc(w->lua.L, LUA_GCCOUNT, 0) * 1024 +
                                  (uint64_t)lua_gc(w->lua.L, LUA_GCCOUNTB, 0),
                              memory_order_relaxed);
        atomic_store_explicit(&mg_stats.hook_waits[w->id], w->nwaiting, memory_order_relaxed);
        atomic_store_explicit(&mg_stats.io_waits[w->id], mg_io_pending_count(),
                              memory_order_relaxed);
        if (++w->ticks % 10 == 0)
            atomic_store_explicit(&mg_stats.lua_pending[w->id], mg_lua_pending(&w->lua),
                                  memory_order_relaxed);
    }
    if (w->stopping && now >= w->stop_deadline) {
        /* grace period over: close whatever is still open */
        for (mg_conn *c = w->conns; c; c = c->next)
            mg_conn_close(c);
    }
    if (w->stopping && w->nconns == 0) uv_stop(&w->loop);
}

static void on_flush(uv_prepare_t *p)
{
    mg_worker *w = p->data;
    mg_proxy_run_waits(w);
    mg_proxy_run_held(w);
    mg_h2_run_pending(w);
    if (w->access.len) mg_buf_flush_fd(&w->access, 1);
}

static void close_listeners(mg_worker *w)
{
    for (int i = 0; i < w->nlisteners; i++)
        if (!uv_is_closing((uv_handle_t *)&w->listeners[i].tcp))
            uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
}

/* Takes a snapshot the main thread published, if any. Requests in flight
 * keep the snapshot they pinned; new ones get this one. */
static void adopt_pending(mg_worker *w)
{
    mg_snapshot *s = atomic_exchange(&w->pending_snap, NULL);
    if (!s) return;
    const mg_config *cfg = s->cfg;
    if (cfg && cfg != w->cfg) {
        for (int i = 0; w->cfg && i < cfg->nlisten && i < w->cfg->nlisten; i++) {
            const mg_listen *a = &w->cfg->listen[i], *b = &cfg->listen[i];
            if (a->http2 != b->http2 || a->tls != b->tls || a->alpn_len != b->alpn_len ||
                memcmp(a->alpn, b->alpn, (size_t)a->alpn_len) != 0)
                mg_conn_listener_changed(w, i);
        }
        w->cfg = cfg;
        w->q_client_idle.timeout_ms = cfg->client_idle_ms;
        w->q_client_header.timeout_ms = cfg->client_header_ms;
        w->q_client_io.timeout_ms = cfg->client_idle_ms;
        w->q_up_connect.timeout_ms = cfg->upstream_connect_ms;
        w->q_up_response.timeout_ms = cfg->upstream_response_ms;
        w->q_up_idle.timeout_ms = cfg->keepalive_timeout_ms;
        w->q_up_surplus.timeout_ms = cfg->keepalive_surplus_ms;
    }
    /* A membership change keeps plugin modules and middleware state (rate
     * limit buckets); a changed file starts a new generation. */
    if (!w->snap || s->plugin_gen != w->snap->plugin_gen)
        mg_lua_new_generation(&w->lua, w->cfg->plugins_dir);
    mg_lua_adopt(&w->lua, s);
    /* pooled connections to addresses that left every service go now */
    const mg_snapshot *old = w->snap;
    for (int i = 0; old && i < old->nservices; i++)
        for (int k = 0; k < old->services[i].ntargets; k++) {
            uint32_t uid = old->services[i].targets[k].uid;
            if (!mg_targets_present(uid)) mg_up_close_idle(w, uid);
        }
    mg_snapshot_unref(w->snap);
    w->snap = s;
    mg_proxy_kick(w); /* held requests may find a target now */
    MG_LOG(MG_LOG_DEBUG, w->id, 0, "adopted snapshot version %llu", (unsigned long long)s->version);
}

void mg_workers_publish(mg_worker *ws, int n, mg_snapshot *snap)
{
    for (int i = 0; i < n; i++) {
        mg_snapshot_ref(snap);
        mg_snapshot *old = atomic_exchange(&ws[i].pending_snap, snap);
        if (old) mg_snapshot_unref(old); /* superseded before the worker took it */
        uv_async_send(&ws[i].wake);
    }
}

static void on_wake(uv_async_t *a)
{
    mg_worker *w = a->data;
    adopt_pending(w);
    if (atomic_load(&w->stop_requested) && !w->stopping) {
        w->stopping = 1;
        w->stop_deadline = uv_now(&w->loop) + w->cfg->grace_ms;
        close_listeners(w);
        /* idle keep-alive connections go now; busy ones after their response */
        mg_conn_stop_all(w);
        if (w->nconns == 0) uv_stop(&w->loop);
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) {
        if (h->type == UV_TCP && h->data && h->data != arg) {
            /* connections still open at exit: close without callbacks into
             * the proxy, their owners are freed in their close callbacks */
        }
        uv_close(h, NULL);
    }
}

static void worker_main(void *arg)
{
    mg_worker *w = arg;
    mg_lua_self = &w->lua;
    mg_lua_log_worker = w->id; /* Lua logs outside a request (timers) name this worker */
    mg_lua_io_hooks(&w->lua, &w->io_hooks);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    mg_proxy__stall_free(w);
    /* drain: close every remaining handle and let their callbacks run */
    for (mg_conn *c = w->conns; c; c = c->next)
        mg_conn_close(c);
    /* hooks still waiting on I/O (this thread's only) resume no more */
    mg_io_cancel_all();
    mg_proxy_waits_free(w);
    mg_up_close_all(w);
    mg_h2up_close_all(w);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    uv_walk(&w->loop, close_walk, w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->access.len) mg_buf_flush_fd(&w->access, 1);
    atomic_store(&w->exited, 1);
}

static int worker_init(mg_worker *w, int id, const mg_config *cfg, mg_snapshot *snap, char *err,
                       size_t errlen)
{
    w->id = id;
    w->cfg = cfg;
    if (uv_loop_init(&w->loop)) {
        snprintf(err, errlen, "cannot create an event loop");
        return -1;
    }
    mg_tq_init(&w->q_client_idle, cfg->client_idle_ms);
    mg_tq_init(&w->q_client_header, cfg->client_header_ms);
    mg_tq_init(&w->q_client_io, cfg->client_idle_ms);
    mg_tq_init(&w->q_up_connect, cfg->upstream_connect_ms);
    mg_tq_init(&w->q_up_response, cfg->upstream_response_ms);
    mg_tq_init(&w->q_up_idle, cfg->keepalive_timeout_ms);
    mg_tq_init(&w->q_up_surplus, cfg->keepalive_surplus_ms);
    mg_tq_init(&w->q_held, 0);     /* ordered by each request's own deadline */
    mg_tq_init(&w->q_probe, 1000); /* set from the config at each probe */
    w->up_slot = mg_proxy_kick;
    if (mg_lua_init(&w->lua, id, cfg->plugins_dir, &w->loop, err, errlen)) return -1;
    w->snap = snap;
    mg_snapshot_ref(snap);
    mg_lua_adopt(&w->lua, snap);
    w->listeners = calloc((size_t)cfg->nlisten, sizeof(mg_listener));
    for (int i = 0; i < cfg->nlisten; i++) {
        w->listeners[i].index = i;
        if (open_listener(w, &cfg->listen[i], &w->listeners[i], err, errlen)) return -1;
        w->nlisteners++;
    }
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    uv_prepare_init(&w->loop, &w->flush);
    w->flush.data = w;
    uv_prepare_start(&w->flush, on_flush);
    return 0;
}

static void worker_free(mg_worker *w)
{
    mg_snapshot *pending = atomic_exchange(&w->pending_snap, NULL);
    if (pending) mg_snapshot_unref(pending);
    uv_loop_close(&w->loop);
    mg_lua_close(&w->lua);
    if (w->snap) mg_snapshot_unref(w->snap);
    w->snap = NULL;
    mg_conn_free_parse_states(w);
    while (w->req_free) {
        mg_req *r = w->req_free;
        w->req_free = *(mg_req **)r;
        mg_req_destroy(r);
    }
    free(w->listeners);
    mg_tls_holder_release(&w->tls);
    free(w->pools);
    free(w->hdr_view);
    mg_buf_free(&w->scratch);
    mg_buf_free(&w->access);
}

mg_worker *mg_workers_start(const mg_config *cfg, mg_snapshot *snap, char *err, size_t errlen)
{
    int n = cfg->workers;
    /* Ownership: the array is freed by mg_workers_join. */
    mg_worker *ws = calloc((size_t)n, sizeof(mg_worker));
    if (!ws) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (worker_init(&ws[i], i + 1, cfg, snap, err, errlen)) {
            for (int k = 0; k <= i; k++) {
                uv_walk(&ws[k].loop, close_walk, NULL);
                uv_run(&ws[k].loop, UV_RUN_DEFAULT);
                worker_free(&ws[k]);
            }
            free(ws);
            return NULL;
        }
    }
    for (int i = 0; i < n; i++)
        uv_thread_create(&ws[i].thread, worker_main, &ws[i]);
    return ws;
}

void mg_workers_stop(mg_worker *ws, int n)
{
    for (int i = 0; i < n; i++) {
        atomic_store(&ws[i].stop_requested, 1);
        uv_async_send(&ws[i].wake);
    }
}

int mg_workers_all_exited(mg_worker *ws, int n)
{
    for (int i = 0; i < n; i++)
        if (!atomic_load(&ws[i].exited)) return 0;
    return 1;
}

int mg_workers_join(mg_worker *ws, int n, uint64_t timeout_ms)
{
    uint64_t deadline = uv_hrtime() + timeout_ms * 1000000;
    for (int i = 0; i < n; i++) {
        while (!atomic_load(&ws[i].exited)) {
            if (uv_hrtime() > deadline) return -1;
            uv_sleep(10);
        }
    }
    for (int i = 0; i < n; i++) {
        uv_thread_join(&ws[i].thread);
        worker_free(&ws[i]);
    }
    free(ws);
    return 0;
}
