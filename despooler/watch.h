/*
 * watch.h - the one small interface to libinotifytools.
 *
 * libinotifytools keeps global state and hands out events in static
 * storage, so it is used only through this wrapper, from one thread.
 * Events are hints: the despooler also scans at start-up, after a queue
 * overflow and on a timer, so a lost event delays work, never loses it.
 */
#ifndef SS_WATCH_H
#define SS_WATCH_H

#include "../inboxes/error.h"

#include <stdbool.h>

#define SS_WATCH_MAX 4

typedef struct ss_watch {
    int ndirs;
    int wd[SS_WATCH_MAX];
} ss_watch;

/* Watches dirs for files renamed into them or closed after writing. */
int ss_watch_open(ss_watch *w, const char *const dirs[], int ndirs, ss_error *e);
/* Waits up to timeout_s seconds (0: do not wait).  Returns a bit mask of
 * the dirs (by index) that saw a relevant event, SS_WATCH_OVERFLOW when
 * events were lost, 0 on timeout, -1 on error.  Temporary names are
 * ignored. */
#define SS_WATCH_OVERFLOW (1 << 30)
int ss_watch_wait(ss_watch *w, long timeout_s);
void ss_watch_close(ss_watch *w);

#endif
