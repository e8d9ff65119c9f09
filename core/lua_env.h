/* A Lua state with moongate's embedded library on its module path. */
#ifndef MG_LUA_ENV_H
#define MG_LUA_ENV_H

#include <lua.h>

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

#endif
