/* Calls from a worker into its Lua state. Every call goes through lua_pcall
 * with debug.traceback as the message handler, so an error in a plugin is
 * logged with its traceback and never unwinds through C. mg_ffi_current
 * names the request for the FFI functions during the call. */
#include "lua_bridge.h"
#include "request.h"
#include "log.h"
#include "lua_env.h"
#include "lua_ffi.h"
#include "lua_io.h"

#include <lauxlib.h>
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int field_ref(lua_State *L, int module, const char *name)
{
    lua_getfield(L, module, name);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

int mg_lua_init(mg_lua *lua, int worker_id, const char *plugins_dir, uv_loop_t *loop, char *err,
                size_t errlen)
{
    memset(lua, 0, sizeof(*lua));
    lua->worker_id = worker_id;
    lua_State *L = mg_lua_env_new();
    if (!L) {
        snprintf(err, errlen, "cannot create a Lua state");
        return -1;
    }
    lua->L = L;
    /* mg.http, mg.sleep for hooks that wait, on this worker's loop */
    if (loop) mg_worker_open_io(L, loop);
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua->ref_traceback = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.runtime");
    if (lua_pcall(L, 1, 1, 0)) goto fail;
    int m = lua_gettop(L);
    lua_getfield(L, m, "init");
    lua_pushinteger(L, worker_id);
    lua_pushstring(L, plugins_dir);
    if (lua_pcall(L, 2, 0, 0)) goto fail;
    lua->ref_pick = field_ref(L, m, "pick");
    lua->ref_report = field_ref(L, m, "report");
    lua->ref_on_request = field_ref(L, m, "on_request");
    lua->ref_on_response = field_ref(L, m, "on_response");
    lua->ref_on_log = field_ref(L, m, "on_log");
    lua->ref_on_body = field_ref(L, m, "on_body");
    lua->ref_tick = field_ref(L, m, "tick");
    lua->ref_pending = field_ref(L, m, "pending");
    lua->ref_runtime = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
fail:
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    lua->L = NULL;
    return -1;
}

void mg_lua_close(mg_lua *lua)
{
    if (lua->L) lua_close(lua->L);
    lua->L = NULL;
    free(lua->has_report);
    lua->has_report = NULL;
}

__thread mg_lua *mg_lua_self;

/* Called by the runtime before each plugin hook: the watchdog's report
 * names the plugin. A torn read of this buffer by the watchdog only garbles
 * a diagnostic, so it takes no lock. */
void mg_ffi_busy_plugin(const char *name, size_t len)
{
    mg_lua *lua = mg_lua_self;
    if (!lua) return;
    if (len >= sizeof(lua->busy_plugin)) len = sizeof(lua->busy_plugin) - 1;
    memcpy(lua->busy_plugin, name, len);
    lua->busy_plugin[len] = 0;
}

/* Called by the runtime when it starts keeping state for the current
 * request outside on_request (a ctx table made by a balancer or a response
 * hook): on_log must then run at the end, to forget it. */
void mg_ffi_want_log(void)
{
    if (mg_ffi_current) mg_ffi_current->hook_flags |= 2;
}

static inline void busy(mg_lua *lua, const char *what)
{
    atomic_store_explicit(&lua->busy_what, what, memory_order_relaxed);
    atomic_store_explicit(&lua->busy_since, uv_hrtime(), memory_order_release);
}

static inline void idle(mg_lua *lua)
{
    atomic_store_explicit(&lua->busy_since, 0, memory_order_release);
}

/* Around each resume of a waiting coroutine (mg_io_thread_hooks): the
 * watchdog watches it as any hook, and the request it named (with
 * mg_ffi_hook_resume) is forgotten when it yields or ends. */
static void io_before(void *ud)
{
    busy(ud, "a hook after a wait");
}

static void io_after(void *ud)
{
    idle(ud);
    mg_ffi_current = NULL;
}

void mg_lua_io_hooks(mg_lua *lua, mg_io_hooks *hooks)
{
    hooks->before = io_before;
    hooks->after = io_after;
    hooks->ud = lua;
    hooks->worker_id = lua->worker_id;
    mg_io_thread_hooks = hooks;
}

static void watchdog_hook(lua_State *L, lua_Debug *ar)
{
    lua_sethook(L, NULL, 0, 0);
    mg_lua *lua = mg_lua_self;
    /* The hook was armed from the watchdog's thread for one call (named by
     * its start time); if that call already returned, this is a later,
     * innocent one: just disarm. */
    if (!lua || atomic_load_explicit(&lua->interrupt_since, memory_order_acquire) !=
                    atomic_load_explicit(&lua->busy_since, memory_order_acquire))
        return;
    luaL_error(L, "interrupted by the watchdog: the plugin ran too long");
}

void mg_lua_interrupt(mg_lua *lua, uint64_t since)
{
    /* lua_sethook may be called asynchronously (Lua's own interpreter does
     * it from a signal handler). Code LuaJIT compiled does not check hooks:
     * such a loop cannot be interrupted, only reported. */
    atomic_store_explicit(&lua->interrupt_since, since, memory_order_release);
    lua_sethook(lua->L, watchdog_hook, LUA_MASKCOUNT, 1000);
}

#define LOG_LIMIT_MS 5000

/* Writes the count of errors held back for l, if any. */
static void limit_flush(mg_lua *lua, mg_log_limit *l, uint64_t now)
{
    if (l->suppressed)
        mg_log(MG_LOG_ERROR, lua->worker_id, 0, "%s: %u more errors in the last %.0f s (last: %s)",
               l->what, l->suppressed, (double)(now - l->since_ms) / 1000.0, l->last);
    l->suppressed = 0;
    l->since_ms = now;
}

/* Logs a plugin error of kind `what` with its traceback, unless one of that
 * kind was logged less than LOG_LIMIT_MS ago: then it is only counted, and
 * the count is written once the interval is over. */
static void log_plugin_error(mg_lua *lua, uint64_t conn, const char *what, const char *prefix,
                             const char *msg)
{
    uint64_t now = uv_hrtime() / 1000000;
    mg_log_limit *l = NULL, *free_slot = NULL;
    for (int i = 0; i < MG_LOG_LIMITS; i++) {
        if (lua->limits[i].what == what) l = &lua->limits[i];
        if (!lua->limits[i].what && !free_slot) free_slot = &lua->limits[i];
    }
    if (!l && free_slot) {
        l = free_slot;
        l->what = what;
        l->since_ms = 0;
        l->suppressed = 0;
    }
    if (l && l->since_ms && now - l->since_ms < LOG_LIMIT_MS) {
        l->suppressed++;
        size_t n = strcspn(msg, "\n");
        if (n >= sizeof(l->last)) n = sizeof(l->last) - 1;
        memcpy(l->last, msg, n);
        l->last[n] = 0;
        return;
    }
    if (l) limit_flush(lua, l, now);
    mg_log(MG_LOG_ERROR, lua->worker_id, conn, "%s%s", prefix, msg);
}

void mg_lua_flush_log_limits(mg_lua *lua)
{
    uint64_t now = uv_hrtime() / 1000000;
    for (int i = 0; i < MG_LOG_LIMITS; i++) {
        mg_log_limit *l = &lua->limits[i];
        if (l->what && l->suppressed && now - l->since_ms >= LOG_LIMIT_MS) limit_flush(lua, l, now);
    }
}

/* Calls the function under ref with nargs pushed after it (the function
 * and the handler are pushed here). Returns 0 or -1 with the error logged. */
static int protected_call(mg_lua *lua, int nargs, int nres, uint64_t conn, const char *what)
{
    lua_State *L = lua->L;
    int base = lua_gettop(L) - nargs; /* the function's slot */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_traceback);
    lua_insert(L, base);
    busy(lua, what);
    int rc = lua_pcall(L, nargs, nres, base);
    idle(lua);
    if (rc) {
        char prefix[80];
        snprintf(prefix, sizeof(prefix), "%.70s: ", what);
        const char *msg = lua_tostring(L, -1);
        if (conn)
            log_plugin_error(lua, conn, what, prefix, msg ? msg : "?");
        else
            mg_log(MG_LOG_ERROR, lua->worker_id, conn, "%s%s", prefix, msg ? msg : "?");
        lua_settop(L, base - 1);
        return -1;
    }
    lua_remove(L, base);
    return 0;
}

