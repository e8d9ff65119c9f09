/* Tries: pick a target through the Lua balancer, connect (or reuse a pooled
 * connection), send the head, and on a failure before any response decide
 * between another target and an error. Upstream events land here, except
 * response bytes (proxy_response.c). */
#include "h1.h"
#include "proxy_int.h"
#include "targets.h"

#include <stdio.h>
#include <string.h>

/* ---- passive health ------------------------------------------------- */

void mg_proxy__passive(mg_req *r, int kind, int status, const char *what)
{
    const mg_service *s = &r->snap->services[r->svc];
    if (!s->passive_failures || r->target < 0) return;
    const mg_target *t = &s->targets[r->target];
    uint64_t now = uv_hrtime() / 1000000;
    if (mg_passive_report(t->suid, kind, status, s->passive_failures, s->passive_cooldown_ms, now))
        MG_LOG(MG_LOG_WARN, r->w->id, r->conn_id,
               "service %s: target %s ejected after %d consecutive failures (last: %s)", s->name,
               t->address, s->passive_failures, what);
}

/* ---- picking a target ----------------------------------------------- */

static int was_tried(const mg_req *r, int idx)
{
    for (int i = 0; i < r->tries; i++)
        if (r->tried[i] == idx) return 1;
    return 0;
}

/* Round robin over untried targets: the fallback when a balancer fails. */
static int fallback_pick(mg_req *r, mg_worker *w, const int *excl, int nexcl)
{
    const mg_service *s = &r->snap->services[r->svc];
    for (int k = 0; k < s->ntargets; k++) {
        int idx = (int)(w->rr_fallback++ % (uint32_t)s->ntargets);
        int skip = 0;
        for (int i = 0; i < nexcl; i++)
            if (excl[i] == idx) skip = 1;
        if (!skip) return idx;
    }
    return -1;
}

/* Whether a target should be avoided while others are left: resting after
 * connect failures, down by its health check, ejected by passive health,
 * or stalled (silent while requests wait on it). */
static int avoid(const mg_service *s, int idx, uint64_t now_ms)
{
    const mg_target *t = &s->targets[idx];
    return mg_targets_resting(t->uid, now_ms) || mg_health_get(t->suid) == MG_HEALTH_DOWN ||
           (s->passive_failures && mg_passive_ejected(t->suid, now_ms)) ||
           mg_targets_stalled(t->uid, now_ms);
}

/* Why pick_target found nothing. */
enum { PICK_NONE = -1, PICK_BUSY = -2 };

/* Asks the balancer for a target. Never a target already tried, draining
 * (removed from the newest membership: it goes away) or busy (at
 * upstream.max_connecting with no idle connection: it would overflow the
 * backend's backlog); targets to avoid only when no other is left (panic
 * mode: try them anyway), except for a request coming back from the queue,
 * which waits for one to recover instead. */
static int pick_target(mg_req *r, int held)
{
    mg_worker *w = r->w;
    const mg_service *s = &r->snap->services[r->svc];
    int excl[64];
    int nexcl = 0;
    for (int i = 0; i < r->tries && nexcl < 64; i++)
        excl[nexcl++] = r->tried[i];
    int busy = 0;
    for (int i = 0; i < s->ntargets && nexcl < 64; i++) {
        const mg_target *t = &s->targets[i];
        if (was_tried(r, i)) continue;
        if (mg_targets_draining(t->suid)) {
            excl[nexcl++] = i;
        } else if (!mg_up_available(w, t->uid)) {
            excl[nexcl++] = i;
            busy = 1;
        }
    }
    int base = nexcl;
    uint64_t now = mg_targets_now_ms();
    for (int attempt = 0; attempt <= s->ntargets; attempt++) {
        int idx = mg_lua_pick(&w->lua, r, excl, nexcl);
        if (idx == -2 || (idx >= 0 && (idx >= s->ntargets || was_tried(r, idx)))) {
            if (idx >= 0)
                MG_LOG(MG_LOG_WARN, w->id, r->conn_id,
                       "balancer %s returned a target already tried; using round robin",
                       s->balancer);
            idx = fallback_pick(r, w, excl, nexcl);
        }
        if (idx < 0) break;
        int skip = 0;
        for (int i = 0; i < nexcl; i++)
            if (excl[i] == idx) skip = 1;
        if (skip) idx = fallback_pick(r, w, excl, nexcl); /* the balancer ignored excl */
        if (idx < 0) break;
        if (avoid(s, idx, now) && nexcl < 64) {
            excl[nexcl++] = idx; /* try the others first */
            continue;
        }
        return idx;
    }
    if (nexcl > base && !held) {
        /* every target left is resting or down: panic mode, try them anyway */
        MG_LOG_EVERY(5000, MG_LOG_WARN, w->id, r->conn_id,
                     "service %s: every target failed recently; trying them anyway", s->name);
        int idx = mg_lua_pick(&w->lua, r, excl, base);
        if (idx < 0 || idx >= s->ntargets || was_tried(r, idx))
            idx = fallback_pick(r, w, excl, base);
        if (idx >= 0) return idx;
    }
    return busy || nexcl > base ? PICK_BUSY : PICK_NONE;
}

