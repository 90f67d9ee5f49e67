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
/* Steps a prepared "SELECT path, time FROM ledger WHERE id=?" for id:
 * 1 (found), 0, -1. */
static int ledger_row(ss_db *db, sqlite3_stmt *st, const char *id, char *path, size_t len,
                      int64_t *when, ss_error *e)
{
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *p = sqlite3_column_text(st, 0);
        snprintf(path, len, "%s", p ? (const char *)p : "");
        *when = sqlite3_column_int64(st, 1);
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading the ledger", e);
}

/* One object: ss_db_cached knows a statement by its text's address. */
static const char ledger_row_sql[] = "SELECT path, time FROM ledger WHERE id=?";

int dsp_ledger_lookup(ss_despooler *d, const char *id, char *path, size_t len, int64_t *when,
                      ss_error *e)
{
    sqlite3_stmt *st = ss_db_cached(d->db, ledger_row_sql, e);
    if (!st) return -1;
    int rc = ledger_row(d->db, st, id, path, len, when, e);
    ss_db_release(d->db, st);
    return rc;
}

int ss_ledger_get(ss_db *db, const char *id, char *path, size_t len, int64_t *when, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, ledger_row_sql, e);
    if (!st) return -1;
    int rc = ledger_row(db, st, id, path, len, when, e);
    sqlite3_finalize(st);
    return rc;
}

/* Publishes dir/tmp (committed, left under its temporary name by a crash
 * or a failed rename) under *final or the next free name; 1 done (the
 * ledger follows a changed name, the 4400 is announced), 0 nothing left
 * to finish, -1 not now (*e). */
static int finish_file(ss_despooler *d, const work *w, int dfd, const char *dir_rel,
                       const char *tmp, const char *name, const char *label, unsigned member,
                       char *final, size_t len, ss_error *e)
{
    if (faccessat(dfd, tmp, F_OK, AT_SYMLINK_NOFOLLOW) != 0) return 0;
    char recorded[256];
    snprintf(recorded, sizeof recorded, "%s", final);
    if (dsp_claim_name(dfd, tmp, name, label, final, len, e) != 0 || ss_fsync_dirfd(dfd, e) != 0)
        return -1;
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s/%s", dir_rel, final);
    if (strcmp(recorded, final) != 0) dsp_ledger_set_path(d, w->in.id, member, rel);
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Completed the delivery of %s (%s) interrupted by a restart", label, rel);
    const char *istr[] = {label, w->in.from, rel};
    ss_report_announce(d->rep, 4400, 3, istr);
    return 1;
}

/* The members of a committed bundle still under temporary names. */
static int finish_members(ss_despooler *d, const work *w, int dfd, const char *dir_rel, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        d->db, "SELECT member, name, path FROM ledger_files WHERE id=? ORDER BY member", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, w->in.id, -1, SQLITE_STATIC);
    int rc = 0, step;
    while (rc >= 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        unsigned member = (unsigned)sqlite3_column_int(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *path = (const char *)sqlite3_column_text(st, 2);
        const char *slash = path ? strrchr(path, '/') : NULL;
        char tmp[96], label[64], final[256];
        dsp_member_tmp_name(w->in.id, member, tmp, sizeof tmp);
        snprintf(label, sizeof label, "%s#%u", w->in.id, member);
        snprintf(final, sizeof final, "%s", slash ? slash + 1 : "");
        int one = finish_file(d, w, dfd, dir_rel, tmp, name ? name : "", label, member, final,
                              sizeof final, e);
        if (one != 0) rc = one;
    }
    if (rc >= 0 && step != SQLITE_DONE) rc = ss_db_fail(d->db, "reading the ledger", e);
    sqlite3_finalize(st);
    return rc;
}

/* A crash (or a failed rename) after the ledger commit left the data
 * under its temporary name(s): publish it now, under the recorded name or,
 * if that was taken meanwhile, the next free one (the ledger follows), and
 * announce it (its 4400 row was stored with the ledger; the log line and
 * notify_command may not have run).  1 finished, 0 nothing to finish, -1
 * it could not be finished now (*e; the caller keeps the pair). */
int dsp_finish_interrupted(ss_despooler *d, const work *w, const char *rel_path, ss_error *e)
{
    char dir[PATH_MAX], dir_rel[PATH_MAX], tmp[96], final[256];
    const char *slash = strrchr(rel_path, '/');
    if (!slash) return 0;
    snprintf(dir_rel, sizeof dir_rel, "%.*s", (int)(slash - rel_path), rel_path);
    snprintf(dir, sizeof dir, "%s/%s", d->root, dir_rel);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0) return errno == ENOENT ? 0 : ss_err_sys(e, "cannot open %s", dir);
    int rc;
    if (w->in.files) {
        rc = finish_members(d, w, dfd, dir_rel, e);
    } else {
        snprintf(final, sizeof final, "%s", slash + 1);
        dsp_tmp_name_for(w->in.id, tmp, sizeof tmp);
        rc = finish_file(d, w, dfd, dir_rel, tmp, w->in.name, w->in.id, 0, final, sizeof final, e);
    }
    close(dfd);
    return rc;
}

int dsp_ledger_insert_member(ss_despooler *d, const char *id, unsigned member, const char *name,
                             const char *path, ss_error *e)
{
    sqlite3_stmt *st =
        ss_db_prepare(d->db, "INSERT INTO ledger_files(id, member, name, path) VALUES(?,?,?,?)", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)member);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, path, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(d->db, "recording the ledger", e);
    ss_db_release(d->db, st);
    return rc;
}

int dsp_ledger_insert(ss_despooler *d, const work *w, const char *outcome, const char *path,
                      ss_error *e)
{
    static const char sql[] =
        "INSERT INTO ledger(id, from_site, seq, type, outcome, path, size, time, expires, "
        "ins_identity) VALUES(?,?,?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = ss_db_cached(d->db, sql, e);
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
    ss_db_release(d->db, st);
    return rc;
}

void dsp_ledger_set_path(ss_despooler *d, const char *id, unsigned member, const char *path)
{
    sqlite3_stmt *st =
        ss_db_prepare(d->db,
                      member ? "UPDATE ledger_files SET path=?2 WHERE id=?1 AND member=?3"
                             : "UPDATE ledger SET path=?2 WHERE id=?1",
                      NULL);
    if (!st) return;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    if (member) sqlite3_bind_int(st, 3, (int)member);
    db_step_done(d, st, "correcting a ledger path");
}

/* Rows a day past their expiry go: a later copy is refused as expired
 * anyway.  The clock used is the latest this site has seen (its high-water
 * mark), never a clock that stepped back, and the same mark refuses late
 * copies (see verify.c), so a pruned id can never be delivered again. */
int dsp_ledger_prune(ss_despooler *d, int64_t high_water, ss_error *e)
{
    static const char *const sql[] = {
        "DELETE FROM ledger_files WHERE id IN (SELECT id FROM ledger WHERE expires < ?)",
        "DELETE FROM ledger WHERE expires < ?"};
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *st = ss_db_prepare(d->db, sql[i], e);
        if (!st) return -1;
        sqlite3_bind_int64(st, 1, high_water - 86400);
        int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(d->db, "pruning the ledger", e);
        sqlite3_finalize(st);
        if (rc != 0) return -1;
    }
    return 0;
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
