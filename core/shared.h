/* Gateway-wide counters shared by every worker's Lua state, for balancers
 * whose decision should not depend on which worker took the connection
 * (a round robin that alternates across the whole gateway, not per worker)
 * and for policies that cap something across workers (requests in flight,
 * a quota). Values are signed 64-bit; they cross the FFI as doubles, exact
 * up to 2^53, so Lua gets plain numbers and no boxed cdata to collect. */
#ifndef MG_SHARED_H
#define MG_SHARED_H

#include "common.h"

#define MG_SHARED_SLOTS 4096

/* Returns the slot of the counter called name, creating it the first time
 * (takes a lock: call it when a balancer is created, not per request), or
 * -1 when every slot is taken. */
MG_EXPORT int mg_shared_counter_slot(const char *name);

/* Returns the counter's value (mod 2^32: a plain Lua number through the
 * FFI, no boxed 64-bit cdata to collect) and adds one; lock-free. */
MG_EXPORT uint32_t mg_shared_counter_next(int slot);

/* Adds delta (may be negative) and returns the new value; lock-free. */
MG_EXPORT double mg_shared_counter_add(int slot, int64_t delta);

/* Returns the counter's current value; lock-free. A bad slot reads 0. */
MG_EXPORT double mg_shared_counter_get(int slot);

/* Gateway-wide in-flight requests of a target uid (see snapshot.h). */
MG_EXPORT int mg_shared_inflight(uint32_t uid);

#endif
