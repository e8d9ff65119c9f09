/* Gateway-wide counters shared by every worker's Lua state, for balancers
 * whose decision should not depend on which worker took the connection
 * (a round robin that alternates across the whole gateway, not per worker)
 * and for policies that cap something across workers (requests in flight,
 * a quota). Values are signed 64-bit; they cross the FFI as doubles, exact
 * up to 2^53, so Lua gets plain numbers and no boxed cdata to collect. */
#ifndef MG_SHARED_H
#define MG_SHARED_H

#include "common.h"
#include "ffi.h"

#define MG_SHARED_SLOTS 4096

/* The Lua-facing functions (mg_ffi_counter_*, mg_ffi_inflight) are in
 * ffi.h. */

#endif
