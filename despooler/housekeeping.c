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
void dsp_housekeeping(ss_despooler *d)
{
    int64_t now_ms = ss_now_ms();
    if (d->housekeeping_every_ms && now_ms - d->housekeeping_last_ms < d->housekeeping_every_ms)
        return;
    d->housekeeping_last_ms = now_ms;
    dsp_check_backlog(d);
    ss_warn_expiring_keys(&d->keys);
    sqlite3_stmt *st = ss_db_prepare(d->db, "DELETE FROM ledger WHERE expires < ?", NULL);
    if (st) {
        /* A day past expiry: later copies are refused as expired anyway. */
        sqlite3_bind_int64(st, 1, ss_now() - 86400);
        db_step_done(d, st, "pruning the ledger");
    }
}
