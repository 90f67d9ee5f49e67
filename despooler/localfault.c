/*
 * localfault.c - an input this site cannot read: an instruction or package
 * in receive (a bundle's package too) whose open, stat or read failed for
 * a reason of this host - the despooler's user may not read it (mode,
 * owner, ACL), an I/O error, no descriptors or memory left, a network
 * filesystem's stale handle or time-out.  Such a pair is not judged by its
 * content: it stays in receive, 4419 names the file, the error, the
 * daemon's user and the file's owner and mode, and the next scan tries
 * again; once it can be read it is processed as usual.
 *
 * Security stance: fail closed - nothing unread is delivered, and nothing
 * is quarantined for a fault that is not the sending site's.  Only errors
 * that describe the file itself (a socket or device under an input's name,
 * a folder, a file too large for this system) count as its content's
 * fault and are refused as before (4403, 4411); every other error of the
 * operating system is local.
 * Diagnostics: 4419, once per pair and cause (a hold note, waiting.c), so
 * that a rescan does not repeat it; the note goes when the file is read
 * again, so that the same fault later is reported afresh.
 */
#include "pipeline.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The site of an instruction that could not be read. */
#define UNKNOWN_SITE "unknown"

bool dsp_input_fault_is_local(int err)
{
    switch (err) {
    case 0:       /* no error number: not a local fault we can name */
    case ENXIO:   /* a socket or a device without a driver */
    case ENODEV:  /* a device */
    case EISDIR:  /* a folder */
    case ENOTDIR: /* a path through a file */
    case ELOOP:   /* a symbolic link */
    case EFBIG:
    case EOVERFLOW: /* larger than this system can address */
        return false;
    default:
        return true;
    }
}

/* "NAME (uid N)", or the number alone when the user is unknown. */
static void user_text(uid_t uid, char *out, size_t len)
{
    char buf[1024];
    struct passwd pw, *found = NULL;
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found)
        snprintf(out, len, "%s (uid %lu)", found->pw_name, (unsigned long)uid);
    else
        snprintf(out, len, "uid %lu", (unsigned long)uid);
}

static void group_text(gid_t gid, char *out, size_t len)
{
    char buf[1024];
    struct group gr, *found = NULL;
    if (getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found)
        snprintf(out, len, "%s (gid %lu)", found->gr_name, (unsigned long)gid);
    else
        snprintf(out, len, "gid %lu", (unsigned long)gid);
}

/* "user U, group G" of a uid and gid. */
static void identity_text(uid_t uid, gid_t gid, char *out, size_t len)
{
    char user[160], group[160];
    user_text(uid, user, sizeof user);
    group_text(gid, group, sizeof group);
    snprintf(out, len, "user %s, group %s", user, group);
}

/* Records the fault once per pair and cause (a hold note); true when it is
 * new and must be reported. */
static bool note_fault(ss_despooler *d, const char *id, const char *from, const char *name,
                       const char *why)
{
    char reason[300];
    snprintf(reason, sizeof reason, HOLD_INPUT_PREFIX "%s: %s", name, why);
    bool fresh = dsp_note_once_id(d, id, from && *from ? from : UNKNOWN_SITE, reason);
    d->input_faults_pending = true;
    return fresh;
}

enum outcome dsp_input_fault(ss_despooler *d, const char *id, const char *from, const char *name,
                             int err)
{
    const char *why = strerror(err);
    d->stats.waiting++;
    if (!note_fault(d, id, from, name, why)) return OUT_WAIT;
    char daemon[400], owner[400] = "an unknown owner", mode[16] = "unknown";
    identity_text(geteuid(), getegid(), daemon, sizeof daemon);
    struct stat st;
    if (fstatat(d->receive_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        identity_text(st.st_uid, st.st_gid, owner, sizeof owner);
        snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    }
    ss_report(d->rep, 4419, name, why, daemon, owner, mode, NULL);
    return OUT_WAIT;
}

/* Whether id has a note of a fault reading name. */
static bool has_fault_note(ss_despooler *d, const char *id, const char *prefix)
{
    sqlite3_stmt *st = ss_db_prepare(
        d->db, "SELECT 1 FROM holds WHERE id=?1 AND substr(reason, 1, length(?2))=?2", NULL);
    if (!st) return false;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

void dsp_input_readable(ss_despooler *d, const char *id, const char *name)
{
    if (!d->input_faults_pending) return;
    char prefix[128];
    snprintf(prefix, sizeof prefix, HOLD_INPUT_PREFIX "%s:", name);
    /* A read first: the common case (no note for this pair) writes nothing. */
    if (!has_fault_note(d, id, prefix)) return;
    sqlite3_stmt *st = ss_db_prepare(
        d->db, "DELETE FROM holds WHERE id=?1 AND substr(reason, 1, length(?2))=?2", NULL);
    if (!st) return;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC);
    if (db_step_done(d, st, "clearing a note of an unreadable file") == 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "%s can be read again", name);
}
