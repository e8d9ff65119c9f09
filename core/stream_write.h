/* Writes to libuv streams without a copy in the common case: try the write
 * at once, and copy only what the socket did not take into a queued write. */
#ifndef MG_STREAM_WRITE_H
#define MG_STREAM_WRITE_H

#include <uv.h>

typedef void (*mg_write_cb)(void *owner, int status);

/* Writes bufs to s. Returns 0 when everything was written, 1 when a part was
 * queued (cb(owner, status) runs when it is written; not on cancel), or a
 * negative libuv error. The caller keeps ownership of bufs. */
int mg_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, mg_write_cb cb, void *owner);

#endif
