/* See h1check.h. A byte loop over head, chunk-size and trailer lines only:
 * chunk data is skipped in one step, so the check costs little on large
 * bodies; a copy is made only for a response with bare LF line ends. */
#include "h1check.h"

#include "ascii.h"
#include "log.h" /* mg_buf */

#include <string.h>

#define MAX_LINE 4096 /* a chunk-size line with extensions, or a trailer line */

enum {
    S_IDLE = 0,
    S_HEAD_START, /* before the start line: empty lines are skipped */
    S_HEAD_START_LF,
    S_HEAD_LINE,   /* inside a head line */
    S_HEAD_LF,     /* CR seen in a head line */
    S_HEAD_BOL,    /* start of a head line, or the empty line ending the head */
    S_HEAD_END_LF, /* CR of the empty line seen */
    S_SIZE,        /* hex digits of a chunk size */
    S_SIZE_WS,     /* whitespace after the size: only before ';' (BWS) */
    S_EXT,         /* ';' extensions */
    S_SIZE_LF,     /* CR seen after the size line */
    S_DATA,        /* chunk data */
    S_DATA_CR,     /* CRLF expected after the data */
    S_DATA_LF,     /* CR seen after the data */
    S_TRAILER_BOL, /* start of a trailer line, or the final empty line */
    S_TRAILER,     /* inside a trailer line */
    S_TRAILER_LF,  /* CR seen inside the trailers */
    S_FINAL_LF,    /* CR of the final empty line seen */
    S_DONE,
};

void mg_h1check_head(mg_h1check *c, int lf_ok)
{
    memset(c, 0, sizeof(*c));
    c->state = S_HEAD_START;
    c->head = 1;
    c->lf_ok = (uint8_t)(lf_ok != 0);
}

void mg_h1check_chunked(mg_h1check *c, int lf_ok)
{
    memset(c, 0, sizeof(*c));
    c->state = S_SIZE;
    c->lf_ok = (uint8_t)(lf_ok != 0);
}

int mg_h1check_active(const mg_h1check *c)
{
    return c->state != S_IDLE && c->state != S_DONE;
}

int mg_h1check_done(const mg_h1check *c)
{
    return c->state == S_DONE;
}

