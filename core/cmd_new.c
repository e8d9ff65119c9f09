/* `moongate new balancer|middleware|discovery NAME [DIR]`: writes a plugin
 * skeleton DIR/plugins/NAME.lua and its spec DIR/spec/NAME_spec.lua, which
 * pass `moongate test` in DIR at once. The templates and the checks live in
 * the embedded lua/moongate/test/new.lua; this file gives that Lua the two
 * file-system calls plain Lua lacks: making a folder and creating a file
 * that must not exist yet (O_EXCL, so nothing is ever overwritten). */
#include "cmd.h"
#include "lua_env.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir(path): true, or true if it is already a folder; else nil, reason. */
static int l_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (mkdir(path, 0777) == 0 ||
        (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        lua_pushboolean(L, 1);
        return 1;
    }
    int err = errno == EEXIST ? ENOTDIR : errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err));
    return 2;
}

/* exists(path): whether anything (a file, a folder, a dangling link) is there. */
static int l_exists(lua_State *L)
{
    struct stat st;
    lua_pushboolean(L, lstat(luaL_checkstring(L, 1), &st) == 0);
    return 1;
}

/* create(path, data): writes a new file; nil, reason if path exists. */
static int l_create(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = errno;
            close(fd);
            unlink(path);
            lua_pushnil(L);
            lua_pushfstring(L, "%s: %s", path, strerror(err));
            return 2;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

int mg_cmd_new(int argc, char **argv)
{
    lua_State *L = mg_lua_env_new();
    if (!L) return 1;
    int rc = 1;
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.test.new");
    if (lua_pcall(L, 1, 1, 0)) {
        fprintf(stderr, "moongate new: %s\n", lua_tostring(L, -1));
        goto out;
    }
    lua_getfield(L, -1, "main");
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, l_mkdir);
    lua_setfield(L, -2, "mkdir");
    lua_pushcfunction(L, l_exists);
    lua_setfield(L, -2, "exists");
    lua_pushcfunction(L, l_create);
    lua_setfield(L, -2, "create");
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (lua_pcall(L, 2, 1, 0)) {
        fprintf(stderr, "moongate new: %s\n", lua_tostring(L, -1));
        goto out;
    }
    rc = (int)lua_tointeger(L, -1);
out:
    lua_close(L);
    return rc;
}
