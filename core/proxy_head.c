/* Heads as the proxy sees them: the request-target and Host checks before
 * routing, the head serialised for the backend (HTTP/1.1), and the
 * hop-by-hop headers removed from a response before the source writes it. */
#include "addr.h"
#include "h1.h"
#include "proxy_int.h"
#include "uri.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Whether a Connection header names a header that is not hop-by-hop
 * anyway (a custom "Connection: x-secret"): only then must each header be
 * checked against it (RFC 9110 7.6.1). Usually it says keep-alive, close
 * or upgrade, and this costs one pass over its value. */
static int connection_names_others(const mg_headers *h)
{
    uint32_t end = mg_headers_end(h);
    for (uint32_t k = 0; k < end; k++) {
        if (h->h[k].kind != MG_HK_CONNECTION || !h->h[k].nlen) continue;
        const char *v = mg_hvalue(h, k);
        size_t n = h->h[k].vlen, i = 0;
        while (i < n) {
            while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                i++;
            size_t s = i;
            while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
                i++;
            if (i == s) continue;
            if (i - s == 5 && strncasecmp(v + s, "close", 5) == 0) continue;
            if (!mg_hkind_is_hop(mg_hkind_of(v + s, i - s))) return 1;
        }
    }
    return 0;
}

/* True if header i is named by a Connection header (and so hop-by-hop). */
static int named_by_connection(const mg_headers *h, uint32_t i)
{
    uint32_t end = mg_headers_end(h);
    for (uint32_t k = 0; k < end; k++) {
        if (k == i || h->h[k].kind != MG_HK_CONNECTION || !h->h[k].nlen) continue;
        if (mg_value_has_token(mg_hvalue(h, k), h->h[k].vlen, mg_hname(h, i), h->h[i].nlen))
            return 1;
    }
    return 0;
}

void mg_proxy__strip_hop(mg_headers *h, uint32_t from, int keep_upgrade)
{
    if (connection_names_others(h)) {
        /* first what Connection names, while the Connection headers stand */
        for (uint32_t i = from; i < h->n; i++)
            if (h->h[i].nlen && h->h[i].kind != MG_HK_CONNECTION && named_by_connection(h, i))
                h->h[i].nlen = 0;
    }
    for (uint32_t i = from; i < h->n; i++) {
        int kind = h->h[i].kind;
        if (!mg_hkind_is_hop(kind) || !h->h[i].nlen) continue;
        if (keep_upgrade && kind == MG_HK_UPGRADE) continue;
        h->h[i].nlen = 0;
    }
}

/* ---- the target ---------------------------------------------------- */

void mg_proxy__split_url(const mg_req *r, mg_str *path, mg_str *query, mg_str *authority)
{
    mg_uri u;
    mg_uri_split(mg_req_url(r), r->url_cur_len, &u);
    *path = u.path;
    *query = u.query;
    authority->p = r->in.arena.p + r->auth_off;
    authority->len = r->auth_len;
}

/* Validates the request-target and rewrites it, in the arena, to the
 * origin-form the backend gets: an absolute-form target loses its authority
 * (kept in auth_off/auth_len: it replaces Host), an empty path becomes "/"
 * ("*" for OPTIONS), and the path is normalised (dot segments, duplicate
 * slashes, escapes) so that routing and the backend see the same path.
 * Returns 0, or an HTTP status with *why. */
static int prepare_target(mg_req *r, const mg_config *cfg, const char **why)
{
    mg_buf *a = &r->in.arena;
    mg_uri u;
    r->url_off = r->method_len;
    r->url_cur_len = r->url_len;
    if (mg_uri_parse(a->p + r->url_off, r->url_len, r->method == HTTP_OPTIONS, &u, why)) return 400;
    if (u.form == MG_TARGET_ASTERISK) return 0;
    size_t poff = (size_t)(u.path.p - a->p), plen = u.path.len;
    size_t qoff = (size_t)(u.query.p - a->p), qlen = u.query.len;
    int has_query = u.has_query;
    if (u.form == MG_TARGET_ABSOLUTE) {
        r->auth_off = (uint32_t)(u.authority.p - a->p);
        r->auth_len = (uint16_t)(u.authority.len < 65535 ? u.authority.len : 65535);
    }
    int normalize = plen && cfg->normalize_paths && mg_uri_path_needs_normalizing(u.path.p, plen);
    if (u.form != MG_TARGET_ABSOLUTE && !normalize) return 0;
    /* the new target goes after everything in the arena: offsets stay valid */
    if (mg_buf_reserve(a, plen + qlen + 3)) return 500;
    size_t off = a->len;
    char *o = a->p + off;
    size_t n;
    if (!plen) {
        int star = r->method == HTTP_OPTIONS && !has_query;
        o[0] = star ? '*' : '/';
        n = 1;
    } else if (normalize) {
        long k = mg_uri_normalize_path(
            a->p + poff, plen, o, cfg->keep_encoded_slash ? MG_PATH_KEEP_ENCODED_SLASH : 0, why);
        if (k < 0) return 400;
        n = (size_t)k;
    } else {
        memcpy(o, a->p + poff, plen);
        n = plen;
    }
    if (has_query) {
        o[n++] = '?';
        memcpy(o + n, a->p + qoff, qlen);
        n += qlen;
    }
    a->len += n;
    r->url_off = (uint32_t)off;
    r->url_cur_len = (uint32_t)n;
    return 0;
}

