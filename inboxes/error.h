/*
 * error.h - one small error record shared by every sitespool library.
 *
 * Functions that can fail return -1 (or NULL) and describe the failure in an
 * ss_error: a stable code (tests and callers branch on it) and a sentence for
 * the administrator that says what was wrong and, where possible, what to do.
 */
#ifndef SS_ERROR_H
#define SS_ERROR_H

#include <stddef.h>

enum ss_errcode {
    SS_OK = 0,
    SS_E_IO,        /* an operating system call failed */
    SS_E_NOENT,     /* a file or directory does not exist */
    SS_E_EXISTS,    /* refusing to overwrite */
    SS_E_NOTREG,    /* not a regular file (symlink, fifo, device, directory) */
    SS_E_TOOBIG,    /* beyond a size limit */
    SS_E_PERM,      /* unsafe permissions */
    SS_E_FORMAT,    /* malformed input, see message */
    SS_E_TRUNCATED, /* input ends early */
    SS_E_BASE64,    /* bad base64 */
    SS_E_ALG,       /* unsupported algorithm */
    SS_E_KEYID,     /* key id mismatch */
    SS_E_COMMENT,   /* comment too long or not printable */
    SS_E_TRAILING,  /* trailing garbage */
    SS_E_BADSIG,    /* signature does not verify */
    SS_E_BADGLOBAL, /* trusted comment signature does not verify */
    SS_E_FIELD,     /* instruction field missing or invalid */
    SS_E_ZLIB,      /* corrupt compressed stream */
    SS_E_SIZE,      /* decompressed size differs from the declared one */
    SS_E_DB,        /* database error */
    SS_E_CONF,      /* bad setting */
    SS_E_NOMEM,
    SS_E_USAGE,
    SS_E_LOCKED, /* another process holds the lock */
};

typedef struct ss_error {
    enum ss_errcode code;
    char msg[512];
} ss_error;

/* Records code and a printf-style message; always returns -1. */
int ss_err(ss_error *e, enum ss_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like ss_err, appending ": strerror(errno)". */
int ss_err_sys(ss_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ss_err_clear(ss_error *e);

#endif
