/* See reload.h. File events arrive in bursts (an editor writes, renames,
 * chmods), so they arm a short debounce timer and one reload follows. */
#include "reload.h"
#include "log.h"
#include "stats.h"
#include "lua_env.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEBOUNCE_MS 60

/* Compiles and runs every plugin file in dir in a scratch Lua state, so a
 * broken file is caught before any worker loads it. */
static const char *const check_chunk =
    "local dir = ...\n"
    "local plugins = require('moongate.plugins')\n"
    "local p = io.popen('ls -1 ' .. string.format('%q', dir) .. ' 2>/dev/null')\n"
    "if not p then return true end\n"
    "for name in p:lines() do\n"
    "  local mod = name:match('^([%w_%-][%w_%.%-]*)%.lua$')\n"
    "  if not mod then\n"
    "    local f = io.open(dir .. '/' .. name .. '/init.lua')\n"
    "    if f then f:close(); mod = name end\n"
    "  end\n"
    "  if mod then\n"
    "    local ok, err = plugins.load(mod, dir)\n"
    "    if not ok then p:close(); return nil, err end\n"
    "  end\n"
    "end\n"
    "p:close()\n"
    "return true\n";

static int check_plugins(const char *dir, char *err, size_t errlen)
{
    lua_State *L = mg_lua_env_new();
    if (!L) return 0;
    mg_lua_env_limit(L, 10); /* a plugin file that loops must not hang the main loop */
    int rc = 0;
    if (luaL_loadbuffer(L, check_chunk, strlen(check_chunk), "=plugin_check")) {
        rc = -1;
    } else {
        lua_pushstring(L, dir);
        if (lua_pcall(L, 1, 2, 0)) {
            rc = -1;
        } else if (lua_isnil(L, -2)) {
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
            rc = -1;
        }
    }
    if (rc && !err[0]) snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return rc;
}

static int same_listeners(const mg_config *a, const mg_config *b)
{
    if (a->nlisten != b->nlisten || a->workers != b->workers) return 0;
    for (int i = 0; i < a->nlisten; i++)
        if (strcmp(a->listen[i].host, b->listen[i].host) || a->listen[i].port != b->listen[i].port)
            return 0;
    return 1;
}

/* Loads the config file plus what discovery found, and publishes it.
 * check_files: also compile every plugin file (a file changed). */
static int apply(mg_reloader *rl, int check_files)
{
    char err[1024] = "";
    mg_config *cfg = NULL;
    mg_snapshot *snap = NULL;
    uint64_t t0 = uv_hrtime();
    rl->last_reload = (double)time(NULL);
    /* A file change re-reads the files; a membership change rebuilds from
     * the config text and plugin files of the last good load, so a file
     * being edited (or broken on disk) never holds back discovery. */
    const mg_config *from = check_files ? NULL : rl->cfg;
    if ((check_files && check_plugins(rl->cfg->plugins_dir, err, sizeof(err))) ||
        mg_config_load_src(rl->config_path, from, rl->discovered, &cfg, &snap, err, sizeof(err))) {
        rl->failures++;
        snprintf(rl->last_error, sizeof(rl->last_error), "%s", err);
        atomic_fetch_add(&mg_stats.reloads_failed, 1);
        mg_log(MG_LOG_ERROR, -1, 0, "reload failed, the last good version keeps serving: %s", err);
        return -1;
    }
    if (!same_listeners(rl->cfg, cfg)) {
        mg_log(MG_LOG_WARN, -1, 0,
               "reload: listen and workers changes take effect at the next restart");
        /* keep serving on the current listeners with the current worker count */
        mg_listen *l = cfg->listen;
        cfg->listen = rl->cfg->listen;
        cfg->nlisten = rl->cfg->nlisten;
        cfg->workers = rl->cfg->workers;
        rl->cfg->listen = l;
    }
    snap->version = ++rl->version;
    if (check_files) rl->plugin_gen++;
    snap->plugin_gen = rl->plugin_gen;
    mg_log_set_level(cfg->log_level);
    /* the old config goes with the old snapshot's last reference */
    rl->cfg = cfg;
    mg_snapshot_mark_membership(rl->snap, snap);
    mg_workers_publish(rl->ws, rl->nworkers, snap);
    mg_snapshot_unref(rl->snap);
    rl->snap = snap; /* ours; the workers hold their own references */
    rl->reloads++;
    rl->last_error[0] = 0;
    atomic_fetch_add(&mg_stats.reloads_ok, 1);
    atomic_store(&mg_stats.snapshot_version, rl->version);
    if (rl->on_reload) rl->on_reload(rl->on_reload_ud);
    MG_LOG(check_files ? MG_LOG_INFO : MG_LOG_DEBUG, -1, 0,
           "%s %s (snapshot version %llu, built in %.1f ms)",
           check_files ? "reloaded" : "membership changed, applied", cfg->source,
           (unsigned long long)rl->version, (double)(uv_hrtime() - t0) / 1e6);
    return 0;
}

