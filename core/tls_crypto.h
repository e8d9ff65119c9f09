/* Small crypto primitives on OpenSSL 3 for certificate sources (the ACME
 * client, a Vault fetcher, ...): keys, CSRs, JWS signatures, self-signed
 * and TLS-ALPN-01 certificates, and reading a certificate's facts. The Lua
 * face is core/lua_crypto.c; the TLS manager uses the self-signed default.
 *
 * Every function returns 0 or a negative code with err set; outputs that
 * are allocated here (mg_bytes) are the caller's to free with mg_bytes_free. */
#ifndef MG_TLS_CRYPTO_H
#define MG_TLS_CRYPTO_H

#include <openssl/evp.h>
#include <stddef.h>
#include <time.h>

typedef struct mg_bytes {
    unsigned char *p;
    size_t len;
} mg_bytes;

void mg_bytes_free(mg_bytes *b);

/* "ec" (P-256; bits ignored) or "rsa" (bits >= 2048). PEM, PKCS#8. */
int mg_crypto_keygen(const char *type, int bits, mg_bytes *pem, char *err, size_t errlen);

/* Parses a PEM private key. The caller frees it with EVP_PKEY_free. */
EVP_PKEY *mg_crypto_key_load(const char *pem, size_t len, char *err, size_t errlen);

/* "ES256" for P-256 keys, "RS256" for RSA, NULL otherwise. */
const char *mg_crypto_jws_alg(EVP_PKEY *key);

/* The public parameters for a JWK, base64url without padding:
 * EC: a = x, b = y; RSA: a = n, b = e. kty is "EC" or "RSA". */
int mg_crypto_jwk_params(EVP_PKEY *key, const char **kty, mg_bytes *a, mg_bytes *b, char *err,
                         size_t errlen);

/* A JWS signature over data: ES256 as raw r||s (64 bytes, RFC 7518 3.4),
 * RS256 as PKCS#1 v1.5. Raw bytes, not encoded. */
int mg_crypto_sign(EVP_PKEY *key, const void *data, size_t len, mg_bytes *sig, char *err,
                   size_t errlen);

/* A CSR (DER) for names (the first is also the subject CN), signed by key. */
int mg_crypto_csr(EVP_PKEY *key, const char *const *names, int n, mg_bytes *der, char *err,
                  size_t errlen);

/* A self-signed certificate (PEM) for names, valid from now for days.
 * acme_digest, when not NULL, is the SHA-256 of a key authorization: the
 * certificate then carries the critical acmeIdentifier extension of
 * RFC 8737 (TLS-ALPN-01) holding it. */
int mg_crypto_self_signed(EVP_PKEY *key, const char *const *names, int n, int days,
                          const unsigned char *acme_digest, mg_bytes *pem, char *err,
                          size_t errlen);

/* Base64url without padding (RFC 4648 section 5), and back. */
int mg_crypto_b64url(const void *data, size_t len, mg_bytes *out);
int mg_crypto_b64url_decode(const char *s, size_t len, mg_bytes *out);

/* Facts about the first certificate of a PEM text. names: DNS SANs
 * ("\0"-separated, nnames of them). */
typedef struct mg_cert_info {
    time_t not_before, not_after;
    char serial[80];   /* hex */
    char subject[256]; /* CN, or "" */
    char issuer[256];  /* CN, or "" */
    mg_bytes names;
    int nnames;
} mg_cert_info;

int mg_crypto_cert_info(const char *pem, size_t len, mg_cert_info *info, char *err, size_t errlen);

#endif
