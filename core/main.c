/* moongate's command line. */
#include "cmd.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "moongate %s: a programmable HTTP gateway\n"
            "\n"
            "usage:\n"
            "  moongate [-c FILE] [--takeover]\n"
            "                              run the gateway in the foreground; --takeover\n"
            "                              shares listening ports another moongate holds\n"
            "                              (zero-downtime upgrade: start the new one, then\n"
            "                              SIGTERM the old one)\n"
            "  moongate check [-c FILE]    validate a config and exit\n"
            "  moongate test [PATH...]     run busted specs inside moongate's LuaJIT\n"
            "  moongate new KIND NAME [DIR]\n"
            "                              write DIR/plugins/NAME.lua and DIR/spec/NAME_spec.lua,\n"
            "                              a plugin skeleton and its passing spec; KIND is\n"
            "                              balancer, middleware or discovery\n"
            "  moongate version            print the version\n"
            "  moongate --help             this text\n"
            "\n"
            "Without -c, ./moongate.lua is read if present, else the embedded default\n"
            "config. The error log goes to stderr, the access log to stdout.\n",
            MG_VERSION);
}

static int takeover;

/* Parses `-c FILE` / `--config FILE` / `--config=FILE` (and `--takeover`
 * where running is meant); returns 0 or -1. */
static int parse_config_flag(int argc, char **argv, const char **path)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--takeover") == 0) {
            takeover = 1;
        } else if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) &&
                   i + 1 < argc) {
            *path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            *path = argv[i] + 9;
        } else {
            fprintf(stderr, "moongate: unknown argument '%s'\n\n", argv[i]);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    const char *config = NULL;
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("moongate %s\n", MG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "test") == 0) return mg_cmd_test(argc - 2, argv + 2);
    if (strcmp(cmd, "new") == 0) return mg_cmd_new(argc - 2, argv + 2);
    if (strcmp(cmd, "bench-lua") == 0) return mg_cmd_bench_lua(argc - 2, argv + 2);
    if (cmd[0] && cmd[0] != '-' && strchr(cmd, '/') && access(cmd, R_OK) == 0)
        return mg_cmd_script(cmd, argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0) {
        if (parse_config_flag(argc - 2, argv + 2, &config)) return 2;
        return mg_cmd_check(config);
    }
    if (strcmp(cmd, "run") == 0) {
        if (parse_config_flag(argc - 2, argv + 2, &config)) return 2;
    } else if (parse_config_flag(argc - 1, argv + 1, &config)) {
        return 2;
    }
    return mg_cmd_run(config, takeover);
}
