/* The config loader: arbitrary text as the config file, loaded as the
 * gateway loads one (mg_config_load: lua/moongate/config.lua in a fresh
 * LuaJIT state, the balancer, health and provider plugin checks, then
 * core/config.c reading the result and compiling the routes).
 *
 * The text is written to a file, as a user's config is, and loaded from
 * there. Target names are not looked up: getaddrinfo is replaced by one
 * that takes numeric addresses and "localhost" only (as on a machine
 * without DNS), so the fuzzer sends no query off the machine. Findings: sanitizer reports, and any
 * failure whose message does not start with "FILE:LINE: " naming that file (a Lua error without a
 * position, or an empty message). */
#include "config.h"
#include "log.h"
#include "snapshot.h"

#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[256];

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static gai_fn real;
    if (!real) real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    struct addrinfo h = {0};
    if (hints) h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    if (node && strcmp(node, "localhost") == 0) node = "127.0.0.1";
    return real(node, service, &h, res);
}

static void setup(void)
{
    mg_log_level = MG_LOG_ERROR + 1;
    const char *dir = getenv("FUZZ_TMP");
    snprintf(path, sizeof(path), "%s/moongate-%ld.lua", dir && *dir ? dir : "/tmp", (long)getpid());
}

/* "path:LINE: " with at least one digit. */
static int positioned(const char *err)
{
    size_t n = strlen(path);
    if (strncmp(err, path, n) != 0 || err[n] != ':') return 0;
    const char *d = err + n + 1;
    const char *e = d;
    while (*e >= '0' && *e <= '9')
        e++;
    return e > d && e[0] == ':' && e[1] == ' ' && e[2];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) setup();
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (fwrite(data, 1, size, f) != size || fclose(f)) abort();
    mg_config *cfg = NULL;
    mg_snapshot *snap = NULL;
    char err[1024] = "";
    int rc = mg_config_load(path, &cfg, &snap, err, sizeof(err));
    if (getenv("FZ_DEBUG")) fprintf(stderr, "load: %d %s\n", rc, err);
    if (rc == 0) {
        if (!cfg || !snap || snap->cfg != cfg) abort();
        mg_snapshot_unref(snap);
    } else if (!positioned(err)) {
        fprintf(stderr, "fuzz: a config error without FILE:LINE: [%s]\n", err);
        abort();
    }
    unlink(path);
    return 0;
}
