/* `moongate [-c FILE]` and `moongate check`: load the config, start the
 * workers, and shut down gracefully on SIGTERM/SIGINT. */
#include "cmd.h"
#include "config.h"
#include "log.h"
#include "admin.h"
#include "control.h"
#include "reload.h"
#include "tls_watch.h"
#include "watchdog.h"
#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

int mg_cmd_check(const char *config_path)
{
    mg_config *cfg = NULL;
    mg_snapshot *snap = NULL;
    char err[1024];
    if (mg_config_load(config_path, &cfg, &snap, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%s: ok (%d service%s, %d worker%s)\n", cfg->source, snap->nservices,
           snap->nservices == 1 ? "" : "s", cfg->workers, cfg->workers == 1 ? "" : "s");
    mg_snapshot_unref(snap); /* frees cfg too */
    return 0;
}

/* Many idle clients are normal for a gateway: use every descriptor the
 * hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int stop_signals;

static void on_reload(void *ud)
{
    mg_control_reconfigure(ud);
    mg_tls_watch_configure(((mg_control *)ud)->rl->cfg);
}

static uint64_t cfg_grace_ms(const mg_reloader *rl)
{
    return rl->cfg->grace_ms;
}

static void on_signal(uv_signal_t *s, int signum)
{
    if (stop_signals++ == 0) {
        mg_log(MG_LOG_INFO, -1, 0, "%s received: finishing in-flight requests, then exiting",
               signum == SIGTERM ? "SIGTERM" : "SIGINT");
        uv_stop(s->loop);
    }
}

int mg_cmd_run(const char *config_path, int takeover)
{
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    mg_config *cfg = NULL;
    mg_snapshot *snap = NULL;
    char err[1024];
    if (mg_config_load(config_path, &cfg, &snap, err, sizeof(err))) {
        fprintf(stderr, "moongate: %s\n", err);
        return 1;
    }
    mg_log_set_level(cfg->log_level);
    /* SO_REUSEPORT would let a second gateway (or anything with the option)
     * quietly take part of the traffic: refuse a port in use, as nginx does. */
    if (!takeover && mg_listeners_check_free(cfg, err, sizeof(err))) {
        fprintf(stderr, "moongate: %s\n", err);
        mg_snapshot_unref(snap);
        return 1;
    }
    uv_loop_t *loop = uv_default_loop();
    uv_signal_t sigterm, sigint;
    uv_signal_init(loop, &sigterm);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    mg_snapshot_mark_membership(NULL, snap);
    /* before the workers: a TLS listener's first connection needs a store */
    if (mg_tls_watch_start(loop, cfg, err, sizeof(err))) {
        fprintf(stderr, "moongate: %s\n", err);
        mg_snapshot_unref(snap); /* frees cfg too */
        return 1;
    }
    mg_worker *ws = mg_workers_start(cfg, snap, err, sizeof(err));
    if (!ws) {
        fprintf(stderr, "moongate: %s\n", err);
        mg_tls_watch_stop();
        mg_tls_watch_free();
        mg_snapshot_unref(snap); /* frees cfg too */
        return 1;
    }
    for (int i = 0; i < cfg->nlisten; i++)
        mg_log(MG_LOG_INFO, -1, 0, "listening on %s:%d (%d worker%s, config %s)",
               cfg->listen[i].host, cfg->listen[i].port, cfg->workers, cfg->workers == 1 ? "" : "s",
               cfg->source);
    mg_reloader rl;
    int nworkers = cfg->workers;
    mg_reload_start(&rl, loop, config_path, cfg, snap, ws, nworkers);
    mg_watchdog wd;
    mg_watchdog_start(&wd, loop, ws, nworkers);
    mg_admin admin;
    mg_admin_start(&admin, loop, &rl);
    mg_control control;
    mg_control_start(&control, loop, &rl);
    rl.on_reload = on_reload;
    rl.on_reload_ud = &control;
    mg_snapshot_unref(snap); /* each worker holds its own reference */
    uv_run(loop, UV_RUN_DEFAULT);
    mg_admin_stopping(&admin); /* /ping says 503 while in-flight requests finish */
    mg_control_stop(&control);
    mg_watchdog_stop(&wd); /* before the workers it watches are freed */
    mg_workers_stop(ws, nworkers);
    /* Keep the main loop turning while workers drain, so the admin API
     * answers (/ping: 503) during the grace period. */
    uint64_t drain_deadline = uv_hrtime() + (cfg_grace_ms(&rl) + 3000) * 1000000ULL;
    while (!mg_workers_all_exited(ws, nworkers) && uv_hrtime() < drain_deadline) {
        uv_run(loop, UV_RUN_NOWAIT);
        uv_sleep(10);
    }
    if (mg_workers_join(ws, nworkers, 100)) {
        mg_log(MG_LOG_ERROR, -1, 0, "a worker did not stop (a plugin is stuck in a loop); exiting");
        fflush(stdout);
        _exit(1);
    }
    mg_reload_stop(&rl);
    mg_tls_watch_stop();
    mg_admin_stop(&admin);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    mg_control_close(&control);
    uv_loop_close(loop);
    mg_reload_free(&rl);
    mg_tls_watch_free();
    mg_log(MG_LOG_INFO, -1, 0, "stopped");
    return 0;
}
