/* The proxy's connection and request objects, shared by http_conn.c
 * (client side), upstream.c (backend side) and proxy.c (the relay). */
#ifndef MG_HTTP_H
#define MG_HTTP_H

#include "h1check.h"
#include "common.h"
#include "log.h"
#include "stream_write.h"
#include "tq.h"
#include "worker.h"

#include <llhttp.h>
#include <netinet/in.h>
#include <uv.h>

/* Headers as offsets into an arena, so the arena may grow while parsing. */
typedef struct mg_hoff {
    uint32_t noff, nlen, voff, vlen;
} mg_hoff;

typedef struct mg_headers {
    mg_buf arena;
    mg_hoff *h;
    uint32_t n, cap;
    uint32_t ntrailer_start; /* headers at or after this index are trailers */
    uint8_t in_field;        /* a field is being collected */
} mg_headers;

enum mg_conn_state {
    MG_C_IDLE = 0, /* waiting for a request (keep-alive) */
    MG_C_HEAD,     /* reading a request head */
    MG_C_WAIT,     /* head parsed, choosing and connecting a target */
    MG_C_BODY,     /* streaming the request body upstream */
    MG_C_RESP,     /* request complete, relaying the response */
    MG_C_TUNNEL,   /* upgraded: raw bytes both ways */
    MG_C_CLOSING
};

typedef struct mg_req mg_req;

struct mg_conn {
    uv_tcp_t tcp;
    llhttp_t parser;
    mg_tq_node tq;
    mg_worker *w;
    mg_conn *prev, *next;
    uint64_t id;
    mg_req *req;
    char *pend; /* client bytes read but not parsed yet */
    uint32_t pend_len, pend_cap;
    uint8_t state;
    uint8_t blocked;      /* parser paused: bytes go to pend */
    uint8_t reading;      /* uv_read_start is active */
    uint8_t peer_eof;     /* the client half-closed */
    uint8_t close_after;  /* close once the current response is done */
    uint8_t trusted;      /* peer is a trusted proxy */
    uint8_t pause_reason; /* why the parser paused (http_conn.c) */
    uint8_t driving, redrive;
    uint32_t nrequests;
    uint16_t refuse_status; /* a callback refused the request: answer this */
    const char *refuse_why; /* static text for the answer and the log */
    mg_h1check check;       /* strict framing check of request heads and chunked bodies */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
};

enum mg_up_state { MG_U_CONNECTING = 0, MG_U_ACTIVE, MG_U_IDLE, MG_U_CLOSING };

struct mg_upconn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    llhttp_t parser;
    mg_tq_node tq;
    mg_worker *w;
    mg_req *req;              /* the request using it, NULL when pooled */
    mg_upconn *pnext, *pprev; /* pool list */
    uint32_t uid;
    uint8_t state;
    uint8_t reused;    /* served a request before this one */
    uint8_t got_bytes; /* some response bytes arrived for the current request */
    uint8_t reusable;  /* the last response left it clean for keep-alive */
    uint8_t reading;
    uint8_t head_paused; /* the parser paused at the end of a response head */
    mg_h1check check;    /* strict framing check of response heads and chunked bodies */
    mg_buf fix;          /* response bytes with bare LF line ends made CRLF */
};

struct mg_req {
    mg_conn *c;
    mg_upconn *up;
    mg_snapshot *snap; /* pinned for all tries */
    int svc;
    int target;                   /* index in the service, -1 before the first pick */
    mg_headers in;                /* request head */
    mg_headers out;               /* response head */
    uint32_t method_len, url_len; /* method and url at the start of in.arena */
    uint8_t http_minor, method;
    uint8_t client_keepalive;
    uint8_t body_chunked, has_body, upgrade, head_request, idempotent;
    uint8_t body_started; /* request body bytes went upstream */
    uint8_t body_done;    /* request fully received from the client */
    uint8_t resp_started; /* response head went to the client */
    uint8_t resp_chunked, resp_close_delimited, resp_done;
    uint8_t resp_interim;
    uint8_t head_pending; /* final response head in uhead, not written yet */
    uint8_t in_trailers;
    uint8_t finished;
    uint16_t status;
    uint8_t reason_len; /* the backend's reason phrase, when usable */
    char reason[48];
    int tries;
    int tried[16];
    mg_buf uhead;     /* request head as serialized for the upstream */
    mg_buf upstreams; /* "a,b" for the access log */
    uint64_t bytes_out;
    uint64_t start_ns;
    char host_lc[256];             /* lowercased Host for X-Forwarded-Host */
    uint32_t url_off, url_cur_len; /* current target in in.arena (set_path moves it) */
    uint32_t auth_off;             /* authority of an absolute-form target in in.arena */
    uint16_t auth_len;             /* 0: the target had none (Host names the origin) */
    int route;                     /* matched route index, -1 before routing */
    uint64_t id;                   /* per-worker request id (Lua ctx key) */
    uint8_t hooks;                 /* middlewares run on this request */
    uint8_t hook_flags;            /* 1: call on_response, 2: call on_log */
    uint8_t responded;             /* a plugin answered (req:respond) */
    uint8_t in_resp_hook;          /* on_response is running: the head may change */
    uint16_t local_status;
    mg_buf local;        /* plugin answer: headers then body */
    uint32_t local_hlen; /* length of the headers part of local */
    mg_buf resp_extra;   /* "Name: value\r\n" lines added to the response */
    uint64_t try_start_ns;
};

