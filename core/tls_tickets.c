/* See tls_tickets.h. */
#include "tls_tickets.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define SLOTS 4 /* current, previous, and two that no reader can still be using */

typedef struct key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
} key;

typedef struct slot {
    atomic_uint seq; /* odd while being written */
    key k;
} slot;

static slot slots[SLOTS];
static atomic_uint current; /* generation; the current key is slots[current % SLOTS] */
static atomic_int ready;
static pthread_mutex_t rotate_lock = PTHREAD_MUTEX_INITIALIZER;

/* Copies a slot consistently (retries if a rotation wrote it meanwhile). */
static void read_slot(unsigned i, key *out)
{
    slot *s = &slots[i % SLOTS];
    for (;;) {
        unsigned a = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (a & 1) continue;
        memcpy(out, &s->k, sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == a) return;
    }
}

static int write_slot(unsigned i)
{
    key k;
    if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_priv_bytes(k.aes, sizeof(k.aes)) != 1 ||
        RAND_priv_bytes(k.hmac, sizeof(k.hmac)) != 1)
        return -1;
    slot *s = &slots[i % SLOTS];
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(&s->k, &k, sizeof(k));
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

int mg_tls_tickets_init(void)
{
    pthread_mutex_lock(&rotate_lock);
    int rc = 0;
    if (!atomic_load(&ready)) {
        rc = write_slot(0);
        if (rc == 0) atomic_store(&ready, 1);
    }
    pthread_mutex_unlock(&rotate_lock);
    return rc;
}

int mg_tls_tickets_rotate(void)
{
    pthread_mutex_lock(&rotate_lock);
    unsigned next = atomic_load(&current) + 1;
    int rc = write_slot(next);
    if (rc == 0) atomic_store_explicit(&current, next, memory_order_release);
    pthread_mutex_unlock(&rotate_lock);
    return rc;
}

unsigned mg_tls_tickets_generation(void)
{
    return atomic_load(&current);
}

static int set_mac(EVP_MAC_CTX *hctx, unsigned char *hmac)
{
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, hmac, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's contract: encrypt: fill name and iv, init both contexts, return
 * 1 (or 0: no ticket). Decrypt: 0 unknown key (full handshake), 1 ok, 2 ok
 * but issue a new ticket (it was the previous key), -1 error. */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    if (!atomic_load_explicit(&ready, memory_order_acquire)) return enc ? 0 : 0;
    key k;
    unsigned gen = atomic_load_explicit(&current, memory_order_acquire);
    int rc = -1;
    if (enc) {
        read_slot(gen, &k);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) goto out;
        memcpy(name, k.name, 16);
        if (EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) goto out;
        rc = set_mac(hctx, k.hmac) ? 1 : -1;
        goto out;
    }
    for (unsigned back = 0; back < 2 && back <= gen; back++) {
        read_slot(gen - back, &k);
        if (memcmp(name, k.name, 16) != 0) continue;
        if (!set_mac(hctx, k.hmac) ||
            EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1)
            goto out;
        rc = back ? 2 : 1;
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

void mg_tls_tickets_attach(SSL_CTX *ctx)
{
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
}
