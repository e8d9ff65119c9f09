/* The waits of Lua coroutines on a libuv loop (the control plane's, and
 * each worker's request hooks): the list of every wait in progress
 * (requests, sleeps, probes) that shutdown cancels, one per thread, since
 * each loop runs on its own thread; the one place a waiting coroutine is
 * resumed; and the simple waits themselves: sleeps on libuv timers, name
 * resolution on libuv's thread pool, the clock, and running the loop for
 * scripts outside the gateway. */
#include "control.h"
#include "log.h"
#include "lua_io_int.h"

#include <lauxlib.h>
#include <netdb.h>
#include <stdlib.h>
#include <uv.h>

/* This thread's waits (its loop's): a worker's stop cancels its own only. */
static __thread pending pending_head;
static __thread int pending_n;
__thread const mg_io_hooks *mg_io_thread_hooks;

static pending *head(void)
{
    if (!pending_head.next) pending_head.next = pending_head.prev = &pending_head;
    return &pending_head;
}

void mg_io_pending_add(pending *p, void (*cancel)(pending *))
{
    pending *h = head();
    p->cancel = cancel;
    p->next = h->next;
    p->prev = h;
    h->next->prev = p;
    h->next = p;
    pending_n++;
}

int mg_io_pending_count(void)
{
    return pending_n;
}

int mg_io_resume(lua_State *L, lua_State *co, int nargs)
{
    const mg_io_hooks *hk = mg_io_thread_hooks;
    if (hk) hk->before(hk->ud);
    int rc = lua_resume(co, nargs);
    if (hk) hk->after(hk->ud);
    if (rc != 0 && rc != LUA_YIELD) {
        luaL_traceback(L, co, lua_tostring(co, -1), 0);
        mg_log(MG_LOG_ERROR, hk ? hk->worker_id : -1, 0, "%s failed: %s",
               hk ? "a plugin's coroutine" : "control plugin", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return rc;
}

void mg_io_pending_remove(pending *p)
{
    if (!p->next) return;
    p->prev->next = p->next;
    p->next->prev = p->prev;
    p->next = p->prev = NULL;
    pending_n--;
}

typedef struct sleep_req {
    pending link;
    uv_timer_t timer;
    lua_State *L;
    int co_ref;
} sleep_req;

static void on_sleep_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sleep_cancel(pending *p)
{
    sleep_req *s = (sleep_req *)p;
    mg_io_pending_remove(p);
    luaL_unref(s->L, LUA_REGISTRYINDEX, s->co_ref);
    uv_close((uv_handle_t *)&s->timer, on_sleep_closed);
}

static void on_sleep(uv_timer_t *t)
{
    sleep_req *s = t->data;
    mg_io_pending_remove(&s->link);
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->co_ref);
    lua_State *co = lua_tothread(s->L, -1);
    lua_pop(s->L, 1);
    int ref = s->co_ref;
    mg_io_resume(s->L, co, 0);
    luaL_unref(s->L, LUA_REGISTRYINDEX, ref);
    uv_close((uv_handle_t *)t, on_sleep_closed);
}

/* moongate.c.io.sleep(co, ms): the caller yields next. */
int mg_lua_sleep(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    double ms = luaL_checknumber(L, 2);
    uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
    sleep_req *s = calloc(1, sizeof(*s));
    if (!s) return luaL_error(L, "out of memory");
    s->L = lua_touserdata(L, lua_upvalueindex(2));
    mg_io_pending_add(&s->link, sleep_cancel);
    lua_pushvalue(L, 1);
    s->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_update_time(loop);
    uv_timer_start(&s->timer, on_sleep, ms > 0 ? (uint64_t)ms : 0, 0);
    return 0;
}

typedef struct resolve_req {
    pending link; /* first */
    uv_getaddrinfo_t req;
    lua_State *L;
    int co_ref;
    int cancelled; /* the coroutine was let go: only free when the lookup ends */
} resolve_req;

/* A lookup on the thread pool cannot be stopped once it runs: the
 * coroutine is let go now, the request freed when its callback comes. */
static void resolve_cancel(pending *p)
{
    resolve_req *q = (resolve_req *)p;
    q->cancelled = 1;
    luaL_unref(q->L, LUA_REGISTRYINDEX, q->co_ref);
    uv_cancel((uv_req_t *)&q->req);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_req *q = req->data;
    mg_io_pending_remove(&q->link);
    if (q->cancelled) {
        uv_freeaddrinfo(res);
        free(q);
        return;
    }
    lua_rawgeti(q->L, LUA_REGISTRYINDEX, q->co_ref);
    lua_State *co = lua_tothread(q->L, -1);
    lua_pop(q->L, 1);
    int n;
    if (status < 0) {
        lua_pushnil(co);
        lua_pushstring(co, uv_strerror(status));
        n = 2;
    } else {
        lua_newtable(co);
        int k = 0;
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            char ip[64] = "";
            if (a->ai_family == AF_INET)
                uv_ip4_name((struct sockaddr_in *)a->ai_addr, ip, sizeof(ip));
            else if (a->ai_family == AF_INET6)
                uv_ip6_name((struct sockaddr_in6 *)a->ai_addr, ip, sizeof(ip));
            if (!ip[0]) continue;
            lua_pushstring(co, ip);
            lua_rawseti(co, -2, ++k);
        }
        n = 1;
    }
    uv_freeaddrinfo(res);
    int ref = q->co_ref;
    lua_State *L = q->L;
    free(q);
    mg_io_resume(L, co, n);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

/* moongate.c.io.resolve(co, host): resolves on libuv's thread pool; the caller
 * yields and gets a list of addresses, or nil, err. */
int mg_lua_resolve(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    const char *host = luaL_checkstring(L, 2);
    uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
    resolve_req *q = calloc(1, sizeof(*q));
    if (!q) return luaL_error(L, "out of memory");
    q->L = lua_touserdata(L, lua_upvalueindex(2));
    q->req.data = q;
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(loop, &q->req, on_resolved, host, NULL, &hints);
    if (rc) {
        free(q);
        lua_pushnil(L);
        lua_pushstring(L, uv_strerror(rc));
        return 2;
    }
    lua_pushvalue(L, 1);
    q->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    mg_io_pending_add(&q->link, resolve_cancel);
    lua_pushboolean(L, 1);
    return 1;
}

int mg_lua_now(lua_State *L)
{
    uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
    uv_update_time(loop);
    lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
    return 1;
}

/* moongate.c.io.run(seconds): runs the loop until nothing is pending or the time
 * is up (for specs and `moongate` scripts outside the gateway). */
int mg_lua_run(lua_State *L)
{
    uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
    double limit = luaL_optnumber(L, 1, 10);
    uint64_t deadline = uv_hrtime() + (uint64_t)(limit * 1e9);
    while (uv_run(loop, UV_RUN_NOWAIT) && uv_hrtime() < deadline)
        uv_sleep(1);
    return 0;
}

void mg_io_cancel_all(void)
{
    pending *h = head();
    while (h->next != h) {
        pending *p = h->next;
        mg_io_pending_remove(p);
        p->cancel(p);
    }
}

void mg_control_io_cancel_all(void)
{
    mg_io_cancel_all();
}
