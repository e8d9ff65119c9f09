/* mg.json: JSON through jansson for every Lua state (the classic C API, as
 * values cross by the table). Arrays are tables with 1..n keys; an empty
 * table encodes as an object; JSON null decodes to mg.json.null. */
#include "lua_json.h"
#include "lua_env.h"

#include <jansson.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char null_key = 0;

static json_t *to_json(lua_State *L, int idx, int depth, const char **err)
{
    if (depth > 64) {
        *err = "nesting too deep";
        return NULL;
    }
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) {
            *err = "cannot encode inf or nan";
            return NULL;
        }
        if (d == floor(d) && fabs(d) < 9e15) return json_integer((json_int_t)d);
        return json_real(d);
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        json_t *j = json_stringn(s, len);
        if (!j) *err = "string is not valid UTF-8";
        return j;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == (void *)&null_key) return json_null();
        break;
    case LUA_TTABLE: {
        size_t n = lua_objlen(L, idx);
        int count = 0;
        for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1))
            count++;
        if (n > 0 && (size_t)count == n) {
            json_t *arr = json_array();
            for (size_t i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, (int)i);
                json_t *v = to_json(L, -1, depth + 1, err);
                lua_pop(L, 1);
                if (!v) {
                    json_decref(arr);
                    return NULL;
                }
                json_array_append_new(arr, v);
            }
            return arr;
        }
        json_t *obj = json_object();
        for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING && lua_type(L, -2) != LUA_TNUMBER) {
                *err = "object keys must be strings or numbers";
                lua_pop(L, 2);
                json_decref(obj);
                return NULL;
            }
            lua_pushvalue(L, -2);
            const char *k = lua_tostring(L, -1);
            json_t *v = to_json(L, -2, depth + 1, err);
            if (!v) {
                lua_pop(L, 3);
                json_decref(obj);
                return NULL;
            }
            json_object_set_new(obj, k, v);
            lua_pop(L, 1);
        }
        return obj;
    }
    default:
        break;
    }
    *err = "cannot encode this Lua type";
    return NULL;
}

static void push_json(lua_State *L, json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            if (json_is_null(v)) continue; /* absent, as Lua tables have it */
            push_json(L, v);
            lua_setfield(L, -2, k);
        }
        break;
    }
    case JSON_ARRAY: {
        lua_createtable(L, (int)json_array_size(j), 0);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            push_json(L, v);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        lua_pushnumber(L, (lua_Number)json_integer_value(j));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(j));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
        lua_pushlightuserdata(L, (void *)&null_key);
        break;
    }
}

static int l_encode(lua_State *L)
{
    const char *err = NULL;
    lua_settop(L, 1);
    json_t *j = to_json(L, 1, 0, &err);
    if (!j) return luaL_error(L, "mg.json.encode: %s", err ? err : "failed");
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!s) return luaL_error(L, "mg.json.encode: failed");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* Returns the value, or nil and "line N column M: reason". */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    json_error_t e;
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &e);
    if (!j) {
        lua_pushnil(L);
        lua_pushfstring(L, "line %d column %d: %s", e.line, e.column, e.text);
        return 2;
    }
    push_json(L, j);
    json_decref(j);
    return 1;
}

/* ---- editing JSON text in place ------------------------------------------
 * For documents that go back to the program that wrote them (a Swarm
 * service spec): decoding into Lua tables would lose what tables cannot
 * hold ([] against {}, null members), so the text is edited as jansson's
 * tree, which keeps every member and their order. */

/* The value at path (a Lua array of object keys, at index pidx) below
 * root, or NULL with *err set. */
static json_t *walk(lua_State *L, json_t *root, int pidx, int upto, const char **err)
{
    json_t *j = root;
    for (int i = 1; i <= upto; i++) {
        lua_rawgeti(L, pidx, i);
        const char *key = lua_tostring(L, -1);
        json_t *next = key && json_is_object(j) ? json_object_get(j, key) : NULL;
        lua_pop(L, 1);
        if (!next) {
            *err = "no such member";
            return NULL;
        }
        j = next;
    }
    return j;
}

static int push_dump(lua_State *L, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) return luaL_error(L, "mg.json: cannot encode");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static json_t *load_or_push_error(lua_State *L, int idx)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    json_error_t e;
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &e);
    if (!j) {
        lua_pushnil(L);
        lua_pushfstring(L, "line %d column %d: %s", e.line, e.column, e.text);
    }
    return j;
}

/* mg.json.member(text, path) -> the text of the value at path, or nil, err */
static int l_member(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    json_t *root = load_or_push_error(L, 1);
    if (!root) return 2;
    const char *err = NULL;
    json_t *j = walk(L, root, 2, (int)lua_objlen(L, 2), &err);
    int n = 2;
    if (j) {
        n = push_dump(L, j);
    } else {
        lua_pushnil(L);
        lua_pushstring(L, err);
    }
    json_decref(root);
    return n;
}

/* mg.json.edit(text, path, value) -> text with the member at path set to
 * value (created when its object has no such key), or nil, err */
static int l_edit(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3);
    int depth = (int)lua_objlen(L, 2);
    if (depth < 1) return luaL_error(L, "mg.json.edit: an empty path");
    json_t *root = load_or_push_error(L, 1);
    if (!root) return 2;
    const char *err = NULL;
    json_t *parent = walk(L, root, 2, depth - 1, &err);
    json_t *v = parent ? to_json(L, 3, 0, &err) : NULL;
    lua_rawgeti(L, 2, depth);
    const char *key = lua_tostring(L, -1);
    int ok = 0, n;
    if (v && key && json_is_object(parent))
        ok = json_object_set_new(parent, key, v) == 0; /* takes v, even when it fails */
    else if (v)
        json_decref(v);
    if (ok) {
        n = push_dump(L, root);
    } else {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "the path does not end in an object's member");
        n = 2;
    }
    json_decref(root);
    return n;
}

void mg_lua_json_open(lua_State *L)
{
    lua_createtable(L, 0, 5);
    lua_pushcfunction(L, l_member);
    lua_setfield(L, -2, "member");
    lua_pushcfunction(L, l_edit);
    lua_setfield(L, -2, "edit");
    lua_pushcfunction(L, l_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
    lua_pushlightuserdata(L, (void *)&null_key);
    lua_setfield(L, -2, "null");
    mg_lua_env_provide(L, "moongate.c.json");
}
