/* The FFI surface a worker's Lua sees for the request being handled. The C
 * side sets mg_ffi_current before each call into Lua and clears it after,
 * so these functions never take a request pointer from Lua. Conventions:
 * an int status (0 ok, negative error), buffers with lengths, no Lua
 * callbacks. Mirrored by the ffi.cdef in lua/moongate/request.lua. */
#ifndef MG_LUA_FFI_H
#define MG_LUA_FFI_H

#include "common.h"
#include <stddef.h>

struct mg_req;
extern __thread struct mg_req *mg_ffi_current;
extern __thread int mg_lua_log_worker; /* worker id for logs outside a request */

enum {
    MG_FIELD_METHOD = 0,
    MG_FIELD_PATH,
    MG_FIELD_QUERY,
    MG_FIELD_HOST,
    MG_FIELD_CLIENT_IP,
    MG_FIELD_VERSION,
    MG_FIELD_TARGET, /* the raw request target, path and query */
    MG_FIELD_SERVICE,
    MG_FIELD_SCHEME,      /* "http" or "https" */
    MG_FIELD_SNI,         /* the TLS server name the client sent (-1: none) */
    MG_FIELD_TLS_VERSION, /* "TLSv1.3" (-1: plain) */
    MG_FIELD_TLS_ALPN,    /* the protocol ALPN chose ("http/1.1"; -1: none) */
    MG_FIELD_TLS_RESUMED, /* "1" when the TLS session was resumed (-1: not) */
};

/* Request fields; returns 0 and points *p into memory valid until the call
 * returns to C, or -1 without a current request. */
MG_EXPORT int mg_ffi_req_field(int which, const char **p, size_t *len);
/* The nth (0-based) header called name; 1 found, 0 not. */
MG_EXPORT int mg_ffi_req_header(const char *name, size_t nlen, int nth, const char **v,
                                size_t *vlen);
MG_EXPORT int mg_ffi_req_header_count(void);
MG_EXPORT int mg_ffi_req_header_at(int i, const char **n, size_t *nlen, const char **v,
                                   size_t *vlen);
/* mode: 0 set (replace every header of that name), 1 add, 2 remove.
 * Returns 0, or -1 for an invalid name or a value with CR, LF or NUL. */
MG_EXPORT int mg_ffi_req_set_header(const char *name, size_t nlen, const char *v, size_t vlen,
                                    int mode);
MG_EXPORT int mg_ffi_req_set_path(const char *p, size_t len);
MG_EXPORT int mg_ffi_req_set_service(const char *name);
/* Retries for this request (the retry middleware): up to `retries` extra
 * tries after failures, waiting initial_interval seconds before the first
 * and twice as long before each next one. -2 once the upstream was tried. */
MG_EXPORT int mg_ffi_req_set_retries(int retries, double initial_interval);
/* Answers the request without an upstream. headers: "Name: value\r\n" lines,
 * already validated by the caller. */
MG_EXPORT int mg_ffi_req_respond(int status, const char *body, size_t blen, const char *headers,
                                 size_t hlen);
/* Headers added to the response the client gets (a sticky cookie). */
MG_EXPORT int mg_ffi_resp_add_header(const char *name, size_t nlen, const char *v, size_t vlen);

/* The response (on_response, on_log). */
MG_EXPORT int mg_ffi_resp_status(void);
/* In on_response: the response body goes through the on_body hooks, and
 * to the client with its length unknown (chunked). -1 outside on_response. */
MG_EXPORT int mg_ffi_resp_filter_body(void);
MG_EXPORT int mg_ffi_resp_set_status(int status);
MG_EXPORT int mg_ffi_resp_header(const char *name, size_t nlen, int nth, const char **v,
                                 size_t *vlen);
MG_EXPORT int mg_ffi_resp_set_header(const char *name, size_t nlen, const char *v, size_t vlen,
                                     int mode);

/* Logging from Lua into the error log, with the worker and connection. */
MG_EXPORT void mg_ffi_log(int level, const char *msg, size_t len);
/* Monotonic clock in seconds. */
MG_EXPORT double mg_ffi_now(void);

#endif
