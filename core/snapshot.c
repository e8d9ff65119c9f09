/* Snapshots and the target uid registry. */
#include "snapshot.h"
#include "stats.h"
#include "targets.h"

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

atomic_int mg_target_inflight[MG_MAX_TARGET_UIDS];

/* The uid registry is only touched when snapshots are built (control side),
 * never on the request path, so a mutex and a linear-probing table do. */
static pthread_mutex_t uid_lock = PTHREAD_MUTEX_INITIALIZER;
static char **uid_keys; /* open addressing, capacity uid_cap */
static uint32_t *uid_vals;
static uint32_t uid_cap, uid_count;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int uid_grow(void)
{
    uint32_t ncap = uid_cap ? uid_cap * 2 : 256;
    char **nk = calloc(ncap, sizeof(*nk));
    uint32_t *nv = calloc(ncap, sizeof(*nv));
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return -1;
    }
    for (uint32_t i = 0; i < uid_cap; i++) {
        if (!uid_keys[i]) continue;
        uint32_t j = (uint32_t)(hash_str(uid_keys[i]) & (ncap - 1));
        while (nk[j])
            j = (j + 1) & (ncap - 1);
        nk[j] = uid_keys[i];
        nv[j] = uid_vals[i];
    }
    free(uid_keys);
    free(uid_vals);
    uid_keys = nk;
    uid_vals = nv;
    uid_cap = ncap;
    return 0;
}

uint32_t mg_target_uid(const char *key)
{
    uint32_t uid = UINT32_MAX;
    pthread_mutex_lock(&uid_lock);
    if (uid_count * 2 >= uid_cap && uid_grow()) goto out;
    uint32_t j = (uint32_t)(hash_str(key) & (uid_cap - 1));
    while (uid_keys[j]) {
        if (strcmp(uid_keys[j], key) == 0) {
            uid = uid_vals[j];
            goto out;
        }
        j = (j + 1) & (uid_cap - 1);
    }
    if (uid_count >= MG_MAX_TARGET_UIDS) goto out;
    uid_keys[j] = strdup(key);
    if (!uid_keys[j]) goto out;
    uid = uid_vals[j] = uid_count++;
out:
    pthread_mutex_unlock(&uid_lock);
    return uid;
}

void mg_snapshot_ref(mg_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

static void free_service(mg_service *svc)
{
    for (int i = 0; i < svc->ntargets; i++) {
        mg_target *t = &svc->targets[i];
        free(t->id);
        free(t->host);
        free(t->address);
        if (t->labels)
            for (char **l = t->labels; *l; l++)
                free(*l);
        free(t->labels);
    }
    free(svc->targets);
    free(svc->name);
    free(svc->balancer);
    free(svc->balancer_opts);
    free(svc->health);
    free(svc->autoscale);
    free(svc->tls_ca_file);
    free(svc->tls_server_name);
    if (svc->tls_ctx) SSL_CTX_free(svc->tls_ctx);
}

void mg_snapshot_unref(mg_snapshot *s)
{
    if (!s) return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    for (int i = 0; i < s->nservices; i++)
        free_service(&s->services[i]);
    free(s->services);
    if (s->router) mg_router_free(s->router);
    free(s->route_service);
    free(s->route_hooks);
    free(s->route_flags);
    if (s->route_rule)
        for (int i = 0; i < s->nroutes; i++)
            free(s->route_rule[i]);
    free(s->route_rule);
    free(s->route_priority);
    free(s->plugins_literal);
    if (s->cfg && s->cfg_free) s->cfg_free(s->cfg);
    free(s);
}

void mg_snapshot_mark_membership(const mg_snapshot *prev, const mg_snapshot *next)
{
    /* Ownership: a scratch bitmap of the uids and suids next has. */
    uint8_t *in = calloc(MG_MAX_TARGET_UIDS / 8, 1);
    if (!in) return;
#define SET(u) (in[(u) / 8] |= (uint8_t)(1u << ((u) % 8)))
#define HAS(u) (in[(u) / 8] & (1u << ((u) % 8)))
    for (int i = 0; i < next->nservices; i++)
        for (int k = 0; k < next->services[i].ntargets; k++) {
            const mg_target *t = &next->services[i].targets[k];
            if (t->uid < MG_MAX_TARGET_UIDS) SET(t->uid);
            if (t->suid < MG_MAX_TARGET_UIDS) SET(t->suid);
            if (mg_targets_draining(t->suid)) mg_lifecycle_set(t->suid, MG_LIFE_ACTIVE);
            mg_targets_set_draining(t->suid, 0);
            mg_targets_set_present(t->uid, 1);
        }
    for (int i = 0; prev && i < prev->nservices; i++)
        for (int k = 0; k < prev->services[i].ntargets; k++) {
            const mg_target *t = &prev->services[i].targets[k];
            if (t->suid < MG_MAX_TARGET_UIDS && !HAS(t->suid)) {
                mg_targets_set_draining(t->suid, 1);
                mg_lifecycle_set(t->suid, MG_LIFE_DRAINING); /* for the admin API */
            }
            if (t->uid < MG_MAX_TARGET_UIDS && !HAS(t->uid)) mg_targets_set_present(t->uid, 0);
        }
#undef SET
#undef HAS
    free(in);
}

int mg_snapshot_service(const mg_snapshot *s, const char *name)
{
    for (int i = 0; i < s->nservices; i++)
        if (strcmp(s->services[i].name, name) == 0) return i;
    return -1;
}
