/* Internal to conn.c and conn_response.c: the HTTP/1 source's functions
 * that both halves of the client side use. */
#ifndef MG_CONN_INT_H
#define MG_CONN_INT_H

#include "conn.h"

/* The mg_req_src table of HTTP/1 client connections (conn_response.c). */
extern const mg_req_src mg_conn__src;

/* Why the request parser paused (c->pause_reason, c->block_reason). */
enum { PAUSE_NONE = 0, PAUSE_HEAD, PAUSE_MESSAGE };

/* conn_parse.c */
/* A request for the message starting on c (the source is c). */
mg_req *mg_conn__new_req(mg_conn *c);
/* c's parser state for the message being read, taken from the worker's
 * free list (NULL when out of memory); put back between messages. */
mg_conn_parse *mg_conn__ps_get(mg_conn *c);
void mg_conn__ps_put(mg_conn *c);

/* The response went out: release the request, then keep the connection
 * alive (parse the next request) or close it. */
void mg_conn__exchange_done(mg_conn *c);

/* Closes once the queued writes went out. */
void mg_conn__close_gracefully(mg_conn *c);

/* Unblocks the parser and reads on (after a head was handled, or when
 * back-pressure ends); pause stops reading the request body. */
void mg_conn__resume(mg_conn *c);
void mg_conn__pause(mg_conn *c);

/* What TLS says of c (MG_TLS_*), or NULL (plain); the src->tls of both
 * framings. */
const char *mg_conn__tls_info(const mg_conn *c, int what);

#endif
