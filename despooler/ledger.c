/*
 * ledger.c - the delivery ledger in site.db (what was delivered, where,
 * until when it guards against a replay) and the per-site sequence
 * numbers that reveal gaps.
 *
 * Security stance: the ledger is what makes delivery exactly once: its row
 * is committed before a delivered file becomes visible, and a restart
 * finishes an interrupted rename instead of delivering again.
 * Diagnostics: 4415 (sequence gap); database errors are logged.
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 1 and the stored path if id was delivered, 0 if not, -1 if the ledger
 * cannot be read (never "not delivered" on an error). */
int dsp_ledger_lookup(ss_despooler *d, const char *id, char *path, size_t len, int64_t *when,
                      ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT path, time FROM ledger WHERE id=?", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *p = sqlite3_column_text(st, 0);
        snprintf(path, len, "%s", p ? (const char *)p : "");
        *when = sqlite3_column_int64(st, 1);
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : ss_db_fail(d->db, "reading the ledger", e);
    }
    sqlite3_finalize(st);
    return rc;
}

/* A crash (or a failed rename) after the ledger commit left the data
 * under its temporary name: publish it now, under the recorded name or, if
 * that was taken meanwhile, the next free one (the ledger follows), and
 * announce it (its 4400 row was stored with the ledger; the log line and
 * notify_command may not have run).  1 finished, 0 nothing to finish, -1
 * it could not be finished now (*e; the caller keeps the pair). */
int dsp_finish_interrupted(ss_despooler *d, const work *w, const char *rel_path, ss_error *e)
{
    char dir[PATH_MAX], tmp[96], final[256];
    const char *slash = strrchr(rel_path, '/');
    if (!slash) return 0;
    snprintf(dir, sizeof dir, "%s/%.*s", d->root, (int)(slash - rel_path), rel_path);
    snprintf(final, sizeof final, "%s", slash + 1);
    dsp_tmp_name_for(w->in.id, tmp, sizeof tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0) return errno == ENOENT ? 0 : ss_err_sys(e, "cannot open %s", dir);
    int rc = 0;
    if (faccessat(dfd, tmp, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        if (dsp_claim_name(dfd, tmp, w, final, sizeof final, e) == 0 &&
            ss_fsync_dirfd(dfd, e) == 0) {
            char rel[PATH_MAX];
            snprintf(rel, sizeof rel, "%.*s/%s", (int)(slash - rel_path), rel_path, final);
            if (strcmp(rel, rel_path) != 0) dsp_ledger_set_path(d, w->in.id, rel);
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                    "Completed the delivery of instruction %s (%s) interrupted by a restart",
                    w->in.id, rel);
            const char *istr[] = {w->in.id, w->in.from, rel};
            ss_report_announce(d->rep, 4400, 3, istr);
            rc = 1;
        } else {
            rc = -1;
        }
    }
    close(dfd);
    return rc;
}

int dsp_ledger_insert(ss_despooler *d, const work *w, const char *outcome, const char *path,
                      ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        d->db,
        "INSERT INTO ledger(id, from_site, seq, type, outcome, path, size, time, expires, "
        "ins_identity) VALUES(?,?,?,?,?,?,?,?,?,?)",
        e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, w->in.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->in.from, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)w->in.seq);
    sqlite3_bind_text(st, 4, ss_itype_name(w->in.type), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)w->in.size);
    sqlite3_bind_int64(st, 8, ss_now());
    sqlite3_bind_int64(st, 9, w->in.expires);
    if (w->ins_identity[0]) sqlite3_bind_text(st, 10, w->ins_identity, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(d->db, "recording the ledger", e);
    sqlite3_finalize(st);
    return rc;
}

void dsp_ledger_set_path(ss_despooler *d, const char *id, const char *path)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "UPDATE ledger SET path=?2 WHERE id=?1", NULL);
    if (!st) return;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    db_step_done(d, st, "correcting a ledger path");
}

/* Rows a day past their expiry go: a later copy is refused as expired
 * anyway.  The clock used is the latest this site has seen (its high-water
 * mark), never a clock that stepped back, and the same mark refuses late
 * copies (see verify.c), so a pruned id can never be delivered again. */
int dsp_ledger_prune(ss_despooler *d, int64_t high_water, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "DELETE FROM ledger WHERE expires < ?", e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, high_water - 86400);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(d->db, "pruning the ledger", e);
    sqlite3_finalize(st);
    return rc;
}

/* Notes the sequence number (sites table, keystore/store.c) inside the
 * batch's transaction. */
int dsp_note_sequence(ss_despooler *d, const work *w, ss_error *e)
{
    return ss_site_note_seen(d->db, w->in.from, w->in.id, w->in.seq, w->is_signed ? w->keyid : "",
                             ss_now(), e);
}

static void report_gap(void *ctx, const char *site, const char *id, uint64_t seq, uint64_t from,
                       uint64_t to)
{
    ss_despooler *d = ctx;
    char s_seq[32], s_from[32], s_to[32];
    u64str(seq, s_seq, sizeof s_seq);
    u64str(from, s_from, sizeof s_from);
    u64str(to, s_to, sizeof s_to);
    ss_report(d->rep, 4415, id, site, s_seq, s_from, s_to, NULL);
}

/* Once receive is drained, numbers still missing below a delivered one
 * are a gap (4415): lost, or still on the way. */
void dsp_report_gaps(ss_despooler *d)
{
    ss_error e = {0};
    if (ss_site_gaps(d->db, report_gap, d, &e) != 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot check sequence gaps: %s",
                e.msg);
}

/* Advances the clock's high-water mark to now (never back) and returns it
 * in *high_water. */
int dsp_clock_advance(ss_despooler *d, int64_t *high_water, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        d->db, "UPDATE clock SET high_water = max(high_water, ?) WHERE id = 1 RETURNING high_water",
        e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, ss_now());
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *high_water = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(d->db, "advancing the clock", e);
    } else {
        rc = ss_db_fail(d->db, "advancing the clock", e);
    }
    sqlite3_finalize(st);
    return rc;
}

int dsp_ledger_same_file(ss_despooler *d, const char *id, const char *identity, ss_error *e)
{
    if (!identity[0]) return 0;
    sqlite3_stmt *st =
        ss_db_prepare(d->db, "SELECT ins_identity = ?2 FROM ledger WHERE id = ?1", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, identity, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int same = rc == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return ss_db_fail(d->db, "reading the ledger", e);
    return same;
}
