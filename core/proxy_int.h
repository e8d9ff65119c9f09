/* Internal to the proxy's files (proxy*.c). */
#ifndef MG_PROXY_INT_H
#define MG_PROXY_INT_H

#include "log.h"
#include "lua_bridge.h"
#include "proxy.h"
#include "stats.h"
#include "upstream.h"
#include "worker.h"

#include <uv.h>

/* Whether the source still listens: a request whose client went away (or
 * whose exchange ended) answers nothing more. */
static inline int mg_proxy__live(const mg_req *r)
{
    return r->src != NULL;
}

/* Whether the request can still go to a target (again): no response byte
 * went to the client, and whatever body went upstream is kept in
 * r->replay (upstream.replay_body). */
static inline int mg_proxy__can_go_again(const mg_req *r)
{
    return !r->resp_started && (!r->body_started || !r->replay_lost);
}

/* proxy.c */
/* Answers r without a backend: headers are "Name: value\r\n" lines. */
void mg_proxy__respond(mg_req *r, int status, const char *headers, size_t hlen, const char *body,
                       size_t blen, int close);
void mg_proxy__respond_text(mg_req *r, int status, const char *text, int close);
/* The response is complete: log it, then end the exchange (r is gone). */
void mg_proxy__finish(mg_req *r);
/* Sends bytes upstream, pausing the client on back-pressure. */
void mg_proxy__up_send(mg_req *r, const uv_buf_t *bufs, unsigned n);

/* proxy_try.c */
extern const mg_up_events mg_proxy__up_events;
void mg_proxy__try(mg_req *r);
/* Ends a request that got no usable response: an answer with status, or
 * closing the client when a response is half sent. */
void mg_proxy__fail(mg_req *r, int status, const char *why);
/* Lets go of the upstream connection (back to the pool when reusable). */
void mg_proxy__detach(mg_req *r, int reusable);
/* Tells passive health how a try went (kind: MG_FAIL_*, stats.h). */
void mg_proxy__passive(mg_req *r, int kind, int status, const char *what);
void mg_proxy__up_error(void *owner, int err);
void mg_proxy__up_timeout_response(mg_req *r);
/* After a failure with nothing of the response received: another try, or
 * an error. connect_failed: the connect was refused or timed out. */
void mg_proxy__retry_or_fail(mg_req *r, int connect_failed, int safe, const char *what, int err);
/* The request never reached the backend (its kernel did not acknowledge
 * it): try again, on any target, without charging a retry. */
void mg_proxy__retry_unsent(mg_req *r, const char *what);

/* proxy_h2.c: a try on a target that speaks HTTP/2 (h2c, h2) */
void mg_proxy__h2_try(mg_req *r, const mg_service *s, const mg_target *t);
void mg_proxy__h2_body(mg_req *r, const char *p, size_t n);
void mg_proxy__h2_body_end(mg_req *r);
void mg_proxy__h2_drained(mg_req *r); /* the client took response bytes */
void mg_proxy__h2_detach(mg_req *r);

/* proxy_hold.c */
/* Puts r in the worker's queue until a target is ready (why: for the log);
 * answers 503 at once when the queue is full. */
void mg_proxy__hold(mg_req *r, const char *why);
/* Takes r out of the queue (the client went away). */
void mg_proxy__unhold(mg_req *r);
/* Waits delay_ms in the held queue, then tries again (a retry's backoff). */
void mg_proxy__backoff(mg_req *r, uint64_t delay_ms);
void mg_proxy__held_expire(mg_worker *w, uint64_t now);

/* proxy_wait.c */
/* After the on_request hooks (at once, or when their wait ended): a 500
 * when they failed, their answer, or the upstream. */
void mg_proxy__after_on_request(mg_req *r, int failed);

/* proxy_stall.c */
void mg_proxy__stall_tick(mg_worker *w, uint64_t now_loop);

/* proxy_response.c */
void mg_proxy__response_start(mg_req *r); /* a try begins: a fresh parser */
void mg_proxy__up_data(void *owner, const char *p, size_t n);
void mg_proxy__up_eof(void *owner);
/* The on_response hooks ended their wait: the head goes on (or the
 * answer they made replaces it), then the bytes read past it. */
void mg_proxy__response_resume(mg_req *r);
/* Sends the answer a hook made in place of the backend's (res:replace). */
void mg_proxy__respond_replaced(mg_req *r);

/* proxy_head.c */
/* Validates the target and Host and rewrites the target (origin-form,
 * normalised path). Returns 0 or a status with *why. */
int mg_proxy__check_head(mg_req *r, const mg_config *cfg, const char **why);
void mg_proxy__split_url(const mg_req *r, mg_str *path, mg_str *query, mg_str *authority);
void mg_proxy__upstream_head(mg_req *r);
/* Removes hop-by-hop entries (and those Connection names) from r->out,
 * from index `from`; keep_upgrade keeps Upgrade (a 101). */
void mg_proxy__strip_hop(mg_headers *h, uint32_t from, int keep_upgrade);

#endif
