/* A Lua state with moongate's embedded library on its module path. */
#ifndef MG_LUA_ENV_H
#define MG_LUA_ENV_H

#include <lua.h>
#include <lauxlib.h>

/* Creates a state with the standard libraries and a module searcher that
 * finds lua/ and plugins/ files compiled into the binary. The caller owns
 * the state and closes it with lua_close. Returns NULL on allocation failure. */
lua_State *mg_lua_env_new(void);

/* Bounds how long code run in L from now on may take (a config or plugin
 * file loaded in a scratch state: `while true do end` must not hang
 * startup or a reload): the JIT is turned off (compiled code checks no
 * hooks) and past `seconds` every instruction check raises "... ran too
 * long", so a pcall in the code cannot keep it running. */
void mg_lua_env_limit(lua_State *L, double seconds);

/* Returns the embedded copy of a repository path such as
 * "plugins/roundrobin.lua", or NULL. The bytes are static. */
const char *mg_lua_env_embedded(const char *path, size_t *len);

/* Hands the value on top of the stack (popped) to the Lua library as the
 * module `name` ("moongate.c.io"): it goes into package.loaded, never into
 * _G, so plugins reach the core's C functions only through require("moongate")
 * and the moongate.* modules that wrap them. */
static inline void mg_lua_env_provide(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED"); /* package.loaded */
    lua_insert(L, -2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

#endif
