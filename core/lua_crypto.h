/* Registers moongate.c.crypto and moongate.c.tls (see lua_crypto.c) in a control-plane
 * Lua state (the control plane, `moongate test`, scripts). */
#ifndef MG_LUA_CRYPTO_H
#define MG_LUA_CRYPTO_H

#include <lua.h>

void mg_lua_crypto_open(lua_State *L);

#endif
