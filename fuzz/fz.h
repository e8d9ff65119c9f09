/* What the harnesses share: one worker without a thread or sockets, and an
 * in-memory stream that records what the gateway writes to a client. The
 * gateway's own code (conn.c, conn_response.c, proxy_head.c, ...) runs on
 * top of them unchanged; only the socket under mg_stream is replaced. */
#ifndef MG_FZ_H
#define MG_FZ_H

#include "conn.h"
#include "worker.h"

#include <stddef.h>
#include <stdint.h>

/* The worker, its config and a snapshot with one service and one target
 * (127.0.0.1:9), set up once per process by fz_init. */
extern mg_worker fz_worker;
extern mg_config fz_cfg;
extern mg_snapshot fz_snap;

void fz_init(void);

/* A client: the bytes the gateway wrote to it, and whether it was closed. */
typedef struct fz_client {
    mg_conn *c;
    mg_buf out;
    int closed; /* mg_stream_close or shutdown was called */
    int expire; /* the client goes quiet before closing: its timeouts fire */
} fz_client;

/* Opens a connection served by h on an in-memory stream. */
void fz_client_open(fz_client *fc, const mg_conn_handler *h);

/* Delivers data as the peer's reads, in pieces whose sizes come from seed
 * (0: one read), while the connection reads; after each read, after_read
 * (may be NULL) runs what the event loop would run next. Then, with
 * fc->expire, every timeout of the connection fires (mg_conn_expire);
 * then the peer half-closes and the connection is closed and freed. */
void fz_client_run(fz_client *fc, const uint8_t *data, size_t n, unsigned seed,
                   void (*after_read)(void));

/* Checks that bytes are a well-formed sequence of HTTP/1.1 responses, as
 * llhttp reads them: head_request[i] says response i (interim ones not
 * counted) answers HEAD, for nheads responses (later ones: not HEAD).
 * truncated: the sender closed mid-response, so the end may be missing.
 * Aborts (a finding) otherwise. Stops at a 101 (a tunnel follows). */
void fz_check_responses(const char *p, size_t n, const uint8_t *head_request, size_t nheads,
                        int truncated);

#endif
