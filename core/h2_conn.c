/* The HTTP/2 session of a client connection: nghttp2 set up with our
 * limits, bytes from the socket fed to it, frames it builds batched into
 * writes, the ready list that tells the handler about streams outside
 * nghttp2's callbacks, GOAWAY, and the flood limits. Streams as requests
 * are h2_stream.c's. See h2.h. */
#include "conn_int.h"
#include "h2_int.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>

#define SOCK_HIGH  (256 * 1024) /* stop framing while this much waits for the socket */
#define WBUF_BATCH (64 * 1024)  /* frames gathered into one write */

/* Floods (docs/http2.md): streams the client resets, and control frames
 * (PING, SETTINGS, PRIORITY, WINDOW_UPDATE, empty DATA) it sends, each in
 * a token bucket: a burst, then so many a second. Past it the connection
 * ends with GOAWAY ENHANCE_YOUR_CALM. */
#define RESET_BURST   200.0
#define RESET_RATE    50.0
#define CONTROL_BURST 1000.0
#define CONTROL_RATE  200.0

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int mg_h2_preface(const char *p, size_t n)
{
    size_t k = n < sizeof(preface) - 1 ? n : sizeof(preface) - 1;
    if (memcmp(p, preface, k) != 0) return -1;
    return k == sizeof(preface) - 1 ? 1 : 0;
}

/* ---- the ready list and the run loop ---------------------------------- */

void mg_h2__ready(mg_h2s *s)
{
    if (s->on_ready) return;
    s->on_ready = 1;
    s->ready_next = s->h->ready;
    s->h->ready = s;
}

static void h2_flush(mg_h2 *h);

/* Everything due, once nothing of ours is on the stack: handler events for
 * ready streams (they may submit more), then the writes, then the end of a
 * finished session. */
static void h2_run(mg_h2 *h)
{
    mg_conn *c = h->c;
    if (h->running) return;
    h->running = 1;
    for (int rounds = 0; rounds < 64 && !h->dead; rounds++) {
        while (h->ready && !h->dead) {
            mg_h2s *s = h->ready;
            h->ready = s->ready_next;
            s->on_ready = 0;
            mg_h2__dispatch(s);
        }
        if (h->dead) break;
        h2_flush(h);
        if (!h->ready) break;
    }
    h->running = 0;
    if (h->dead) return;
    if (!nghttp2_session_want_read(h->sess) && !nghttp2_session_want_write(h->sess)) {
        mg_conn__close_gracefully(c); /* GOAWAY went out, or the session failed */
        return;
    }
    if (h->goaway && h->nstreams == 0 && !nghttp2_session_want_write(h->sess)) {
        mg_conn__close_gracefully(c);
        return;
    }
    /* a client that does not read what we write is not read either */
    if (mg_stream_queued(&c->s) >= SOCK_HIGH) {
        if (!h->read_held) mg_stream_read_stop(&c->s);
        h->read_held = 1;
    }
}

void mg_h2__enter(mg_h2 *h)
{
    h->depth++;
}

void mg_h2__leave(mg_h2 *h)
{
    if (--h->depth == 0 && !h->dead) h2_run(h);
}

static void pending_remove(mg_h2 *h)
{
    if (!h->pending) return;
    h->pending = 0;
    mg_worker *w = h->c->w;
    if (h->pend_prev)
        h->pend_prev->pend_next = h->pend_next;
    else
        w->h2_pending = h->pend_next;
    if (h->pend_next) h->pend_next->pend_prev = h->pend_prev;
    h->pend_prev = h->pend_next = NULL;
}

/* What the proxy's calls (src_*) queued is framed once per loop turn, for
 * every stream of the connection together: responses finished in one turn
 * leave in one write (one TLS record run, one syscall), not one each. */
void mg_h2__later(mg_h2 *h)
{
    if (h->depth || h->pending || h->dead) return; /* the running entry frames it */
    mg_worker *w = h->c->w;
    h->pending = 1;
    h->pend_prev = NULL;
    h->pend_next = w->h2_pending;
    if (w->h2_pending) w->h2_pending->pend_prev = h;
    w->h2_pending = h;
}

void mg_h2_run_pending(mg_worker *w)
{
    while (w->h2_pending) {
        mg_h2 *h = w->h2_pending;
        pending_remove(h);
        mg_h2__enter(h);
        mg_h2__leave(h);
    }
}

