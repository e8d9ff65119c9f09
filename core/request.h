/* A request and its exchange: the one object the proxy works on, whatever
 * framing it came from.
 *
 * Lifetime: a source (the client-side framing: an HTTP/1 connection, later
 * an HTTP/2 stream) makes a request with mg_req_new when a message starts,
 * fills its head, hands it up, and answers through the function table
 * r->src; it lets go with mg_req_release once the exchange ended (after
 * `end`) or the client went away. The proxy may hold a request across a
 * call that can end it (mg_req_hold): then the last release frees it, and
 * an orphaned request (r->src == NULL) must not answer anything. Requests
 * are recycled per worker with their arenas. */
#ifndef MG_REQUEST_H
#define MG_REQUEST_H

#include "h1check.h"
#include "headers.h"
#include "snapshot.h"
#include "tq.h"

#include <llhttp.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct mg_req mg_req;
typedef struct mg_worker mg_worker;
typedef struct mg_upconn mg_upconn;

/* r->body_len when no Content-Length was given: a body of unknown length
 * (chunked), or none at all (no framing header). */
enum { MG_BODY_CHUNKED = -1, MG_BODY_NONE = -2 };

/* Flags of a response head (mg_req_src.head). */
enum {
    MG_RESP_NO_BODY = 1, /* HEAD, 204, 304: no body follows */
    MG_RESP_CLOSE = 2,   /* the client connection must close after this response */
};

/* How the proxy answers: implemented by the source, which serialises for
 * its protocol. Bytes are copied or written before a call returns. */
typedef struct mg_req_src {
    /* The final response head: status, the reason phrase (NULL: the
     * standard one), the entries of r->out (removed ones and trailers
     * skipped) and the lines of r->resp_extra. length: body bytes, -1 when
     * unknown. Held back until the first body bytes or the end, so that
     * they leave together. */
    void (*head)(mg_req *r, int status, const char *reason, size_t rlen, int64_t length,
                 unsigned flags);
    /* A 1xx head (r->out's entries), written at once. */
    void (*interim)(mg_req *r, int status, const char *reason, size_t rlen);
    /* Body bytes: 0, or 1 when they were queued (wait for the drain event
     * before sending more), or -1 when the client is gone. */
    int (*body)(mg_req *r, const uv_buf_t *bufs, unsigned n);
    /* The response is complete; trailers are r->out's entries from
     * ntrailer_start. The source ends the exchange and releases r: the
     * caller must not touch r after this. */
    void (*end)(mg_req *r);
    /* Request body flow: stop and resume delivering body pieces. */
    void (*pause)(mg_req *r);
    void (*resume)(mg_req *r);
    /* 101 was relayed: raw bytes both ways from now on (rest: bytes that
     * followed the 101 head). Client bytes arrive as tunnel_data events. */
    void (*tunnel)(mg_req *r, const char *rest, size_t n);
    int (*raw)(mg_req *r, const uv_buf_t *bufs, unsigned n);
    /* Ends the exchange by closing the client side (a response half sent
     * cannot be fixed); the source releases r. */
    void (*abort)(mg_req *r);
    /* Response bytes waiting to go to the client. */
    size_t (*queued)(const mg_req *r);
    /* What TLS says of the client side (MG_TLS_*), or NULL (plain). */
    const char *(*tls)(const mg_req *r, int what);
} mg_req_src;

enum { MG_TLS_SNI = 0, MG_TLS_VERSION, MG_TLS_ALPN, MG_TLS_RESUMED };

struct mg_req {
    /* ---- filled by the source ---------------------------------------- */
    const mg_req_src *src; /* NULL once the source let go: answer nothing */
    void *src_ctx;         /* the source's own object (its connection) */
    mg_worker *w;
    uint64_t conn_id;               /* the client connection, for logs */
    uint32_t stream_id;             /* the HTTP/2 stream, 0 for HTTP/1 */
    uint64_t id;                    /* per-worker request id (Lua ctx key) */
    const struct sockaddr *client;  /* the client's address (the source's) */
    const char *client_ip;          /* ... as text, formatted once by the source (or NULL) */
    uint8_t client_trusted;         /* the client is a trusted proxy */
    uint8_t secure;                 /* the client spoke TLS (scheme https) */
    uint8_t listen;                 /* the listener it came in on (cfg->listen index) */
    uint8_t http_major, http_minor; /* as the client spoke it */
    uint8_t method;                 /* llhttp's method enum */
    uint8_t upgrade;                /* asks to switch protocols (WebSocket) */
    uint8_t has_body;               /* a body follows the head */
    uint8_t body_done;              /* the whole request body was delivered */
    int64_t body_len;               /* Content-Length; MG_BODY_CHUNKED, MG_BODY_NONE */
    mg_headers in;                  /* method and target first, then the headers */
    uint32_t method_len, url_len;   /* method and target at the start of in.arena */
    uint32_t url_off, url_cur_len;  /* the current target (normalised, set_path) */
    uint32_t auth_off;              /* authority of an absolute-form target in in.arena */
    uint16_t auth_len;              /* 0: the target had none (Host names the origin) */
    uint16_t holds;                 /* mg_req_hold count, plus one for the source */

