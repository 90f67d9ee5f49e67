/*
 * error.c - formatting of ss_error records.
 */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Formats into a local buffer first: callers often wrap their own message
 * (ss_err(e, e->code, "%s: %s", path, e->msg)). */
static void set_message(ss_error *e, const char *suffix, const char *fmt, va_list ap)
{
    char msg[sizeof e->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (suffix) {
        size_t len = strlen(msg);
        snprintf(msg + len, sizeof msg - len, ": %s", suffix);
    }
    memcpy(e->msg, msg, sizeof msg);
}

int ss_err(ss_error *e, enum ss_errcode code, const char *fmt, ...)
{
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    set_message(e, NULL, fmt, ap);
    va_end(ap);
    e->code = code;
    return -1;
}

int ss_err_sys(ss_error *e, const char *fmt, ...)
{
    int saved = errno;
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    set_message(e, strerror(saved), fmt, ap);
    va_end(ap);
    e->code = saved == ENOENT ? SS_E_NOENT : saved == EEXIST ? SS_E_EXISTS : SS_E_IO;
    errno = saved;
    return -1;
}

void ss_err_clear(ss_error *e)
{
    if (e) {
        e->code = SS_OK;
        e->msg[0] = '\0';
    }
}
