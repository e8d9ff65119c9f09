/* Hot reload: watches the config file and plugins_dir from the main thread,
 * validates changes in a scratch Lua state, and publishes a new snapshot to
 * the workers only when everything loads. The last good version keeps
 * serving otherwise. */
#ifndef MG_RELOAD_H
#define MG_RELOAD_H

#include "config.h"
#include "worker.h"

#include <uv.h>

typedef struct mg_reloader {
    uv_loop_t *loop;
    uv_fs_event_t config_ev, plugins_ev;
    uv_timer_t debounce;
    uv_signal_t sighup;
    char *config_path; /* NULL: the embedded default */
    char *config_name; /* the file name the config watcher filters on */
    mg_config *cfg;    /* the newest snapshot's config (owned by rl->snap) */
    uint64_t version;
    uint64_t plugin_gen; /* bumped by reloads that re-read plugin files */
    mg_worker *ws;
    int nworkers;
    int reloads, failures;
    mg_snapshot *snap;           /* the newest published snapshot (one reference) */
    char *discovered;            /* what discovery plugins found, a Lua literal */
    void (*on_reload)(void *ud); /* after a successful reload */
    void *on_reload_ud;
    char last_error[1024]; /* of the last failed reload, "" after a success */
    double last_reload;    /* wall-clock time of the last attempt, 0: none */
    int watching_config, watching_plugins;
} mg_reloader;

/* Starts watching. cfg and the first snapshot's version come from startup;
 * the reloader owns cfg from here on. */
void mg_reload_start(mg_reloader *rl, uv_loop_t *loop, const char *config_path, mg_config *cfg,
                     mg_snapshot *snap, mg_worker *ws, int nworkers);

/* Validates and applies the config and plugins now. Returns 0 or -1. */
int mg_reload_now(mg_reloader *rl);

/* Replaces what discovery found (a Lua literal, see mg_config_load_with)
 * and publishes the merged config. Returns 0 or -1 (logged). */
int mg_reload_discovered(mg_reloader *rl, const char *discovered);

/* Stops watching (closes its handles; run the loop once after). */
void mg_reload_stop(mg_reloader *rl);

/* Drops the newest snapshot, and so its config (after the workers are joined). */
void mg_reload_free(mg_reloader *rl);

#endif