static void push_target(lua_State *L, const mg_target *t)
{
    lua_createtable(L, 0, 8);
    lua_pushstring(L, t->host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, t->port);
    lua_setfield(L, -2, "port");
    lua_pushinteger(L, t->weight);
    lua_setfield(L, -2, "weight");
    lua_pushstring(L, t->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, t->address);
    lua_setfield(L, -2, "address");
    lua_pushinteger(L, t->uid);
    lua_setfield(L, -2, "uid");
    lua_newtable(L);
    if (t->labels)
        for (char **l = t->labels; l[0] && l[1]; l += 2) {
            lua_pushstring(L, l[1]);
            lua_setfield(L, -2, l[0]);
        }
    lua_setfield(L, -2, "labels");
}

void mg_lua_adopt(mg_lua *lua, const mg_snapshot *s)
{
    lua_State *L = lua->L;
    int top = lua_gettop(L);
    uint8_t *rep = calloc(s->nservices ? (size_t)s->nservices : 1, 1);
    for (int i = 0; i < s->nservices; i++) {
        const mg_service *svc = &s->services[i];
        lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_runtime);
        lua_getfield(L, -1, "set_service");
        lua_remove(L, -2);
        lua_pushnumber(L, (lua_Number)s->version);
        lua_pushinteger(L, i);
        lua_pushstring(L, svc->name);
        lua_pushstring(L, svc->balancer);
        lua_pushstring(L, svc->balancer_opts);
        lua_createtable(L, svc->ntargets, 0);
        for (int k = 0; k < svc->ntargets; k++) {
            push_target(L, &svc->targets[k]);
            lua_rawseti(L, -2, k + 1);
        }
        char what[200];
        snprintf(what, sizeof(what), "service %s: balancer %s failed to start, using round robin",
                 svc->name, svc->balancer);
        if (protected_call(lua, 6, 1, 0, what) == 0) {
            if (rep) rep[i] = (uint8_t)lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_runtime);
    lua_getfield(L, -1, "set_chains");
    lua_remove(L, -2);
    lua_pushnumber(L, (lua_Number)s->version);
    lua_pushstring(L, s->plugins_literal ? s->plugins_literal : "{}");
    protected_call(lua, 2, 0, 0, "middlewares failed to start");
    lua_settop(L, top);
    free(lua->has_report);
    lua->has_report = rep;
    lua->nreport = rep ? s->nservices : 0;
    lua->report_version = s->version;
}

