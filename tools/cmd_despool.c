/*
 * cmd_despool.c - `sitespool despool`: the despooler daemon, or --once.
 * As a daemon it is a service (service.h: signals, sd_notify, reload) and
 * writes the metrics file (metrics.h) when one is set.
 */
#include "cli.h"
#include "metrics.h"
#include "service.h"
#include "../despooler/despooler.h"
#include "../sender/reports.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] despool [--once]\n"
    "\n"
    "Verifies and delivers what peers dropped into inboxes/despoolr.box/receive: one\n"
    "despooler per site. Runs until SIGTERM or SIGINT, watching receive and hman.box\n"
    "(and rescanning every rescan_interval); --once drains everything processable now\n"
    "and exits. Outcomes are status messages ('sitespool status') and logs/despool.log.\n"
    "SIGHUP reads site.conf again and reopens the logs (logrotate). Under systemd\n"
    "(Type=notify) it reports readiness, status and watchdog pings; with metrics_file\n"
    "set it rewrites that Prometheus text file every 15 s.\n"
    "\n"
    "Exit codes: 0 done, 1 failed (another despooler runs, the site is unusable),\n"
    "2 usage error.\n";

struct daemon_ctx {
    cli *c;
    svc *s;
    ss_despooler *d;
    int64_t metrics_last_ms;
    ss_sender snd; /* queues receipts (sender/reports.h); opened when first needed */
    bool snd_open;
    uint64_t fates_queued; /* d->stats.fates when receipts were last queued (at
                              start UINT64_MAX: what an earlier run left is queued too) */
    int64_t retry_at;      /* after a failure: not before this time */
};

/* The fates noted by the batches so far go back to their senders as
 * receipts, queued in the outbox (the sender daemon delivers them: this
 * process may have no network).  Only when new fates were noted (or an
 * earlier attempt failed), and without waiting for a site.db another
 * process holds: that would stall the scans (and their 4423) behind
 * work that may as well be done a little later. */
static void queue_receipts(struct daemon_ctx *x, bool at_end)
{
    bool fresh = x->d->stats.fates != x->fates_queued;
    if (!fresh && !x->retry_at && !at_end) return;
    if (x->retry_at && ss_now() < x->retry_at && !at_end) return;
    ss_error e = {0};
    ss_log *log = ss_reporter_log(&x->c->rep, SS_COMP_DESPOOLER);
    uint64_t noted = x->d->stats.fates;
    if (!x->snd_open) {
        if (ss_sender_open(&x->snd, x->c->root, &x->c->conf, &x->c->db, &x->c->rep, true, &e) !=
            0) {
            x->retry_at = ss_now() + 60;
            ss_logf(log, "Cannot queue receipts (they wait in site.db): %s", e.msg);
            return;
        }
        x->snd_open = true;
    }
    size_t n = 0;
    ss_db_busy_wait(&x->c->db, at_end ? SS_DB_BUSY_MS : 200);
    int rc = ss_sender_queue_receipts(&x->snd, &n, &e);
    ss_db_busy_wait(&x->c->db, SS_DB_BUSY_MS);
    if (rc == 0) {
        x->fates_queued = noted;
        x->retry_at = 0;
        return;
    }
    if (!x->retry_at) ss_logf(log, "Cannot queue receipts now (they wait in site.db): %s", e.msg);
    x->retry_at = ss_now() + 30;
}

static void write_metrics(struct daemon_ctx *x, bool now)
{
    if (!x->c->conf.metrics_file[0]) return;
    int64_t t = ss_now_ms();
    if (!now && t - x->metrics_last_ms < METRICS_INTERVAL_MS) return;
    x->metrics_last_ms = t;
    ss_error e = {0};
    if (metrics_write(x->c, x->d, &e) != 0)
        ss_logf(ss_reporter_log(&x->c->rep, SS_COMP_DESPOOLER),
                "Could not write the metrics file: %s", e.msg);
}

static void on_ready(void *ctx)
{
    struct daemon_ctx *x = ctx;
    char status[200];
    snprintf(status, sizeof status, "Watching %s", x->d->receive_path);
    svc_ready(x->s, status);
    write_metrics(x, true);
}

static void on_tick(void *ctx)
{
    struct daemon_ctx *x = ctx;
    svc_tick(x->s);
    queue_receipts(x, false);
    write_metrics(x, false);
}

static void on_reload(void *ctx)
{
    struct daemon_ctx *x = ctx;
    svc_reload(x->s);
    write_metrics(x, true);
}

int cmd_despool(cli *c, int argc, char **argv)
{
    bool once = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--once"))
            once = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return fputs(usage, stdout), 0;
        else
            return cli_usage(usage, "unknown argument '%s'", argv[i]);
    }
    if (cli_open(c) != 0) return 1;
    ss_despooler d;
    ss_error e = {0};
    if (ss_despooler_open(&d, c->root, &c->conf, &c->db, &c->rep, &e) != 0) return cli_fail(&e);
    /* A signal interrupts the wait so the stop is prompt; the current
     * batch is always finished first. */
    svc s;
    svc_start(&s, c, SS_COMP_DESPOOLER);
    struct daemon_ctx x = {.c = c, .s = &s, .d = &d, .fates_queued = UINT64_MAX};
    ss_daemon_hooks hooks = {s.stop, s.reload, svc_tick_ms(&s), on_ready, on_tick, on_reload, &x};
    int rc = once ? ss_despooler_drain(&d, &e) : ss_despooler_run(&d, &hooks, &e);
    if (!once) {
        svc_stopping(&s);
        write_metrics(&x, true);
    }
    if (rc != 0) cli_fail(&e);
    queue_receipts(&x, true);
    if (x.snd_open) ss_sender_close(&x.snd);
    if (once)
        printf("delivered %zu, rejected %zu, duplicates %zu, waiting %zu\n", d.stats.delivered,
               d.stats.rejected, d.stats.duplicates, d.stats.waiting);
    ss_despooler_close(&d);
    return rc == 0 ? 0 : 1;
}
