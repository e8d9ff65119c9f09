/* Crypto primitives and the TLS manager for control-plane Lua: the modules
 * moongate.c.crypto and moongate.c.tls (in package.loaded, not _G), wrapped
 * by lua/moongate/crypto.lua and lua/moongate/tls.lua (mg.crypto, mg.tls).
 * These are cold calls (a certificate order signs a few dozen times), so
 * they use the classic Lua C API and return nil, err on failure; misuse
 * raises. */
#include "lua_crypto.h"
#include "lua_env.h"
#include "tls_certs.h"
#include "tls_crypto.h"
#include "tls_ocsp.h"
#include "tls_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

static int push_bytes(lua_State *L, mg_bytes *b)
{
    lua_pushlstring(L, (const char *)b->p, b->len);
    mg_bytes_free(b);
    return 1;
}

static EVP_PKEY *check_key(lua_State *L, int idx, char *err, size_t errlen)
{
    size_t len;
    const char *pem = luaL_checklstring(L, idx, &len);
    return mg_crypto_key_load(pem, len, err, errlen);
}

/* Reads a list of strings at idx into a malloc'd array of borrowed pointers
 * (valid while the table is on the stack). */
static const char **check_names(lua_State *L, int idx, int *n)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (int)lua_objlen(L, idx);
    const char **names = calloc(*n ? (size_t)*n : 1, sizeof(*names));
    if (!names) luaL_error(L, "out of memory");
    for (int i = 0; i < *n; i++) {
        lua_rawgeti(L, idx, i + 1);
        names[i] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the string stays anchored in the table */
        if (!names[i]) {
            free(names);
            luaL_error(L, "names[%d] is not a string", i + 1);
        }
    }
    return names;
}

/* keygen("ec" | "rsa", bits) -> PEM */
static int l_keygen(lua_State *L)
{
    char err[256];
    mg_bytes pem = {0};
    if (mg_crypto_keygen(luaL_checkstring(L, 1), (int)luaL_optinteger(L, 2, 2048), &pem, err,
                         sizeof(err)))
        return fail(L, err);
    return push_bytes(L, &pem);
}

/* jwk(key_pem) -> kty, a, b, alg (EC: x, y; RSA: n, e; base64url) */
static int l_jwk(lua_State *L)
{
    char err[256];
    EVP_PKEY *k = check_key(L, 1, err, sizeof(err));
    if (!k) return fail(L, err);
    const char *kty;
    mg_bytes a = {0}, b = {0};
    if (mg_crypto_jwk_params(k, &kty, &a, &b, err, sizeof(err))) {
        EVP_PKEY_free(k);
        return fail(L, err);
    }
    lua_pushstring(L, kty);
    push_bytes(L, &a);
    push_bytes(L, &b);
    lua_pushstring(L, mg_crypto_jws_alg(k));
    EVP_PKEY_free(k);
    return 4;
}

/* sign(key_pem, data) -> raw signature (ES256: r||s, RS256: PKCS#1 v1.5) */
static int l_sign(lua_State *L)
{
    char err[256];
    size_t len;
    EVP_PKEY *k = check_key(L, 1, err, sizeof(err));
    const char *data = luaL_checklstring(L, 2, &len);
    if (!k) return fail(L, err);
    mg_bytes sig = {0};
    int rc = mg_crypto_sign(k, data, len, &sig, err, sizeof(err));
    EVP_PKEY_free(k);
    if (rc) return fail(L, err);
    return push_bytes(L, &sig);
}

/* csr(key_pem, { names }) -> DER */
static int l_csr(lua_State *L)
{
    char err[256];
    EVP_PKEY *k = check_key(L, 1, err, sizeof(err));
    int n;
    const char **names = check_names(L, 2, &n);
    mg_bytes der = {0};
    int rc = k ? mg_crypto_csr(k, names, n, &der, err, sizeof(err)) : -1;
    EVP_PKEY_free(k);
    free(names);
    if (rc) return fail(L, err);
    return push_bytes(L, &der);
}

