/* Internal to h2_conn.c (the session: I/O, frames, limits) and
 * h2_stream.c (a stream as a request: its head, its bodies both ways and
 * the mg_req_src table). */
#ifndef MG_H2_INT_H
#define MG_H2_INT_H

#include "conn.h"
#include "h2.h"

#include <nghttp2/nghttp2.h>

/* Response bytes buffered per stream before the proxy is told to wait
 * (src->body returns 1 and the upstream stops being read), and for the
 * whole connection: a client that never opens its windows costs at most
 * this much, whatever the upstream sends. */
#define MG_H2_STREAM_OUT_HIGH (64 * 1024)
#define MG_H2_CONN_OUT_HIGH   (1024 * 1024)
/* Our receive windows: a stream's request body waiting for the upstream
 * is at most MG_H2_STREAM_WINDOW; all of them at most MG_H2_CONN_WINDOW.
 * Windows reopen only as the upstream side takes the bytes. */
#define MG_H2_STREAM_WINDOW (256 * 1024)
#define MG_H2_CONN_WINDOW   (1024 * 1024)

typedef struct mg_h2 mg_h2;
typedef struct mg_h2s mg_h2s;

/* A stream, as long as nghttp2 knows it and a little after. */
struct mg_h2s {
    mg_h2 *h;
    int32_t id;
    mg_req *req;         /* the exchange; NULL once it ended or the client left */
    mg_h2s *prev, *next; /* the connection's streams */
    mg_h2s *ready_next;  /* the connection's ready list (h->ready) */
    uint8_t on_ready;
    uint8_t head_done;  /* the request head is complete */
    uint8_t handed;     /* ... and went up (handler's head) */
    uint8_t refused;    /* a head we answer ourselves (status in refuse) */
    uint8_t in_end;     /* the client ended its side */
    uint8_t body_ended; /* ... and the handler heard of it */
    uint8_t flowing;    /* the handler asked for the body (src->resume) */
    uint8_t paused;     /* ... and now asks to wait */
    uint8_t pumping;
    uint8_t in_trailers;
    uint8_t pseudo_done; /* method and path are in req->in */
    uint8_t submitted;   /* the response head was submitted */
    uint8_t head_held;   /* src_head came: submitted with the first body bytes or the end */
    uint16_t head_status;
    int64_t head_length;
    uint8_t out_end;    /* the response is complete (src->end) */
    uint8_t deferred;   /* the data source waits for bytes */
    uint8_t want_drain; /* src->body returned 1: a drain event is due */
    uint8_t closed;     /* nghttp2 closed the stream */
    uint16_t refuse;    /* status for a head refused while parsing */
    const char *refuse_why;
    uint32_t head_bytes; /* size of the request head, for max_header_size */
    mg_buf pseudo;       /* :method, :path, :authority, :scheme values */
    uint32_t m_len, p_off, p_len, a_off, a_len, s_len;
    uint8_t has_m, has_p, has_a;
    mg_buf cookie; /* cookie crumbs joined with "; " (RFC 9113 8.2.3) */
    mg_buf in;     /* request body bytes the handler has not taken */
    size_t in_off;
    mg_buf out; /* response body bytes not framed yet */
    size_t out_off;
    mg_buf trailers; /* response trailers: name\0value\0 pairs */
    uint32_t ntrailers;
};

struct mg_h2 {
    mg_conn *c;
    nghttp2_session *sess;
    mg_h2s *streams;
    mg_h2s *ready;     /* streams with something for the handler */
    int nstreams;      /* streams with a request (open or finishing) */
    size_t out_total;  /* response bytes buffered in every stream */
    mg_buf wbuf;       /* frames batched for one write */
    mg_buf nv;         /* names lowercased for a head being submitted */
    int depth;         /* entries on the stack (reads, src calls) */
    uint8_t running;   /* h2_run is looping */
    uint8_t dead;      /* the connection is closing: nothing more is sent */
    uint8_t goaway;    /* a graceful GOAWAY was sent */
    uint8_t read_held; /* reading stopped: the client does not read */
    uint8_t pending;   /* on the worker's list of sessions to frame (w->h2_pending) */
    mg_h2 *pend_prev, *pend_next;
    /* floods: token buckets refilled with time (h2_conn.c) */
    double resets, control;
    uint64_t bucket_ms;
};

/* h2_conn.c */
/* Leaves an entry point: runs the ready streams and writes what is due
 * once the outermost entry returns. */
void mg_h2__enter(mg_h2 *h);
void mg_h2__leave(mg_h2 *h);
/* Frames what is due at the end of this loop turn (mg_h2_run_pending). */
void mg_h2__later(mg_h2 *h);
/* Puts s on the ready list (the handler is told outside nghttp2). */
void mg_h2__ready(mg_h2s *s);
/* Ends the session at once with a GOAWAY carrying code. */
void mg_h2__fatal(mg_h2 *h, uint32_t code);

/* Whether s buffers enough response bytes for the proxy to wait. */
static inline int mg_h2__out_full(const mg_h2s *s)
{
    return s->out.len - s->out_off > MG_H2_STREAM_OUT_HIGH || s->h->out_total > MG_H2_CONN_OUT_HIGH;
}

/* h2_response.c: the answers */
extern const mg_req_src mg_h2__src;

/* h2_stream.c */
/* Session callbacks about streams and their heads. */
int mg_h2__on_begin_headers(nghttp2_session *sess, const nghttp2_frame *f, void *user);
int mg_h2__on_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user);
/* A request HEADERS frame ended (END_HEADERS): the head is complete. */
void mg_h2__head_end(mg_h2s *s, int end_stream);
/* DATA for a stream; the client ended its side. */
void mg_h2__data(mg_h2s *s, const uint8_t *p, size_t n);
void mg_h2__in_end(mg_h2s *s);
/* Tells the handler what is due for s (outside nghttp2); may free s
 * when nghttp2 closed it and it holds nothing. */
void mg_h2__dispatch(mg_h2s *s);
/* Lets go of a stream's request; tell: the handler hears it is gone. */
void mg_h2__drop_req(mg_h2s *s, int tell);
void mg_h2__stream_free(mg_h2s *s);
/* The data source of a response body. */
ssize_t mg_h2__read_body(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user);

#endif
