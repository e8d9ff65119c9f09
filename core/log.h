/* Error log (stderr) and access log (stdout).
 *
 * The error log writes each message with one write(2), so lines from
 * different threads never interleave. The access log is buffered per worker
 * and flushed once per loop turn (see mg_access_log_flush). */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum { MG_LOG_DEBUG = 0, MG_LOG_INFO, MG_LOG_WARN, MG_LOG_ERROR };

/* The threshold: set by the main thread on (re)load, read by every thread. */
extern atomic_int mg_log_level;
void mg_log_set_level(int level);

/* Parses "debug"/"info"/"warn"/"error"; returns the level or -1. */
int mg_log_level_parse(const char *name);

/* worker < 0: no worker tag ("main"); conn == 0: no connection tag. */
void mg_log(int level, int worker, uint64_t conn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define mg_log_enabled(level) ((level) >= atomic_load_explicit(&mg_log_level, memory_order_relaxed))
#define MG_LOG(level, w, c, ...)                                                                   \
    do {                                                                                           \
        if (mg_log_enabled(level)) mg_log(level, w, c, __VA_ARGS__);                               \
    } while (0)

/* For messages that may come once per request under churn: true at most
 * once per `ms` from one call site in one thread; *held counts the ones
 * skipped meanwhile (say them with the next one). */
int mg_log_every(uint64_t *last_ms, unsigned *held, unsigned ms);
#define MG_LOG_EVERY(ms, level, w, c, fmt, ...)                                                    \
    do {                                                                                           \
        static __thread uint64_t last_;                                                            \
        static __thread unsigned held_;                                                            \
        unsigned before_ = held_;                                                                  \
        if (mg_log_enabled(level) && mg_log_every(&last_, &held_, ms))                             \
            mg_log(level, w, c, fmt " (%u more like it)", __VA_ARGS__, before_);                   \
    } while (0)

/* A growable byte buffer; used for access log lines and serialized heads. */
typedef struct mg_buf {
    char *p;
    size_t len, cap;
} mg_buf;

/* Ensure room for n more bytes; returns 0 or -1 (ENOMEM). */
int mg_buf_reserve(mg_buf *b, size_t n);
int mg_buf_append_slow(mg_buf *b, const void *p, size_t n);
/* Appends n bytes: inline while they fit (header pieces, every request). */
static inline int mg_buf_append(mg_buf *b, const void *p, size_t n)
{
    if (n && b->len + n <= b->cap) {
        __builtin_memcpy(b->p + b->len, p, n);
        b->len += n;
        return 0;
    }
    return mg_buf_append_slow(b, p, n);
}
int mg_buf_printf(mg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mg_buf_free(mg_buf *b);

/* Writes the whole buffer to fd (blocking; stdout is normally a pipe or a
 * file) and empties it. */
void mg_buf_flush_fd(mg_buf *b, int fd);

/* Formats the current wall-clock time as "2026-11-24T13:44:06.123Z". */
void mg_log_iso_time(char out[40]);

#endif