/* self_signed(key_pem, { names }, days, acme_digest_or_nil) -> PEM */
static int l_self_signed(lua_State *L)
{
    char err[256];
    EVP_PKEY *k = check_key(L, 1, err, sizeof(err));
    int n;
    const char **names = check_names(L, 2, &n);
    int days = (int)luaL_optinteger(L, 3, 7);
    size_t dlen = 0;
    const char *digest = lua_isnoneornil(L, 4) ? NULL : luaL_checklstring(L, 4, &dlen);
    if (digest && dlen != 32) {
        free(names);
        EVP_PKEY_free(k);
        return luaL_error(L, "the acmeIdentifier digest must be 32 bytes (SHA-256)");
    }
    mg_bytes pem = {0};
    int rc = k ? mg_crypto_self_signed(k, names, n, days, (const unsigned char *)digest, &pem, err,
                                       sizeof(err))
               : -1;
    EVP_PKEY_free(k);
    free(names);
    if (rc) return fail(L, err);
    return push_bytes(L, &pem);
}

static int l_sha256(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    unsigned char md[32];
    unsigned n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1) return fail(L, "SHA-256 failed");
    lua_pushlstring(L, (const char *)md, n);
    return 1;
}

static int l_b64url(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    mg_bytes out = {0};
    if (mg_crypto_b64url(data, len, &out)) return luaL_error(L, "out of memory");
    return push_bytes(L, &out);
}

static int l_b64url_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    mg_bytes out = {0};
    if (mg_crypto_b64url_decode(s, len, &out)) return fail(L, "not base64url");
    return push_bytes(L, &out);
}

/* cert_info(pem) -> { not_before, not_after, serial, subject, issuer, names = {...} } */
static int l_cert_info(lua_State *L)
{
    size_t len;
    const char *pem = luaL_checklstring(L, 1, &len);
    char err[256];
    mg_cert_info ci;
    if (mg_crypto_cert_info(pem, len, &ci, err, sizeof(err))) return fail(L, err);
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, (lua_Number)ci.not_before);
    lua_setfield(L, -2, "not_before");
    lua_pushnumber(L, (lua_Number)ci.not_after);
    lua_setfield(L, -2, "not_after");
    lua_pushstring(L, ci.serial);
    lua_setfield(L, -2, "serial");
    lua_pushstring(L, ci.subject);
    lua_setfield(L, -2, "subject");
    lua_pushstring(L, ci.issuer);
    lua_setfield(L, -2, "issuer");
    lua_createtable(L, ci.nnames, 0);
    const char *p = (const char *)ci.names.p;
    for (int i = 0; i < ci.nnames; i++) {
        lua_pushstring(L, p);
        lua_rawseti(L, -2, i + 1);
        p += strlen(p) + 1;
    }
    lua_setfield(L, -2, "names");
    mg_bytes_free(&ci.names);
    return 1;
}

/* write_secret(path, data) -> true | nil, err: the file is replaced
 * atomically (a temporary file in the same directory, renamed over it) and
 * readable by its owner only (mode 0600), for keys and ACME storage. */
