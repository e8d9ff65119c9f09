/* Async I/O for Lua coroutines on a libuv loop (the control plane's, and
 * each worker's for hooks that wait): an HTTP/1.1 client over TCP (plain
 * or TLS) or a unix socket, whole-body or streaming (sleeps and names:
 * lua_wait.c; probes: lua_probe.c). A coroutine calls a start function,
 * which never completes synchronously, then yields; the libuv callback
 * resumes it with the result. Errors are values (nil, reason). This file
 * is a request's lifecycle and the Lua functions; lua_io_response.c parses
 * the response and hands it to the coroutine. */
#include "control.h"
#include "log.h"
#include "lua_env.h"
#include "lua_crypto.h"
#include "lua_io_req.h"
#include "tls.h"
#include "tls_certs.h"

#include <lauxlib.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void io_free_maybe(io_req *r);

static void on_handle_closed(uv_handle_t *h)
{
    io_req *r = h->data;
    r->closed_handles++;
    io_free_maybe(r);
}

static void close_all(io_req *r)
{
    if (r->handles) return;
    r->handles = 2;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->h, on_handle_closed);
}

static void io_free_maybe(io_req *r)
{
    if (r->closed_handles < 2 || (r->stream && !r->freed_by_lua) || r->co) return;
    mg_io_pending_remove(&r->link);
    mg_tls_free(r->tls);
    free(r->out);
    mg_buf_free(&r->body);
    mg_buf_free(&r->hdr);
    mg_buf_free(&r->field);
    free(r);
}

void mg_io_req_fail(io_req *r, const char *fmt, const char *detail)
{
    if (r->failed || r->done) return;
    r->failed = 1;
    snprintf(r->err, sizeof(r->err), fmt, detail ? detail : "");
    close_all(r);
    mg_io_resp_deliver(r);
}

void mg_io_req_finish(io_req *r)
{
    if (r->done) return;
    r->done = 1;
    close_all(r);
    mg_io_resp_deliver(r);
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    static __thread char buf[65536]; /* one per loop's thread: workers read at once */
    b->base = buf;
    b->len = sizeof(buf);
}

typedef struct io_write {
    uv_write_t req;
    io_req *r;
    char data[];
} io_write;

static void on_tls_written(uv_write_t *w, int status)
{
    io_write *q = (io_write *)w;
    io_req *r = q->r;
    free(q);
    if (status < 0 && status != UV_ECANCELED)
        mg_io_req_fail(r, "write failed: %s", uv_strerror(status));
}

/* HTTPS: ciphertext from the engine goes to the socket at once; what it
 * does not take is copied into a queued write. */
static int tls_sink(void *ud, const char *data, size_t len)
{
    io_req *r = ud;
    uv_stream_t *s = (uv_stream_t *)&r->h;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    size_t done = 0;
    if (s->write_queue_size == 0) {
        int n = uv_try_write(s, &b, 1);
        if (n < 0 && n != UV_EAGAIN) return n;
        if (n > 0) done = (size_t)n;
        if (done == len) return 0;
    }
    /* Ownership: the copy belongs to the write request, freed in on_tls_written. */
    io_write *q = malloc(sizeof(*q) + (len - done));
    if (!q) return UV_ENOMEM;
    q->r = r;
    memcpy(q->data, data + done, len - done);
    uv_buf_t rest = uv_buf_init(q->data, (unsigned)(len - done));
    int rc = uv_write(&q->req, s, &rest, 1, on_tls_written);
    if (rc) free(q);
    return rc;
}

/* Drives the engine after new ciphertext (or none, right after connect):
 * handshake, then the request once, then every plaintext byte to llhttp. */
