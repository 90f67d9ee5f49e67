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
 *
 * With ccm set (setting log_format = ccm) lines take the newer form that
 * CMTrace, OneTrace and PowerShell parsers (ConvertFrom-CCMLogFile) read
 * with a severity:
 *
 *   <![LOG[text]LOG]!><time="HH:MM:SS.mmm+bias" date="MM-DD-YYYY"
 *     component="C" context="" type="1|2|3" thread="N" file="">
 *
 * (one line).  bias is the same in both forms: Windows' time-zone bias,
 * minutes to add to local time for UTC - so +60 west of Greenwich by an
 * hour, -60 in central Europe in winter - which is how ConfigMgr writes
 * it; readers that take it for an ISO offset get the sign wrong.  A text
 * holding "]LOG]!>" cannot end its record early: that sequence is written
 * as "]LOG]!?".
 *
 * logrotate: either way works - copytruncate (appends follow the
 * truncation), or rename + SIGHUP to the daemons (ss_log_reopen); a writer
 * also notices a renamed file by itself within 32 lines.
 */
#ifndef SS_LOG_H
#define SS_LOG_H

#include "error.h"

#include <limits.h>
#include <stdbool.h>
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
    bool ccm; /* <![LOG[...]LOG]!> lines instead of $$<...> ones */
} ss_log;

/* Opens the log; on failure the log is still usable: each write tries to
 * open the file again, and lines are dropped until that works. */
int ss_log_open(ss_log *l, const char *path, const char *component, uint64_t max_bytes,
                ss_error *e);
void ss_log_close(ss_log *l);
/* Writes one line; never fails loudly (logging must not stop the work). */
void ss_logf(ss_log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ss_log_text(ss_log *l, const char *text);
/* The same with a severity, 'I', 'W' or 'E' (ccm lines carry it as type). */
void ss_log_text_sev(ss_log *l, char severity, const char *text);
/* Opens the path again (after logrotate renamed the file). */
void ss_log_reopen(ss_log *l);
/* The rotated name: despool.log -> despool.lo_ */
void ss_log_rotated_name(const char *path, char *out, size_t len);

#endif
