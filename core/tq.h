/* Timeout queues. Every timeout of one kind (client idle, upstream connect,
 * ...) has the same duration, so deadlines in a FIFO queue are monotonic:
 * arming is an O(1) append, expiry only looks at the head, and a connection
 * carries a 24-byte node instead of a 152-byte uv_timer_t. The worker checks
 * its queues on one repeating timer. */
#ifndef MG_TQ_H
#define MG_TQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct mg_tq_node {
    struct mg_tq_node *prev, *next; /* NULL when not queued */
    uint64_t deadline;              /* ms, uv_now() clock */
} mg_tq_node;

typedef struct mg_tq {
    mg_tq_node head; /* sentinel of a circular list */
    uint64_t timeout_ms;
} mg_tq;

static inline void mg_tq_init(mg_tq *q, uint64_t timeout_ms)
{
    q->head.prev = q->head.next = &q->head;
    q->timeout_ms = timeout_ms;
}

static inline void mg_tq_remove(mg_tq_node *n)
{
    if (!n->next) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* (Re)arms n in q: it expires timeout_ms after now. */
static inline void mg_tq_arm(mg_tq *q, mg_tq_node *n, uint64_t now)
{
    mg_tq_remove(n);
    n->deadline = now + q->timeout_ms;
    n->prev = q->head.prev;
    n->next = &q->head;
    q->head.prev->next = n;
    q->head.prev = n;
}

/* Returns the first expired node (still queued), or NULL. */
static inline mg_tq_node *mg_tq_expired(mg_tq *q, uint64_t now)
{
    mg_tq_node *n = q->head.next;
    return n != &q->head && n->deadline <= now ? n : NULL;
}

#endif
