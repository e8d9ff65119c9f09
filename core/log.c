/* Logging. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

atomic_int mg_log_level = MG_LOG_INFO;

void mg_log_set_level(int level)
{
    atomic_store_explicit(&mg_log_level, level, memory_order_relaxed);
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int mg_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void mg_log_iso_time(char out[40])
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%03uZ", (unsigned)(tv.tv_usec / 1000) % 1000u);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void mg_log(int level, int worker, uint64_t conn, const char *fmt, ...)
{
    char line[2048], ts[40];
    mg_log_iso_time(ts);
    int n;
    if (worker >= 0 && conn)
        n = snprintf(line, sizeof(line), "%s [%s] w%d c%llu: ", ts, level_names[level], worker,
                     (unsigned long long)conn);
    else if (worker >= 0)
        n = snprintf(line, sizeof(line), "%s [%s] w%d: ", ts, level_names[level], worker);
    else
        n = snprintf(line, sizeof(line), "%s [%s] main: ", ts, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) len = sizeof(line) - 2;
    line[len++] = '\n';
    write_all(2, line, len);
}

int mg_log_every(uint64_t *last_ms, unsigned *held, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (*last_ms && now - *last_ms < ms) {
        (*held)++;
        return 0;
    }
    *last_ms = now;
    *held = 0;
    return 1;
}

int mg_buf_reserve(mg_buf *b, size_t n)
{
    if (b->len + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int mg_buf_append_slow(mg_buf *b, const void *p, size_t n)
{
    /* memcpy to an empty buffer's NULL is undefined even for 0 bytes
     * (req:respond without headers did that) */
    if (n == 0) return 0;
    if (mg_buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

int mg_buf_printf(mg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0 || mg_buf_reserve(b, (size_t)need + 1)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
    return 0;
}

void mg_buf_free(mg_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void mg_buf_flush_fd(mg_buf *b, int fd)
{
    if (b->len) write_all(fd, b->p, b->len);
    b->len = 0;
}