static void tls_pump(io_req *r)
{
    int rc = mg_tls_handshake(r->tls);
    if (rc == -EAGAIN) return;
    if (rc) {
        mg_io_req_fail(r, "%s", mg_tls_error(r->tls));
        return;
    }
    if (!r->sent) {
        r->sent = 1;
        if (mg_tls_write(r->tls, r->out, r->out_len) < 0) {
            mg_io_req_fail(r, "%s", mg_tls_error(r->tls));
            return;
        }
    }
    char plain[16384];
    for (;;) {
        ssize_t n = mg_tls_read(r->tls, plain, sizeof(plain));
        if (n > 0) {
            mg_io_resp_parse(r, plain, (size_t)n);
            if (r->done || r->failed) return;
            continue;
        }
        if (n == 0) { /* close_notify: the same as the end of a plain stream */
            mg_io_resp_end(r);
        } else if (n != -EAGAIN) {
            mg_io_req_fail(r, "%s", mg_tls_error(r->tls));
        }
        return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    io_req *r = s->data;
    if (r->done || r->failed) return;
    if (nread > 0 && r->tls) {
        mg_tls_feed(r->tls, buf->base, (size_t)nread);
        tls_pump(r);
        if (r->tls) mg_tls_feed_end(r->tls); /* the read buffer is static: keep the rest */
        return;
    }
    if (nread > 0) {
        mg_io_resp_parse(r, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0) return;
    if (nread == UV_EOF) {
        mg_io_resp_end(r);
        return;
    }
    mg_io_req_fail(r, "read failed: %s", uv_strerror((int)nread));
}

static void on_written(uv_write_t *w, int status)
{
    io_req *r = w->data;
    if (status < 0 && status != UV_ECANCELED)
        mg_io_req_fail(r, "write failed: %s", uv_strerror(status));
}

static void on_connect(uv_connect_t *c, int status)
{
    io_req *r = c->data;
    if (r->failed || r->done) return;
    if (status < 0) {
        mg_io_req_fail(r, "connect failed: %s", uv_strerror(status));
        return;
    }
    if (r->tls) {
        uv_read_start((uv_stream_t *)&r->h, alloc_cb, on_read);
        tls_pump(r); /* sends the ClientHello */
        return;
    }
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->out_len);
    r->write.data = r;
    uv_write(&r->write, (uv_stream_t *)&r->h, &b, 1, on_written);
    uv_read_start((uv_stream_t *)&r->h, alloc_cb, on_read);
}

static void on_timeout(uv_timer_t *t)
{
    mg_io_req_fail(t->data, "timed out%s", "");
}

static void on_deferred_fail(uv_timer_t *t)
{
    io_req *r = t->data;
    char msg[sizeof(r->err)];
    memcpy(msg, r->err, sizeof(msg));
    mg_io_req_fail(r, "%s", msg);
}

static void io_cancel(pending *p)
{
    io_req *r = (io_req *)p;
    if (r->co) luaL_unref(r->L, LUA_REGISTRYINDEX, r->co_ref);
    r->co = NULL;
    r->freed_by_lua = 1;
    r->failed = 1;
    close_all(r);
}

/* moongate.c.io.http(co, unix_path_or_nil, ip, port, request_bytes, timeout_ms, stream, tls)
 * -> handle (lightuserdata), or nil, err. The caller yields next.
 * tls: nil for plain HTTP, or { server_name = ..., verify = bool, ca_file = ... }. */
static int l_http(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    const char *sock = lua_tostring(L, 2);
    const char *ip = luaL_optstring(L, 3, "127.0.0.1");
    int port = (int)luaL_optinteger(L, 4, 80);
    size_t len;
    const char *req = luaL_checklstring(L, 5, &len);
    double timeout = luaL_optnumber(L, 6, 10000);
    int stream = lua_toboolean(L, 7);
    uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
    lua_State *main_L = lua_touserdata(L, lua_upvalueindex(2));
    struct sockaddr_storage ss;
    if (!sock && uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss)) {
        lua_pushnil(L);
        lua_pushfstring(L, "not an IP address: %s", ip);
        return 2;
    }
    mg_tls *tls = NULL;
    if (lua_istable(L, 8) && !sock) {
        char err[512];
        lua_getfield(L, 8, "server_name");
        const char *name = lua_tostring(L, -1);
        lua_getfield(L, 8, "verify");
        int verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_getfield(L, 8, "ca_file");
        const char *ca = lua_tostring(L, -1);
        SSL_CTX *ctx = mg_tls_client_ctx_cached(verify, ca, err, sizeof(err));
        if (ctx) tls = mg_tls_new(ctx, 0, name, err, sizeof(err));
        SSL_CTX_free(ctx); /* the reference cached() gave; the engine holds its own */
        static const unsigned char http11[] = "\x08http/1.1";
        if (tls && mg_tls_set_alpn(tls, http11, sizeof(http11) - 1)) {
            mg_tls_free(tls);
            tls = NULL;
            snprintf(err, sizeof(err), "out of memory");
        }
        lua_pop(L, 3);
        if (!tls) {
            lua_pushnil(L);
            lua_pushstring(L, err);
            return 2;
        }
    }
    /* Ownership: r is freed by io_free_maybe once its handles closed and no
     * coroutine or stream object refers to it. */
    io_req *r = calloc(1, sizeof(*r));
    if (r) r->out = malloc(len);
    if (!r || !r->out) {
        mg_tls_free(tls);
        free(r);
        return luaL_error(L, "out of memory");
    }
    r->tls = tls;
    if (tls) mg_tls_set_sink(tls, tls_sink, r);
    memcpy(r->out, req, len);
    r->out_len = len;
    r->L = main_L; /* never the coroutine: it may be collected once done */
    mg_io_pending_add(&r->link, io_cancel);
    r->loop = loop;
    r->stream = stream;
    r->freed_by_lua = !stream;
    r->co_ref = LUA_NOREF;
    mg_io_resp_init(r);
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_update_time(loop); /* the loop may have been idle: timers count from now */
    if (timeout > 0) uv_timer_start(&r->timer, on_timeout, (uint64_t)timeout, 0);
    r->connect.data = r;
    if (sock) {
        uv_pipe_init(loop, &r->h.pipe, 0);
        r->h.pipe.data = r;
        uv_pipe_connect(&r->connect, &r->h.pipe, sock, on_connect);
    } else {
        uv_tcp_init(loop, &r->h.tcp);
        r->h.tcp.data = r;
        int rc = uv_tcp_connect(&r->connect, &r->h.tcp, (struct sockaddr *)&ss, on_connect);
        if (rc) {
            /* reported through the loop, after the coroutine yielded */
            snprintf(r->err, sizeof(r->err), "connect failed: %s", uv_strerror(rc));
            uv_timer_start(&r->timer, on_deferred_fail, 0, 0);
        }
    }
    /* the coroutine waits for the head (stream) or the whole response */
    lua_pushvalue(L, 1);
    r->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    r->co = lua_tothread(L, 1);
    r->waiting = 1;
    lua_pushlightuserdata(L, r);
    return 1;
}