/* ---- a try ---------------------------------------------------------- */

static void send_head(mg_req *r)
{
    mg_upconn *u = r->up;
    /* on a try after a lost one, the body sent so far goes again with it */
    uv_buf_t b[2] = {uv_buf_init(r->uhead.p, (unsigned)r->uhead.len),
                     uv_buf_init(r->replay.p, (unsigned)r->replay.len)};
    if (mg_up_send(u, b, r->replay.len ? 2 : 1) < 0) {
        /* the write failed at once: treat like a reset before any response */
        mg_proxy__up_error(r, UV_EPIPE);
        return;
    }
    mg_tq_arm(&r->w->q_up_response, &r->tq, uv_now(&r->w->loop));
    if (mg_proxy__live(r)) r->src->resume(r); /* stream the body, if any */
}

void mg_proxy__try(mg_req *r)
{
    mg_worker *w = r->w;
    const mg_service *s = &r->snap->services[r->svc];
    int idx = s->ntargets ? pick_target(r, r->held_since != 0) : PICK_NONE;
    if (idx < 0) {
        /* Nothing went upstream yet: wait for a target to be ready (a
         * replica starting, a membership change) rather than fail. */
        if (mg_proxy__can_go_again(r)) {
            mg_proxy__hold(r, !s->ntargets       ? "the service has no target"
                              : idx == PICK_BUSY ? "every target is busy, resting or down"
                                                 : "no target left to try");
            return;
        }
        mg_proxy__fail(r, 502, "no target left to try");
        return;
    }
    r->target = idx;
    r->try_start_ns = uv_hrtime();
    if (r->tries < (int)MG_ARRAY_SIZE(r->tried)) r->tried[r->tries] = idx;
    r->tries++;
    const mg_target *t = &s->targets[idx];
    if (r->upstreams.len) mg_buf_append(&r->upstreams, ",", 1);
    /* a discovered target is logged by name too: "web-1@172.18.0.3:80" */
    if (strcmp(t->id, t->address) != 0) {
        mg_buf_append(&r->upstreams, t->id, strlen(t->id));
        mg_buf_append(&r->upstreams, "@", 1);
    }
    mg_buf_append(&r->upstreams, t->address, strlen(t->address));
    atomic_fetch_add_explicit(&mg_target_inflight[t->uid], 1, memory_order_relaxed);
    mg_proxy__response_start(r);
    if (s->protocol != MG_PROTO_HTTP1) {
        mg_proxy__h2_try(r, s, t);
        return;
    }
    int err = 0;
    mg_upconn *u =
        t->tls ? (s->tls_ctx ? mg_up_get_tls(w, t, s->tls_ctx,
                                             s->tls_server_name ? s->tls_server_name : t->host, r,
                                             &mg_proxy__up_events, &err)
                             : (err = UV_EPROTO, NULL))
               : mg_up_get(w, t, r, &mg_proxy__up_events, &err);
    if (!u) {
        atomic_fetch_sub_explicit(&mg_target_inflight[t->uid], 1, memory_order_relaxed);
        MG_LOG(MG_LOG_WARN, w->id, r->conn_id, "connect to %s failed: %s", t->address,
               uv_strerror(err));
        mg_proxy__retry_or_fail(r, 1, 1, "cannot connect", 0);
        return;
    }
    r->up = u;
    if (u->state == MG_U_ACTIVE) {
        send_head(r);
    } else if (mg_proxy__live(r)) {
        /* nothing may go upstream before the connection and the head */
        r->src->pause(r);
    }
}

