/* `moongate test [busted args]`: runs busted inside moongate's own LuaJIT,
 * so specs exercise plugins against the real `moongate` module and the
 * FFI surface of this very binary. */
#include "cmd.h"
#include "control.h"
#include "lua_env.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* What every spec run starts with. In a source tree, lua/ on disk wins over
 * the embedded copy, so specs see edits without a rebuild; ./?.lua lets a
 * spec require its folder's modules. The old names of the spec helpers,
 * spec.helpers and spec.helpers.balancer_kit, fall back to the embedded
 * moongate.test ones when the folder has no such files (a plugin's own
 * folder), so specs written for a checkout run anywhere. */
static const char boot_source[] =
    "package.path = './lua/?.lua;./lua/?/init.lua;./?.lua;' .. package.path\n"
    "local f = io.open('lua/moongate/init.lua')\n"
    "if f then f:close(); table.insert(package.loaders, table.remove(package.loaders, 2)) end\n"
    "local aliases = { ['spec.helpers'] = 'moongate.test',\n"
    "                  ['spec.helpers.balancer_kit'] = 'moongate.test.balancer_kit' }\n"
    "table.insert(package.loaders, function(name)\n"
    "  local to = aliases[name]\n"
    "  if not to then return nil end\n"
    "  return function() return require(to) end\n"
    "end)\n";

/* Runs boot_source, then extra (more Lua, may be ""), as one chunk;
 * prints the error and returns -1 on failure. */
static int run_boot(lua_State *L, const char *extra, const char *chunkname)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, boot_source);
    luaL_addstring(&b, extra);
    luaL_pushresult(&b);
    size_t len;
    const char *src = lua_tolstring(L, -1, &len);
    int failed = luaL_loadbuffer(L, src, len, chunkname) || lua_pcall(L, 0, 0, 0);
    if (failed) {
        fprintf(stderr, "%s: %s\n", chunkname + 1, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the source string */
    return failed ? -1 : 0;
}

/* `moongate FILE.lua [args]` or `moongate /usr/bin/busted ...`: runs a Lua
 * script in the gateway's LuaJIT, so tools that re-exec themselves under a
 * chosen interpreter (busted's `lua` option in .busted) run inside moongate. */
int mg_cmd_script(const char *path, int argc, char **argv)
{
    lua_State *L = mg_lua_env_new();
    if (!L) return 1;
    mg_control_open_io(L, uv_default_loop());
    lua_createtable(L, argc, 1);
    lua_pushstring(L, path);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    int rc = 0;
    if (run_boot(L, "", "=moongate")) {
        rc = 1;
    } else if (luaL_loadfile(L, path)) {
        fprintf(stderr, "moongate: %s\n", lua_tostring(L, -1));
        rc = 1;
    } else {
        for (int i = 0; i < argc; i++)
            lua_pushstring(L, argv[i]);
        if (lua_pcall(L, argc, 0, 0)) {
            fprintf(stderr, "moongate: %s\n", lua_tostring(L, -1));
            rc = 1;
        }
    }
    lua_close(L);
    return rc;
}

int mg_cmd_test(int argc, char **argv)
{
    lua_State *L = mg_lua_env_new();
    if (!L) return 1;
    /* specs drive mg.http and mg.sleep with mg.run() on this loop */
    mg_control_open_io(L, uv_default_loop());
    /* busted reads its command line from the global `arg`. */
    /* --ignore-lua: a .busted file may name an interpreter; we already are one. */
    lua_createtable(L, argc + 1, 1);
    lua_pushstring(L, "moongate test");
    lua_rawseti(L, -2, 0);
    lua_pushstring(L, "--ignore-lua");
    lua_rawseti(L, -2, 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 2);
    }
    lua_setglobal(L, "arg");
    const char *runner =
        "local ok, runner = pcall(require, 'busted.runner')\n"
        "if not ok then error('needs busted and the Lua libraries its helpers use; on Debian: '\n"
        "  .. 'apt-get install lua-busted lua-socket lua-posix lua-cjson python3\\n' .. runner, 0) "
        "end\n"
        "runner({ standalone = false })\n";
    if (run_boot(L, runner, "=moongate test")) {
        lua_close(L);
        return 1;
    }
    mg_control_io_cancel_all();
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    lua_close(L);
    return 0;
}
