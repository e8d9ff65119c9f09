/* Requests whose middleware chain waits on I/O (mg.http.request, mg.sleep
 * in a hook of an `async` middleware: forward_auth, errors).
 *
 * The runtime runs such a chain as a coroutine. When it yields, the runtime
 * asks for a slot (mg_ffi_hook_wait): the request is held (one more
 * reference), and nothing of it moves meanwhile: its body waits in the
 * source (the parser is blocked at the head, an HTTP/2 stream is not
 * flowing), a response waits with the upstream read stopped. Each resume
 * names the slot again (mg_ffi_hook_resume) so the request functions see
 * it. When the chain ends, mg_ffi_hook_done queues the request, and the
 * next loop turn (mg_proxy_run_waits, from the worker's prepare handle,
 * never from inside Lua) goes on exactly where the synchronous path would
 * have: an answer, the upstream, or the response head. A request whose
 * client went away meanwhile is only cleaned up then: its on_log runs, its
 * hold is released.
 *
 * Slots are checked against the request id, so a late resume (a lookup
 * that ended after the worker stopped) finds nothing and does nothing. */
#include "ffi.h"
#include "lua_ffi.h"
#include "proxy_int.h"

#include <stdlib.h>

static mg_worker *self(void)
{
    return mg_lua_self ? mg_container_of(mg_lua_self, mg_worker, lua) : NULL;
}

static int grow(mg_worker *w)
{
    int cap = w->nwait_cap ? w->nwait_cap * 2 : 64;
    /* Ownership: the worker's, freed by mg_proxy_waits_free. */
    mg_req **nw = realloc(w->waits, (size_t)cap * sizeof(*nw));
    if (!nw) return -1;
    w->waits = nw;
    int *nf = realloc(w->wait_free, (size_t)cap * sizeof(*nf));
    if (!nf) return -1;
    w->wait_free = nf;
    for (int i = cap - 1; i >= w->nwait_cap; i--) {
        w->waits[i] = NULL;
        w->wait_free[w->nwait_free++] = i;
    }
    w->nwait_cap = cap;
    return 0;
}

/* The request in slot, if it is still the one with that id. */
static mg_req *in_slot(mg_worker *w, int slot, double id)
{
    if (!w || slot < 0 || slot >= w->nwait_cap) return NULL;
    mg_req *r = w->waits[slot];
    return r && (double)r->id == id ? r : NULL;
}

int mg_ffi_hook_wait(void)
{
    mg_req *r = mg_ffi_current;
    mg_worker *w = self();
    if (!r || !w) return MG_FFI_NO_REQUEST;
    if (r->hook_wait) return MG_FFI_WRONG_PHASE;
    if (!w->nwait_free && grow(w)) return MG_FFI_NO_MEMORY;
    int slot = w->wait_free[--w->nwait_free];
    w->waits[slot] = r;
    r->wait_slot = slot;
    r->hook_wait = r->in_resp_hook ? 2 : 1;
    r->hook_failed = 0;
    mg_req_hold(r);
    w->nwaiting++;
    return slot;
}

int mg_ffi_hook_resume(int slot, double id)
{
    mg_req *r = in_slot(self(), slot, id);
    if (!r) return MG_FFI_DECLINED;
    mg_ffi_current = r;
    return MG_FFI_OK;
}

void mg_ffi_hook_done(int slot, double id, int flags, int failed)
{
    mg_worker *w = self();
    mg_req *r = in_slot(w, slot, id);
    if (!r) return;
    w->waits[slot] = NULL;
    w->wait_free[w->nwait_free++] = slot;
    if (flags >= 0) r->hook_flags = (uint8_t)flags;
    r->hook_failed = failed != 0;
    r->wait_next = NULL;
    if (w->wait_ready_tail)
        w->wait_ready_tail->wait_next = r;
    else
        w->wait_ready = r;
    w->wait_ready_tail = r;
}

void mg_proxy__after_on_request(mg_req *r, int failed)
{
    if (failed) {
        mg_proxy__respond_text(r, 500, "Internal Server Error: a plugin failed\n", r->has_body);
        return;
    }
    if (r->responded) {
        mg_proxy__respond(r, r->local_status, r->local.p, r->local_hlen, r->local.p + r->local_hlen,
                          r->local.len - r->local_hlen, r->has_body);
        return;
    }
    mg_proxy__upstream_head(r);
    mg_proxy__try(r);
}

void mg_proxy_run_waits(mg_worker *w)
{
    while (w->wait_ready) {
        mg_req *r = w->wait_ready;
        w->wait_ready = r->wait_next;
        if (!w->wait_ready) w->wait_ready_tail = NULL;
        r->wait_next = NULL;
        w->nwaiting--;
        int phase = r->hook_wait;
        r->hook_wait = 0;
        if (!mg_proxy__live(r)) {
            /* the client went away while the chain waited: it was logged
             * then; the runtime forgets the request now */
            if (r->hook_flags & 2) mg_lua_on_log(&w->lua, r);
        } else if (phase == 1) {
            mg_proxy__after_on_request(r, r->hook_failed);
        } else {
            r->in_resp_hook = 0;
            mg_proxy__response_resume(r);
        }
        mg_req_release(r);
    }
}

void mg_proxy_waits_free(mg_worker *w)
{
    /* the worker stopped: the waits were cancelled (mg_io_cancel_all), no
     * chain will end; let go of the requests they held */
    for (int i = 0; i < w->nwait_cap; i++) {
        mg_req *r = w->waits[i];
        if (!r) continue;
        w->waits[i] = NULL;
        r->hook_wait = 0;
        mg_req_release(r);
    }
    mg_proxy_run_waits(w);
    free(w->waits);
    free(w->wait_free);
    w->waits = NULL;
    w->wait_free = NULL;
    w->nwait_cap = w->nwait_free = w->nwaiting = 0;
}
