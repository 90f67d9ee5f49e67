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

/* 1 and the stored path if id was delivered, 0 if not. */
int dsp_ledger_lookup(ss_despooler *d, const char *id, char *path, size_t len, int64_t *when)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT path, time FROM ledger WHERE id=?", NULL);
    int found = 0;
    if (!st) return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *p = sqlite3_column_text(st, 0);
        snprintf(path, len, "%s", p ? (const char *)p : "");
        *when = sqlite3_column_int64(st, 1);
        found = 1;
    }
    sqlite3_finalize(st);
    return found;
}

/* A crash after the ledger commit and before the rename left the data
 * under its temporary name: finish the rename.  Returns true if it did. */
bool dsp_finish_interrupted(ss_despooler *d, const work *w, const char *rel_path)
{
    char dir[PATH_MAX], tmp[96], final[PATH_MAX];
    const char *slash = strrchr(rel_path, '/');
    if (!slash) return false;
    snprintf(dir, sizeof dir, "%s/%.*s", d->root, (int)(slash - rel_path), rel_path);
    snprintf(final, sizeof final, "%s", slash + 1);
    dsp_tmp_name_for(w->in.id, tmp, sizeof tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return false;
    bool done = false;
    if (faccessat(dfd, tmp, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        ss_error e = {0};
        if (ss_rename_noreplace(dfd, tmp, dfd, final, &e) != 0 && e.code == SS_E_EXISTS) {
            snprintf(final + strlen(final), sizeof final - strlen(final), ".%s", w->in.id);
            (void)ss_rename_noreplace(dfd, tmp, dfd, final, &e);
        }
        (void)ss_fsync_dirfd(dfd, NULL);
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Completed the delivery of instruction %s interrupted by a restart", w->in.id);
        done = true;
    }
    close(dfd);
    return done;
}

void dsp_ledger_insert(ss_despooler *d, const work *w, const char *outcome, const char *path)
{
    sqlite3_stmt *st = ss_db_prepare(
        d->db,
        "INSERT OR IGNORE INTO ledger(id, from_site, seq, type, outcome, path, size, time, "
        "expires) VALUES(?,?,?,?,?,?,?,?,?)",
        NULL);
    if (!st) return;
    sqlite3_bind_text(st, 1, w->in.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->in.from, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)w->in.seq);
    sqlite3_bind_text(st, 4, ss_itype_name(w->in.type), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)w->in.size);
    sqlite3_bind_int64(st, 8, ss_now());
    sqlite3_bind_int64(st, 9, w->in.expires);
    db_step_done(d, st, "recording the ledger");
}

void dsp_note_sequence(ss_despooler *d, const work *w)
{
    sqlite3_stmt *st = ss_db_prepare(
        d->db,
        "INSERT INTO sites(site, last_seq_in, last_key_id, last_seen) VALUES(?1,?2,?3,?4) "
        "ON CONFLICT(site) DO UPDATE SET last_seq_in=max(last_seq_in, ?2), last_key_id=?3, "
        "last_seen=?4 RETURNING (SELECT last_seq_in FROM sites WHERE site=?1)",
        NULL);
    if (!st) return;
    sqlite3_bind_text(st, 1, w->in.from, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)w->in.seq);
    sqlite3_bind_text(st, 3, w->is_signed ? w->keyid : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, ss_now());
    uint64_t last = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        last = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (last && w->in.seq > last + 1) {
        char seq[32], from[32], to[32];
        u64str(w->in.seq, seq, sizeof seq);
        u64str(last + 1, from, sizeof from);
        u64str(w->in.seq - 1, to, sizeof to);
        ss_report(d->rep, 4415, w->in.id, w->in.from, seq, from, to, NULL);
    }
}