void mg_proxy__detach(mg_req *r, int reusable)
{
    if (r->h2st) {
        mg_proxy__h2_detach(r);
        return;
    }
    mg_upconn *u = r->up;
    if (!u) return;
    r->up = NULL;
    atomic_fetch_sub_explicit(&mg_target_inflight[u->uid], 1, memory_order_relaxed);
    /* a connection to an address that left the membership is not pooled */
    mg_up_release(u, reusable && mg_targets_present(u->uid));
}

void mg_proxy__fail(mg_req *r, int status, const char *why)
{
    mg_proxy__detach(r, 0);
    mg_tq_remove(&r->tq);
    if (!mg_proxy__live(r)) return;
    if (r->resp_discard) {
        /* the backend's body was being dropped for a hook's answer: that
         * answer goes out anyway, only the connection is not kept */
        mg_proxy__respond_replaced(r);
        return;
    }
    /* a head the source still holds back can be replaced by an honest error */
    if (r->resp_started && !r->resp_sent) r->resp_started = 0;
    if (r->resp_started) {
        /* a response is half sent: the only honest signal left is closing */
        MG_LOG(MG_LOG_WARN, r->w->id, r->conn_id, "upstream failed mid-response: %s", why);
        r->src->abort(r);
        return;
    }
    char body[160];
    snprintf(body, sizeof(body), "%s: %s\n", mg_status_reason(status), why);
    mg_proxy__respond_text(r, status, body, !r->body_done);
}

/* Decides between another try and an error, after a failure with nothing
 * of the response received. connect_failed: the target refused or did not
 * answer the connect (it rests a moment, gateway-wide). */
void mg_proxy__retry_or_fail(mg_req *r, int connect_failed, int safe, const char *what, int err)
{
    mg_worker *w = r->w;
    const mg_target *t = mg_req_target(r);
    /* A refused connect costs nothing and sent nothing, a draining target
     * is going away anyway, and a pooled connection the backend had closed
     * says nothing of the next one (nginx does not count it either): none
     * counts against the retries, so scaling from N replicas to 1 loses no
     * request whatever N is. Every try still uses a slot of tried[], which
     * bounds them all. */
    int stale = r->up && r->up->reused && !connect_failed;
    int charge =
        !(connect_failed && err == UV_ECONNREFUSED) && !stale && !mg_targets_draining(t->suid);
    if (charge) r->charged++;
    mg_lua_report(&w->lua, r, 0, (double)(uv_hrtime() - r->try_start_ns) / 1e9,
                  connect_failed ? "connect" : "reset");
    mg_target_stats *ts = mg_target_stats_of(t->suid);
    if (ts) atomic_fetch_add_explicit(&ts->connect_errors, 1, memory_order_relaxed);
    mg_proxy__passive(r, connect_failed ? MG_FAIL_CONNECT : MG_FAIL_RESET, 0, what);
    if (connect_failed) mg_targets_connect_failed(t->uid, mg_targets_now_ms());
    mg_proxy__detach(r, 0);
    if (!mg_proxy__live(r)) return;
    const mg_service *s = &r->snap->services[r->svc];
    int retries = r->retries_set ? r->retries_max : w->cfg->retries;
    int can = safe && r->charged <= retries && mg_proxy__can_go_again(r) &&
              r->tries < (int)MG_ARRAY_SIZE(r->tried);
    MG_LOG_EVERY(1000, MG_LOG_WARN, w->id, r->conn_id, "upstream %s (service %s): %s %s%s",
                 t->address, s->name, what, err ? uv_strerror(err) : "",
                 can ? ", trying another target" : "");
    if (can) {
        if (ts) atomic_fetch_add_explicit(&ts->retries, 1, memory_order_relaxed);
        if (charge && r->backoff_ms) {
            int doublings = r->charged - 1 < 10 ? r->charged - 1 : 10;
            mg_proxy__backoff(r, (uint64_t)r->backoff_ms << doublings);
            return;
        }
        mg_proxy__try(r);
    } else {
        mg_proxy__fail(r, 502, what);
    }
}