/* http_conn.c */
void mg_conn_accept(uv_stream_t *server, int status);
void mg_conn_close(mg_conn *c);
void mg_conn_resume(mg_conn *c);       /* unblock the parser after a pause */
void mg_conn_request_done(mg_conn *c); /* the response went out completely */
void mg_conn_expire(mg_worker *w, uint64_t now);
/* Sends a complete short response (error pages) and finishes the request. */
void mg_conn_respond(mg_conn *c, int status, const char *body, int close_after);
/* The same with extra header lines ("Name: v\r\n") and a body of any bytes. */
void mg_conn_respond_full(mg_conn *c, int status, const char *headers, size_t hlen,
                          const char *body, size_t blen, int close_after);
void mg_conn_write(mg_conn *c, const uv_buf_t *bufs, unsigned n);
void mg_conn_read_start(mg_conn *c);
void mg_conn_read_stop(mg_conn *c);
const char *mg_status_reason(int status);

/* proxy.c */
void mg_proxy_start(mg_conn *c);                        /* head parsed: route and connect */
void mg_proxy_body(mg_req *r, const char *p, size_t n); /* request body piece */
void mg_proxy_body_done(mg_req *r);                     /* request message complete */
void mg_proxy_client_gone(mg_req *r);                   /* client closed or errored */
void mg_proxy_tunnel_client_data(mg_req *r, const char *p, size_t n);
void mg_req_free(mg_req *r);    /* back to the worker's free list, or destroyed */
void mg_req_destroy(mg_req *r); /* frees the request and its buffers */
void mg_req_log(mg_req *r);

/* upstream.c */
mg_upconn *mg_up_get(mg_worker *w, const mg_target *t, mg_req *r); /* pooled or new */
int mg_up_send(mg_upconn *u, const uv_buf_t *bufs, unsigned n);
void mg_up_release(mg_upconn *u); /* back to the pool or closed */
void mg_up_close(mg_upconn *u);
void mg_up_expire(mg_worker *w, uint64_t now);
void mg_up_read_start(mg_upconn *u);
void mg_up_read_stop(mg_upconn *u);

/* Upstream events delivered to proxy.c */
void mg_proxy_up_connected(mg_req *r, int status);
void mg_proxy_up_error(mg_req *r, int err, const char *what);
void mg_proxy_up_timeout(mg_req *r, int connecting);
void mg_proxy_up_data(mg_upconn *u, const char *p, size_t n);
void mg_proxy_up_eof(mg_req *r);
void mg_proxy_up_drained(mg_req *r); /* upstream write queue emptied */
void mg_proxy_client_drained(mg_req *r);
void mg_proxy_init_parser(mg_upconn *u);

/* headers */
void mg_headers_reset(mg_headers *h);
void mg_headers_free(mg_headers *h);
int mg_headers_field(mg_headers *h, const char *p, size_t n);
int mg_headers_value(mg_headers *h, const char *p, size_t n);
void mg_headers_value_done(mg_headers *h);
static inline const char *mg_hname(const mg_headers *h, uint32_t i)
{
    return h->arena.p + h->h[i].noff;
}
static inline const char *mg_hvalue(const mg_headers *h, uint32_t i)
{
    return h->arena.p + h->h[i].voff;
}
/* Case-insensitive name comparison. */
int mg_hname_is(const mg_headers *h, uint32_t i, const char *name, size_t len);
/* Returns the index of the first header with that name, or -1. */
int mg_headers_find(const mg_headers *h, const char *name, size_t len);
/* True if a comma-separated header value contains token (case-insensitive). */
int mg_value_has_token(const char *v, size_t vlen, const char *tok, size_t toklen);

uint64_t mg_hrtime_ns(void);

/* Validates a header name (RFC 9110 token) and value (no CTL but HTAB). */
int mg_header_valid(const char *name, size_t nlen, const char *value, size_t vlen);

#endif
