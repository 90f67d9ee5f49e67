/*
 * cmd_despool.c - `sitespool despool`: the despooler daemon, or --once.
 */
#include "cli.h"
#include "../despooler/despooler.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] despool [--once]\n"
    "\n"
    "Verifies and delivers what peers dropped into inboxes/despoolr.box/receive: one\n"
    "despooler per site. Runs until SIGTERM or SIGINT, watching receive and hman.box\n"
    "(and rescanning every rescan_interval); --once drains everything processable now\n"
    "and exits. Outcomes are status messages ('sitespool status') and logs/despool.log.\n";

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
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
    /* No SA_RESTART: a signal interrupts the wait so the stop is prompt;
     * the current batch is always finished first. */
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int rc = once ? ss_despooler_drain(&d, &e) : ss_despooler_run(&d, &stop_requested, &e);
    if (rc != 0) cli_fail(&e);
    if (once)
        printf("delivered %zu, rejected %zu, duplicates %zu, waiting %zu\n", d.stats.delivered,
               d.stats.rejected, d.stats.duplicates, d.stats.waiting);
    ss_despooler_close(&d);
    return rc == 0 ? 0 : 1;
}
