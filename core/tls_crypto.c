/* See tls_crypto.h. */
#include "tls_crypto.h"
#include "tls.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mg_bytes_free(mg_bytes *b)
{
    OPENSSL_free(b->p);
    b->p = NULL;
    b->len = 0;
}

static int oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

/* Moves a memory BIO's contents into out. */
static int bio_take(BIO *b, mg_bytes *out)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    out->p = OPENSSL_malloc(n > 0 ? (size_t)n : 1);
    if (!out->p) return -ENOMEM;
    memcpy(out->p, p, (size_t)n);
    out->len = (size_t)n;
    return 0;
}

int mg_crypto_keygen(const char *type, int bits, mg_bytes *pem, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    if (strcmp(type, "ec") == 0) {
        key = EVP_EC_gen("P-256");
    } else if (strcmp(type, "rsa") == 0) {
        if (bits < 2048 || bits > 8192) {
            snprintf(err, errlen, "RSA keys have 2048 to 8192 bits, got %d", bits);
            return -EINVAL;
        }
        key = EVP_RSA_gen((unsigned)bits);
    } else {
        snprintf(err, errlen, "key type must be \"ec\" or \"rsa\", got \"%s\"", type);
        return -EINVAL;
    }
    if (!key) {
        mg_tls_openssl_error(err, errlen, "key generation failed");
        return -EIO;
    }
    BIO *b = BIO_new(BIO_s_mem());
    int rc = -EIO;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1)
        rc = bio_take(b, pem);
    if (rc) mg_tls_openssl_error(err, errlen, "cannot write the key");
    BIO_free(b);
    EVP_PKEY_free(key);
    return rc;
}

EVP_PKEY *mg_crypto_key_load(const char *pem, size_t len, char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    if (!k) mg_tls_openssl_error(err, errlen, "not a PEM private key");
    BIO_free(b);
    return k;
}

static int is_p256(EVP_PKEY *key)
{
    char group[64] = "";
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return 0;
    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL);
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

const char *mg_crypto_jws_alg(EVP_PKEY *key)
{
    if (is_p256(key)) return "ES256";
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) return "RS256";
    return NULL;
}

int mg_crypto_b64url(const void *data, size_t len, mg_bytes *out)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    out->p = OPENSSL_malloc(cap);
    if (!out->p) return -ENOMEM;
    int n = EVP_EncodeBlock(out->p, data, (int)len);
    while (n > 0 && out->p[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++) {
        if (out->p[i] == '+') out->p[i] = '-';
        if (out->p[i] == '/') out->p[i] = '_';
    }
    out->p[n] = 0;
    out->len = (size_t)n;
    return 0;
}

int mg_crypto_b64url_decode(const char *s, size_t len, mg_bytes *out)
{
    size_t padded = len + (4 - len % 4) % 4;
    if (len % 4 == 1) return -EINVAL;
    unsigned char *tmp = OPENSSL_malloc(padded + 1);
    out->p = OPENSSL_malloc(padded / 4 * 3 + 1);
    if (!tmp || !out->p) {
        OPENSSL_free(tmp);
        mg_bytes_free(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!isalnum((unsigned char)c)) {
            OPENSSL_free(tmp);
            mg_bytes_free(out);
            return -EINVAL;
        }
        tmp[i] = (unsigned char)c;
    }
    for (size_t i = len; i < padded; i++)
        tmp[i] = '=';
    int n = EVP_DecodeBlock(out->p, tmp, (int)padded);
    OPENSSL_free(tmp);
    if (n < 0) {
        mg_bytes_free(out);
        return -EINVAL;
    }
    out->len = (size_t)n - (padded - len); /* EVP_DecodeBlock counts padding as zeros */
    return 0;
}

static int bn_b64(EVP_PKEY *key, const char *param, int pad, mg_bytes *out)
{
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(key, param, &bn) != 1) return -EINVAL;
    int n = pad ? pad : BN_num_bytes(bn);
    unsigned char *raw = OPENSSL_malloc((size_t)n);
    int rc = -ENOMEM;
    if (raw && BN_bn2binpad(bn, raw, n) == n) rc = mg_crypto_b64url(raw, (size_t)n, out);
    OPENSSL_free(raw);
    BN_free(bn);
    return rc;
}