    /* ---- the proxy's ------------------------------------------------- */
    mg_upconn *up;               /* the upstream connection of the current try */
    struct mg_h2up_stream *h2st; /* ... or its HTTP/2 stream (protocol h2c, h2) */
    uint32_t h2_unconsumed;      /* response bytes the client has not taken yet */
    mg_snapshot *snap;           /* pinned for all tries */
    int svc;
    int target;          /* index in the service, -1 before the first pick */
    int route;           /* matched route index, -1 before routing */
    int tries;           /* entries in tried[] (reset when a held request goes again) */
    int charged;         /* failed tries that count against upstream.retries */
    uint8_t retries_set; /* req:set_retries: retries_max replaces upstream.retries */
    uint8_t retries_max; /* extra tries after charged failures */
    uint8_t backoff;     /* waiting in q_held for backoff_ms before the next try */
    uint32_t backoff_ms; /* wait before the first retry, doubled for each next one */
    int tried[16];
    uint64_t held_since; /* ms (uv_now) when the request was first held, 0: never */
    mg_headers out;      /* response head, then trailers */
    uint16_t status;
    uint16_t local_status;
    uint8_t reason_len; /* the backend's reason phrase, when usable (0xff: not) */
    char reason[48];
    uint8_t idempotent, head_request;
    uint8_t up_chunked;   /* the request body goes upstream chunked */
    uint8_t body_started; /* request body bytes went upstream */
    uint8_t resp_started; /* the response head went to the source */
    uint8_t resp_sent;    /* ... and may have reached the client (body or end sent) */
    uint8_t resp_done;
    uint8_t resp_close_delimited; /* the backend's body ends when it closes */
    uint8_t resp_reusable;        /* the response left the upstream connection clean */
    uint8_t resp_interim;         /* parsing a 1xx response */
    uint8_t got_bytes;            /* response bytes arrived on this try */
    uint8_t held;                 /* waiting in the worker's q_held (r->tq) */
    uint8_t in_trailers;          /* the response parser reached the trailers */
    uint8_t head_paused;          /* the response parser paused at a head's end */
    uint8_t finished;             /* logged: the exchange is over for the proxy */
    uint8_t tunnel;               /* upgraded: raw bytes both ways */
    uint8_t hooks;                /* middlewares run on this request */
    uint8_t hook_flags;           /* 1: call on_response, 2: call on_log */
    uint8_t responded;            /* a plugin answered (req:respond) */
    uint8_t in_resp_hook;         /* on_response is running: the head may change */
    uint8_t body_filter;          /* res:filter_body(): the body goes through on_body hooks */
    uint8_t hook_wait;            /* the chain waits on I/O: 1 in on_request, 2 in on_response */
    uint8_t hook_failed;          /* ... and raised an error after the wait */
    uint8_t resp_replaced;        /* res:replace(): the answer is r->local, not the backend's */
    uint8_t resp_discard;         /* ... so the backend's body is read and dropped */
    int wait_slot;                /* the slot the runtime names a waiting chain by */
    mg_req *wait_next;            /* the worker's list of chains that ended their wait */
    mg_buf resp_rest;             /* response bytes read past a head whose hooks wait */
    llhttp_t parser;              /* the response parser */
    mg_h1check check;             /* strict check of response heads and chunked bodies */
    mg_buf fix;                   /* response bytes with bare LF line ends made CRLF */
    mg_tq_node tq;                /* waiting for the response (q_up_response), or held (q_held) */
    mg_buf uhead;                 /* request head as serialized for the upstream */
    mg_buf replay;                /* body bytes sent upstream on this request, as framed,
                                   * kept (up to upstream.replay_body) to send them again */
    uint8_t replay_lost;          /* more body went upstream than replay could keep */
    mg_buf upstreams;             /* "a,b" for the access log */
    mg_buf local;                 /* plugin answer: headers then body */
    mg_buf filt;                  /* response body bytes waiting for the on_body hooks */
    uint32_t local_hlen;          /* length of the headers part of local */
    mg_buf resp_extra;            /* "Name: value\r\n" lines added to the response */
    mg_buf wire;                  /* the source's staging buffer for a response head */
    uint64_t bytes_out;
    uint64_t start_ns, try_start_ns;
    char host_lc[256]; /* lowercased Host (or authority), for X-Forwarded-Host */
};

/* A request for a new message on worker w: recycled or allocated, with one
 * hold (the source's). Returns NULL when out of memory. */
mg_req *mg_req_new(mg_worker *w);

/* Holds and releases. The source releases its hold when it lets go (and
 * sets r->src to NULL first); the last release recycles or frees r. */
static inline void mg_req_hold(mg_req *r)
{
    r->holds++;
}
void mg_req_release(mg_req *r);

/* Frees a request and its buffers (the worker's free list at exit). */
void mg_req_destroy(mg_req *r);

static inline const char *mg_req_method(const mg_req *r)
{
    return r->in.arena.p;
}

static inline const char *mg_req_url(const mg_req *r)
{
    return r->in.arena.p + r->url_off;
}

static inline const mg_target *mg_req_target(const mg_req *r)
{
    return &r->snap->services[r->svc].targets[r->target];
}

/* Formats the client's address without a port ("::ffff:" stripped). */
int mg_req_client_ip(const mg_req *r, char *out, size_t len);

#endif
