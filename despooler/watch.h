/*
 * watch.h - the one small interface to inotify.
 *
 * Events are hints: the despooler also scans at start-up, after a queue
 * overflow and on a timer, so a lost event delays work, never loses it.
 *
 * Why the kernel API and not libinotifytools: libinotifytools 3.22 (Debian
 * 12) cannot poll without blocking (inotifytools_next_event(0) and (-1) both
 * block forever), its timeouts are whole seconds, and it keeps process-wide
 * state.  The despooler must drain a burst of events at once and wake within
 * milliseconds for its retry timers, so this wrapper uses inotify_init1()
 * with a non-blocking descriptor and poll() directly: three system calls,
 * no global state.
 */
#ifndef SS_WATCH_H
#define SS_WATCH_H

#include "../inboxes/error.h"

#include <stdbool.h>

#define SS_WATCH_MAX 4
#define SS_WATCH_OVERFLOW (1 << 30)
/* Only packages (*.pck) arrived in the first folder: an instruction that
 * waits for its package needs a scan, otherwise the instruction's own
 * arrival (which comes last) does. */
#define SS_WATCH_PACKAGE (1 << 29)
/* A command changed trust: the marker SS_TRUST_MARKER (keystore/trust.h)
 * was replaced in a watched folder (hman.box).  Instead of that folder's
 * bit, so the despooler can tell why it woke. */
#define SS_WATCH_TRUST (1 << 28)

typedef struct ss_watch {
    int fd;
    int ndirs;
    int wd[SS_WATCH_MAX];
} ss_watch;

/* Watches dirs for files renamed into them or closed after writing. */
int ss_watch_open(ss_watch *w, const char *const dirs[], int ndirs, ss_error *e);
/* Waits up to timeout_ms (0: do not wait, -1: forever), then drains every
 * queued event.  Returns a bit mask of the dirs (by index) that saw a
 * relevant event (a package alone in dirs[0]: SS_WATCH_PACKAGE instead of
 * bit 0; the trust marker: SS_WATCH_TRUST), with SS_WATCH_OVERFLOW when
 * events were lost; 0 on timeout
 * or interruption by a signal; -1 on error.  Temporary names are ignored. */
int ss_watch_wait(ss_watch *w, int timeout_ms);
void ss_watch_close(ss_watch *w);

#endif
