/* HTTP/2 client sessions to backends (h2c, or h2 over TLS): connections
 * shared by the requests of a worker to one target, streams as requests,
 * request bodies through a data source, response bytes acknowledged to
 * the backend only as the owner takes them. See h2_upstream.h. */
#include "h2_upstream.h"
#include "log.h"
#include "tls_stream.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>

#define STREAM_WINDOW (256 * 1024) /* response bytes a backend may send ahead */
#define CONN_WINDOW   (1024 * 1024)
#define OUT_HIGH      (64 * 1024) /* request body bytes buffered per stream */
#define MAX_STREAMS   100         /* per connection, whatever the backend allows */
#define SOCK_HIGH     (256 * 1024)

typedef struct mg_h2up_conn mg_h2up_conn;

struct mg_h2up_stream {
    mg_h2up_conn *u;
    mg_h2up_stream *prev, *next;
    int32_t id;
    void *owner; /* NULL once released */
    const mg_h2up_events *ev;
    mg_buf out; /* request body bytes not framed yet */
    size_t out_off;
    mg_buf trailers; /* request trailers: name\0value\0 pairs */
    uint32_t ntrailers;
    int status;
    uint8_t out_end, deferred, want_drain, got_head, ended, closed;
};

struct mg_h2up_conn {
    mg_stream s;
    uv_connect_t connect_req;
    mg_worker *w;
    mg_h2up_conn *prev, *next; /* the worker's list (w->h2up) */
    nghttp2_session *sess;
    mg_h2up_stream *streams;
    int nstreams;
    uint32_t uid;
    uint64_t idle_since;
    mg_buf wbuf;
    uint8_t connected, dead, tls;
    uint8_t goaway; /* the backend sent GOAWAY: no new stream */
    uint8_t flushing, again;
};

static void conn_flush(mg_h2up_conn *u);
static void flush_once(mg_h2up_conn *u);

/* ---- streams ------------------------------------------------------- */

static void stream_free(mg_h2up_stream *st)
{
    mg_h2up_conn *u = st->u;
    if (st->prev)
        st->prev->next = st->next;
    else
        u->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    if (--u->nstreams == 0) u->idle_since = uv_now(&u->w->loop);
    if (u->goaway && u->nstreams == 0 && !u->dead) {
        u->dead = 1;
        mg_stream_close(&u->s);
    }
    mg_buf_free(&st->out);
    mg_buf_free(&st->trailers);
    free(st);
}

/* Tells an owner its stream failed; it lets go (mg_h2up_release) in the
 * call or later. */
static void stream_fail(mg_h2up_stream *st, const char *why, int sent_nothing)
{
    void *owner = st->owner;
    if (!owner || st->ended) return;
    st->ended = 1;
    st->ev->error(owner, why, sent_nothing);
}

/* ---- the connection ---------------------------------------------------- */

static void conn_kill(mg_h2up_conn *u, const char *why)
{
    if (u->dead) return;
    u->dead = 1;
    int sent_nothing = !u->connected;
    for (mg_h2up_stream *st = u->streams, *next; st; st = next) {
        next = st->next;
        stream_fail(st, why, sent_nothing);
    }
    mg_stream_close(&u->s);
}

/* Frames what nghttp2 has while the socket keeps up, then tells request
 * bodies below the mark to send more. Re-entered from a drained event, it
 * only asks the outer call to go round again. */
static void conn_flush(mg_h2up_conn *u)
{
    if (u->dead || !u->connected) return;
    if (u->flushing) {
        u->again = 1;
        return;
    }
    u->flushing = 1;
    do {
        u->again = 0;
        flush_once(u);
    } while (u->again && !u->dead);
    u->flushing = 0;
}

