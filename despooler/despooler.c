/*
 * despooler.c - the daemon: the site's despooler lock, the loop that waits
 * for inotify hints, rescans and key lookup retries, and the back-off after
 * failed scans.  Start reading here; a pass over the inboxes is scan.c.
 *
 * The pipeline, one file per phase, in the order an instruction meets
 * them: scan.c (list receive, batches) -> load.c (open safely, parse) ->
 * verify.c (find and judge the key, check the fields) -> keyinstr.c (key
 * exchange, rollover) or deliver.c (unpack, commit the batch) -> ledger.c
 * (what was delivered); beside them waiting.c (missing keys, holds,
 * backlog), quarantine.c (rejected/) and housekeeping.c.  pipeline.h is
 * their private header.
 *
 * Security stance: see despooler.h.  One despooler per site (flock on
 * .despool.lock, the holder's pid in it).
 * Wake-ups: inotify on receive, hman.box (key files dropped there, and
 * the marker keystore/trust.h replaces after a command changed trust:
 * key import, approve, trust, untrust, revoke, rotate) and the key
 * directory; every event starts a scan, whose first steps import hman.box
 * and retry the instructions waiting for keys the keystore now holds.  The
 * despooler's own trust changes write no marker (ss_keyctx.in_despooler),
 * so it never wakes itself.
 * Diagnostics: 4401 started, 4418 stopped, 4423 a failed scan (once per
 * streak; the rest logged), inotify trouble and trust wake-ups logged.
 * Known limits: inotify does not see files written over NFS/SMB by another
 * host; the periodic rescan (rescan_interval) finds them.
 */
#include "pipeline.h"
#include "watch.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int ss_despooler_drain(ss_despooler *d, ss_error *e)
{
    bool progress = true;
    while (progress)
        if (ss_despooler_scan(d, &progress, e) != 0) return -1;
    /* A gap is only a gap once nothing that could fill it still waits. */
    if (d->stats.waiting == 0) dsp_report_gaps(d);
    return 0;
}

/* After a scan that could not write a destination (4416: disk full, read
 * only, no permission), the next try comes after 1, 2, 4 ... seconds up to
 * rescan_interval, whether or not an inotify event arrives.  -1: none. */
static int64_t dest_retry_ms(ss_despooler *d, int *streak)
{
    if (!d->stats.dest_failed) {
        *streak = 0;
        return -1;
    }
    int64_t ms = (int64_t)1000 << (*streak < 10 ? *streak : 10);
    (*streak)++;
    int64_t cap = (int64_t)d->conf->rescan_interval * 1000;
    return ms < cap ? ms : cap;
}

/* A daemon never dies of a failed scan (site.db locked too long, no
 * descriptors left, a folder gone): it reports the first failure of a
 * streak (4423), logs the others, and backs off 1, 2, 4 ... seconds up to
 * rescan_interval.  Returns the back-off in ms, or -1 after a good scan. */
static int64_t drain_in_daemon(ss_despooler *d, int *failures)
{
    ss_error e = {0};
    ss_log *log = ss_reporter_log(d->rep, SS_COMP_DESPOOLER);
    if (ss_despooler_drain(d, &e) == 0) {
        if (*failures) ss_logf(log, "Scanning works again after %d failed scan(s)", *failures);
        *failures = 0;
        return -1;
    }
    int64_t backoff = (int64_t)1 << (*failures < 10 ? *failures : 10);
    if (backoff > (int64_t)d->conf->rescan_interval) backoff = d->conf->rescan_interval;
    if (backoff < 1) backoff = 1;
    char secs[32];
    u64str((uint64_t)backoff, secs, sizeof secs);
    if ((*failures)++ == 0)
        ss_report(d->rep, 4423, d->receive_path, e.msg, secs, NULL);
    else
        ss_logf(log, "Scan failed again (%d in a row): %s; next attempt in %s s", *failures, e.msg,
                secs);
    return backoff * 1000;
}

/* Watches receive, hman.box and the key directory folder (when set and
 * watchable; a directory server is asked at rescans, see dircache.h). */
