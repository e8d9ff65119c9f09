/* Placeholder until the gateway lands: keeps the build linkable. */
#include "cmd.h"
#include <stdio.h>

int mg_cmd_check(const char *config_path)
{
    fprintf(stderr, "moongate check: not implemented yet\n");
    return 1;
}

int mg_cmd_run(const char *config_path)
{
    fprintf(stderr, "moongate: not implemented yet\n");
    return 1;
}
