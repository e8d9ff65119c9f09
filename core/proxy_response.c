/* The response: parsed with llhttp under the strict framing check (bare LF
 * line ends made CRLF), its head handed to the response hooks and then to
 * the source, its body streamed with back-pressure, its trailers, the end
 * and the reuse of the upstream connection; and the tunnel after a 101. */
#include "proxy_int.h"

#include <string.h>

static llhttp_settings_t resp_settings;
static uv_once_t resp_once = UV_ONCE_INIT;

/* ---- llhttp callbacks (collect, and relay body bytes) ---------------- */

static int resp_message_begin(llhttp_t *p)
{
    mg_req *r = p->data;
    if (!mg_proxy__live(r)) return HPE_USER;
    mg_headers_reset(&r->out);
    r->in_trailers = 0;
    r->reason_len = 0;
    return 0;
}

/* The reason phrase, kept when it is short and plain (VCHAR and spaces):
 * a client sees the backend's "201 Created", never a made-up text. */
static int resp_status(llhttp_t *p, const char *at, size_t n)
{
    mg_req *r = p->data;
    size_t have = r->reason_len;
    if (have == 0xff) return 0; /* already unusable */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)at[i];
        if (have >= sizeof(r->reason) || ch < 0x20 || ch >= 0x7f) {
            r->reason_len = 0xff;
            return 0;
        }
        r->reason[have++] = (char)ch;
    }
    r->reason_len = (uint8_t)have;
    return 0;
}

/* A response head piece: checks the size limit (twice the request limit)
 * and hands it to add (mg_headers_field or mg_headers_value). */
static int resp_head_piece(llhttp_t *p, const char *at, size_t n,
                           int (*add)(mg_headers *, const char *, size_t))
{
    mg_req *r = p->data;
    if (!mg_proxy__live(r)) return HPE_USER;
    if (r->out.arena.len + n > r->w->cfg->max_header_size * 2) {
        llhttp_set_error_reason(p, "response head too large");
        return HPE_USER;
    }
    return add(&r->out, at, n) ? HPE_USER : 0;
}

static int resp_header_field(llhttp_t *p, const char *at, size_t n)
{
    return resp_head_piece(p, at, n, mg_headers_field);
}

static int resp_header_value(llhttp_t *p, const char *at, size_t n)
{
    return resp_head_piece(p, at, n, mg_headers_value);
}

static int resp_header_value_complete(llhttp_t *p)
{
    mg_req *r = p->data;
    if (r->in_trailers && r->out.ntrailer_start == UINT32_MAX) r->out.ntrailer_start = r->out.n;
    mg_headers_value_done(&r->out);
    uint32_t i = r->out.n - 1;
    if (!mg_header_valid(mg_hname(&r->out, i), r->out.h[i].nlen, mg_hvalue(&r->out, i),
                         r->out.h[i].vlen)) {
        llhttp_set_error_reason(p, "invalid header name or value");
        return HPE_USER;
    }
    return 0;
}

/* The end of a response head: framing checks that need the parser's
 * flags, then a pause, so the head is handled outside llhttp (Lua hooks
 * run there) and the head's end is known for the framing check. */
static int resp_headers_complete(llhttp_t *p)
{
    mg_req *r = p->data;
    if (!mg_proxy__live(r)) return HPE_USER;
    int status = p->status_code;
    if (p->http_major != 1) {
        llhttp_set_error_reason(p, "unsupported HTTP version");
        return HPE_USER;
    }
    if (r->in_trailers) return 0;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)INT64_MAX) {
        llhttp_set_error_reason(p, "Content-Length too large"); /* lengths are int64_t */
        return HPE_USER;
    }
    if (status < 100 || status > 599) {
        llhttp_set_error_reason(p, "a status code outside 100-599");
        return HPE_USER;
    }
    if (status >= 100 && status < 200 && status != 101) {
        /* RFC 9110 8.6, 15.2: an interim response has no content */
        if (p->flags & (F_CHUNKED | F_CONTENT_LENGTH | F_TRANSFER_ENCODING)) {
            llhttp_set_error_reason(p, "a 1xx response with a body or framing headers");
            return HPE_USER;
        }
        p->flags |= F_SKIPBODY;
    } else if (status == 101) {
        if (!r->upgrade) {
            llhttp_set_error_reason(p, "101 without an upgrade request");
            return HPE_USER;
        }
        if (!p->upgrade) {
            /* llhttp would read it as a message with a body, then parse
             * what follows as more responses, unchecked */
            llhttp_set_error_reason(p, "101 without Upgrade and Connection: upgrade");
            return HPE_USER;
        }
    } else if (r->head_request || status == 204 || status == 304) {
        p->flags |= F_SKIPBODY; /* what returning 1 would say, kept across the pause */
    }
    r->head_paused = 1;
    return HPE_PAUSED;
}

