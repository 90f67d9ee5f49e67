/*
 * log.c - trace-format log writer with size rotation.  See log.h.
 */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_reopen(ss_log *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (l->fd < 0) return -1;
    struct stat st;
    l->ino = fstat(l->fd, &st) == 0 ? st.st_ino : 0;
    l->size_estimate = fstat(l->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    l->lines_since_check = 0;
    return 0;
}

int ss_log_open(ss_log *l, const char *path, const char *component, uint64_t max_bytes, ss_error *e)
{
    l->fd = -1;
    l->ccm = false; /* the caller sets it from log_format */
    l->max_bytes = max_bytes;
    snprintf(l->path, sizeof l->path, "%s", path);
    snprintf(l->component, sizeof l->component, "%s", component);
    if (log_reopen(l) != 0) return ss_err_sys(e, "cannot open log %s", path);
    return 0;
}

void ss_log_close(ss_log *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}

void ss_log_rotated_name(const char *path, char *out, size_t len)
{
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".log"))
        snprintf(out, len, "%.*s.lo_", (int)(n - 4), path);
    else
        snprintf(out, len, "%s.lo_", path);
}

/* Renames a full log to .lo_; the flock makes concurrent writers agree on
 * who rotates, and the inode check makes the others just reopen.  The file
 * is only looked at every 32 lines or when this writer's own count says it
 * is full, so a busy despooler does not pay two stat calls per line. */
static void log_rotate_if_full(ss_log *l, size_t incoming)
{
    struct stat path_st, fd_st;
    bool full = l->max_bytes && l->size_estimate + incoming > l->max_bytes;
    if (!full && ++l->lines_since_check < 32) return;
    l->lines_since_check = 0;
    if (stat(l->path, &path_st) != 0 || path_st.st_ino != l->ino) {
        (void)log_reopen(l);
        if (l->fd < 0) return;
    }
    if (fstat(l->fd, &fd_st) == 0) l->size_estimate = (uint64_t)fd_st.st_size;
    if (l->max_bytes == 0 || l->size_estimate + incoming <= l->max_bytes) return;
    if (flock(l->fd, LOCK_EX) != 0) return;
    if (stat(l->path, &path_st) == 0 && path_st.st_ino == l->ino) {
        char rotated[PATH_MAX];
        ss_log_rotated_name(l->path, rotated, sizeof rotated);
        (void)rename(l->path, rotated);
    }
    (void)flock(l->fd, LOCK_UN);
    (void)log_reopen(l);
}

void ss_log_reopen(ss_log *l)
{
    if (l && l->path[0]) (void)log_reopen(l);
}

/* The line's end: the trace form's $$<...> or the ccm form's attributes. */
static size_t format_suffix(const ss_log *l, char severity, char *out, size_t len)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    long bias = -tm.tm_gmtoff / 60; /* UTC = local time + bias */
    pid_t tid = gettid();
    int ms = (int)(tv.tv_usec / 1000);
    int n;
    if (l->ccm)
        n = snprintf(out, len,
                     "]LOG]!><time=\"%02d:%02d:%02d.%03d%+04ld\" date=\"%02d-%02d-%04d\" "
                     "component=\"%s\" context=\"\" type=\"%d\" thread=\"%d\" file=\"\">\n",
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms, bias, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_year + 1900, l->component,
                     severity == 'E'   ? 3
                     : severity == 'W' ? 2
                                       : 1,
                     (int)tid);
    else
        n = snprintf(out, len,
                     "  $$<%s><%02d-%02d-%04d %02d:%02d:%02d.%03d%+04ld><thread=%d (0x%X)>\n",
                     l->component, tm.tm_mon + 1, tm.tm_mday, tm.tm_year + 1900, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ms, bias, (int)tid, (unsigned)tid);
    return n < 0 ? 0 : (size_t)n;
}

/* Copies text into line (room bytes at most): control characters become
 * '?', and in ccm lines the record's terminator cannot appear. */
static size_t clean_text(const ss_log *l, const char *text, char *line, size_t room)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p && n < room; p++) {
        line[n++] = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
        if (l->ccm && n >= 7 && !memcmp(line + n - 7, "]LOG]!>", 7)) line[n - 1] = '?';
    }
    return n;
}

void ss_log_text(ss_log *l, const char *text)
{
    ss_log_text_sev(l, 'I', text);
}

void ss_log_text_sev(ss_log *l, char severity, const char *text)
{
    if (!l || !l->path[0]) return;
    /* Not writable a moment ago: try again (an open per line, only while
     * the log is broken), so no line is lost once it can be written. */
    if (l->fd < 0 && log_reopen(l) != 0) return;
    char line[SS_LOG_LINE_MAX];
    char suffix[256];
    static const char ccm_start[] = "<![LOG[";
    size_t slen = format_suffix(l, severity, suffix, sizeof suffix);
    size_t n = 0;
    if (l->ccm) {
        memcpy(line, ccm_start, sizeof ccm_start - 1);
        n = sizeof ccm_start - 1;
    }
    n += clean_text(l, text, line + n, sizeof line - slen - 1 - n);
    memcpy(line + n, suffix, slen);
    n += slen;
    log_rotate_if_full(l, n);
    if (l->fd >= 0) {
        ssize_t w;
        do {
            w = write(l->fd, line, n);
        } while (w < 0 && errno == EINTR);
        if (w > 0) l->size_estimate += (uint64_t)w;
    }
}

void ss_logf(ss_log *l, const char *fmt, ...)
{
    char text[SS_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ss_log_text(l, text);
}
