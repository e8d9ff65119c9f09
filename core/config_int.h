/* Shared by the config loader's files (config.c, config_service.c). */
#ifndef MG_CONFIG_INT_H
#define MG_CONFIG_INT_H

#include "config.h"

#include <lua.h>
#include <stdint.h>

/* Fields of the table at idx: a malloc'd copy of a string (def when
 * absent; the caller frees it), a number, seconds as milliseconds. */
char *mg_config__dup_field(lua_State *L, int idx, const char *key, const char *def);
double mg_config__num_field(lua_State *L, int idx, const char *key, double def);
uint64_t mg_config__ms_field(lua_State *L, int idx, const char *key, double def_s);

/* Reads the service table at the top of the stack into svc (its targets
 * resolved); -1 with err naming source when a target cannot be used. */
int mg_config__read_service(lua_State *L, mg_service *svc, const char *source, char *err,
                            size_t errlen);

#endif