static int resp_body(llhttp_t *p, const char *at, size_t n)
{
    mg_req *r = p->data;
    if (!mg_proxy__live(r)) return HPE_USER;
    if (r->resp_discard) return 0; /* replaced by a hook's answer */
    /* for the on_body hooks, after llhttp_execute returns (no Lua in here) */
    if (r->body_filter) return mg_buf_append(&r->filt, at, n) ? HPE_USER : 0;
    r->bytes_out += n;
    r->resp_sent = 1;
    uv_buf_t b = uv_buf_init((char *)at, (unsigned)n);
    int rc = r->src->body(r, &b, 1);
    if (rc < 0) return HPE_USER;                  /* the client is gone */
    if (rc == 1 && r->up) mg_up_read_stop(r->up); /* back-pressure until it drains */
    return 0;
}

static int resp_chunk_header(llhttp_t *p)
{
    mg_req *r = p->data;
    if (p->content_length == 0) r->in_trailers = 1;
    return 0;
}

static int resp_message_complete(llhttp_t *p)
{
    mg_req *r = p->data;
    if (!mg_proxy__live(r)) return HPE_USER;
    if (r->resp_interim) {
        r->resp_interim = 0;
        mg_headers_reset(&r->out);
        return 0;
    }
    if (r->status == 101) return 0; /* llhttp then returns HPE_PAUSED_UPGRADE */
    if (r->out.ntrailer_start < r->out.n) mg_proxy__strip_hop(&r->out, r->out.ntrailer_start, 0);
    r->resp_done = 1;
    r->resp_reusable = llhttp_should_keep_alive(p) && !r->resp_close_delimited && r->body_done;
    return HPE_PAUSED; /* anything after the response is not ours to parse */
}

static void resp_settings_init(void)
{
    llhttp_settings_init(&resp_settings);
    resp_settings.on_message_begin = resp_message_begin;
    resp_settings.on_status = resp_status;
    resp_settings.on_header_field = resp_header_field;
    resp_settings.on_header_value = resp_header_value;
    resp_settings.on_header_value_complete = resp_header_value_complete;
    resp_settings.on_headers_complete = resp_headers_complete;
    resp_settings.on_body = resp_body;
    resp_settings.on_chunk_header = resp_chunk_header;
    resp_settings.on_message_complete = resp_message_complete;
}

void mg_proxy__response_start(mg_req *r)
{
    uv_once(&resp_once, resp_settings_init);
    llhttp_init(&r->parser, HTTP_RESPONSE, &resp_settings);
    r->parser.data = r;
    mg_h1check_head(&r->check, 1);
    r->got_bytes = 0;
    r->head_paused = 0;
}

/* ---- heads ---------------------------------------------------------- */

static const char *own_reason(const mg_req *r, size_t *len)
{
    if (!r->reason_len || r->reason_len == 0xff) return NULL;
    *len = r->reason_len;
    return r->reason;
}

/* After the response hooks: the framing of the backend's body, then the
 * head to the source; or, when a hook replaced the answer (res:replace),
 * the backend's body is read and dropped, and the answer goes out when it
 * ended (response_finished), the connection kept for the next request.
 * Returns 0, or -1 when the request is done for. */
