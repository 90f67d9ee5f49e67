/*
 * quarantine.c - moving a pair out of receive: into despoolr.box/rejected
 * with a .why file holding its status message (never replacing a file
 * there), or, once delivered or found a duplicate, into consumed/ where the
 * reaper unlinks it.
 *
 * Security stance: rename only (never a copy of hostile content); names
 * are the validated <id>.ins/.pck.
 * Diagnostics: the status message of the verdict; failures to move are
 * logged.
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Moves name from receive to rejected without replacing anything. */
/* A quarantined file gets this site's mode (0640), not the peer's - but
 * only a regular file with one link: through a second link a mode change
 * would reach a file outside the inbox. */
static void own_rejected_copy(ss_despooler *d, const char *name)
{
    int fd = openat(d->rejected_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
        (st.st_mode & 07777) != 0640)
        (void)fchmod(fd, 0640);
    close(fd);
}

void dsp_move_to_rejected(ss_despooler *d, const char *name, const char *reason)
{
    char target[128];
    snprintf(target, sizeof target, "%s", name);
    for (int attempt = 0; attempt < 100; attempt++) {
        ss_error e = {0};
        if (ss_rename_noreplace(d->receive_fd, name, d->rejected_fd, target, &e) == 0) {
            own_rejected_copy(d, target);
            return;
        }
        if (e.code != SS_E_EXISTS) {
            if (e.code != SS_E_NOENT)
                ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot quarantine %s (%s): %s",
                        name, reason, e.msg);
            return;
        }
        snprintf(target, sizeof target, "%s.%lld-%d", name, (long long)ss_now(), attempt + 1);
    }
}

/* Quarantines the pair named by base (either file may be missing), with a
 * .why file holding the rendered status message. */
void dsp_quarantine(ss_despooler *d, const char *base, int msg_id, const char *const istr[],
                    int nistr)
{
    char name[96], why[2300], text[2048];
    const ss_msgdef *def = ss_msgdef_find(msg_id);
    ss_msg_render(def ? def->format : "", nistr, istr, text, sizeof text);
    int n = snprintf(why, sizeof why, "status %d (%c): %s\nrejected at %lld by site %s\n", msg_id,
                     def ? def->severity : 'E', text, (long long)ss_now(), d->conf->site_code);
    snprintf(name, sizeof name, "%s.why", base);
    ss_error e = {0};
    (void)unlinkat(d->rejected_fd, name, 0);
    if (ss_write_file_atomic(d->rejected_fd, name, why, (size_t)n, 0640, 0, &e) != 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot write %s: %s", name, e.msg);
    snprintf(name, sizeof name, "%s.pck", base);
    dsp_move_to_rejected(d, name, text);
    snprintf(name, sizeof name, "%s.ins", base);
    dsp_move_to_rejected(d, name, text);
    dsp_forget_notes(d, base);
    ss_reportv(d->rep, msg_id, nistr, istr);
    d->stats.rejected++;
}

/* Removes a pair from receive (after delivery or as a duplicate). */
void dsp_remove_pair(ss_despooler *d, const char *base)
{
    char name[96];
    /* The instruction first: a package left alone is an orphan that
     * dsp_check_backlog recognises by the ledger and removes. */
    snprintf(name, sizeof name, "%s.ins", base);
    ss_reaper_take(d->reaper, d->receive_fd, name);
    snprintf(name, sizeof name, "%s.pck", base);
    ss_reaper_take(d->reaper, d->receive_fd, name);
    dsp_forget_notes(d, base);
}
