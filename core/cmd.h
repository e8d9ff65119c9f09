/* The subcommands of the moongate binary. Each returns the exit status. */
#ifndef MG_CMD_H
#define MG_CMD_H

int mg_cmd_test(int argc, char **argv);
int mg_cmd_new(int argc, char **argv);
int mg_cmd_script(const char *path, int argc, char **argv);
int mg_cmd_check(const char *config_path);
/* Runs the gateway. takeover: listening ports held by another process are
 * shared (SO_REUSEPORT) instead of refused. */
int mg_cmd_run(const char *config_path, int takeover);
int mg_cmd_bench_lua(int argc, char **argv);

#endif
