/*
 * housekeeping.c - work that is not about one instruction: backlog
 * warnings, key expiry warnings (3304) and ledger pruning; on every scan of
 * --once, at most once a second in the daemon.
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Backlog warnings, expiry warnings, ledger pruning: on every scan of
 * --once, at most once a second in the daemon, so that the scan an arriving
 * package triggers stays short for the instruction right behind it. */
int dsp_housekeeping(ss_despooler *d, ss_error *e)
{
    int64_t now_ms = ss_now_ms();
    if (d->housekeeping_every_ms && now_ms - d->housekeeping_last_ms < d->housekeeping_every_ms)
        return 0;
    d->housekeeping_last_ms = now_ms;
    /* A failure (site.db locked past its busy timeout) fails the scan:
     * the daemon reports it (4423) and backs off. */
    if (dsp_check_backlog(d, e) != 0 || ss_warn_expiring_keys(&d->keys, e) != 0 ||
        dsp_clock_advance(d, &d->high_water, e) != 0 || dsp_ledger_prune(d, d->high_water, e) != 0)
        return -1;
    return 0;
}
