/* `moongate test [busted args]`: runs busted inside moongate's own LuaJIT,
 * so specs exercise plugins against the real `moongate` module and the
 * FFI surface of this very binary. */
#include "cmd.h"
#include "control.h"
#include "lua_env.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

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
    const char *boot = "package.path = './lua/?.lua;./lua/?/init.lua;./?.lua;' .. package.path\n"
                       "local f = io.open('lua/moongate/init.lua')\n"
                       "if f then f:close(); table.insert(package.loaders, "
                       "table.remove(package.loaders, 2)) end\n";
    int rc = 0;
    if (luaL_loadbuffer(L, boot, strlen(boot), "=moongate") || lua_pcall(L, 0, 0, 0) ||
        luaL_loadfile(L, path)) {
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
    /* In a source tree, lua/ on disk wins over the embedded copy, so specs
     * see edits without a rebuild. */
    const char *boot =
        "package.path = './lua/?.lua;./lua/?/init.lua;./?.lua;' .. package.path\n"
        "local f = io.open('lua/moongate/init.lua')\n"
        "if f then f:close(); table.insert(package.loaders, table.remove(package.loaders, 2)) end\n"
        "require('busted.runner')({ standalone = false })\n";
    if (luaL_loadbuffer(L, boot, strlen(boot), "=moongate test") || lua_pcall(L, 0, 0, 0)) {
        fprintf(stderr, "moongate test: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    mg_control_io_cancel_all();
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    lua_close(L);
    return 0;
}