static int head_out(mg_req *r)
{
    llhttp_t *p = &r->parser;
    int status = r->status;
    size_t rlen = 0;
    const char *reason = status == p->status_code ? own_reason(r, &rlen) : NULL;
    int no_body = r->head_request || status == 204 || status == 304;
    if (r->resp_replaced)
        no_body = r->head_request || p->status_code == 204 || p->status_code == 304;
    int has_cl = (p->flags & F_CONTENT_LENGTH) != 0;
    int chunked = (p->flags & F_CHUNKED) != 0;
    r->resp_close_delimited = !no_body && !has_cl && !chunked;
    if (chunked && !(p->flags & F_SKIPBODY)) mg_h1check_chunked(&r->check, 1);
    if (r->resp_replaced) {
        r->body_filter = 0;
        r->resp_discard = 1;
        mg_tq_arm(&r->w->q_up_response, &r->tq, uv_now(&r->w->loop));
        if (r->resp_close_delimited) {
            /* its end is the connection's close: do not wait for it */
            mg_proxy__fail(r, 502, "replaced");
            return -1;
        }
        return 0;
    }
    int64_t length = has_cl && !chunked ? (int64_t)p->content_length : -1;
    if (no_body) r->body_filter = 0;
    if (r->body_filter) length = -1; /* the hooks decide the bytes: chunked */
    unsigned flags = (no_body ? MG_RESP_NO_BODY : 0) |
                     (r->upgrade ? MG_RESP_CLOSE : 0); /* a refused upgrade: not HTTP any more */
    mg_proxy__strip_hop(&r->out, 0, 0);
    r->resp_started = 1;
    r->src->head(r, status, reason, rlen, length, flags);
    return 0;
}

/* A response head was parsed (the parser is paused at its end): relay an
 * interim one, or run the response hooks and hand the final head to the
 * source. Returns 0, 1 when the hooks wait (the caller keeps the bytes
 * after the head), or -1 when the request is gone. */
static int response_head(mg_req *r)
{
    llhttp_t *p = &r->parser;
    mg_worker *w = r->w;
    int status = p->status_code;
    size_t rlen = 0;
    const char *reason = own_reason(r, &rlen);
    mg_tq_arm(&w->q_up_response, &r->tq, uv_now(&w->loop));
    if (status >= 100 && status < 200 && status != 101) {
        /* interim response: relayed, then wait for more */
        r->resp_interim = 1;
        mg_proxy__strip_hop(&r->out, 0, 0);
        r->src->interim(r, status, reason, rlen);
        mg_h1check_head(&r->check, 1); /* the next head follows at once */
        return mg_proxy__live(r) ? 0 : -1;
    }
    r->resp_interim = 0;
    if (status == 101) {
        r->status = 101;
        r->resp_started = 1;
        mg_proxy__strip_hop(&r->out, 0, 1);
        r->src->head(r, 101, reason, rlen, -1, MG_RESP_NO_BODY);
        return 0;
    }
    r->status = (uint16_t)status;
    mg_lua_report(&w->lua, r, status, (double)(uv_hrtime() - r->try_start_ns) / 1e9, NULL);
    mg_proxy__passive(r, status >= 500 ? MG_FAIL_STATUS : MG_FAIL_NONE, status, "status 5xx");
    if (!mg_proxy__live(r)) return -1;
    if (r->hook_flags & 1) {
        r->in_resp_hook = 1;
        mg_lua_on_response(&w->lua, r, 1);
        if (r->hook_wait) {
            /* the hooks wait on I/O: nothing more is read from the backend
             * until they end (proxy_wait.c), and the wait has its own
             * timeout */
            mg_tq_remove(&r->tq);
            if (r->up) mg_up_read_stop(r->up);
            return 1;
        }
        r->in_resp_hook = 0;
        if (!mg_proxy__live(r)) return -1;
    }
    return head_out(r);
}

/* ---- bytes from the backend ------------------------------------------- */

static void invalid_response(mg_req *r, const char *why)
{
    MG_LOG(MG_LOG_WARN, r->w->id, r->conn_id, "invalid response from %s: %s",
           mg_req_target(r)->address, why ? why : "framing error");
    mg_proxy__fail(r, 502, "invalid response from upstream");
}

/* Hands the body bytes gathered since the last call to the on_body hooks
 * and what they return to the client. Returns -1 when r is done for (a
 * hook failed: the response is cut, as any failure mid-response is). */
