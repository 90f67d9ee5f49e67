/*
 * watch.c - libinotifytools behind ss_watch.  See watch.h.
 */
#include "watch.h"
#include "../inboxes/fileio.h"

#include <errno.h>
#include <inotifytools/inotifytools.h>
#include <string.h>
#include <sys/inotify.h>

#define WATCH_EVENTS (IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB)

int ss_watch_open(ss_watch *w, const char *const dirs[], int ndirs, ss_error *e)
{
    memset(w, 0, sizeof *w);
    if (ndirs > SS_WATCH_MAX)
        return ss_err(e, SS_E_USAGE, "too many watched folders");
    if (!inotifytools_initialize())
        return ss_err(e, SS_E_IO, "cannot initialise inotify (error %d)", inotifytools_error());
    for (int i = 0; i < ndirs; i++) {
        if (!inotifytools_watch_file(dirs[i], WATCH_EVENTS)) {
            int err = inotifytools_error();
            inotifytools_cleanup();
            errno = err;
            return ss_err_sys(e, "cannot watch %s", dirs[i]);
        }
        w->wd[i] = inotifytools_wd_from_filename(dirs[i]);
    }
    w->ndirs = ndirs;
    return 0;
}

static int event_mask_bit(const ss_watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW)
        return SS_WATCH_OVERFLOW;
    if (ev->len && ss_name_is_temporary(ev->name))
        return 0;
    for (int i = 0; i < w->ndirs; i++)
        if (w->wd[i] == ev->wd)
            return 1 << i;
    return 0;
}

int ss_watch_wait(ss_watch *w, long timeout_s)
{
    /* libinotifytools: a negative timeout blocks forever, 0 polls. */
    struct inotify_event *ev = inotifytools_next_event(timeout_s > 0 ? timeout_s : 0);
    int mask = 0;
    while (ev) {
        mask |= event_mask_bit(w, ev);
        ev = inotifytools_next_event(0); /* drain what is already queued */
    }
    if (!mask && inotifytools_error() && inotifytools_error() != EINTR &&
        inotifytools_error() != EAGAIN)
        return -1;
    return mask;
}

void ss_watch_close(ss_watch *w)
{
    if (w->ndirs)
        inotifytools_cleanup();
    w->ndirs = 0;
}