static inline int is_ctl(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

/* Copy state of one feed: the bytes before `from` were already copied. */
typedef struct fixer {
    mg_buf *out;
    const char *p;
    size_t from;
    int on;
} fixer;

/* A bare LF at p[i] ends a line: start (or go on) writing the copy with
 * CRLF instead. Returns -1 when the copy cannot grow. */
static int fix_lf(fixer *f, size_t i)
{
    if (!f->out) return 0;
    if (mg_buf_append(f->out, f->p + f->from, i - f->from) || mg_buf_append(f->out, "\r\n", 2))
        return -1;
    f->from = i + 1;
    f->on = 1;
    return 0;
}

/* A line end: a bare LF is refused unless lf_ok (then fixed). */
#define LINE_END_LF(what)                                                                          \
    do {                                                                                           \
        if (!c->lf_ok) {                                                                           \
            *why = "bare LF " what;                                                                \
            return -1;                                                                             \
        }                                                                                          \
        if (fix_lf(&f, i)) {                                                                       \
            *why = "out of memory";                                                                \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

long mg_h1check_feed(mg_h1check *c, const char *p, size_t n, mg_buf *fix, const char **why)
{
    fixer f = {fix, p, 0, 0};
    size_t i = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)p[i];
        switch (c->state) {
        case S_HEAD_START:
            if (ch == '\r') {
                c->state = S_HEAD_START_LF;
            } else if (ch == '\n') {
                LINE_END_LF("before the start line");
            } else {
                c->state = S_HEAD_LINE;
                continue;
            }
            break;
        case S_HEAD_START_LF:
            if (ch != '\n') {
                *why = "bare CR before the start line";
                return -1;
            }
            c->state = S_HEAD_START;
            break;
        case S_HEAD_LINE: {
            /* the bulk of a head: skip to the line's end with memchr */
            const char *cr = memchr(p + i, '\r', n - i);
            const char *lim = cr ? cr : p + n;
            const char *lf = memchr(p + i, '\n', (size_t)(lim - (p + i)));
            if (lf) {
                i = (size_t)(lf - p);
                LINE_END_LF("in the head");
                c->state = S_HEAD_BOL;
            } else if (cr) {
                i = (size_t)(cr - p);
                c->state = S_HEAD_LF;
            } else {
                i = n;
                continue;
            }
            break;
        }
        case S_HEAD_LF:
            if (ch != '\n') {
                *why = "bare CR in the head";
                return -1;
            }
            c->state = S_HEAD_BOL;
            break;
        case S_HEAD_BOL:
            if (ch == '\r') {
                c->state = S_HEAD_END_LF;
            } else if (ch == '\n') {
                LINE_END_LF("ending the head");
                c->state = S_DONE;
                i++;
                goto out;
            } else {
                c->state = S_HEAD_LINE;
            }
            break;
        case S_HEAD_END_LF:
            if (ch != '\n') {
                *why = "bare CR ending the head";
                return -1;
            }
            c->state = S_DONE;
            i++;
            goto out;
        case S_SIZE: {
            int v = mg_hexval(ch);
            if (v >= 0) {
                if (c->ndigits >= 15) {
                    *why = "chunk size too large";
                    return -1;
                }
                c->left = c->left * 16 + (uint64_t)v;
                c->ndigits++;
                break;
            }
            if (!c->ndigits) {
                *why = "invalid chunk size";
                return -1;
            }
            if (ch == '\r') {
                c->state = S_SIZE_LF;
            } else if (ch == '\n') {
                LINE_END_LF("after a chunk size");
                c->state = c->left ? S_DATA : S_TRAILER_BOL;
            } else if (ch == ';') {
                c->state = S_EXT;
            } else if (ch == ' ' || ch == '\t') {
                c->state = S_SIZE_WS;
            } else {
                *why = "invalid chunk size";
                return -1;
            }
            break;
        }
        case S_SIZE_WS:
            if (ch == ';') {
                c->state = S_EXT;
            } else if (ch != ' ' && ch != '\t') {
                *why = "whitespace after a chunk size";
                return -1;
            } else if (++c->linelen > MAX_LINE) {
                *why = "chunk size line too long";
                return -1;
            }
            break;
        case S_EXT:
            /* extensions are not interpreted, only kept free of controls */
            if (ch == '\r') {
                c->state = S_SIZE_LF;
            } else if (ch == '\n') {
                LINE_END_LF("in a chunk extension");
                c->state = c->left ? S_DATA : S_TRAILER_BOL;
            } else if (is_ctl(ch)) {
                *why = "control byte in a chunk extension";
                return -1;
            } else if (++c->linelen > MAX_LINE) {
                *why = "chunk extension too long";
                return -1;
            }
            break;
        case S_SIZE_LF:
            if (ch != '\n') {
                *why = "bare CR after a chunk size";
                return -1;
            }
            c->linelen = 0;
            c->state = c->left ? S_DATA : S_TRAILER_BOL;
            break;
        case S_DATA: {
            size_t take = n - i;
            if (take > c->left) take = (size_t)c->left;
            c->left -= take;
            i += take;
            if (!c->left) c->state = S_DATA_CR;
            continue;
        }
        case S_DATA_CR:
            if (ch == '\r') {
                c->state = S_DATA_LF;
            } else if (ch == '\n' && c->lf_ok) {
                LINE_END_LF("after chunk data");
                c->state = S_SIZE;
                c->ndigits = 0;
                c->linelen = 0;
            } else {
                *why = "chunk data not followed by CRLF";
                return -1;
            }
            break;
        case S_DATA_LF:
            if (ch != '\n') {
                *why = "chunk data not followed by CRLF";
                return -1;
            }
            c->state = S_SIZE;
            c->ndigits = 0;
            c->linelen = 0;
            break;
        case S_TRAILER_BOL:
            c->linelen = 0;
            if (ch == '\r') {
                c->state = S_FINAL_LF;
            } else if (ch == '\n') {
                LINE_END_LF("ending the trailers");
                c->state = S_DONE;
                i++;
                goto out;
            } else {
                c->state = S_TRAILER;
                continue;
            }
            break;
        case S_TRAILER:
            if (ch == '\r') {
                c->state = S_TRAILER_LF;
            } else if (ch == '\n') {
                LINE_END_LF("in the trailers");
                c->state = S_TRAILER_BOL;
            } else if (is_ctl(ch)) {
                *why = "control byte in the trailers";
                return -1;
            } else if (++c->linelen > MAX_LINE) {
                *why = "trailer line too long";
                return -1;
            }
            break;
        case S_TRAILER_LF:
            if (ch != '\n') {
                *why = "bare CR in the trailers";
                return -1;
            }
            c->state = S_TRAILER_BOL;
            break;
        case S_FINAL_LF:
            if (ch != '\n') {
                *why = "bare CR ending the trailers";
                return -1;
            }
            c->state = S_DONE;
            i++;
            goto out;
        case S_DONE:
            goto out;
        default:
            *why = "framing check not started";
            return -1;
        }
        i++;
    }
out:
    if (f.on && mg_buf_append(fix, p + f.from, i - f.from)) {
        *why = "out of memory";
        return -1;
    }
    return (long)i;
}
