/*
 * log.h - component logs (despool.log, sender.log, hman.log) in the
 * Configuration Manager site-server trace format, which CMTrace, OneTrace
 * and existing log parsers read:
 *
 *   text  $$<COMPONENT><MM-DD-YYYY HH:MM:SS.mmm+bias><thread=N (0xHEX)>
 *
 * bias is minutes, UTC = local time + bias, as ConfigMgr writes it.
 *
 * Each line is one write() on an O_APPEND descriptor so `tail -F` and
 * concurrent writers never see or make half lines.  Control characters in
 * the text (peer-supplied names!) are replaced by '?' so a hostile field can
 * never forge a log line.  When the file passes max_bytes it is renamed to
 * <name>.lo_ (replacing the previous one) under an flock, and every writer
 * notices the new file by its inode.
 */
#ifndef SS_LOG_H
#define SS_LOG_H

#include "error.h"

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#define SS_LOG_LINE_MAX 4096

typedef struct ss_log {
    int fd;
    ino_t ino;
    uint64_t size_estimate; /* bytes in the file as far as this writer knows */
    unsigned lines_since_check;
    uint64_t max_bytes;
    char path[PATH_MAX];
    char component[48];
} ss_log;

/* Opens the log; on failure the log is still usable: each write tries to
 * open the file again, and lines are dropped until that works. */
int ss_log_open(ss_log *l, const char *path, const char *component, uint64_t max_bytes,
                ss_error *e);
void ss_log_close(ss_log *l);
/* Writes one line; never fails loudly (logging must not stop the work). */
void ss_logf(ss_log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ss_log_text(ss_log *l, const char *text);
/* The rotated name: despool.log -> despool.lo_ */
void ss_log_rotated_name(const char *path, char *out, size_t len);

#endif
