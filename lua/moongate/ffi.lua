-- The one ffi.cdef of the functions the gateway binary exports: it mirrors
-- core/ffi.h (spec/lua/ffi_spec.lua checks that the two and the binary's
-- dynamic symbols list the same functions). Every module that calls into
-- the core takes C from here. Outside the binary (plain luajit) the
-- declarations still load, in_gateway is false and the functions are absent.
local ffi = require("ffi")

local _M = {}

_M.declarations = [[
enum mg_ffi_rc {
    MG_FFI_OK = 0,
    MG_FFI_DECLINED = -1,
    MG_FFI_INVALID = -2,
    MG_FFI_WRONG_PHASE = -3,
    MG_FFI_NO_REQUEST = -4,
    MG_FFI_NO_MEMORY = -5,
};
enum mg_ffi_field {
    MG_FIELD_METHOD, MG_FIELD_PATH, MG_FIELD_QUERY, MG_FIELD_HOST, MG_FIELD_CLIENT_IP,
    MG_FIELD_VERSION, MG_FIELD_TARGET, MG_FIELD_SERVICE, MG_FIELD_SCHEME, MG_FIELD_SNI,
    MG_FIELD_TLS_VERSION, MG_FIELD_TLS_ALPN, MG_FIELD_TLS_RESUMED,
};

int mg_ffi_req_field(int which, const char **p, size_t *len);
int mg_ffi_req_header(const char *name, size_t nlen, int nth, const char **v, size_t *vlen);
int mg_ffi_req_header_count(void);
int mg_ffi_req_header_at(int i, const char **n, size_t *nlen, const char **v, size_t *vlen);
int mg_ffi_req_set_header(const char *name, size_t nlen, const char *v, size_t vlen, int mode);
int mg_ffi_req_set_path(const char *p, size_t len);
int mg_ffi_req_set_service(const char *name);
int mg_ffi_header_valid(const char *name, size_t nlen, const char *v, size_t vlen);
int mg_ffi_req_set_retries(int retries, double initial_interval);
int mg_ffi_req_respond(int status, const char *body, size_t blen, const char *headers, size_t hlen);
int mg_ffi_resp_add_header(const char *name, size_t nlen, const char *v, size_t vlen);
int mg_ffi_resp_status(void);
int mg_ffi_resp_filter_body(void);
int mg_ffi_resp_set_status(int status);
int mg_ffi_resp_header(const char *name, size_t nlen, int nth, const char **v, size_t *vlen);
int mg_ffi_resp_set_header(const char *name, size_t nlen, const char *v, size_t vlen, int mode);
int mg_ffi_resp_replace(const char *body, size_t blen, const char *headers, size_t hlen);
void mg_ffi_log(int level, const char *msg, size_t len);
double mg_ffi_now(void);

void mg_ffi_busy_plugin(const char *name, size_t len);
void mg_ffi_want_log(void);
int mg_ffi_hook_wait(void);
int mg_ffi_hook_resume(int slot, double id);
void mg_ffi_hook_done(int slot, double id, int flags, int failed);

int mg_ffi_counter_slot(const char *name);
uint32_t mg_ffi_counter_next(int slot);
double mg_ffi_counter_add(int slot, int64_t delta);
double mg_ffi_counter_get(int slot);
int mg_ffi_inflight(uint32_t uid);
int mg_ffi_target_counters(uint32_t suid, double *out, int n);
int mg_ffi_held(const char *service);
void mg_ffi_autoscale_note(const char *service, const double *v, int n, const char *decisions_json);

void mg_ffi_set_health(uint32_t suid, int state, const char *reason);

int mg_ffi_rule_check(const char *rule, char *err, size_t errlen);
int mg_ffi_router_eval(const char *rule, const char *method, const char *host,
                       const char *path, const char *query, const char *headers,
                       const char *client_ip, char *err, size_t errlen);
int mg_ffi_router_pick(const char **rules, const int *priorities, int n,
                       const char *method, const char *host, const char *path,
                       const char *query, const char *headers, const char *client_ip,
                       char *err, size_t errlen);
]]

-- A second load of this module in the same state (a spec that clears
-- package.loaded) finds the types declared already: that is the only
-- error let through.
local ok, err = pcall(ffi.cdef, _M.declarations)
if not ok and not tostring(err):find("redefine", 1, true) then error(err, 0) end

local C = ffi.C
_M.C = C
_M.in_gateway = pcall(function() return C.mg_ffi_now end)

-- The return codes (core/ffi.h), as plain numbers.
_M.OK = C.MG_FFI_OK
_M.DECLINED = C.MG_FFI_DECLINED
_M.INVALID = C.MG_FFI_INVALID
_M.WRONG_PHASE = C.MG_FFI_WRONG_PHASE
_M.NO_REQUEST = C.MG_FFI_NO_REQUEST
_M.NO_MEMORY = C.MG_FFI_NO_MEMORY

-- mg_ffi_req_field's which, by the name req has for it.
_M.FIELDS = {
    method = C.MG_FIELD_METHOD, path = C.MG_FIELD_PATH, query = C.MG_FIELD_QUERY,
    host = C.MG_FIELD_HOST, client_ip = C.MG_FIELD_CLIENT_IP, http_version = C.MG_FIELD_VERSION,
    target = C.MG_FIELD_TARGET, service = C.MG_FIELD_SERVICE, scheme = C.MG_FIELD_SCHEME,
    sni = C.MG_FIELD_SNI, tls_version = C.MG_FIELD_TLS_VERSION, tls_alpn = C.MG_FIELD_TLS_ALPN,
    tls_resumed = C.MG_FIELD_TLS_RESUMED,
}

-- Raises the error for a call made outside a request; level as for error().
function _M.no_request(what, level)
    error(what .. ": no current request (only valid during a hook or a pick)", (level or 1) + 1)
end

return _M