static void flush_once(mg_h2up_conn *u)
{
    while (mg_stream_queued(&u->s) < SOCK_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(u->sess, &data);
        if (n < 0) {
            conn_kill(u, nghttp2_strerror((int)n));
            return;
        }
        if (n > 0 && mg_buf_append(&u->wbuf, data, (size_t)n)) {
            conn_kill(u, "out of memory");
            return;
        }
        if (u->wbuf.len && (n == 0 || u->wbuf.len >= 65536)) {
            uv_buf_t b = uv_buf_init(u->wbuf.p, (unsigned)u->wbuf.len);
            int rc = mg_stream_write(&u->s, &b, 1); /* copies what waits */
            u->wbuf.len = 0;
            if (rc < 0) {
                conn_kill(u, "write failed");
                return;
            }
        }
        if (n == 0) break;
    }
    /* request bodies that went below the mark may take more */
    for (mg_h2up_stream *st = u->streams, *next; st && !u->dead; st = next) {
        next = st->next;
        if (st->want_drain && st->owner && st->out.len - st->out_off < OUT_HIGH) {
            st->want_drain = 0;
            st->ev->drained(st->owner);
        }
    }
    if (!u->dead && !nghttp2_session_want_read(u->sess) && !nghttp2_session_want_write(u->sess))
        conn_kill(u, "the backend ended the HTTP/2 session");
}

static inline mg_h2up_conn *of_stream(mg_stream *s)
{
    return mg_container_of(s, mg_h2up_conn, s);
}

static void on_read(mg_stream *s, const char *p, size_t n)
{
    mg_h2up_conn *u = of_stream(s);
    if (u->dead) return;
    ssize_t rv = nghttp2_session_mem_recv(u->sess, (const uint8_t *)p, n);
    if (rv < 0) {
        conn_kill(u, nghttp2_strerror((int)rv));
        return;
    }
    conn_flush(u);
}

static void on_eof(mg_stream *s)
{
    conn_kill(of_stream(s), "the backend closed the connection");
}

static void on_error(mg_stream *s, int err)
{
    conn_kill(of_stream(s), uv_strerror(err));
}

static void on_drain(mg_stream *s)
{
    conn_flush(of_stream(s));
}

static void on_connect(mg_stream *s, int status)
{
    mg_h2up_conn *u = of_stream(s);
    if (u->dead) return;
    if (status < 0) {
        conn_kill(u, status == UV_EPROTO ? "TLS handshake failed" : uv_strerror(status));
        return;
    }
    if (u->tls) {
        size_t an = 0;
        mg_tls *t = mg_tls_stream_engine(&u->s);
        const char *a = t ? mg_tls_alpn(t, &an) : NULL;
        if (!a || an != 2 || memcmp(a, "h2", 2) != 0) {
            u->connected = 1; /* it answered, but not in HTTP/2 */
            conn_kill(u, "the backend did not negotiate h2 (ALPN)");
            return;
        }
    }
    u->connected = 1;
    mg_stream_read_start(&u->s);
    conn_flush(u);
}

static void on_closed(mg_stream *s)
{
    mg_h2up_conn *u = of_stream(s);
    mg_worker *w = u->w;
    if (u->prev)
        u->prev->next = u->next;
    else
        w->h2up = u->next;
    if (u->next) u->next->prev = u->prev;
    while (u->streams) {
        u->streams->owner = NULL;
        stream_free(u->streams);
    }
    nghttp2_session_del(u->sess);
    mg_buf_free(&u->wbuf);
    free(u);
}

static const mg_stream_events conn_events = {
    .read = on_read,
    .eof = on_eof,
    .error = on_error,
    .drain = on_drain,
    .connect = on_connect,
    .close = on_closed,
};

/* ---- session callbacks ---------------------------------------------- */

