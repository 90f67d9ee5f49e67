/*
 * watch.c - inotify behind ss_watch.  See watch.h for why the kernel API.
 */
#include "watch.h"
#include "../inboxes/fileio.h"
#include "../keystore/trust.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_EVENTS (IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_ONLYDIR)

int ss_watch_open(ss_watch *w, const char *const dirs[], int ndirs, ss_error *e)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    if (ndirs > SS_WATCH_MAX) return ss_err(e, SS_E_USAGE, "too many watched folders");
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) return ss_err_sys(e, "cannot initialise inotify");
    for (int i = 0; i < ndirs; i++) {
        w->wd[i] = inotify_add_watch(w->fd, dirs[i], WATCH_EVENTS);
        if (w->wd[i] < 0) {
            ss_err_sys(e, "cannot watch %s", dirs[i]);
            ss_watch_close(w);
            return -1;
        }
    }
    w->ndirs = ndirs;
    return 0;
}

static int event_bit(const ss_watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) return SS_WATCH_OVERFLOW;
    if (ev->len && ss_name_is_temporary(ev->name)) return 0;
    if (ev->len && !strcmp(ev->name, SS_TRUST_MARKER)) return SS_WATCH_TRUST;
    size_t n = ev->len ? strlen(ev->name) : 0;
    if (w->ndirs > 0 && ev->wd == w->wd[0] && n > 4 && !strcmp(ev->name + n - 4, ".pck"))
        return SS_WATCH_PACKAGE;
    for (int i = 0; i < w->ndirs; i++)
        if (w->wd[i] == ev->wd) return 1 << i;
    return 0;
}

int ss_watch_wait(ss_watch *w, int timeout_ms)
{
    struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready <= 0) return (ready == 0 || errno == EINTR) ? 0 : -1;
    /* Drain everything queued: one scan answers a whole burst. */
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int mask = 0;
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n <= 0) return (n < 0 && errno != EAGAIN && errno != EINTR) ? -1 : mask;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            mask |= event_bit(w, ev);
            p += sizeof *ev + ev->len;
        }
    }
}

void ss_watch_close(ss_watch *w)
{
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    w->ndirs = 0;
}