static int watch_inboxes(ss_despooler *d, ss_watch *w, ss_error *e)
{
    char hman[PATH_MAX];
    const char *dirs[3] = {d->receive_path, hman, d->conf->directory};
    ss_path(hman, sizeof hman, d->root, SS_DIR_HMAN);
    int ndirs = d->conf->directory[0] && !ss_dirurl_is_ldap(d->conf->directory) ? 3 : 2;
    if (ss_watch_open(w, dirs, ndirs, e) != 0 && (ndirs == 2 || ss_watch_open(w, dirs, 2, e) != 0))
        return -1;
    return 0;
}

/* SIGHUP: the caller reads the settings again; the key directory may have
 * moved, so the watches are set up again. */
static void reload(ss_despooler *d, const ss_daemon_hooks *h, ss_watch *w)
{
    *h->reload = 0;
    if (h->on_reload) h->on_reload(h->ctx);
    ss_watch_close(w);
    ss_error e = {0};
    if (watch_inboxes(d, w, &e) != 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Cannot watch the inboxes after reloading the settings (%s); relying on rescans",
                e.msg);
}

int ss_despooler_run(ss_despooler *d, const ss_daemon_hooks *h, ss_error *e)
{
    volatile sig_atomic_t *stop = h->stop;
    ss_watch w;
    if (watch_inboxes(d, &w, e) != 0) return -1;
    ss_report(d->rep, 4401, d->conf->site_code, d->receive_path, NULL);
    d->housekeeping_every_ms = 1000;
    int failures = 0;
    int dest_streak = 0;
    int64_t backoff_ms = drain_in_daemon(d, &failures);
    int64_t dest_ms = dest_retry_ms(d, &dest_streak);
    int64_t last_scan_ms = ss_now_ms();
    if (h->on_ready) h->on_ready(h->ctx);
    while (!*stop) {
        if (h->on_tick) h->on_tick(h->ctx);
        if (h->reload && *h->reload) reload(d, h, &w);
        int64_t wait_ms = (int64_t)d->conf->rescan_interval * 1000 - (ss_now_ms() - last_scan_ms);
        int64_t retry = dsp_next_retry_in(d);
        if (retry >= 0 && retry * 1000 < wait_ms) wait_ms = retry * 1000;
        if (dest_ms >= 0 && dest_ms - (ss_now_ms() - last_scan_ms) < wait_ms)
            wait_ms = dest_ms - (ss_now_ms() - last_scan_ms);
        if (backoff_ms >= 0) wait_ms = backoff_ms - (ss_now_ms() - last_scan_ms);
        if (wait_ms < 0) wait_ms = 0;
        /* Woken early for a tick (the watchdog): nothing is due yet. */
        int64_t due_ms = wait_ms, began_ms = ss_now_ms();
        if (h->tick_ms > 0 && wait_ms > h->tick_ms) wait_ms = h->tick_ms;
        int mask = ss_watch_wait(&w, (int)wait_ms);
        if (*stop) break;
        if (h->reload && *h->reload) reload(d, h, &w);
        if (mask == 0 && ss_now_ms() - began_ms < due_ms) continue;
        if (mask < 0)
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "inotify read failed; relying "
                                                                "on rescans");
        if (mask > 0 && (mask & SS_WATCH_OVERFLOW))
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                    "inotify queue overflowed; rescanning the inboxes");
        if (mask > 0 && (mask & SS_WATCH_TRUST))
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                    "Trust changed (a key command, see hman.log); looking at the waiting and "
                    "held instructions again");
        /* While backing off, events wait for the back-off to end. */
        if (backoff_ms >= 0 && ss_now_ms() - last_scan_ms < backoff_ms) continue;
        /* A package alone: its instruction follows (and wakes us), unless
         * one already waits for it. */
        if (mask == SS_WATCH_PACKAGE && d->stats.waiting == 0 &&
            ss_now_ms() - last_scan_ms < (int64_t)d->conf->rescan_interval * 1000)
            continue;
        /* Any event, the rescan timer or a due retry: scan. */
        backoff_ms = drain_in_daemon(d, &failures);
        dest_ms = dest_retry_ms(d, &dest_streak);
        last_scan_ms = ss_now_ms();
    }
    ss_watch_close(&w);
    ss_report(d->rep, 4418, d->conf->site_code, NULL);
    return 0;
}

