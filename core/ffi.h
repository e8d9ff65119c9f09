/* Every function the core exports to Lua through LuaJIT's FFI, and nothing
 * else: the binary is compiled with -fvisibility=hidden and linked with
 * -Wl,-E, so only what this header marks MG_EXPORT is in its dynamic symbol
 * table. lua/moongate/ffi.lua holds the one ffi.cdef that mirrors this file
 * (spec/lua/ffi_spec.lua checks that the header, that cdef and the binary's
 * exports list the same functions).
 *
 * Conventions, as in lua-resty-core: no Lua callbacks, caller buffers with
 * lengths, and an int status from the enum below; errors are reported as a
 * code (the Lua side turns it into a message). The request functions act on
 * mg_ffi_current (lua_ffi.h), which the C side sets before each call into
 * Lua, so a Lua caller never holds a request pointer; without one they
 * return MG_FFI_NO_REQUEST and the Lua wrapper raises an error naming the
 * call. Each function is defined in the module that owns its data
 * (lua_ffi.c, lua_bridge.c, shared.c, stats.c, router_ffi.c). */
#ifndef MG_FFI_H
#define MG_FFI_H

#include <stddef.h>
#include <stdint.h>

#define MG_EXPORT __attribute__((visibility("default")))

/* Return codes. Functions that return a count, an index or a status return
 * one of the negative codes instead of a value. */
enum mg_ffi_rc {
    MG_FFI_OK = 0,
    MG_FFI_DECLINED = -1,    /* nothing there: no such field or header, no rule matched */
    MG_FFI_INVALID = -2,     /* a bad argument: header name or value, path, status, rule */
    MG_FFI_WRONG_PHASE = -3, /* not in this hook (request headers after on_request, ...) */
    MG_FFI_NO_REQUEST = -4,  /* called outside a request (no mg_ffi_current) */
    MG_FFI_NO_MEMORY = -5,
};

/* mg_ffi_req_field's which. */
enum mg_ffi_field {
    MG_FIELD_METHOD = 0,
    MG_FIELD_PATH,
    MG_FIELD_QUERY,
    MG_FIELD_HOST,
    MG_FIELD_CLIENT_IP,
    MG_FIELD_VERSION,
    MG_FIELD_TARGET, /* the raw request target, path and query */
    MG_FIELD_SERVICE,
    MG_FIELD_SCHEME,      /* "http" or "https" */
    MG_FIELD_SNI,         /* the TLS server name the client sent (declined: none) */
    MG_FIELD_TLS_VERSION, /* "TLSv1.3" (declined: plain) */
    MG_FIELD_TLS_ALPN,    /* the protocol ALPN chose ("http/1.1"; declined: none) */
    MG_FIELD_TLS_RESUMED, /* "1" when the TLS session was resumed (declined: not) */
};

/* ---- the current request (lua_ffi.c) ------------------------------------ */

/* A request field: MG_FFI_OK with *p pointing into memory valid until the
 * call returns to C, or MG_FFI_DECLINED when the request has none. */
MG_EXPORT int mg_ffi_req_field(int which, const char **p, size_t *len);
/* The nth (0-based) header called name: MG_FFI_OK or MG_FFI_DECLINED. */
MG_EXPORT int mg_ffi_req_header(const char *name, size_t nlen, int nth, const char **v,
                                size_t *vlen);
/* The number of header slots (removed ones included), or a negative code. */
MG_EXPORT int mg_ffi_req_header_count(void);
/* Header slot i: MG_FFI_OK, or MG_FFI_DECLINED for a removed slot. */
MG_EXPORT int mg_ffi_req_header_at(int i, const char **n, size_t *nlen, const char **v,
                                   size_t *vlen);
/* mode: 0 set (replace every header of that name), 1 add, 2 remove.
 * MG_FFI_INVALID for a name that is not a token or a value with CR, LF or
 * NUL; MG_FFI_WRONG_PHASE once the request went upstream. */
MG_EXPORT int mg_ffi_req_set_header(const char *name, size_t nlen, const char *v, size_t vlen,
                                    int mode);
/* MG_FFI_INVALID unless p starts with / and has no space or control byte. */
MG_EXPORT int mg_ffi_req_set_path(const char *p, size_t len);
/* MG_FFI_DECLINED for a service the snapshot does not have. */
MG_EXPORT int mg_ffi_req_set_service(const char *name);
/* MG_FFI_OK if name is a header name (an RFC 9110 token) and v a value
 * without CR, LF or NUL; else MG_FFI_INVALID. The one check, in C, that
 * every header a plugin writes goes through. */
MG_EXPORT int mg_ffi_header_valid(const char *name, size_t nlen, const char *v, size_t vlen);
/* Retries for this request (the retry middleware): up to `retries` extra
 * tries after failures, waiting initial_interval seconds before the first
 * and twice as long before each next one. MG_FFI_INVALID out of range
 * (0..10, 0..60 s), MG_FFI_WRONG_PHASE once the upstream was tried. */
MG_EXPORT int mg_ffi_req_set_retries(int retries, double initial_interval);
/* Answers the request without an upstream. headers: "Name: value\r\n" lines,
 * each checked with mg_ffi_header_valid by the caller. MG_FFI_WRONG_PHASE once a response is on
 * its way. */
MG_EXPORT int mg_ffi_req_respond(int status, const char *body, size_t blen, const char *headers,
                                 size_t hlen);
/* Headers added to the response the client gets (a sticky cookie). */
MG_EXPORT int mg_ffi_resp_add_header(const char *name, size_t nlen, const char *v, size_t vlen);

/* The response (on_response, on_log): the status, or a negative code. */
MG_EXPORT int mg_ffi_resp_status(void);
/* In on_response: the response body goes through the on_body hooks, and
 * to the client with its length unknown (chunked). MG_FFI_WRONG_PHASE
 * outside on_response. */