static int run_body_filter(mg_req *r, int last)
{
    if (!r->body_filter || (!r->filt.len && !last)) return 0;
    if (mg_lua_on_body(&r->w->lua, r, &r->filt, last)) {
        r->filt.len = 0;
        mg_proxy__fail(r, 502, "an on_body hook failed");
        return -1;
    }
    if (!mg_proxy__live(r)) return -1;
    size_t n = r->filt.len;
    r->filt.len = 0; /* the source copies what the socket does not take */
    if (!n) return 0;
    r->bytes_out += n;
    r->resp_sent = 1;
    uv_buf_t b = uv_buf_init(r->filt.p, (unsigned)n);
    int rc = r->src->body(r, &b, 1);
    if (rc < 0) return -1;
    if (rc == 1 && r->up) mg_up_read_stop(r->up);
    return 0;
}

/* The answer a hook made in place of the backend's (res:replace), with
 * the backend's status unless a hook changed it. */
void mg_proxy__respond_replaced(mg_req *r)
{
    r->resp_discard = 0;
    mg_proxy__respond(r, r->status, r->local.p, r->local_hlen, r->local.p + r->local_hlen,
                      r->local.len - r->local_hlen, !r->body_done);
}

static void response_finished(mg_req *r, int extra_bytes)
{
    if (run_body_filter(r, 1)) return;
    mg_proxy__detach(r, r->resp_reusable && !extra_bytes);
    if (r->resp_discard) {
        mg_proxy__respond_replaced(r);
        return;
    }
    mg_proxy__finish(r);
}

static void start_tunnel(mg_req *r, const char *rest, size_t n)
{
    r->tunnel = 1;
    r->resp_done = 1;
    r->resp_sent = 1;
    mg_tq_remove(&r->tq);
    r->src->tunnel(r, rest, n);
}

static void tunnel_data(mg_req *r, const char *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = r->src->raw(r, &b, 1);
    if (rc == 1 && r->up) mg_up_read_stop(r->up);
}

/* Parses what one read brought. One read may hold interim heads, a final
 * head, body bytes and the end: it is parsed piece by piece. Heads and
 * chunked bodies go through the strict check first, which says where they
 * end (llhttp must agree) and turns bare LF line ends into CRLF. */
static void parse_response(mg_req *r, const char *p, size_t n)
{
    for (;;) {
        const char *src = p;
        size_t feed = n, mine = n; /* bytes of p this round covers */
        const char *why = NULL;
        int checked = mg_h1check_active(&r->check);
        int head = r->check.head;
        if (checked) {
            r->fix.len = 0;
            long k = mg_h1check_feed(&r->check, p, n, &r->fix, &why);
            if (k < 0) {
                invalid_response(r, why);
                return;
            }
            mine = feed = (size_t)k;
            if (r->fix.len) {
                src = r->fix.p;
                feed = r->fix.len;
            }
        }
        r->head_paused = 0;
        llhttp_errno_t e = llhttp_execute(&r->parser, src, feed);
        if (!mg_proxy__live(r)) return;
        size_t used = e == HPE_OK ? feed : (size_t)(llhttp_get_error_pos(&r->parser) - src);
        if (checked) {
            int ended = mg_h1check_done(&r->check);
            int llhttp_ended = e == HPE_PAUSED && (head ? r->head_paused : !r->head_paused);
            if (e != HPE_OK && !llhttp_ended) {
                invalid_response(r, llhttp_get_error_reason(&r->parser));
                return;
            }
            if (ended != llhttp_ended || used != feed) {
                invalid_response(r, head ? "a response head that parsers could read differently"
                                         : "chunked framing that parsers could read differently");
                return;
            }
            used = mine;
        }
        if (e == HPE_PAUSED && r->head_paused) {
            llhttp_resume(&r->parser);
            int rc = response_head(r);
            if (rc < 0) return;
            p += used;
            n -= used;
            if (rc == 1) { /* the hooks wait: keep the rest for later */
                r->resp_rest.len = 0;
                if (mg_buf_append(&r->resp_rest, p, n))
                    mg_proxy__fail(r, 502, "out of memory"); /* the wait ends on a dead request */
                return;
            }
            /* the rest: body, the end, or another head; even with no bytes
             * left, llhttp reaches the end of a bodiless message only inside
             * execute */
            continue;
        }
        if (e == HPE_OK) {
            run_body_filter(r, 0);
            return;
        }
        if (e == HPE_PAUSED_UPGRADE && r->status == 101) {
            start_tunnel(r, p + used, n - used);
            return;
        }
        if (e == HPE_PAUSED) {
            response_finished(r, used < n);
            return;
        }
        invalid_response(r, llhttp_get_error_reason(&r->parser));
        return;
    }
}

