/*
 * metrics.h - the Prometheus text file (setting metrics_file) that the
 * despooler daemon rewrites every METRICS_INTERVAL_MS, for node_exporter's
 * textfile collector or any scraper that reads files.
 *
 * Names follow Prometheus conventions (sitespool_ prefix, _total for
 * counters, _seconds and _timestamp_seconds for times, base units); every
 * series has a site label (this site), per-peer ones a peer label.  The
 * file is written whole under a temporary name and renamed, so a reader
 * never sees half of it.  Counters count since the daemon started (a
 * restart resets them, which Prometheus' rate() expects); the rest are
 * gauges read from site.db and the folders at write time.
 */
#ifndef SS_METRICS_H
#define SS_METRICS_H

#include "../despooler/despooler.h"
#include "cli.h"

#define METRICS_INTERVAL_MS 15000

/* Writes the file now; 0, or -1 with e. */
int metrics_write(cli *c, const ss_despooler *d, ss_error *e);

#endif
