/* See fz.h. */
#include "fz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mg_worker fz_worker;
mg_config fz_cfg;
mg_snapshot fz_snap;

static mg_service fz_service;
static mg_target fz_target;

void fz_init(void)
{
    static int done;
    if (done) return;
    done = 1;
    mg_log_level = MG_LOG_ERROR + 1; /* quiet: the harness checks outcomes */
    fz_cfg.max_header_size = 32768;
    fz_cfg.max_headers = 100;
    fz_cfg.normalize_paths = 1;
    fz_cfg.access_log = MG_ACCESS_LOG_OFF;
    fz_target.id = fz_target.address = "127.0.0.1:9";
    fz_target.host = "127.0.0.1";
    fz_target.port = 9;
    fz_service.name = "fuzz";
    fz_service.targets = &fz_target;
    fz_service.ntargets = 1;
    fz_snap.services = &fz_service;
    fz_snap.nservices = 1;
    atomic_init(&fz_snap.refs, 1 << 30); /* never freed */
    mg_worker *w = &fz_worker;
    uv_loop_init(&w->loop);
    w->cfg = &fz_cfg;
    w->snap = &fz_snap;
    mg_tq *qs[] = {&w->q_client_idle, &w->q_client_header, &w->q_client_io, &w->q_up_connect,
                   &w->q_up_response, &w->q_up_idle,       &w->q_held,      &w->q_probe};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        mg_tq_init(qs[i], 10000);
}

/* ---- the in-memory stream ------------------------------------------- */

static fz_client *of(mg_stream *s)
{
    return (fz_client *)s->tcp.data;
}

static int ms_read_start(mg_stream *s)
{
    s->reading = 1;
    return 0;
}

static void ms_read_stop(mg_stream *s)
{
    s->reading = 0;
}

static int ms_write(mg_stream *s, const uv_buf_t *bufs, unsigned n)
{
    if (s->closing) return UV_EPIPE;
    for (unsigned i = 0; i < n; i++)
        if (mg_buf_append(&of(s)->out, bufs[i].base, bufs[i].len)) return UV_ENOMEM;
    return 0;
}

static size_t ms_queued(const mg_stream *s)
{
    return 0;
}

/* The close event comes later, from fz_client_run, as libuv's does from
 * the loop: the owner may still be using itself when it asks to close. */
static void ms_close(mg_stream *s)
{
    if (s->closing) return;
    s->closing = 1;
    s->reading = 0;
    of(s)->closed = 1;
}

static const mg_stream_ops mem_ops = {
    .read_start = ms_read_start,
    .read_stop = ms_read_stop,
    .write = ms_write,
    .queued = ms_queued,
    .shutdown = ms_close, /* writes are never queued: close at once */
    .close = ms_close,
};

static void mem_init(mg_stream *s, const mg_stream_events *ev, void *arg)
{
    memset(s, 0, sizeof(*s));
    s->ops = &mem_ops;
    s->ev = ev;
    s->tcp.data = arg;
}

void fz_client_open(fz_client *fc, const mg_conn_handler *h)
{
    fz_init();
    memset(fc, 0, sizeof(*fc));
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = htonl(0x7f000001);
    fc->c = mg_conn_serve(&fz_worker, h, (struct sockaddr *)&peer, mem_init, fc);
    if (!fc->c) abort();
}

void fz_client_run(fz_client *fc, const uint8_t *data, size_t n, unsigned seed,
                   void (*after_read)(void))
{
    mg_stream *s = &fc->c->s;
    size_t off = 0;
    unsigned x = seed | 1;
    while (off < n && !s->closing && s->reading) {
        size_t k = n - off;
        if (seed) {
            x = x * 1103515245u + 12345u;
            size_t piece = 1 + (x >> 16) % 64;
            if (piece < k) k = piece;
        }
        s->ev->read(s, (const char *)data + off, k);
        off += k;
        if (after_read) after_read();
    }
    if (fc->expire && !s->closing) {
        mg_conn_expire(&fz_worker, uv_now(&fz_worker.loop) + 24 * 3600 * 1000);
        if (after_read) after_read();
    }
    if (!s->closing) s->ev->eof(s);
    if (after_read) after_read();
    if (!s->closing) mg_conn_close(fc->c);
    s->ev->close(s); /* frees fc->c */
    fc->c = NULL;
}

/* ---- checking what went to the client --------------------------------- */

typedef struct resp_check {
    const uint8_t *heads;
    size_t nheads, nfinal;
    int upgraded;
} resp_check;

static int rc_headers_complete(llhttp_t *p)
{
    resp_check *k = p->data;
    int st = p->status_code;
    if (st == 101) {
        k->upgraded = 1;
        return HPE_PAUSED;
    }
    if (st >= 100 && st < 200) return 1;
    size_t i = k->nfinal++;
    /* 1: no body (RFC 9110 6.4.1), whatever the framing headers say */
    return st == 204 || st == 304 || (i < k->nheads && k->heads[i]) ? 1 : 0;
}

void fz_check_responses(const char *p, size_t n, const uint8_t *head_request, size_t nheads,
                        int truncated)
{
    if (!n) return; /* nothing was answered (a client that closed mid-head) */
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_headers_complete = rc_headers_complete;
    llhttp_t ps;
    llhttp_init(&ps, HTTP_RESPONSE, &st);
    resp_check k = {.heads = head_request, .nheads = nheads};
    ps.data = &k;
    llhttp_errno_t e = llhttp_execute(&ps, p, n);
    if (e == HPE_PAUSED && k.upgraded) return;
    if (e == HPE_OK && !truncated) e = llhttp_finish(&ps);
    if (e != HPE_OK) {
        fprintf(stderr, "fuzz: the gateway wrote a malformed response stream (%s at %ld):\n%.*s\n",
                llhttp_get_error_reason(&ps),
                (long)(llhttp_get_error_pos(&ps) ? llhttp_get_error_pos(&ps) - p : -1),
                (int)(n < 4096 ? n : 4096), p);
        abort();
    }
}