/* ---- writing ------------------------------------------------------- */

static int write_batch(mg_h2 *h)
{
    if (!h->wbuf.len) return 0;
    uv_buf_t b = uv_buf_init(h->wbuf.p, (unsigned)h->wbuf.len);
    int rc = mg_stream_write(&h->c->s, &b, 1); /* copies what it cannot write now */
    h->wbuf.len = 0;
    if (rc < 0) {
        mg_conn_close(h->c);
        return -1;
    }
    return 0;
}

/* Frames what nghttp2 has (headers, DATA as the windows allow, control
 * frames) while the socket keeps up; the rest waits for its drain. */
static void h2_flush(mg_h2 *h)
{
    while (!h->dead && mg_stream_queued(&h->c->s) < SOCK_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->sess, &data);
        if (n < 0) {
            MG_LOG(MG_LOG_INFO, h->c->w->id, h->c->id, "HTTP/2: %s", nghttp2_strerror((int)n));
            mg_conn_close(h->c);
            return;
        }
        if (n == 0) break;
        if (mg_buf_append(&h->wbuf, data, (size_t)n)) {
            mg_conn_close(h->c);
            return;
        }
        if (h->wbuf.len >= WBUF_BATCH && write_batch(h)) return;
    }
    if (!h->dead) write_batch(h);
}

void mg_h2__fatal(mg_h2 *h, uint32_t code)
{
    if (h->dead) return;
    nghttp2_session_terminate_session(h->sess, code);
    h2_flush(h);
    if (!h->dead) mg_conn__close_gracefully(h->c);
}

/* ---- floods ---------------------------------------------------------- */

/* Takes a token from a bucket (both are refilled with time); 0 when none
 * is left. */
static int take(mg_h2 *h, double *bucket)
{
    uint64_t now = uv_now(&h->c->w->loop);
    if (now > h->bucket_ms) {
        double dt = (double)(now - h->bucket_ms) / 1000.0;
        h->resets = h->resets + dt * RESET_RATE;
        if (h->resets > RESET_BURST) h->resets = RESET_BURST;
        h->control = h->control + dt * CONTROL_RATE;
        if (h->control > CONTROL_BURST) h->control = CONTROL_BURST;
        h->bucket_ms = now;
    }
    if (*bucket < 1.0) return 0;
    *bucket -= 1.0;
    return 1;
}