int mg_reload_now(mg_reloader *rl)
{
    return apply(rl, 1);
}

int mg_reload_discovered(mg_reloader *rl, const char *discovered)
{
    free(rl->discovered);
    rl->discovered = discovered ? strdup(discovered) : NULL;
    return apply(rl, 0);
}

static void on_debounce(uv_timer_t *t)
{
    mg_reload_now(t->data);
}

static void on_fs_event(uv_fs_event_t *ev, const char *filename, int events, int status)
{
    mg_reloader *rl = ev->data;
    if (status < 0) return;
    if (ev == &rl->config_ev && filename && rl->config_name && strcmp(filename, rl->config_name))
        return; /* another file in the config's directory */
    if (filename && (filename[0] == '.' || strchr(filename, '~'))) return; /* editor temp files */
    uv_timer_start(&rl->debounce, on_debounce, DEBOUNCE_MS, 0);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    mg_log(MG_LOG_INFO, -1, 0, "SIGHUP received: reloading");
    mg_reload_now(s->data);
}

void mg_reload_start(mg_reloader *rl, uv_loop_t *loop, const char *config_path, mg_config *cfg,
                     mg_snapshot *snap, mg_worker *ws, int nworkers)
{
    memset(rl, 0, sizeof(*rl));
    rl->loop = loop;
    rl->cfg = cfg;
    rl->version = snap->version;
    rl->snap = snap;
    mg_snapshot_ref(snap);
    atomic_store(&mg_stats.snapshot_version, snap->version);
    rl->ws = ws;
    rl->nworkers = nworkers;
    if (!config_path && strcmp(cfg->source, "(embedded default)") != 0) config_path = cfg->source;
    rl->config_path = config_path ? strdup(config_path) : NULL;
    uv_timer_init(loop, &rl->debounce);
    rl->debounce.data = rl;
    uv_signal_init(loop, &rl->sighup);
    rl->sighup.data = rl;
    uv_signal_start(&rl->sighup, on_sighup, SIGHUP);
    if (rl->config_path) {
        /* watch the directory: editors replace files by renaming over them */
        char *dir = strdup(rl->config_path);
        char *slash = strrchr(dir, '/');
        const char *name = slash ? slash + 1 : rl->config_path;
        rl->config_name = strdup(name);
        if (slash)
            *slash = 0;
        else
            strcpy(dir, ".");
        uv_fs_event_init(loop, &rl->config_ev);
        rl->config_ev.data = rl;
        rl->watching_config = uv_fs_event_start(&rl->config_ev, on_fs_event, dir, 0) == 0;
        free(dir);
    }
    uv_fs_event_init(loop, &rl->plugins_ev);
    rl->plugins_ev.data = rl;
    rl->watching_plugins = uv_fs_event_start(&rl->plugins_ev, on_fs_event, cfg->plugins_dir,
                                             UV_FS_EVENT_RECURSIVE) == 0;
    mg_log(MG_LOG_INFO, -1, 0, "watching %s%s%s for changes",
           rl->watching_config ? rl->config_path : "",
           rl->watching_config && rl->watching_plugins ? " and " : "",
           rl->watching_plugins ? cfg->plugins_dir : "");
}

void mg_reload_stop(mg_reloader *rl)
{
    uv_close((uv_handle_t *)&rl->debounce, NULL);
    uv_close((uv_handle_t *)&rl->sighup, NULL);
    if (rl->config_path) uv_close((uv_handle_t *)&rl->config_ev, NULL);
    uv_close((uv_handle_t *)&rl->plugins_ev, NULL);
}

void mg_reload_free(mg_reloader *rl)
{
    rl->cfg = NULL;
    mg_snapshot_unref(rl->snap); /* and with it the config */
    free(rl->config_path);
    free(rl->config_name);
    free(rl->discovered);
}