int mg_proxy__check_head(mg_req *r, const mg_config *cfg, const char **why)
{
    mg_headers *h = &r->in;
    int nhost = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        if (h->h[i].kind == MG_HK_HOST) {
            nhost++;
            if (mg_uri_check_host(mg_hvalue(h, i), h->h[i].vlen)) {
                *why = "invalid Host header";
                return 400;
            }
        } else if (h->h[i].kind == MG_HK_TRANSFER_ENCODING) {
            /* llhttp accepts "gzip, chunked"; we forward only what we decode. */
            const char *v = mg_hvalue(h, i);
            size_t len = h->h[i].vlen, k = 0;
            while (k < len) {
                while (k < len && (v[k] == ' ' || v[k] == '\t' || v[k] == ','))
                    k++;
                size_t s = k;
                while (k < len && v[k] != ',' && v[k] != ' ' && v[k] != '\t')
                    k++;
                if (k > s && !(k - s == 7 && strncasecmp(v + s, "chunked", 7) == 0)) {
                    *why = "unsupported transfer coding";
                    return 400;
                }
            }
        }
    }
    if (nhost > 1) {
        *why = "more than one Host header";
        return 400;
    }
    if (nhost == 0 && r->http_major == 1 && r->http_minor >= 1) {
        *why = "missing Host header";
        return 400;
    }
    if (r->method == HTTP_CONNECT) {
        *why = "CONNECT is not supported";
        return 405;
    }
    return prepare_target(r, cfg, why);
}

/* ---- the head for the backend -------------------------------------- */

/* Serializes the request head for the upstream once; retries resend it. */
void mg_proxy__upstream_head(mg_req *r)
{
    mg_buf *b = &r->uhead;
    mg_headers *h = &r->in;
    mg_str path, query, authority;
    mg_proxy__split_url(r, &path, &query, &authority);
    b->len = 0;
    mg_buf_append(b, mg_req_method(r), r->method_len);
    mg_buf_append(b, " ", 1);
    mg_buf_append(b, mg_req_url(r), r->url_cur_len); /* origin-form or "*" */
    mg_buf_append(b, " HTTP/1.1\r\n", 11);
    int xff = -1, xfp = -1, xfh = -1, has_host = 0;
    uint32_t end = mg_headers_end(h);
    int named = connection_names_others(h);
    for (uint32_t i = 0; i < end; i++) {
        if (!h->h[i].nlen) continue; /* removed by a plugin */
        int kind = h->h[i].kind;
        if (mg_hkind_is_hop(kind) || (named && named_by_connection(h, i))) continue;
        switch (kind) {
        case MG_HK_X_FORWARDED_FOR:
            if (xff < 0) xff = (int)i;
            continue;
        case MG_HK_X_FORWARDED_PROTO:
            if (xfp < 0) xfp = (int)i;
            continue;
        case MG_HK_X_FORWARDED_HOST:
            if (xfh < 0) xfh = (int)i;
            continue;
        case MG_HK_X_REAL_IP:
            continue;
        case MG_HK_HOST:
            has_host = 1;
            if (authority.len) {
                MG_H1_HEADER(b, "Host", authority.p, authority.len);
                continue;
            }
            break;
        default:
            break;
        }
        mg_h1_header_at(b, h, i);
    }
    if (!has_host) {
        if (authority.len)
            MG_H1_HEADER(b, "Host", authority.p, authority.len);
        else {
            const char *a = r->snap->services[r->svc].targets[0].address;
            MG_H1_HEADER(b, "Host", a, strlen(a));
        }
    }
    char ip[64] = "";
    mg_req_client_ip(r, ip, sizeof(ip));
    /* X-Forwarded-* from an untrusted peer are replaced, never extended. */
    if (r->client_trusted && xff >= 0)
        mg_buf_printf(b, "X-Forwarded-For: %.*s, %s\r\n", (int)h->h[xff].vlen, mg_hvalue(h, xff),
                      ip); /* rare: only behind a trusted proxy */
    else
        MG_H1_HEADER(b, "X-Forwarded-For", ip, strlen(ip));
    if (r->client_trusted && xfp >= 0)
        mg_h1_header_at(b, h, (uint32_t)xfp);
    else if (r->secure)
        mg_buf_append(b, "X-Forwarded-Proto: https\r\n", 26);
    else
        mg_buf_append(b, "X-Forwarded-Proto: http\r\n", 25);
    if (r->client_trusted && xfh >= 0)
        mg_h1_header_at(b, h, (uint32_t)xfh);
    else if (r->host_lc[0])
        MG_H1_HEADER(b, "X-Forwarded-Host", r->host_lc, strlen(r->host_lc));
    MG_H1_HEADER(b, "X-Real-IP", ip, strlen(ip));
    r->up_chunked = r->body_len == MG_BODY_CHUNKED;
    if (r->up_chunked) {
        mg_buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
    } else if (r->body_len >= 0) {
        char num[24];
        int l = mg_h1_u64(num, (uint64_t)r->body_len);
        MG_H1_HEADER(b, "Content-Length", num, (size_t)l);
    }
    if (r->upgrade) {
        int u = mg_headers_find_kind(h, MG_HK_UPGRADE);
        mg_buf_append(b, "Connection: upgrade\r\n", 21);
        if (u >= 0) mg_h1_header_at(b, h, (uint32_t)u);
    }
    mg_buf_append(b, "\r\n", 2);
}
