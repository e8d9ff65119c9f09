/* See stream_write.h. */
#include "stream_write.h"

#include <stdlib.h>
#include <string.h>

typedef struct mg_wreq {
    uv_write_t req;
    mg_write_cb cb;
    void *owner;
    char data[];
} mg_wreq;

static void on_written(uv_write_t *req, int status)
{
    mg_wreq *w = (mg_wreq *)req;
    /* On UV_ECANCELED the stream is closing and the owner may be mid-teardown. */
    if (status != UV_ECANCELED && w->cb) w->cb(w->owner, status);
    free(w);
}

int mg_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, mg_write_cb cb, void *owner)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0) return 0;
    size_t done = 0;
    if (s->write_queue_size == 0) {
        int r = uv_try_write(s, bufs, n);
        if (r < 0 && r != UV_EAGAIN) return r;
        if (r > 0) done = (size_t)r;
        if (done == total) return 0;
    }
    /* Ownership: the queued copy belongs to the write request and is freed
     * in on_written. */
    mg_wreq *w = malloc(sizeof(*w) + (total - done));
    if (!w) return UV_ENOMEM;
    w->cb = cb;
    w->owner = owner;
    size_t off = 0, skip = done;
    for (unsigned i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        const char *p = bufs[i].base;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        p += skip;
        len -= skip;
        skip = 0;
        memcpy(w->data + off, p, len);
        off += len;
    }
    uv_buf_t b = uv_buf_init(w->data, (unsigned)off);
    int r = uv_write(&w->req, s, &b, 1, on_written);
    if (r) {
        free(w);
        return r;
    }
    return 1;
}
