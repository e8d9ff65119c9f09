/* Shared macros for moongate's C core. */
#ifndef MG_COMMON_H
#define MG_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define mg_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define MG_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define mg_likely(x)                       __builtin_expect(!!(x), 1)
#define mg_unlikely(x)                     __builtin_expect(!!(x), 0)

/* A byte range that points into memory someone else owns. */
typedef struct mg_str {
    const char *p;
    size_t len;
} mg_str;

/* One parsed header: name and value point into the request's head arena. */
typedef struct mg_hdr {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
} mg_hdr;

#endif
