/* HTTP/1 framing on the client side: a connection accepted from a listener,
 * its request parser, limits and timeouts, keep-alive and pipelining, and
 * the serialisation of responses. It knows no routing, no Lua and no
 * logging: it hands requests up through the handler the worker registered,
 * and answers through the mg_req_src table it puts in each request.
 *
 * Lifetime: an mg_conn is allocated at accept and freed in its stream's
 * close event. It owns at most one request at a time (c->req), made when a
 * message starts and released when its exchange ends. */
#ifndef MG_CONN_H
#define MG_CONN_H

#include "h1check.h"
#include "request.h"
#include "stream.h"
#include "tq.h"

#include <llhttp.h>
#include <netinet/in.h>

typedef struct mg_conn mg_conn;

/* What the layer above is told. Each gets the request it is about. */
typedef struct mg_conn_handler {
    /* A request head was parsed and its framing checked; the parser waits
     * (the request body, or the next pipelined request) until the handler
     * answers or calls r->src->resume. */
    void (*head)(mg_req *r);
    void (*body)(mg_req *r, const char *p, size_t n); /* decoded body bytes */
    void (*body_end)(mg_req *r);                      /* trailers are in r->in */
    void (*drain)(mg_req *r);                         /* the client took what was queued */
    /* A malformed or too slow request: answer status (why: a static text
     * for the answer and the log). The connection closes afterwards. */
    void (*error)(mg_req *r, int status, const char *why);
    void (*tunnel_data)(mg_req *r, const char *p, size_t n);
    /* The client went away (or the connection was closed) before the
     * exchange ended: the request ends now. No r->src call is allowed. */
    void (*gone)(mg_req *r);
    /* The connection failed below HTTP (a TLS handshake: why says what),
     * with no request to tell; client: the peer's address. */
    void (*broken)(mg_worker *w, uint64_t conn_id, const struct sockaddr *client, const char *why);
} mg_conn_handler;

enum mg_conn_state {
    MG_C_IDLE = 0, /* waiting for a request (keep-alive) */
    MG_C_HEAD,     /* reading a request head */
    MG_C_WAIT,     /* head handed up, the handler decides */
    MG_C_BODY,     /* delivering the request body */
    MG_C_RESP,     /* request complete, the response goes out */
    MG_C_TUNNEL,   /* upgraded: raw bytes both ways */
    MG_C_H2,       /* HTTP/2: the session (c->h2) frames everything */
    MG_C_CLOSING
};

/* What parsing a message needs, held only while one is read: an idle
 * kept-alive connection holds none of it (recycled per worker). */
typedef struct mg_conn_parse {
    llhttp_t parser;
    mg_h1check check;       /* strict framing check of the head and a chunked body */
    uint16_t refuse_status; /* a parser callback refused the request: answer this */
    const char *refuse_why;
    struct mg_conn_parse *next; /* the worker's free list */
} mg_conn_parse;

struct mg_conn {
    mg_stream s;
    mg_conn_parse *ps; /* NULL between messages */
    mg_tq_node tq;
    mg_worker *w;
    const mg_conn_handler *h;
    mg_conn *prev, *next; /* the worker's connections */
    uint64_t id;
    mg_req *req;
    struct mg_h2 *h2; /* HTTP/2 (h2.h): set once, freed with the connection */
    char *pend;       /* client bytes read but not parsed yet */
    uint32_t pend_len, pend_cap;
    uint32_t nrequests;
    uint8_t state;
    uint8_t blocked;      /* parser paused: bytes go to pend */
    uint8_t block_reason; /* where it paused: at a head, or at a message's end */
    uint8_t paused;       /* the handler asked for no more body for now */
    uint8_t peer_eof;     /* the client half-closed */
    uint8_t close_after;  /* close once the current response is done */
    uint8_t keepalive;    /* the current request allows keep-alive */
    uint8_t pause_reason; /* why the parser paused */
    uint8_t driving, redrive;
    uint8_t head_held;    /* a response head waits in req->wire */
    uint8_t resp_chunked; /* the response is re-framed as chunked */
    uint8_t resp_raw;     /* the response body goes as is (HTTP/1.0, close-delimited) */
    uint8_t secure;       /* TLS */
    uint8_t listen;       /* the listener's index in cfg->listen */
    uint8_t h2_checked;   /* the framing was chosen (ALPN or the h2c preface) */
    char peer_ip[48];     /* the client's IP as text, formatted once at accept */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
};

/* Accepts a connection on listener `listen` (an index in cfg->listen) of
 * worker w, speaking TLS when the listener says so; h gets its requests. */
void mg_conn_accept(mg_worker *w, uv_stream_t *server, const mg_conn_handler *h, int listen);

/* Serves HTTP/1 on a stream that init sets up with the given events (an
 * in-memory stream in fuzz/fuzz_request.c; no TLS, listener 0), as if it
 * had been accepted from peer (may be NULL). Returns the connection, which
 * frees itself from its stream's close event, or NULL. */
mg_conn *mg_conn_serve(mg_worker *w, const mg_conn_handler *h, const struct sockaddr *peer,
                       void (*init)(mg_stream *s, const mg_stream_events *ev, void *arg),
                       void *arg);

/* Closes a connection now (a request on it gets the gone event), also one
 * that was closing gracefully (unwritten bytes are lost). */
void mg_conn_close(mg_conn *c);

/* Called by the worker's tick: closes connections whose wait expired. */
void mg_conn_expire(mg_worker *w, uint64_t now);

/* Frees the worker's recycled parser states (at exit). */
void mg_conn_free_parse_states(mg_worker *w);

/* A reload changed what listener `listen` speaks (HTTP/2, TLS, ALPN): its
 * HTTP/2 connections get GOAWAY, so clients reconnect to the new one. */
void mg_conn_listener_changed(mg_worker *w, int listen);

/* The worker stops: idle connections close now, busy ones after their
 * response (HTTP/2 ones get GOAWAY and finish their streams). */
void mg_conn_stop_all(mg_worker *w);

#endif
