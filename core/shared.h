/* Gateway-wide counters shared by every worker's Lua state, for balancers
 * whose decision should not depend on which worker took the connection
 * (a round robin that alternates across the whole gateway, not per worker). */
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

/* Gateway-wide in-flight requests of a target uid (see snapshot.h). */
MG_EXPORT int mg_shared_inflight(uint32_t uid);

#endif
