/* Registers mg.json's C half (jansson) in a Lua state. */
#ifndef MG_LUA_JSON_H
#define MG_LUA_JSON_H

#include <lua.h>

void mg_lua_json_open(lua_State *L);

#endif
