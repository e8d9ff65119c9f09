/* Shared between the two halves of the Lua HTTP client: lua_io.c (a
 * request's lifecycle: connect, TLS, timeouts, the Lua functions) and
 * lua_io_response.c (parsing the response, handing it to the coroutine). */
#ifndef MG_LUA_IO_REQ_H
#define MG_LUA_IO_REQ_H

#include <llhttp.h>
#include <lua.h>
#include <uv.h>

#include "log.h"
#include "lua_io_int.h"
#include "tls.h"

/* One request in progress. Ownership: lua_io.c allocates it (l_http) and
 * frees it (io_free_maybe) once both handles closed, no coroutine waits
 * and, for a stream, the Lua stream object let go of it (close or
 * collection); lua_io_response.c only fills the parser's fields and
 * resumes the coroutine, never frees. Its buffers live as long as it. */
typedef struct io_req {
    pending link;  /* first: the pending list holds io_req pointers */
    lua_State *L;  /* the main state (registry holder) */
    lua_State *co; /* the coroutine waiting, NULL when none */
    int co_ref;    /* anchors co while C holds it */
    uv_loop_t *loop;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_connect_t connect;
    uv_timer_t timer;
    uv_write_t write;
    llhttp_t parser;
    char *out;
    size_t out_len;
    mg_buf body; /* whole body, or streamed bytes not read yet */
    mg_buf hdr;  /* "name\0value\0" pairs */
    mg_buf field;
    int nheaders, in_value;
    int status;
    int stream; /* 1: body pieces go to read() */
    int head_done, done, failed, closed_handles, handles;
    int waiting;      /* 1: co waits for the head; 2: for data */
    int freed_by_lua; /* the stream object was closed/collected */
    mg_tls *tls;      /* HTTPS: the engine between the socket and llhttp, owned */
    int sent;         /* the request went into the engine */
    char err[160];
} io_req;

/* lua_io.c: the request failed (fmt takes detail as its one %s) or its
 * response ended; either closes the handles and wakes the coroutine.
 * fail does nothing once r failed or finished, finish once it finished. */
void mg_io_req_fail(io_req *r, const char *fmt, const char *detail);
void mg_io_req_finish(io_req *r);

/* lua_io_response.c: readies r's parser for a response. */
void mg_io_resp_init(io_req *r);
/* Feeds n bytes of the response to the parser; a parse error fails r. */
void mg_io_resp_parse(io_req *r, const char *p, size_t n);
/* The peer ended the stream (EOF, or TLS close_notify). */
void mg_io_resp_end(io_req *r);
/* Wakes the coroutine with what it waits for, if it can be given now. */
void mg_io_resp_deliver(io_req *r);

#endif
