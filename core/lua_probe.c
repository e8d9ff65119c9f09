/* mg.tcp_probe for control-plane Lua: does a TCP connect to ip:port
 * succeed within a timeout? Discovery plugins use it to admit a new
 * container or task only once something listens on its port. The
 * coroutine yields after the call and is resumed, always from a libuv
 * close callback (never synchronously), with true or nil, reason. */
#include "log.h"
#include "lua_io_int.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct probe_req {
    pending link; /* first: the pending list holds probe_req pointers */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_timer_t timer;
    lua_State *L; /* the main state (registry holder) */
    int co_ref;   /* anchors the waiting coroutine; LUA_NOREF once cancelled */
    int status;   /* 0 connected, else a libuv error */
    int closing, closed;
} probe_req;

/* Resumes the coroutine once both handles are closed, then frees. */
static void on_closed(uv_handle_t *h)
{
    probe_req *q = h->data;
    if (++q->closed < 2) return;
    if (q->co_ref != LUA_NOREF) {
        lua_State *L = q->L;
        int ref = q->co_ref;
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        lua_State *co = lua_tothread(L, -1);
        lua_pop(L, 1);
        int n = 1;
        if (q->status == 0) {
            lua_pushboolean(co, 1);
        } else {
            lua_pushnil(co);
            lua_pushstring(co, q->status == UV_ETIMEDOUT ? "timed out" : uv_strerror(q->status));
            n = 2;
        }
        mg_io_resume(L, co, n);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
    }
    free(q);
}

static void finish(probe_req *q, int status)
{
    if (q->closing) return;
    q->closing = 1;
    q->status = status;
    mg_io_pending_remove(&q->link);
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, on_closed);
    uv_close((uv_handle_t *)&q->tcp, on_closed);
}

static void on_connect(uv_connect_t *c, int status)
{
    /* UV_ECANCELED: the handle was closed first (timeout, shutdown) */
    if (status != UV_ECANCELED) finish(c->data, status);
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, UV_ETIMEDOUT);
}

/* Shutdown: close without resuming anyone. */
static void probe_cancel(pending *p)
{
    probe_req *q = (probe_req *)p;
    luaL_unref(q->L, LUA_REGISTRYINDEX, q->co_ref);
    q->co_ref = LUA_NOREF;
    finish(q, UV_ECANCELED);
}

/* moongate.c.io.tcp_probe(co, ip, port, ms) -> true (the caller yields next) or
 * nil, err for an address that is not an IP. */
int mg_lua_tcp_probe(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    const char *ip = luaL_checkstring(L, 2);
    int port = (int)luaL_checkinteger(L, 3);
    double ms = luaL_checknumber(L, 4);
    uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
    struct sockaddr_storage sa;
    if (port < 1 || port > 65535 ||
        (uv_ip4_addr(ip, port, (struct sockaddr_in *)&sa) != 0 &&
         uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&sa) != 0)) {
        lua_pushnil(L);
        lua_pushstring(L, "expected an IP address and a port");
        return 2;
    }
    /* owned by the loop from here; freed in on_closed */
    probe_req *q = calloc(1, sizeof(*q));
    if (!q) return luaL_error(L, "out of memory");
    q->L = lua_touserdata(L, lua_upvalueindex(2));
    lua_pushvalue(L, 1);
    q->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_tcp_init(loop, &q->tcp);
    uv_timer_init(loop, &q->timer);
    q->tcp.data = q->timer.data = q->connect.data = q;
    mg_io_pending_add(&q->link, probe_cancel);
    int rc = uv_tcp_connect(&q->connect, &q->tcp, (struct sockaddr *)&sa, on_connect);
    if (rc) {
        finish(q, rc);
    } else {
        uv_update_time(loop);
        uv_timer_start(&q->timer, on_timeout, ms > 0 ? (uint64_t)ms : 0, 0);
    }
    lua_pushboolean(L, 1);
    return 1;
}
