/* The Lua HTTP client's response side (the request's lifecycle: lua_io.c):
 * llhttp callbacks that collect the status, the headers (lowercased
 * names, in arrival order) and the body, skipping interim 1xx answers,
 * and the hand-over to the waiting coroutine: the head and whole body, or
 * for a stream the head then each piece as read() asks for it. */
#include "lua_io_req.h"

#include <lauxlib.h>
#include <string.h>

#define IO_MAX_HEADERS 100
#define IO_MAX_BODY    (64 * 1024 * 1024)

static void resume(io_req *r, int nargs)
{
    if (!r->co) return;
    lua_State *co = r->co;
    int ref = r->co_ref;
    r->co = NULL;
    r->co_ref = LUA_NOREF;
    r->waiting = 0;
    lua_State *L = r->L;
    mg_io_resume(L, co, nargs); /* r may be freed by now (a stream closed) */
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

/* Pushes the headers twice: a map of lowercased names (the last value of
 * a repeated one wins), then the list of { name, value } in arrival order
 * (every Set-Cookie, every WWW-Authenticate). */
static void push_headers(lua_State *co, io_req *r)
{
    lua_createtable(co, 0, r->nheaders);
    lua_createtable(co, r->nheaders, 0);
    const char *p = r->hdr.p;
    for (int i = 0; i < r->nheaders; i++) {
        const char *name = p;
        p += strlen(p) + 1;
        const char *value = p;
        p += strlen(p) + 1;
        lua_pushstring(co, value);
        lua_setfield(co, -3, name);
        lua_createtable(co, 2, 0);
        lua_pushstring(co, name);
        lua_rawseti(co, -2, 1);
        lua_pushstring(co, value);
        lua_rawseti(co, -2, 2);
        lua_rawseti(co, -2, i + 1);
    }
}

void mg_io_resp_deliver(io_req *r)
{
    if (!r->co) return;
    lua_State *co = r->co;
    if (r->failed) {
        lua_pushnil(co);
        lua_pushstring(co, r->err);
        resume(r, 2);
        return;
    }
    if (r->waiting == 1 && (r->stream ? r->head_done : r->done)) {
        lua_pushinteger(co, r->status);
        push_headers(co, r);
        if (r->stream) {
            resume(r, 3);
        } else {
            lua_pushlstring(co, r->body.p ? r->body.p : "", r->body.len);
            resume(r, 4);
        }
        return;
    }
    if (r->waiting == 2 && (r->body.len || r->done)) {
        if (r->body.len) {
            lua_pushlstring(co, r->body.p, r->body.len);
            r->body.len = 0;
        } else {
            lua_pushnil(co); /* end of the stream */
        }
        resume(r, 1);
    }
}

/* ---- llhttp callbacks --------------------------------------------------- */

static int on_status_complete(llhttp_t *p)
{
    io_req *r = p->data;
    r->status = p->status_code;
    return 0;
}

static int on_hfield(llhttp_t *p, const char *at, size_t n)
{
    io_req *r = p->data;
    if (r->in_value) {
        r->field.len = 0;
        r->in_value = 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = at[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c | 0x20);
        mg_buf_append(&r->field, &c, 1);
    }
    return 0;
}

static int on_hvalue(llhttp_t *p, const char *at, size_t n)
{
    io_req *r = p->data;
    if (!r->in_value) {
        if (r->nheaders >= IO_MAX_HEADERS) return HPE_USER;
        mg_buf_append(&r->hdr, r->field.p, r->field.len);
        mg_buf_append(&r->hdr, "", 1);
        r->nheaders++;
        r->in_value = 1;
    }
    mg_buf_append(&r->hdr, at, n);
    return 0;
}

static int on_hvalue_complete(llhttp_t *p)
{
    io_req *r = p->data;
    if (!r->in_value) { /* empty value */
        mg_buf_append(&r->hdr, r->field.p, r->field.len);
        mg_buf_append(&r->hdr, "", 1);
        r->nheaders++;
    }
    mg_buf_append(&r->hdr, "", 1);
    r->in_value = 1;
    r->field.len = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    io_req *r = p->data;
    if (r->status >= 100 && r->status < 200) { /* interim: forget it */
        r->hdr.len = 0;
        r->nheaders = 0;
        return 0;
    }
    r->head_done = 1;
    if (r->stream) uv_timer_stop(&r->timer); /* a stream may stay open */
    mg_io_resp_deliver(r);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    io_req *r = p->data;
    if (r->body.len + n > IO_MAX_BODY) return HPE_USER;
    mg_buf_append(&r->body, at, n);
    if (r->stream) mg_io_resp_deliver(r);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    io_req *r = p->data;
    if (r->status >= 100 && r->status < 200) return 0;
    mg_io_req_finish(r);
    return HPE_PAUSED;
}

static llhttp_settings_t settings;
static uv_once_t settings_once = UV_ONCE_INIT;

static void settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_status_complete = on_status_complete;
    settings.on_header_field = on_hfield;
    settings.on_header_value = on_hvalue;
    settings.on_header_value_complete = on_hvalue_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

void mg_io_resp_init(io_req *r)
{
    uv_once(&settings_once, settings_init);
    llhttp_init(&r->parser, HTTP_RESPONSE, &settings);
    r->parser.data = r;
}

void mg_io_resp_parse(io_req *r, const char *p, size_t n)
{
    llhttp_errno_t e = llhttp_execute(&r->parser, p, n);
    if (e != HPE_OK && e != HPE_PAUSED)
        mg_io_req_fail(r, "invalid response: %s", llhttp_get_error_reason(&r->parser));
}

void mg_io_resp_end(io_req *r)
{
    llhttp_errno_t e = llhttp_finish(&r->parser);
    if (r->done) return;
    if (e == HPE_OK && r->head_done)
        mg_io_req_finish(r);
    else
        mg_io_req_fail(r, "connection closed before the response ended%s", "");
}