/* moongate.c.io.read(co, handle) -> chunk now, or true (then yield), or nil at the end. */
static int l_read(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    io_req *r = lua_touserdata(L, 2);
    if (!r) return 0;
    if (r->body.len) {
        lua_pushlstring(L, r->body.p, r->body.len);
        r->body.len = 0;
        return 1;
    }
    if (r->failed) {
        lua_pushnil(L);
        lua_pushstring(L, r->err);
        return 2;
    }
    if (r->done) return 0;
    lua_pushvalue(L, 1);
    r->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    r->co = lua_tothread(L, 1);
    r->waiting = 2;
    lua_pushboolean(L, 1);
    return 1;
}

/* moongate.c.io.close(handle): the stream object is done with it. */
static int l_close(lua_State *L)
{
    io_req *r = lua_touserdata(L, 1);
    if (!r || r->freed_by_lua) return 0;
    r->freed_by_lua = 1;
    if (!r->done && !r->failed) {
        r->failed = 1;
        snprintf(r->err, sizeof(r->err), "closed");
        close_all(r);
    }
    io_free_maybe(r);
    return 0;
}

static void open_io(lua_State *L, uv_loop_t *loop)
{
    static const luaL_Reg fns[] = {{"http", l_http},
                                   {"read", l_read},
                                   {"close", l_close},
                                   {"sleep", mg_lua_sleep},
                                   {"now", mg_lua_now},
                                   {"run", mg_lua_run},
                                   {"resolve", mg_lua_resolve},
                                   {"tcp_probe", mg_lua_tcp_probe},
                                   {NULL, NULL}};
    lua_newtable(L);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushlightuserdata(L, loop);
        lua_pushlightuserdata(L, L); /* the main state, for the registry */
        lua_pushcclosure(L, f->func, 2);
        lua_setfield(L, -2, f->name);
    }
    mg_lua_env_provide(L, "moongate.c.io");
}

void mg_control_open_io(lua_State *L, uv_loop_t *loop)
{
    open_io(L, loop);
    mg_lua_crypto_open(L); /* control-plane Lua also gets crypto and the TLS manager */
}

void mg_worker_open_io(lua_State *L, uv_loop_t *loop)
{
    open_io(L, loop);
}