void mg_proxy__retry_unsent(mg_req *r, const char *what)
{
    const mg_target *t = mg_req_target(r);
    MG_LOG(MG_LOG_DEBUG, r->w->id, r->conn_id, "upstream %s: %s; trying again", t->address, what);
    mg_proxy__detach(r, 0);
    if (!mg_proxy__live(r)) return;
    r->tries--; /* the same target may take it on a new connection */
    mg_proxy__try(r);
}

/* ---- upstream events ------------------------------------------------ */

static void up_connected(void *owner, int status)
{
    mg_req *r = owner;
    if (status == UV_EPROTO) {
        /* the TLS handshake failed (verification, protocol): the target
         * answers, so no back-off, but another target may do better */
        mg_proxy__retry_or_fail(r, 0, 1, "TLS handshake failed:", status);
        return;
    }
    if (status < 0) {
        mg_proxy__retry_or_fail(r, 1, 1, "connect failed:", status);
        return;
    }
    mg_targets_connect_ok(r->up->uid);
    send_head(r);
}

static void up_connect_timeout(void *owner)
{
    mg_proxy__retry_or_fail(owner, 1, 1, "connect timed out", 0);
}

void mg_proxy__up_timeout_response(mg_req *r)
{
    mg_lua_report(&r->w->lua, r, 0, (double)(uv_hrtime() - r->try_start_ns) / 1e9, "timeout");
    mg_target_stats *ts = mg_target_stats_of(mg_req_target(r)->suid);
    if (ts) atomic_fetch_add_explicit(&ts->timeouts, 1, memory_order_relaxed);
    mg_proxy__passive(r, MG_FAIL_TIMEOUT, 0, "timeout");
    /* No retry after a response timeout: it would multiply the wait. */
    MG_LOG(MG_LOG_WARN, r->w->id, r->conn_id,
           "upstream %s: no response in time (request body %s, %zu bytes queued upstream)",
           mg_req_target(r)->address, r->body_done ? "sent" : "incomplete",
           r->up ? mg_up_queued(r->up) : 0);
    mg_proxy__fail(r, 504, "upstream did not answer in time");
}

void mg_proxy__up_error(void *owner, int err)
{
    mg_req *r = owner;
    mg_upconn *u = r->up;
    if (u && !r->got_bytes && !r->resp_started) {
        /* Nothing came back. A reused keep-alive connection that the backend
         * had closed is retried for any method; a fresh one only for
         * idempotent requests. */
        int safe = u->reused || r->idempotent;
        mg_proxy__retry_or_fail(r, !u->reused, safe, "connection lost before a response:", err);
        return;
    }
    MG_LOG(MG_LOG_WARN, r->w->id, r->conn_id, "upstream %s: %s", mg_req_target(r)->address,
           uv_strerror(err));
    mg_proxy__fail(r, 502, "upstream connection failed");
}

static void up_drained(void *owner)
{
    mg_req *r = owner;
    if ((!r->body_done || r->tunnel) && mg_proxy__live(r)) r->src->resume(r);
}

const mg_up_events mg_proxy__up_events = {
    .connected = up_connected,
    .data = mg_proxy__up_data,
    .eof = mg_proxy__up_eof,
    .error = mg_proxy__up_error,
    .drained = up_drained,
    .timeout = up_connect_timeout,
};