static int calm_down(mg_h2 *h, const char *what)
{
    MG_LOG(MG_LOG_WARN, h->c->w->id, h->c->id, "HTTP/2 client %s: %s flood, GOAWAY", h->c->peer_ip,
           what);
    nghttp2_session_terminate_session(h->sess, NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
}

/* ---- session callbacks ---------------------------------------------- */

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *f, void *user)
{
    mg_h2 *h = user;
    mg_h2s *s =
        f->hd.stream_id ? nghttp2_session_get_stream_user_data(sess, f->hd.stream_id) : NULL;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (!s) break;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            mg_h2__head_end(s, (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
        else if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            mg_h2__in_end(s); /* trailers */
        break;
    case NGHTTP2_DATA:
        if (f->hd.length == 0 && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !take(h, &h->control))
            return calm_down(h, "empty DATA");
        if (s && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) mg_h2__in_end(s);
        break;
    case NGHTTP2_RST_STREAM:
        if (!take(h, &h->resets)) return calm_down(h, "stream reset");
        break;
    case NGHTTP2_WINDOW_UPDATE:
        /* a client reading a large body opens its windows often, by much;
         * only tiny increments are a flood */
        if (f->window_update.window_size_increment >= 1024) break;
        if (!take(h, &h->control)) return calm_down(h, "control frame");
        break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
        if (!take(h, &h->control)) return calm_down(h, "control frame");
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *p,
                         size_t n, void *user)
{
    mg_h2s *s = nghttp2_session_get_stream_user_data(sess, id);
    if (s) {
        mg_h2__data(s, p, n);
    } else {
        nghttp2_session_consume_connection(sess, n);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t code, void *user)
{
    mg_h2s *s = nghttp2_session_get_stream_user_data(sess, id);
    if (!s) return 0;
    s->closed = 1;
    mg_h2__ready(s);
    return 0;
}

static int on_error(nghttp2_session *sess, int code, const char *msg, size_t len, void *user)
{
    mg_h2 *h = user;
    MG_LOG(MG_LOG_DEBUG, h->c->w->id, h->c->id, "HTTP/2: %.*s", (int)len, msg);
    return 0;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static uv_once_t cb_once = UV_ONCE_INIT;

static void callbacks_init(void)
{
    if (nghttp2_session_callbacks_new(&callbacks) || nghttp2_option_new(&options)) return;
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, mg_h2__on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, mg_h2__on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(callbacks, on_error);
    /* windows reopen as the upstream takes the bytes (nghttp2_session_consume) */
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_max_settings(options, 32);
    nghttp2_option_set_max_outbound_ack(options, 1000);
    /* nghttp2's own rapid-reset guard, past ours (which answers first) */
    nghttp2_option_set_stream_reset_rate_limit(options, (uint64_t)RESET_BURST * 4,
                                               (uint64_t)RESET_RATE * 4);
    nghttp2_option_set_max_continuations(options, 8);
    nghttp2_option_set_max_deflate_dynamic_table_size(options, 4096);
}

/* ---- what conn.c calls ------------------------------------------------ */

int mg_h2_start(mg_conn *c)
{
    uv_once(&cb_once, callbacks_init);
    if (!callbacks || !options) return -1;
    /* Ownership: the connection's (c->h2), freed by mg_h2_free. */
    mg_h2 *h = calloc(1, sizeof(*h));
    if (!h) return -1;
    h->c = c;
    h->resets = RESET_BURST;
    h->control = CONTROL_BURST;
    h->bucket_ms = uv_now(&c->w->loop);
    if (nghttp2_session_server_new2(&h->sess, callbacks, h, options)) {
        free(h);
        return -1;
    }
    c->h2 = h;
    const mg_config *cfg = c->w->cfg;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, MG_H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->max_header_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    nghttp2_submit_settings(h->sess, NGHTTP2_FLAG_NONE, iv, MG_ARRAY_SIZE(iv));
    nghttp2_session_set_local_window_size(h->sess, NGHTTP2_FLAG_NONE, 0, MG_H2_CONN_WINDOW);
    c->state = MG_C_H2;
    mg_tq_arm(&c->w->q_client_idle, &c->tq, uv_now(&c->w->loop));
    mg_h2__enter(h);
    mg_h2__leave(h);
    return 0;
}

void mg_h2_read(mg_conn *c, const char *p, size_t n)
{
    mg_h2 *h = c->h2;
    if (h->dead) return;
    mg_h2__enter(h);
    ssize_t rv = nghttp2_session_mem_recv(h->sess, (const uint8_t *)p, n);
    if (rv < 0) {
        MG_LOG(MG_LOG_INFO, c->w->id, c->id, "HTTP/2 client %s: %s", c->peer_ip,
               nghttp2_strerror((int)rv));
        int calm = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
        mg_h2__fatal(h, calm ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
    }
    mg_h2__leave(h);
}

void mg_h2_drain(mg_conn *c)
{
    mg_h2 *h = c->h2;
    if (h->dead) return;
    if (h->read_held) {
        h->read_held = 0;
        mg_stream_read_start(&c->s);
    }
    mg_h2__enter(h);
    mg_h2__leave(h);
}

void mg_h2_eof(mg_conn *c)
{
    mg_conn_close(c); /* an HTTP/2 client never half-closes to end a request */
}

void mg_h2_goaway(mg_conn *c)
{
    mg_h2 *h = c->h2;
    if (h->dead || h->goaway) return;
    h->goaway = 1;
    nghttp2_submit_goaway(h->sess, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h->sess), NGHTTP2_NO_ERROR, NULL,
                          0);
    mg_h2__enter(h);
    mg_h2__leave(h);
}

void mg_h2_closing(mg_conn *c)
{
    mg_h2 *h = c->h2;
    if (!h || h->dead) return;
    pending_remove(h);
    h->dead = 1;
    for (mg_h2s *s = h->streams; s; s = s->next)
        mg_h2__drop_req(s, 1);
}

void mg_h2_free(mg_conn *c)
{
    mg_h2 *h = c->h2;
    if (!h) return;
    c->h2 = NULL;
    while (h->streams)
        mg_h2__stream_free(h->streams);
    nghttp2_session_del(h->sess);
    mg_buf_free(&h->wbuf);
    mg_buf_free(&h->nv);
    free(h);
}
