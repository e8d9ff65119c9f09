/* The request the worker's Lua is looking at. The C side sets mg_ffi_current
 * before each call into Lua and clears it after, so the request functions
 * of ffi.h (defined in lua_ffi.c) never take a request pointer from Lua. */
#ifndef MG_LUA_FFI_H
#define MG_LUA_FFI_H

#include "common.h"
#include "ffi.h"
#include <stddef.h>

struct mg_req;
extern __thread struct mg_req *mg_ffi_current;
extern __thread int mg_lua_log_worker; /* worker id for logs outside a request */

#endif