void mg_lua_new_generation(mg_lua *lua, const char *plugins_dir)
{
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_runtime);
    lua_getfield(L, -1, "new_generation");
    lua_remove(L, -2);
    lua_pushstring(L, plugins_dir);
    protected_call(lua, 1, 0, 0, "plugin reload");
}

int mg_lua_pick(mg_lua *lua, mg_req *r, const int *tried, int ntried)
{
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_pick);
    lua_pushnumber(L, (lua_Number)r->snap->version);
    lua_pushinteger(L, r->svc);
    lua_pushnumber(L, (lua_Number)r->id);
    lua_pushinteger(L, ntried);
    if (ntried && !lua_checkstack(L, ntried)) ntried = 0;
    for (int i = 0; i < ntried; i++)
        lua_pushinteger(L, tried[i]);
    mg_ffi_current = r;
    busy(lua, "balancer pick");
    int rc = lua_pcall(L, 4 + ntried, 1, -(6 + ntried));
    idle(lua);
    mg_ffi_current = NULL;
    if (mg_unlikely(rc)) {
        const char *msg = lua_tostring(L, -1);
        log_plugin_error(lua, r->conn_id, "balancer pick",
                         "balancer error, using round robin: ", msg ? msg : "?");
        lua_pop(L, 2);
        return -2;
    }
    int idx = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -2;
    lua_pop(L, 2);
    return idx;
}