int ss_despooler_open(ss_despooler *d, const char *root, const ss_conf *conf, ss_db *db,
                      ss_reporter *rep, ss_error *e)
{
    memset(d, 0, sizeof *d);
    d->root = root;
    d->conf = conf;
    d->db = db;
    d->rep = rep;
    d->keys = (ss_keyctx){root, conf, db, rep, true, NULL}; /* its own changes wake no one */
    /* Its own cache of the key directory server (one search per site per
     * rescan_interval; keystore/dircache.h). */
    d->keys.dir = ss_dircache_new(root, conf, rep);
    if (!d->keys.dir) return ss_err(e, SS_E_NOMEM, "out of memory");
    d->receive_fd = d->rejected_fd = d->lock_fd = -1;
    char path[PATH_MAX];
    ss_path(path, sizeof path, root, ".despool.lock");
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (d->lock_fd < 0) return ss_err_sys(e, "cannot open %s", path);
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = 0;
        /* A holder that has only just created the file writes its pid
         * right after taking the lock: wait for it a little (100 ms). */
        for (int tries = 0; tries < 50 && n <= 0; tries++) {
            if (tries) usleep(2000);
            n = pread(d->lock_fd, pid, sizeof pid - 1, 0);
        }
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(d->lock_fd);
        d->lock_fd = -1;
        return ss_err(e, SS_E_LOCKED,
                      "another despooler (pid %s) is already running for site "
                      "%s; stop it first",
                      pid[0] ? pid : "?", conf->site_code);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    /* Write, then cut: a second despooler reading meanwhile sees a pid
     * (old or new), never an empty file ("pid ?"). */
    if (pwrite(d->lock_fd, pid, (size_t)n, 0) != n || ftruncate(d->lock_fd, n) != 0)
        ss_logf(ss_reporter_log(rep, SS_COMP_DESPOOLER), "Cannot record the pid in %s", path);
    ss_path(d->receive_path, sizeof d->receive_path, root, SS_DIR_RECEIVE);
    ss_path(path, sizeof path, root, SS_DIR_REJECTED);
    if (ss_mkdirs(path, 0750, e) != 0 || (d->rejected_fd = ss_open_dir(path, e)) < 0 ||
        (d->receive_fd = ss_open_dir(d->receive_path, e)) < 0) {
        ss_despooler_close(d);
        return -1;
    }
    /* One read buffer and one inflater serve every package: no allocator
     * traffic per file. */
    if (!(d->read_buf = malloc(READ_CHUNK))) {
        ss_despooler_close(d);
        return ss_err(e, SS_E_NOMEM, "out of memory");
    }
    ss_error re = {0};
    if (dsp_clock_advance(d, &d->high_water, &re) != 0) {
        ss_despooler_close(d);
        return ss_err(e, re.code, "%s", re.msg);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    d->pool = dsp_pool_start(cores < 1 ? 1 : cores > 8 ? 8 : (int)cores, &re);
    if (!d->pool)
        ss_logf(ss_reporter_log(rep, SS_COMP_DESPOOLER),
                "Packages are staged on one thread (slower): %s", re.msg);
    ss_path(path, sizeof path, root, SS_DIR_CONSUMED);
    d->reaper = ss_reaper_start(d->receive_fd, path, &re);
    if (!d->reaper)
        ss_logf(ss_reporter_log(rep, SS_COMP_DESPOOLER),
                "Consumed pairs are removed in place (slower): %s", re.msg);
    return 0;
}

void ss_despooler_close(ss_despooler *d)
{
    ss_dircache_free(d->keys.dir);
    d->keys.dir = NULL;
    ss_reaper_stop(d->reaper);
    d->reaper = NULL;
    dsp_pool_stop(d->pool);
    d->pool = NULL;
    ss_inflater_free(&d->inflater);
    dsp_seal_keys_free(d);
    free(d->read_buf);
    d->read_buf = NULL;
    if (d->receive_fd >= 0) close(d->receive_fd);
    if (d->rejected_fd >= 0) close(d->rejected_fd);
    if (d->lock_fd >= 0) close(d->lock_fd);
    d->receive_fd = d->rejected_fd = d->lock_fd = -1;
}