static int on_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    mg_h2up_stream *st = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
    if (!st || !st->owner || st->ended) return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
        int s = 0;
        for (size_t i = 0; i < vlen && i < 3; i++)
            s = s * 10 + (value[i] - '0');
        st->status = s;
        return 0;
    }
    if (nlen && name[0] == ':') return 0;
    st->ev->field(st->owner, (const char *)name, nlen, (const char *)value, vlen, st->got_head);
    return 0;
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *f, void *user)
{
    mg_h2up_conn *u = user;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        /* streams past its last id were never processed: they may go again */
        for (mg_h2up_stream *st = u->streams, *next; st; st = next) {
            next = st->next;
            if (st->id > f->goaway.last_stream_id)
                stream_fail(st, "the backend refused it (GOAWAY)", 1);
        }
        u->goaway = 1; /* no new stream; the others finish, then it closes */
        return 0;
    }
    mg_h2up_stream *st =
        f->hd.stream_id ? nghttp2_session_get_stream_user_data(sess, f->hd.stream_id) : NULL;
    if (!st || !st->owner || st->ended) return 0;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && !st->got_head) {
        int status = st->status;
        if (status >= 200) st->got_head = 1;
        st->ev->head(st->owner, status);
    }
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && end && st->owner &&
        !st->ended) {
        st->ended = 1;
        st->ev->end(st->owner);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *p,
                         size_t n, void *user)
{
    mg_h2up_stream *st = nghttp2_session_get_stream_user_data(sess, id);
    if (!st || !st->owner || st->ended) {
        nghttp2_session_consume(sess, id, n);
        return 0;
    }
    st->ev->data(st->owner, (const char *)p, n); /* mg_h2up_consume follows */
    return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t code, void *user)
{
    mg_h2up_stream *st = nghttp2_session_get_stream_user_data(sess, id);
    if (!st) return 0;
    st->closed = 1;
    if (!st->owner) {
        stream_free(st);
        return 0;
    }
    /* the owner releases it from its error event (or later): freed then */
    stream_fail(st,
                code == NGHTTP2_REFUSED_STREAM ? "the backend refused the stream"
                                               : "the backend reset the stream",
                code == NGHTTP2_REFUSED_STREAM);
    return 0;
}

static ssize_t read_body(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    mg_h2up_stream *st = src->ptr;
    size_t avail = st->out.len - st->out_off;
    if (!avail && !st->out_end) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < len ? avail : len;
    memcpy(buf, st->out.p + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out.len) st->out.len = st->out_off = 0;
    if (st->out_end && !st->out.len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->ntrailers) {
            nghttp2_nv nva[st->ntrailers];
            const char *p = st->trailers.p;
            for (uint32_t i = 0; i < st->ntrailers; i++) {
                size_t nl = strlen(p), vl = strlen(p + nl + 1);
                nva[i] =
                    (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nl + 1, nl, vl, NGHTTP2_NV_FLAG_NONE};
                p += nl + vl + 2;
            }
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(sess, id, nva, st->ntrailers);
        }
    }
    return (ssize_t)n;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static uv_once_t once = UV_ONCE_INIT;

static void init_once(void)
{
    if (nghttp2_session_callbacks_new(&callbacks) || nghttp2_option_new(&options)) return;
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_peer_max_concurrent_streams(options, MAX_STREAMS);
}

/* A connection to t with room for one more stream, or a new one. */
static mg_h2up_conn *conn_for(mg_worker *w, const mg_target *t, struct ssl_ctx_st *tls_ctx,
                              const char *server_name, const char **why)
{
    for (mg_h2up_conn *u = w->h2up; u; u = u->next) {
        if (u->dead || u->goaway || u->uid != t->uid) continue;
        uint32_t max =
            nghttp2_session_get_remote_settings(u->sess, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if ((uint32_t)u->nstreams < (max < MAX_STREAMS ? max : MAX_STREAMS)) return u;
    }
    /* Ownership: the worker's list (w->h2up), freed in on_closed. */
    mg_h2up_conn *u = calloc(1, sizeof(*u));
    if (!u) {
        *why = "out of memory";
        return NULL;
    }
    mg_stream_tcp_init(&u->s, &w->loop, &conn_events, w->readbuf, sizeof(w->readbuf));
    u->w = w;
    u->uid = t->uid;
    u->idle_since = uv_now(&w->loop);
    if (nghttp2_session_client_new2(&u->sess, callbacks, u, options)) {
        free(u);
        *why = "out of memory";
        return NULL;
    }
    u->next = w->h2up;
    if (w->h2up) w->h2up->prev = u;
    w->h2up = u;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, w->cfg->max_header_size * 2},
    };
    nghttp2_submit_settings(u->sess, NGHTTP2_FLAG_NONE, iv, MG_ARRAY_SIZE(iv));
    nghttp2_session_set_local_window_size(u->sess, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    int rc = 0;
    if (tls_ctx) {
        u->tls = 1;
        rc = mg_tls_stream_client(&u->s, tls_ctx, server_name);
        mg_tls *e = rc ? NULL : mg_tls_stream_engine(&u->s);
        if (e) rc = mg_tls_set_alpn(e, (const unsigned char *)"\x02h2", 3);
    }
    if (!rc) rc = mg_stream_connect(&u->s, &u->connect_req, (const struct sockaddr *)&t->addr);
    if (rc) {
        *why = "cannot connect";
        u->dead = 1;
        mg_stream_close(&u->s);
        return NULL;
    }
    return u;
}

