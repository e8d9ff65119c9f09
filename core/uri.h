/* Request targets and Host values (RFC 9112 3.2, RFC 3986): validation,
 * the one place a target is split into authority, path and query, and path
 * normalisation before routing. Pure functions: no I/O, no allocation. */
#ifndef MG_URI_H
#define MG_URI_H

#include "common.h"

enum mg_target_form {
    MG_TARGET_ORIGIN = 0, /* "/path?query" */
    MG_TARGET_ABSOLUTE,   /* "http://authority/path?query" */
    MG_TARGET_ASTERISK,   /* "*" (OPTIONS only) */
};

/* A target split into parts that point into the target itself. An
 * absolute-form target without a path has an empty path (it means "/", or
 * "*" for OPTIONS: see mg_uri_origin). */
typedef struct mg_uri {
    uint8_t form;
    mg_str authority; /* absolute-form only; empty otherwise */
    mg_str path;      /* may be empty only in absolute-form */
    mg_str query;     /* without '?'; empty when absent */
    uint8_t has_query;
} mg_uri;

/* Validates a request-target of a method that is not CONNECT and splits it.
 * Accepts origin-form, absolute-form with scheme http or https and no
 * userinfo, and "*" when is_options. Every byte must be an RFC 3986 pchar,
 * '/' or '?' (query), with well-formed percent-escapes: raw UTF-8, controls,
 * spaces, '#', '\\' and the like are refused. Returns 0, or -1 with *why. */
int mg_uri_parse(const char *t, size_t n, int is_options, mg_uri *out, const char **why);

/* Splits a target already validated by mg_uri_parse (or written by a
 * plugin: "/path?query"); never fails. */
void mg_uri_split(const char *t, size_t n, mg_uri *out);

/* Validates a Host value (or an absolute-form authority): an RFC 3986 host
 * (a reg-name of letters, digits, '-', '.', '_', '~' and percent-escapes;
 * an IPv4 address; or a bracketed IPv6 literal) with an optional port of
 * 1 to 5 digits. Empty is valid (RFC 9112 3.2). Returns 0 or -1. */
int mg_uri_check_host(const char *h, size_t n);

/* Options for mg_uri_normalize_path. */
enum { MG_PATH_KEEP_ENCODED_SLASH = 1 };

/* Normalises a path for routing and forwarding, as the backend will read
 * it: decodes percent-escapes of unreserved characters, upper-cases the
 * hex of the others, merges runs of '/', and removes dot segments (RFC 3986
 * 5.2.4), so "/a/%2e%2e//b" becomes "/b". An encoded '/' or '\\' ("%2F",
 * "%5C") or "%00" is refused (-1, *why) unless MG_PATH_KEEP_ENCODED_SLASH,
 * which keeps "%2F" and "%5C" encoded and never a separator. Writes at most
 * n bytes to out (which must not overlap path; path starts with '/') and returns the new
 * length, or -1. A path that needs no change is copied unchanged. */
long mg_uri_normalize_path(const char *path, size_t n, char *out, int flags, const char **why);

/* True when the path may need normalising (holds '%', "//" or a dot
 * segment): the common case is answered by one pass without writing. */
int mg_uri_path_needs_normalizing(const char *path, size_t n);

#endif
