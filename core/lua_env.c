/* Lua states with the embedded library. Every Lua state moongate creates
 * (per worker, control, `moongate test`) starts here. */
#include "lua_env.h"

#include <lauxlib.h>
#include <luajit.h>
#include <uv.h>
#include "lua_json.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *path;
    const char *data;
    size_t len;
} mg_embedded_file;

extern const mg_embedded_file mg_embedded_files[];

static const char limit_key = 0;     /* registry key: the deadline (ns) */
static const char limit_msg_key = 0; /* registry key: the first "ran too long" error */

/* Past the deadline the hook raises at every instruction, so that no pcall
 * outlasts it; it raises the first error each time, which says where the
 * limit was hit (the user's FILE:LINE when their file was running), not
 * where the unwinding code happened to be when a later check fired. */
static void limit_hook(lua_State *L, lua_Debug *ar)
{
    lua_pushlightuserdata(L, (void *)&limit_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    double deadline = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if ((double)uv_hrtime() < deadline) return;
    lua_pushlightuserdata(L, (void *)&limit_msg_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isstring(L, -1)) lua_error(L);
    lua_pop(L, 1);
    lua_sethook(L, limit_hook, LUA_MASKCOUNT, 1);
    luaL_where(L, 0); /* the running function: a count hook has no frame of its own */
    lua_pushliteral(L, "ran too long (over the time a config or plugin file may take to load)");
    lua_concat(L, 2);
    lua_pushlightuserdata(L, (void *)&limit_msg_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_error(L);
}

void mg_lua_env_limit(lua_State *L, double seconds)
{
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_pushlightuserdata(L, (void *)&limit_key);
    lua_pushnumber(L, (double)uv_hrtime() + seconds * 1e9);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_sethook(L, limit_hook, LUA_MASKCOUNT, 10000);
}

const char *mg_lua_env_embedded(const char *path, size_t *len)
{
    for (const mg_embedded_file *f = mg_embedded_files; f->path; f++) {
        if (strcmp(f->path, path) == 0) {
            *len = f->len;
            return f->data;
        }
    }
    return NULL;
}

/* package.loaders entry: "moongate.config" -> lua/moongate/config.lua or
 * lua/moongate/config/init.lua from the embedded copy. */
static int embedded_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    char rel[256], path[300];
    size_t n = strlen(name);
    if (n >= sizeof(rel)) return 0;
    for (size_t i = 0; i <= n; i++)
        rel[i] = name[i] == '.' ? '/' : name[i];
    static const char *const patterns[] = {"lua/%s.lua", "lua/%s/init.lua"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), patterns[i], rel);
        size_t len;
        const char *src = mg_lua_env_embedded(path, &len);
        if (!src) continue;
        char chunk[310];
        snprintf(chunk, sizeof(chunk), "@%s", path);
        if (luaL_loadbuffer(L, src, len, chunk) != 0) return lua_error(L);
        return 1;
    }
    lua_pushfstring(L, "\n\tno embedded file 'lua/%s.lua'", rel);
    return 1;
}

static int l_embedded_source(lua_State *L)
{
    size_t len;
    const char *src = mg_lua_env_embedded(luaL_checkstring(L, 1), &len);
    if (!src) return 0;
    lua_pushlstring(L, src, len);
    return 1;
}

lua_State *mg_lua_env_new(void)
{
    lua_State *L = luaL_newstate();
    if (!L) return NULL;
    luaL_openlibs(L);
    /* Put the embedded searcher right after the preload searcher, so the
     * library that matches the binary wins over stray copies on disk. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaders");
    int nloaders = (int)lua_objlen(L, -1);
    for (int i = nloaders; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, embedded_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
    /* embedded(path) -> source: used by the plugin loader for built-in
     * plugins. */
    lua_pushcfunction(L, l_embedded_source);
    mg_lua_env_provide(L, "moongate.c.embedded");
    mg_lua_json_open(L);
    return L;
}
