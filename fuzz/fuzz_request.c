/* Client bytes through the gateway's request side: conn.c's framing
 * (llhttp under the strict check of h1check.c, pipelining, chunked and
 * Content-Length bodies, limits), proxy_head.c's checks of the target and
 * Host (uri.c) and its serialisation of the head for the backend, and
 * conn_response.c's answers. Only the socket is replaced (fz.c) and the
 * backend: the handler answers each request itself, at its head or after
 * its body, as the proxy does for a local answer or a backend's response.
 *
 * Input: byte 0 says whether requests with a body are answered at their
 * head (odd) or after their body, and how the bytes are split into reads
 * (below 0x40, as one read: '0' and '1' in the seeds; else in pieces of
 * 1 to 64 bytes: 'a', 'b'), and with bit 1 set ('b', '3') that the
 * client then goes quiet until its timeouts fire; the rest is what the
 * client sends. Findings: sanitizer reports, a head
 * forwarded to the backend that a strict parser reads differently, a body whose length differs from
 * its framing, or a malformed response stream. */
#include "fz.h"
#include "h1check.h"
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ANSWERS 256

static int answer_at_head;
static mg_req *pending; /* a request whose body ended: answered after the read */
static uint64_t body_bytes;
static uint8_t heads[MAX_ANSWERS];
static size_t nanswers;

static void answer(mg_req *r, int status, const char *text, int close)
{
    if (nanswers < MAX_ANSWERS) heads[nanswers] = r->head_request;
    nanswers++;
    mg_proxy__respond_text(r, status, text, close);
}

/* What a backend would read: one head, strictly framed, ending where
 * llhttp says it ends. */
static int fwd_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

static void check_forwarded(const mg_req *r)
{
    const mg_buf *b = &r->uhead;
    mg_h1check chk;
    mg_h1check_head(&chk, 0);
    const char *why = NULL;
    long k = mg_h1check_feed(&chk, b->p, b->len, NULL, &why);
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_headers_complete = fwd_headers_complete;
    llhttp_t ps;
    llhttp_init(&ps, HTTP_REQUEST, &st);
    llhttp_errno_t e = llhttp_execute(&ps, b->p, b->len);
    size_t used = e == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&ps) - b->p) : 0;
    if (k != (long)b->len || !mg_h1check_done(&chk) || e != HPE_PAUSED || used != b->len ||
        ps.method != r->method) {
        fprintf(stderr, "fuzz: the head for the backend reads differently (%s, %s):\n%.*s\n",
                why ? why : "-", llhttp_errno_name(e), (int)b->len, b->p);
        abort();
    }
    int chunked = (ps.flags & F_CHUNKED) != 0, has_cl = (ps.flags & F_CONTENT_LENGTH) != 0;
    int64_t len = chunked ? MG_BODY_CHUNKED : has_cl ? (int64_t)ps.content_length : MG_BODY_NONE;
    if (len != r->body_len) {
        fprintf(stderr, "fuzz: the backend would read a body of %lld, the client sent %lld\n",
                (long long)len, (long long)r->body_len);
        abort();
    }
}

static void on_head(mg_req *r)
{
    const char *why = NULL;
    int bad = mg_proxy__check_head(r, &fz_cfg, &why);
    if (bad) {
        answer(r, bad, why, 1);
        return;
    }
    r->head_request = r->method == HTTP_HEAD;
    /* the head goes to the backend as proxy.c sends it */
    r->snap = &fz_snap;
    mg_snapshot_ref(r->snap);
    r->svc = 0;
    mg_proxy__upstream_head(r);
    r->svc = -1;
    check_forwarded(r);
    body_bytes = 0;
    if (!r->has_body || answer_at_head) {
        answer(r, 200, "ok\n", r->upgrade);
        return;
    }
    r->src->resume(r); /* the body, then body_end */
}

static void on_body(mg_req *r, const char *p, size_t n)
{
    body_bytes += n;
}

static void on_body_end(mg_req *r)
{
    if (r->body_len >= 0 && body_bytes != (uint64_t)r->body_len) {
        fprintf(stderr, "fuzz: body of %llu bytes for Content-Length %lld\n",
                (unsigned long long)body_bytes, (long long)r->body_len);
        abort();
    }
    if (r->resp_started) return; /* answered at its head already */
    mg_req_hold(r);
    pending = r; /* the backend answers later, never inside the parser */
}

static void after_read(void)
{
    mg_req *r = pending;
    if (!r) return;
    pending = NULL;
    if (mg_proxy__live(r) && !r->resp_started) answer(r, 200, "ok\n", 0);
    mg_req_release(r);
}

static void on_drain(mg_req *r) {}

static void on_error(mg_req *r, int status, const char *why)
{
    if (r->resp_started) {
        r->src->abort(r);
        return;
    }
    answer(r, status, why, 1);
}

static void on_tunnel_data(mg_req *r, const char *p, size_t n) {}

static void on_gone(mg_req *r) {}

static const mg_conn_handler handler = {
    .head = on_head,
    .body = on_body,
    .body_end = on_body_end,
    .drain = on_drain,
    .error = on_error,
    .tunnel_data = on_tunnel_data,
    .gone = on_gone,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    answer_at_head = data[0] & 1;
    nanswers = 0;
    fz_client fc;
    fz_client_open(&fc, &handler);
    fc.expire = (data[0] & 2) != 0;
    fz_client_run(&fc, data + 1, size - 1, data[0] < 0x40 ? 0 : data[0], after_read);
    if (nanswers <= MAX_ANSWERS) fz_check_responses(fc.out.p, fc.out.len, heads, nanswers, 0);
    if (getenv("FZ_DEBUG")) fprintf(stderr, "%.*s\n", (int)fc.out.len, fc.out.p);
    mg_buf_free(&fc.out);
    return 0;
}