void mg_lua_report(mg_lua *lua, mg_req *r, int status, double latency, const char *err)
{
    if (r->svc < 0 || r->target < 0 || !r->snap || r->snap->version != lua->report_version ||
        r->svc >= lua->nreport || !lua->has_report[r->svc])
        return;
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_report);
    lua_pushnumber(L, (lua_Number)r->snap->version);
    lua_pushinteger(L, r->svc);
    lua_pushinteger(L, r->target);
    lua_pushinteger(L, status);
    lua_pushnumber(L, latency);
    if (err)
        lua_pushstring(L, err);
    else
        lua_pushnil(L);
    mg_ffi_current = r;
    protected_call(lua, 6, 0, r->conn_id, "balancer report");
    mg_ffi_current = NULL;
}

int mg_lua_on_request(mg_lua *lua, mg_req *r)
{
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_on_request);
    lua_pushnumber(L, (lua_Number)r->snap->version);
    lua_pushinteger(L, r->route);
    lua_pushnumber(L, (lua_Number)r->id);
    mg_ffi_current = r;
    int rc = protected_call(lua, 3, 1, r->conn_id, "on_request");
    mg_ffi_current = NULL;
    if (rc == 0) {
        /* a chain that waits says what to call later when it ends */
        r->hook_flags = r->hook_wait ? 0 : (uint8_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    } else {
        r->hook_flags = 2; /* forget whatever the failed chain left behind */
    }
    return rc;
}

void mg_lua_on_response(mg_lua *lua, mg_req *r, int may_wait)
{
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_on_response);
    lua_pushnumber(L, (lua_Number)r->id);
    lua_pushboolean(L, may_wait);
    mg_ffi_current = r;
    protected_call(lua, 2, 0, r->conn_id, "on_response");
    mg_ffi_current = NULL;
}

void mg_lua_on_log(mg_lua *lua, mg_req *r)
{
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_on_log);
    lua_pushnumber(L, (lua_Number)r->id);
    mg_ffi_current = r;
    protected_call(lua, 1, 0, r->conn_id, "on_log");
    mg_ffi_current = NULL;
}

int mg_lua_on_body(mg_lua *lua, mg_req *r, mg_buf *buf, int last)
{
    lua_State *L = lua->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->ref_on_body);
    lua_pushnumber(L, (lua_Number)r->id);
    lua_pushlstring(L, buf->p ? buf->p : "", buf->len);
    lua_pushboolean(L, last);
    mg_ffi_current = r;
    int rc = protected_call(lua, 3, 1, r->conn_id, "on_body");
    mg_ffi_current = NULL;
    if (rc) return -1;
    size_t n = 0;
    const char *out = lua_tolstring(L, -1, &n);
    buf->len = 0;
    rc = out && mg_buf_append(buf, out, n) ? -1 : 0;
    lua_pop(L, 1);
    return out ? rc : -1;
}

int mg_lua_pending(mg_lua *lua)
{
    lua_rawgeti(lua->L, LUA_REGISTRYINDEX, lua->ref_pending);
    if (protected_call(lua, 0, 1, 0, "counting pending requests")) return -1;
    int n = (int)lua_tointeger(lua->L, -1);
    lua_pop(lua->L, 1);
    return n;
}

void mg_lua_tick(mg_lua *lua)
{
    lua_rawgeti(lua->L, LUA_REGISTRYINDEX, lua->ref_tick);
    protected_call(lua, 0, 0, 0, "a timer");
}