MG_EXPORT int mg_ffi_resp_filter_body(void);
/* MG_FFI_WRONG_PHASE outside on_response. */
MG_EXPORT int mg_ffi_resp_set_status(int status);
MG_EXPORT int mg_ffi_resp_header(const char *name, size_t nlen, int nth, const char **v,
                                 size_t *vlen);
MG_EXPORT int mg_ffi_resp_set_header(const char *name, size_t nlen, const char *v, size_t vlen,
                                     int mode);
/* In on_response of an HTTP/1 upstream's answer: the client gets this
 * body and these header lines ("Name: value\r\n") instead, with the
 * backend's status (or the one res:set_status gives); the backend's body
 * is read and dropped. MG_FFI_WRONG_PHASE elsewhere, MG_FFI_INVALID for
 * a 204 or 304 answer. */
MG_EXPORT int mg_ffi_resp_replace(const char *body, size_t blen, const char *headers, size_t hlen);

/* Logging from Lua into the error log, with the worker and the connection
 * (outside a request: the worker only). */
MG_EXPORT void mg_ffi_log(int level, const char *msg, size_t len);
/* Monotonic clock in seconds. */
MG_EXPORT double mg_ffi_now(void);

/* ---- the worker's plugin runtime (lua_bridge.c) ------------------------- */

/* Names the plugin about to run, for the watchdog's report. */
MG_EXPORT void mg_ffi_busy_plugin(const char *name, size_t len);
/* The runtime keeps state for the current request outside on_request: the
 * core must call on_log at the end so that it is forgotten. */
MG_EXPORT void mg_ffi_want_log(void);

/* ---- hooks that wait on I/O (proxy_wait.c) ------------------------------ */

/* The current request's chain yielded: it is held until mg_ffi_hook_done.
 * Returns the slot that names it (>= 0), or a negative code. */
MG_EXPORT int mg_ffi_hook_wait(void);
/* The chain of slot (whose request has that id) runs again: the request
 * functions act on it until it yields or ends. MG_FFI_DECLINED: gone. */
MG_EXPORT int mg_ffi_hook_resume(int slot, double id);
/* The chain ended: flags as on_request returns them (-1: unchanged), failed
 * when it raised. The core goes on with the request at its next loop turn. */
MG_EXPORT void mg_ffi_hook_done(int slot, double id, int flags, int failed);

/* ---- gateway-wide counters (shared.c) ------------------------------------ */

/* Values are signed 64-bit; they cross the FFI as doubles, exact up to
 * 2^53, so Lua gets plain numbers and no boxed cdata to collect. */

/* The slot of the counter called name, created the first time (takes a
 * lock: call it when a balancer is created, not per request), or
 * MG_FFI_NO_MEMORY when every slot is taken. */
MG_EXPORT int mg_ffi_counter_slot(const char *name);
/* The counter's value mod 2^32, then adds one; lock-free. */
MG_EXPORT uint32_t mg_ffi_counter_next(int slot);
/* Adds delta (may be negative) and returns the new value; lock-free. */
MG_EXPORT double mg_ffi_counter_add(int slot, int64_t delta);
/* The counter's current value; lock-free. A bad slot reads 0. */
MG_EXPORT double mg_ffi_counter_get(int slot);
/* Gateway-wide in-flight requests of a target uid (see snapshot.h). */
MG_EXPORT int mg_ffi_inflight(uint32_t uid);

/* ---- health (stats.c) ---------------------------------------------------- */

/* Publishes a target's health state (see stats.h) with the probe's reason
 * (copied, truncated to 119 bytes; NULL clears it). */
MG_EXPORT void mg_ffi_set_health(uint32_t suid, int state, const char *reason);

/* ---- autoscaling (lua_stats.c): the control plane's figures -------------- */

/* out[] gets the counters of (service, target) suid, up to n values:
 * requests, status none,1xx..5xx (6), connect_errors, timeouts, latency
 * buckets (MG_LAT_BUCKETS, stats.h), lat_sum_us. Returns how many values
 * were written, 0 past the table. */
MG_EXPORT int mg_ffi_target_counters(uint32_t suid, double *out, int n);
/* Requests held for service now, on all workers together. */
MG_EXPORT int mg_ffi_held(const char *service);
/* Records service's newest autoscale figures (the MG_AS_* values of
 * lua_stats.h) and its recent decisions (a JSON array, copied); v[0] < 0
 * forgets the service. */
MG_EXPORT void mg_ffi_autoscale_note(const char *service, const double *v, int n,
                                     const char *decisions_json);

/* ---- routing rules (router_ffi.c): config checks and specs ------------- */

/* MG_FFI_OK for a rule that compiles, else MG_FFI_INVALID with the reason
 * in err. */
MG_EXPORT int mg_ffi_rule_check(const char *rule, char *err, size_t errlen);
/* 1 if rule matches the request, 0 if not, MG_FFI_INVALID (reason in err)
 * if the rule does not compile. */
MG_EXPORT int mg_ffi_router_eval(const char *rule, const char *method, const char *host,
                                 const char *path, const char *query, const char *headers,
                                 const char *client_ip, char *err, size_t errlen);
/* Builds a router from n rules (priorities[i] < 0 or priorities NULL: the
 * default) and returns the index of the rule that wins for the request,
 * MG_FFI_DECLINED if none matches, MG_FFI_INVALID (reason in err, "rule i:
 * ...") if one does not compile. */
MG_EXPORT int mg_ffi_router_pick(const char **rules, const int *priorities, int n,
                                 const char *method, const char *host, const char *path,
                                 const char *query, const char *headers, const char *client_ip,
                                 char *err, size_t errlen);

#endif
