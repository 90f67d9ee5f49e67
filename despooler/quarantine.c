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

/* Moves name from receive to rejected without replacing anything there:
 * 1 moved (as *target), 0 nothing to move, -1 failed (*e). */
int dsp_move_to_rejected(ss_despooler *d, const char *name, char *target, size_t len, ss_error *e)
{
    snprintf(target, len, "%s", name);
    for (int attempt = 0; attempt < 100; attempt++) {
        if (ss_rename_noreplace(d->receive_fd, name, d->rejected_fd, target, e) == 0) {
            own_rejected_copy(d, target);
            return 1;
        }
        if (e->code == SS_E_NOENT) return 0;
        if (e->code != SS_E_EXISTS) return -1;
        snprintf(target, len, "%s.%lld-%d", name, (long long)ss_now(), attempt + 1);
    }
    return ss_err(e, SS_E_EXISTS, "no free name for %s in rejected/", name);
}

/* Quarantines the pair named by base (either file may be missing), with a
 * .why file holding the rendered status message. */
/* The pair could not be moved (a full disk, a read-only folder): both
 * files stay in receive - never one here and one there - and 4426 says
 * so, once per instruction; the next scan tries again. */
static void quarantine_failed(ss_despooler *d, const char *base, int msg_id, const char *text,
                              const char *from, const ss_error *e)
{
    char id[16], reason[300];
    snprintf(id, sizeof id, "%d", msg_id);
    snprintf(reason, sizeof reason, "quarantine failed: %s", e->msg);
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot quarantine %s (%s): %s", base, text,
            e->msg);
    if (dsp_note_once_id(d, base, from, reason))
        ss_report(d->rep, 4426, base, from, id, text, e->msg, NULL);
    d->stats.waiting++;
}

void dsp_quarantine(ss_despooler *d, const char *base, int msg_id, const char *const istr[],
                    int nistr)
{
    char pck[96], ins[96], pck_to[128], ins_to[128], name[160], why[2300], text[2048];
    const ss_msgdef *def = ss_msgdef_find(msg_id);
    ss_msg_render(def ? def->format : "", nistr, istr, text, sizeof text);
    /* Insertion string 2 is the claimed site in every quarantine message
     * that has one; it only labels the note. */
    const char *from = nistr > 1 && istr[1] ? istr[1] : "?";
    snprintf(pck, sizeof pck, "%s.pck", base);
    snprintf(ins, sizeof ins, "%s.ins", base);
    ss_error e = {0};
    /* Both files or neither: the package first, then the instruction; a
     * failure of the second puts the first back. */
    int moved_pck = dsp_move_to_rejected(d, pck, pck_to, sizeof pck_to, &e);
    if (moved_pck < 0) {
        quarantine_failed(d, base, msg_id, text, from, &e);
        return;
    }
    if (dsp_move_to_rejected(d, ins, ins_to, sizeof ins_to, &e) < 0) {
        ss_error back = {0};
        if (moved_pck &&
            ss_rename_noreplace(d->rejected_fd, pck_to, d->receive_fd, pck, &back) != 0)
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                    "Cannot move %s back into receive: %s; it is in rejected/ as %s", pck, back.msg,
                    pck_to);
        quarantine_failed(d, base, msg_id, text, from, &e);
        return;
    }
    int n = snprintf(why, sizeof why, "status %d (%c): %s\nrejected at %lld by site %s\n", msg_id,
                     def ? def->severity : 'E', text, (long long)ss_now(), d->conf->site_code);
    /* The .why belongs to the instruction as named in rejected/ (a second
     * rejection of the same id gets suffixes), and never replaces another. */
    if (!strcmp(ins_to, ins))
        snprintf(name, sizeof name, "%s.why", base);
    else
        snprintf(name, sizeof name, "%.100s.why", ins_to);
    if (ss_write_file_atomic(d->rejected_fd, name, why, (size_t)n, 0640, SS_ATOMIC_NOREPLACE, &e) !=
        0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Quarantined %s without its .why file: %s", base, e.msg);
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