/* ---- what the proxy calls ------------------------------------------------ */

mg_h2up_stream *mg_h2up_request(mg_worker *w, const mg_target *t, struct ssl_ctx_st *tls_ctx,
                                const char *server_name, const nghttp2_nv *nva, size_t n,
                                int has_body, void *owner, const mg_h2up_events *ev,
                                const char **why)
{
    uv_once(&once, init_once);
    if (!callbacks || !options) {
        *why = "HTTP/2 is not available";
        return NULL;
    }
    mg_h2up_conn *u = conn_for(w, t, tls_ctx, server_name, why);
    if (!u) return NULL;
    /* Ownership: the connection's list; freed once nghttp2 closed it and
     * the owner let go (or with the connection). */
    mg_h2up_stream *st = calloc(1, sizeof(*st));
    if (!st) {
        *why = "out of memory";
        return NULL;
    }
    st->u = u;
    st->owner = owner;
    st->ev = ev;
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(u->sess, NULL, nva, n, has_body ? &dp : NULL, st);
    if (id < 0) {
        free(st);
        *why = nghttp2_strerror(id);
        return NULL;
    }
    st->id = id;
    st->next = u->streams;
    if (u->streams) u->streams->prev = st;
    u->streams = st;
    u->nstreams++;
    conn_flush(u);
    return st;
}

static void resume(mg_h2up_stream *st)
{
    if (st->deferred && !st->closed) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->u->sess, st->id);
    }
}

int mg_h2up_send(mg_h2up_stream *st, const char *p, size_t n)
{
    if (st->closed || st->ended || st->u->dead) return -1;
    if (mg_buf_append(&st->out, p, n)) return -1;
    resume(st);
    conn_flush(st->u);
    if (st->out.len - st->out_off >= OUT_HIGH) {
        st->want_drain = 1;
        return 1;
    }
    return 0;
}

void mg_h2up_end(mg_h2up_stream *st, const nghttp2_nv *nva, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mg_buf_append(&st->trailers, nva[i].name, nva[i].namelen);
        mg_buf_append(&st->trailers, "", 1);
        mg_buf_append(&st->trailers, nva[i].value, nva[i].valuelen);
        mg_buf_append(&st->trailers, "", 1);
        st->ntrailers++;
    }
    st->out_end = 1;
    resume(st);
    conn_flush(st->u);
}

void mg_h2up_consume(mg_h2up_stream *st, size_t n)
{
    if (st->closed || st->u->dead) return;
    nghttp2_session_consume(st->u->sess, st->id, n);
    conn_flush(st->u);
}

void mg_h2up_release(mg_h2up_stream *st)
{
    st->owner = NULL;
    if (st->closed) {
        stream_free(st);
        return;
    }
    mg_h2up_conn *u = st->u;
    if (!st->ended || !st->out_end) {
        nghttp2_submit_rst_stream(u->sess, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        conn_flush(u);
    }
}

void mg_h2up_close_all(mg_worker *w)
{
    for (mg_h2up_conn *u = w->h2up; u; u = u->next)
        conn_kill(u, "the worker stops");
}

void mg_h2up_expire(mg_worker *w, uint64_t now)
{
    for (mg_h2up_conn *u = w->h2up, *next; u; u = next) {
        next = u->next;
        if (!u->dead && u->nstreams == 0 && u->idle_since &&
            now - u->idle_since > w->cfg->keepalive_timeout_ms)
            conn_kill(u, "idle");
    }
}
