/* See request.h: allocation, recycling and deferred freeing of requests. */
#include "request.h"
#include "addr.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>

#define FREE_MAX   256   /* recycled requests kept per worker */
#define ARENA_KEEP 65536 /* bigger arenas are not worth keeping */

mg_req *mg_req_new(mg_worker *w)
{
    mg_req *r = w->req_free;
    if (r) {
        w->req_free = *(mg_req **)r;
        w->nreq_free--;
        /* keep the buffers' memory, clear everything else */
        mg_headers in = r->in, out = r->out;
        mg_buf uhead = r->uhead, ups = r->upstreams, local = r->local, extra = r->resp_extra;
        mg_buf fix = r->fix, wire = r->wire, replay = r->replay, filt = r->filt;
        mg_buf rest = r->resp_rest;
        memset(r, 0, sizeof(*r));
        r->in = in;
        r->out = out;
        r->uhead = uhead;
        r->upstreams = ups;
        r->local = local;
        r->resp_extra = extra;
        r->fix = fix;
        r->wire = wire;
        r->replay = replay;
        r->filt = filt;
        r->resp_rest = rest;
    } else {
        /* Ownership: the worker's, through its free list or mg_req_destroy. */
        r = calloc(1, sizeof(*r));
        if (!r) return NULL;
    }
    mg_headers_reset(&r->in);
    mg_headers_reset(&r->out);
    r->uhead.len = r->upstreams.len = r->local.len = r->resp_extra.len = 0;
    r->fix.len = r->wire.len = r->replay.len = r->filt.len = r->resp_rest.len = 0;
    r->w = w;
    r->holds = 1;
    r->route = -1;
    r->svc = -1;
    r->target = -1;
    r->body_len = MG_BODY_NONE;
    r->id = ++w->next_req_id;
    r->start_ns = uv_hrtime();
    return r;
}

void mg_req_destroy(mg_req *r)
{
    mg_headers_free(&r->in);
    mg_headers_free(&r->out);
    mg_buf_free(&r->uhead);
    mg_buf_free(&r->upstreams);
    mg_buf_free(&r->local);
    mg_buf_free(&r->resp_extra);
    mg_buf_free(&r->fix);
    mg_buf_free(&r->wire);
    mg_buf_free(&r->replay);
    mg_buf_free(&r->filt);
    mg_buf_free(&r->resp_rest);
    free(r);
}

void mg_req_release(mg_req *r)
{
    if (--r->holds) return;
    if (r->snap) mg_snapshot_unref(r->snap);
    r->snap = NULL;
    mg_worker *w = r->w;
    /* a body kept for replay is not worth keeping for the next request */
    if (r->replay.cap > 4096) mg_buf_free(&r->replay);
    if (w->nreq_free < FREE_MAX && r->in.arena.cap <= ARENA_KEEP &&
        r->out.arena.cap <= ARENA_KEEP && r->fix.cap <= ARENA_KEEP && r->replay.cap <= ARENA_KEEP &&
        r->filt.cap <= ARENA_KEEP && r->resp_rest.cap <= ARENA_KEEP) {
        *(mg_req **)r = w->req_free;
        w->req_free = r;
        w->nreq_free++;
        return;
    }
    mg_req_destroy(r);
}

int mg_req_client_ip(const mg_req *r, char *out, size_t len)
{
    if (r->client_ip && len) {
        size_t n = strlen(r->client_ip);
        if (n >= len) n = len - 1;
        memcpy(out, r->client_ip, n);
        out[n] = 0;
        return 0;
    }
    return mg_addr_ip(r->client, out, len);
}