/* After a wait: what the source needs now (a head whose body comes later
 * goes out at once, unless the body is filtered), and more reads. */
static void after_parse(mg_req *r, size_t n)
{
    if (mg_proxy__live(r) && r->resp_started && !r->resp_done && !r->tunnel && !r->body_filter) {
        r->resp_sent = 1;
        r->src->body(r, NULL, 0);
    }
    /* more of a response is due after a small read: ACK it now, so a
     * backend holding its next piece for our ACK (Nagle) sends it at once */
    if (mg_proxy__live(r) && !r->resp_done && n < 1448 && r->up) mg_up_ack_now(r->up);
}

void mg_proxy__response_resume(mg_req *r)
{
    mg_worker *w = r->w;
    if (!r->up) { /* the backend went away meanwhile */
        if (r->resp_replaced)
            mg_proxy__respond_replaced(r);
        else
            mg_proxy__fail(r, 502, "upstream connection lost");
        return;
    }
    if (r->hook_failed) r->resp_replaced = 0; /* the backend's answer goes on */
    mg_tq_arm(&w->q_up_response, &r->tq, uv_now(&w->loop));
    if (head_out(r)) return;
    /* the bytes read past the head: body, the end (even none: llhttp ends
     * a bodiless message only inside execute) */
    mg_buf rest = r->resp_rest;
    r->resp_rest = (mg_buf){0};
    parse_response(r, rest.p ? rest.p : "", rest.len);
    after_parse(r, rest.len);
    rest.len = 0;
    if (!r->resp_rest.cap)
        r->resp_rest = rest;
    else
        mg_buf_free(&rest);
    if (mg_proxy__live(r) && r->up && !r->resp_done) mg_up_read_start(r->up);
}

void mg_proxy__up_data(void *owner, const char *p, size_t n)
{
    mg_req *r = owner;
    if (r->tunnel) {
        tunnel_data(r, p, n);
        return;
    }
    if (r->hook_wait) { /* the head's hooks wait: keep the bytes for later */
        if (mg_buf_append(&r->resp_rest, p, n)) mg_proxy__fail(r, 502, "out of memory");
        if (r->up) mg_up_read_stop(r->up);
        return;
    }
    r->got_bytes = 1;
    mg_tq_arm(&r->w->q_up_response, &r->tq, uv_now(&r->w->loop));
    /* The client may go away during any callback: keep r until we return. */
    mg_req_hold(r);
    parse_response(r, p, n);
    /* a head whose body comes in a later read goes out now (a filtered
     * body's head waits for the hooks' first bytes: they may still fail) */
    if (!r->hook_wait) after_parse(r, n);
    mg_req_release(r);
}

void mg_proxy__up_eof(void *owner)
{
    mg_req *r = owner;
    if (r->tunnel) {
        mg_proxy__detach(r, 0);
        if (mg_proxy__live(r)) r->src->abort(r);
        return;
    }
    if (!r->got_bytes && !r->resp_started) {
        mg_proxy__up_error(r, UV_EOF);
        return;
    }
    mg_req_hold(r);
    llhttp_errno_t e = llhttp_finish(&r->parser);
    if (mg_proxy__live(r)) {
        if ((e == HPE_OK || e == HPE_PAUSED) && r->resp_done) {
            r->resp_reusable = 0;
            response_finished(r, 0);
        } else {
            MG_LOG(MG_LOG_WARN, r->w->id, r->conn_id, "upstream %s closed mid-response",
                   mg_req_target(r)->address);
            mg_proxy__fail(r, 502, "upstream closed the connection early");
        }
    }
    mg_req_release(r);
}