static int l_write_secret(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    char tmp[4096], err[4400];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return fail(L, "path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, sizeof(err), "%s: %s", tmp, strerror(errno));
        return fail(L, err);
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    int ok = off == len && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok || rename(tmp, path)) {
        if (ok) saved = errno;
        unlink(tmp);
        snprintf(err, sizeof(err), "%s: %s", path, strerror(saved));
        return fail(L, err);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- moongate.c.tls: the TLS manager ---------------------------------------------------- */

/* set_certificate(id, cert_pem, key_pem) -> true | nil, err */
static int l_set_certificate(lua_State *L)
{
    size_t cl, kl;
    const char *id = luaL_checkstring(L, 1);
    const char *cert = luaL_checklstring(L, 2, &cl);
    const char *key = luaL_checklstring(L, 3, &kl);
    char err[512];
    if (mg_tls_set_certificate(id, cert, cl, key, kl, err, sizeof(err))) return fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_remove_certificate(lua_State *L)
{
    if (mg_tls_remove_certificate(luaL_checkstring(L, 1))) return fail(L, "no such certificate");
    lua_pushboolean(L, 1);
    return 1;
}

/* set_http01(token, key_authorization or nil) */
static int l_set_http01(lua_State *L)
{
    const char *token = luaL_checkstring(L, 1);
    const char *ka = luaL_optstring(L, 2, NULL);
    if (mg_tls_set_http01(token, ka)) return fail(L, "out of memory");
    lua_pushboolean(L, 1);
    return 1;
}

/* set_alpn01(name, cert_pem or nil, key_pem) */
static int l_set_alpn01(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    size_t cl = 0, kl = 0;
    const char *cert = lua_isnoneornil(L, 2) ? NULL : luaL_checklstring(L, 2, &cl);
    const char *key = cert ? luaL_checklstring(L, 3, &kl) : NULL;
    char err[512];
    if (mg_tls_set_alpn01(name, cert, cl, key, kl, err, sizeof(err))) return fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_rotate_tickets(lua_State *L)
{
    lua_pushboolean(L, mg_tls_rotate_tickets() == 0);
    return 1;
}

static void push_cert(lua_State *L, mg_tls_cert *c)
{
    lua_createtable(L, 0, 8);
    char fp[65];
    mg_tls_cert_fingerprint(c, fp);
    lua_pushstring(L, fp);
    lua_setfield(L, -2, "fingerprint");
    if (mg_tls_ocsp_url(c)) {
        lua_pushstring(L, mg_tls_ocsp_url(c));
        lua_setfield(L, -2, "ocsp_url");
        lua_pushboolean(L, mg_tls_ocsp_stapled(c));
        lua_setfield(L, -2, "stapled");
        lua_pushnumber(L, (lua_Number)mg_tls_ocsp_next_update(c));
        lua_setfield(L, -2, "ocsp_next_update");
    }
    lua_pushstring(L, mg_tls_cert_origin(c));
    lua_setfield(L, -2, "origin");
    lua_pushstring(L, mg_tls_cert_key_type(c));
    lua_setfield(L, -2, "key_type");
    lua_pushnumber(L, (lua_Number)mg_tls_cert_not_after(c));
    lua_setfield(L, -2, "not_after");
    lua_createtable(L, mg_tls_cert_nnames(c), 0);
    for (int i = 0; i < mg_tls_cert_nnames(c); i++) {
        lua_pushstring(L, mg_tls_cert_name(c, i));
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "names");
}

/* served(name or nil) -> list of the certificates a handshake for name gets
 * from the published store ({ origin, key_type, not_after, names }), or
 * nil when no store is published. */
static int l_served(lua_State *L)
{
    const char *name = luaL_optstring(L, 1, NULL);
    mg_tls_store *s = mg_tls_current();
    if (!s) return 0;
    int sel[2];
    int n = mg_tls_store_select(s, name, sel);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        push_cert(L, mg_tls_store_cert(s, sel[i]));
        lua_rawseti(L, -2, i + 1);
    }
    mg_tls_store_unref(s);
    return 1;
}

/* certificates() -> every certificate of the published store, in order */
static int l_certificates(lua_State *L)
{
    mg_tls_store *s = mg_tls_current();
    if (!s) return 0;
    int n = mg_tls_store_ncerts(s);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        push_cert(L, mg_tls_store_cert(s, i));
        lua_rawseti(L, -2, i + 1);
    }
    mg_tls_store_unref(s);
    return 1;
}

/* The certificate of the published store with this fingerprint, with a
 * reference of the caller's (mg_tls_cert_unref), or NULL. */
static mg_tls_cert *cert_by_fingerprint(const char *want)
{
    mg_tls_store *s = mg_tls_current();
    mg_tls_cert *found = NULL;
    for (int i = 0; s && !found && i < mg_tls_store_ncerts(s); i++) {
        char fp[65];
        mg_tls_cert *c = mg_tls_store_cert(s, i);
        mg_tls_cert_fingerprint(c, fp);
        if (strcmp(fp, want) == 0) {
            found = c;
            mg_tls_cert_ref(c);
        }
    }
    mg_tls_store_unref(s);
    return found;
}

/* ocsp_request(fingerprint) -> DER request, responder URL | nil, err */
static int l_ocsp_request(lua_State *L)
{
    mg_tls_cert *c = cert_by_fingerprint(luaL_checkstring(L, 1));
    if (!c) {
        lua_pushnil(L);
        lua_pushstring(L, "no such certificate is served");
        return 2;
    }
    char err[256];
    unsigned char *der = NULL;
    size_t len = 0;
    int rc = mg_tls_ocsp_url(c) ? mg_tls_ocsp_request(c, &der, &len, err, sizeof(err))
                                : (snprintf(err, sizeof(err), "it names no OCSP responder"), -1);
    if (rc == 0) {
        lua_pushlstring(L, (const char *)der, len);
        lua_pushstring(L, mg_tls_ocsp_url(c));
    } else {
        lua_pushnil(L);
        lua_pushstring(L, err);
    }
    free(der);
    mg_tls_cert_unref(c);
    return 2;
}

/* ocsp_staple(fingerprint, der) -> next update (0: none given) | nil, err */
static int l_ocsp_staple(lua_State *L)
{
    size_t len;
    const char *der = luaL_checklstring(L, 2, &len);
    mg_tls_cert *c = cert_by_fingerprint(luaL_checkstring(L, 1));
    if (!c) {
        lua_pushnil(L);
        lua_pushstring(L, "no such certificate is served");
        return 2;
    }
    char err[256];
    time_t next = 0;
    int rc = mg_tls_ocsp_set(c, (const unsigned char *)der, len, &next, err, sizeof(err));
    mg_tls_cert_unref(c);
    if (rc) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushnumber(L, (lua_Number)next);
    return 1;
}

/* http01(token) -> what the data plane answers for it now, or nil */
static int l_http01(lua_State *L)
{
    size_t len;
    const char *token = luaL_checklstring(L, 1, &len);
    mg_tls_store *s = mg_tls_current();
    const char *ka = s ? mg_tls_store_http01(s, token, len) : NULL;
    if (ka)
        lua_pushstring(L, ka);
    else
        lua_pushnil(L);
    mg_tls_store_unref(s);
    return 1;
}

void mg_lua_crypto_open(lua_State *L)
{
    static const luaL_Reg crypto[] = {{"keygen", l_keygen},
                                      {"jwk", l_jwk},
                                      {"sign", l_sign},
                                      {"csr", l_csr},
                                      {"self_signed", l_self_signed},
                                      {"sha256", l_sha256},
                                      {"b64url", l_b64url},
                                      {"b64url_decode", l_b64url_decode},
                                      {"cert_info", l_cert_info},
                                      {"write_secret", l_write_secret},
                                      {NULL, NULL}};
    static const luaL_Reg tls[] = {{"set_certificate", l_set_certificate},
                                   {"remove_certificate", l_remove_certificate},
                                   {"set_http01", l_set_http01},
                                   {"set_alpn01", l_set_alpn01},
                                   {"rotate_tickets", l_rotate_tickets},
                                   {"served", l_served},
                                   {"certificates", l_certificates},
                                   {"http01", l_http01},
                                   {"ocsp_request", l_ocsp_request},
                                   {"ocsp_staple", l_ocsp_staple},
                                   {NULL, NULL}};
    lua_newtable(L);
    for (const luaL_Reg *f = crypto; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    mg_lua_env_provide(L, "moongate.c.crypto");
    lua_newtable(L);
    for (const luaL_Reg *f = tls; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    mg_lua_env_provide(L, "moongate.c.tls");
}
