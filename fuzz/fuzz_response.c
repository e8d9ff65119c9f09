/* Backend bytes through the gateway's response side: proxy_response.c
 * (llhttp under h1check.c's strict check, bare-LF line ends re-serialised
 * with CRLF, 1xx interim responses, 101, chunked, Content-Length and
 * close-delimited bodies, trailers) and conn_response.c, which writes the
 * response to the client. A client request (fz.c's in-memory stream) goes
 * through the real request side and the proxy's handler; only the
 * connection to the backend is missing: the fuzzer's bytes arrive as that
 * connection's reads (mg_proxy__up_data), then it closes (up_eof).
 *
 * Input: byte 0 picks the request (its low two bits: GET, HEAD, a
 * WebSocket upgrade, a POST with a body: '0' to '3' in the seeds) and how
 * the response is split into reads (below 0x40 as one read, else in
 * pieces of 1 to 64 bytes: 'p' to 's'); the rest is what the backend
 * answers. Findings: sanitizer reports, or a response stream
 * to the client that llhttp cannot read. */
#include "fz.h"
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const requests[] = {
    "GET /a HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    "HEAD /a HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    ("GET /ws HTTP/1.1\r\nHost: fuzz\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
    "POST /p HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
};

static mg_conn_handler handler; /* the proxy's, with our head */
static mg_req *pending;         /* the request waiting for its response */
static const uint8_t *resp;
static size_t resp_len;
static unsigned split_seed;
static int resp_done;

/* What proxy.c's on_head does for a routed request, up to sending the
 * head to the backend (mg_proxy__try is what the fuzzer replaces). */
static void on_head(mg_req *r)
{
    const char *why = NULL;
    if (mg_proxy__check_head(r, &fz_cfg, &why)) abort(); /* our own requests are valid */
    r->head_request = r->method == HTTP_HEAD;
    r->idempotent = r->method == HTTP_GET || r->method == HTTP_HEAD;
    r->snap = &fz_snap;
    mg_snapshot_ref(r->snap);
    r->route = 0;
    r->svc = 0;
    r->target = 0;
    mg_proxy__upstream_head(r);
    r->try_start_ns = uv_hrtime();
    mg_proxy__response_start(r);
    if (r->has_body) r->src->resume(r);
    mg_req_hold(r);
    pending = r;
}

/* The backend's reads, after the client's read (never inside its parser). */
static void after_read(void)
{
    mg_req *r = pending;
    if (!r) return;
    pending = NULL;
    size_t off = 0;
    unsigned x = split_seed | 1;
    while (off < resp_len && mg_proxy__live(r)) {
        size_t k = resp_len - off;
        if (split_seed) {
            x = x * 1103515245u + 12345u;
            size_t piece = 1 + (x >> 16) % 64;
            if (piece < k) k = piece;
        }
        mg_proxy__up_data(r, (const char *)resp + off, k);
        off += k;
    }
    if (mg_proxy__live(r)) mg_proxy__up_eof(r); /* the backend closes */
    resp_done = r->resp_done && !r->tunnel;
    mg_req_release(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    fz_init();
    if (!handler.head) {
        handler = mg_proxy_handler;
        handler.head = on_head;
    }
    int kind = data[0] & 3;
    split_seed = data[0] < 0x40 ? 0 : data[0];
    resp = data + 1;
    resp_len = size - 1;
    resp_done = 0;
    const char *req = requests[kind];
    fz_client fc;
    fz_client_open(&fc, &handler);
    fz_client_run(&fc, (const uint8_t *)req, strlen(req), 0, after_read);
    uint8_t head = kind == 1;
    if (getenv("FZ_DEBUG")) fprintf(stderr, "%.*s\n", (int)fc.out.len, fc.out.p);
    fz_check_responses(fc.out.p, fc.out.len, &head, 1, !resp_done);
    mg_buf_free(&fc.out);
    return 0;
}