int mg_crypto_jwk_params(EVP_PKEY *key, const char **kty, mg_bytes *a, mg_bytes *b, char *err,
                         size_t errlen)
{
    int rc;
    if (is_p256(key)) {
        *kty = "EC";
        rc = bn_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, 32, a);
        if (!rc) rc = bn_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32, b);
    } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        *kty = "RSA";
        rc = bn_b64(key, OSSL_PKEY_PARAM_RSA_N, 0, a);
        if (!rc) rc = bn_b64(key, OSSL_PKEY_PARAM_RSA_E, 0, b);
    } else {
        snprintf(err, errlen, "only P-256 and RSA keys make JWKs");
        return -EINVAL;
    }
    if (rc) {
        mg_bytes_free(a);
        mg_bytes_free(b);
        mg_tls_openssl_error(err, errlen, "cannot read the public key");
    }
    return rc;
}

int mg_crypto_sign(EVP_PKEY *key, const void *data, size_t len, mg_bytes *sig, char *err,
                   size_t errlen)
{
    if (!mg_crypto_jws_alg(key)) {
        snprintf(err, errlen, "only P-256 (ES256) and RSA (RS256) keys sign JWS");
        return -EINVAL;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t n = 0;
    unsigned char *der = NULL;
    int rc = -EIO;
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &n, data, len) != 1 || !(der = OPENSSL_malloc(n)) ||
        EVP_DigestSign(md, der, &n, data, len) != 1) {
        mg_tls_openssl_error(err, errlen, "signing failed");
        goto out;
    }
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        sig->p = der;
        sig->len = n;
        der = NULL;
        rc = 0;
        goto out;
    }
    /* ECDSA: DER SEQUENCE { r, s } -> r || s, 32 bytes each */
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    if (!es || !(sig->p = OPENSSL_malloc(64))) {
        ECDSA_SIG_free(es);
        mg_tls_openssl_error(err, errlen, "bad ECDSA signature");
        goto out;
    }
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    BN_bn2binpad(r, sig->p, 32);
    BN_bn2binpad(s, sig->p + 32, 32);
    sig->len = 64;
    ECDSA_SIG_free(es);
    rc = 0;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    return rc;
}

/* A DNS name as a certificate may carry it: letters, digits, '-', '.', and
 * a leading "*." for wildcards. */
static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253) return 0;
    if (s[0] == '*' && s[1] == '.') s += 2;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.') return 0;
    return 1;
}

static GENERAL_NAMES *dns_names(const char *const *names, int n, char *err, size_t errlen)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens) return NULL;
    for (int i = 0; i < n; i++) {
        if (!valid_name(names[i])) {
            snprintf(err, errlen, "not a DNS name: \"%s\"", names[i]);
            GENERAL_NAMES_free(gens);
            return NULL;
        }
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
        if (!g || !ia5 || !ASN1_STRING_set(ia5, names[i], -1)) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(ia5);
            GENERAL_NAMES_free(gens);
            oom(err, errlen);
            return NULL;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
        sk_GENERAL_NAME_push(gens, g);
    }
    return gens;
}

static int set_cn(X509_NAME *nm, const char *name)
{
    if (strlen(name) > 64) return 1; /* the CN has 64 characters at most; SANs carry it */
    return X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1,
                                      0);
}

int mg_crypto_csr(EVP_PKEY *key, const char *const *names, int n, mg_bytes *der, char *err,
                  size_t errlen)
{
    if (n < 1) {
        snprintf(err, errlen, "a CSR needs at least one name");
        return -EINVAL;
    }
    err[0] = 0;
    GENERAL_NAMES *gens = dns_names(names, n, err, errlen);
    if (!gens) return -EINVAL;
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = NULL;
    int rc = -EIO;
    if (!req || !X509_REQ_set_version(req, 0) ||
        !set_cn(X509_REQ_get_subject_name(req), names[0]) ||
        !X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, 0, 0) ||
        !X509_REQ_add_extensions(req, exts) || !X509_REQ_set_pubkey(req, key) ||
        !X509_REQ_sign(req, key, EVP_sha256())) {
        mg_tls_openssl_error(err, errlen, "cannot make the CSR");
        goto out;
    }
    int len = i2d_X509_REQ(req, NULL);
    der->p = OPENSSL_malloc(len > 0 ? (size_t)len : 1);
    if (!der->p) {
        rc = oom(err, errlen);
        goto out;
    }
    unsigned char *p = der->p;
    der->len = (size_t)i2d_X509_REQ(req, &p);
    rc = 0;
out:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_REQ_free(req);
    return rc;
}

/* RFC 8737's id-pe-acmeIdentifier: critical, value = DER OCTET STRING
 * holding the SHA-256 digest of the key authorization. */
static int add_acme_ext(X509 *x, const unsigned char *digest)
{
    unsigned char inner[34] = {0x04, 0x20};
    memcpy(inner + 2, digest, 32);
    ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    int ok = obj && os && ASN1_OCTET_STRING_set(os, inner, sizeof(inner)) &&
             (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, os)) && X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(obj);
    return ok;
}

int mg_crypto_self_signed(EVP_PKEY *key, const char *const *names, int n, int days,
                          const unsigned char *acme_digest, mg_bytes *pem, char *err, size_t errlen)
{
    if (n < 1) {
        snprintf(err, errlen, "a certificate needs at least one name");
        return -EINVAL;
    }
    err[0] = 0;
    GENERAL_NAMES *gens = dns_names(names, n, err, errlen);
    if (!gens) return -EINVAL;
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    BIO *b = NULL;
    int rc = -EIO;
    if (!x || !serial || !BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !X509_set_version(x, 2) || !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) || !X509_set_pubkey(x, key) ||
        !set_cn(X509_get_subject_name(x), names[0]) ||
        !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) ||
        (acme_digest && !add_acme_ext(x, acme_digest)) || !X509_sign(x, key, EVP_sha256())) {
        mg_tls_openssl_error(err, errlen, "cannot make the certificate");
        goto out;
    }
    b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_X509(b, x) != 1 || bio_take(b, pem)) {
        mg_tls_openssl_error(err, errlen, "cannot write the certificate");
        goto out;
    }
    rc = 0;
out:
    BIO_free(b);
    BN_free(serial);
    X509_free(x);
    GENERAL_NAMES_free(gens);
    return rc;
}

static void name_cn(X509_NAME *nm, char *out, size_t outlen)
{
    out[0] = 0;
    int idx = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    if (idx < 0) return;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, idx));
    int n = ASN1_STRING_length(s);
    if (n < 0 || (size_t)n >= outlen) n = (int)outlen - 1;
    memcpy(out, ASN1_STRING_get0_data(s), (size_t)n);
    out[n] = 0;
}

int mg_crypto_cert_info(const char *pem, size_t len, mg_cert_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof(*info));
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x) {
        mg_tls_openssl_error(err, errlen, "not a PEM certificate");
        return -EINVAL;
    }
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1) info->not_before = timegm(&tm);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) info->not_after = timegm(&tm);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex) snprintf(info->serial, sizeof(info->serial), "%s", hex);
    for (char *c = info->serial; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    OPENSSL_free(hex);
    BN_free(bn);
    name_cn(X509_get_subject_name(x), info->subject, sizeof(info->subject));
    name_cn(X509_get_issuer_name(x), info->issuer, sizeof(info->issuer));
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    BIO *nb = BIO_new(BIO_s_mem());
    int rc = nb ? 0 : -ENOMEM;
    for (int i = 0; nb && sans && i < sk_GENERAL_NAME_num(sans); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS) continue;
        BIO_write(nb, ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName));
        BIO_write(nb, "", 1);
        info->nnames++;
    }
    if (nb && bio_take(nb, &info->names)) rc = -ENOMEM;
    if (rc) oom(err, errlen);
    BIO_free(nb);
    GENERAL_NAMES_free(sans);
    X509_free(x);
    return rc;
}
