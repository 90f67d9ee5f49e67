/*
 * waiting.c - what stays in receive: instructions whose key is missing
 * (4405, the persisted retry count, 4406 when it runs out), instructions
 * held until an administrator acts (4420, once per reason), files that
 * wait too long (4414), files that cannot be read (4419, noted here like
 * a hold, see localfault.c), and the look for keys that waiting instructions
 * need, so that a key arriving in hman.box or the directory retries them
 * at once (4417).  For administrators (admin.h): the pairs in receive with
 * what these tables say of them, and deleting a held one (4429).
 *
 * Security stance: nothing waiting is ever deleted: it is delivered,
 * quarantined with a status message, or left for an administrator - who
 * may delete it only once it is held (see admin.h for why).
 * Known limits: at most SS_FORCE_MAX sites are retried at once per scan.
 */
#include "pipeline.h"
#include "../inboxes/text.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int hold_status(const char *reason);

/* The pair left receive: forget its backlog warnings and hold notes. */
void dsp_forget_notes(ss_despooler *d, const char *base)
{
    if (!d->notes_pending) return;
    sqlite3_stmt *st = ss_db_prepare(d->db,
                                     "DELETE FROM backlog WHERE name IN (?1||'.ins', "
                                     "?1||'.pck')",
                                     NULL);
    if (st) {
        sqlite3_bind_text(st, 1, base, -1, SQLITE_STATIC);
        db_step_done(d, st, "clearing backlog notes");
    }
    st = ss_db_prepare(d->db, "DELETE FROM holds WHERE id=?", NULL);
    if (st) {
        sqlite3_bind_text(st, 1, base, -1, SQLITE_STATIC);
        db_step_done(d, st, "clearing a hold");
    }
}

void dsp_retry_forget(ss_despooler *d, const char *id)
{
    if (!d->retries_pending) return;
    sqlite3_stmt *st = ss_db_prepare(d->db, "DELETE FROM retries WHERE id=?", NULL);
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        db_step_done(d, st, "clearing a retry");
    }
}

/* Reads the retry row: 1 found, 0 none. */
/* Reads the retry row: 1 found, 0 none, -1 the table cannot be read. */
static int retry_get(ss_despooler *d, const char *id, int *attempts, int64_t *next_at, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT attempts, next_at FROM retries WHERE id=?", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *attempts = sqlite3_column_int(st, 0);
        *next_at = sqlite3_column_int64(st, 1);
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : ss_db_fail(d->db, "reading a key lookup retry", e);
    }
    sqlite3_finalize(st);
    return rc;
}

/* The sender's key is missing: count an attempt and report 4405, or give
 * up (4406) when the retries are used up. */
enum outcome dsp_key_missing(ss_despooler *d, work *w, const char *base)
{
    int attempts = 0;
    int64_t next_at = 0, now = ss_now();
    ss_error e = {0};
    /* A count that cannot be read must not restart at 0 (or end early). */
    int known = retry_get(d, w->in.id, &attempts, &next_at, &e);
    if (known < 0) return dsp_trust_failed(d, w, &e);
    if (known && next_at > now && !dsp_force_has(d, w->in.from)) {
        d->stats.waiting++;
        return OUT_WAIT;
    }
    unsigned limit = d->conf->key_lookup_retries;
    char count[32];
    /* key_lookup_retries counts every lookup, this one included: the first
     * 4405 says 99 more of 100, and the lookup that leaves 0 more gives up
     * at once (announcing "0 more times, next retry in ..." would be false). */
    /* A key directory server that could not be asked (4441, 4442) is no
     * answer: the lookup does not count towards giving up, and nothing is
     * quarantined for a directory fault. */
    if ((unsigned)++attempts >= limit && ss_dircache_faulted(d->keys.dir)) attempts--;
    if ((unsigned)attempts >= limit) {
        snprintf(count, sizeof count, "%d", attempts);
        dsp_retry_forget(d, w->in.id);
        QUARANTINE(d, base, 4406, w->in.id, w->in.from, w->keyid, count);
        return OUT_DONE;
    }
    sqlite3_stmt *st = ss_db_prepare(
        d->db,
        "INSERT INTO retries(id, from_site, key_id, attempts, next_at, first_seen) "
        "VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(id) DO UPDATE SET attempts=?4, next_at=?5",
        &e);
    if (!st) return dsp_trust_failed(d, w, &e);
    sqlite3_bind_text(st, 1, w->in.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->in.from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, w->keyid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, attempts);
    sqlite3_bind_int64(st, 5, now + d->conf->key_lookup_interval);
    sqlite3_bind_int64(st, 6, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        ss_db_fail(d->db, "recording a key lookup retry", &e);
        sqlite3_finalize(st);
        return dsp_trust_failed(d, w, &e);
    }
    sqlite3_finalize(st);
    d->retries_pending = true;
    /* %5 stays ConfigMgr's whole minutes (log parsers read it); the text
     * says the wait in words (%6). */
    char left[32], minutes[32], wait[48];
    snprintf(left, sizeof left, "%u", limit - (unsigned)attempts);
    snprintf(minutes, sizeof minutes, "%u", (d->conf->key_lookup_interval + 59) / 60);
    ss_duration_text(d->conf->key_lookup_interval, wait, sizeof wait);
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Public key %s for incoming instruction %s/%s from site %s was not found, will "
            "retry later",
            w->keyid, d->receive_path, w->ins_name, w->in.from);
    ss_report(d->rep, 4405, w->ins_name, w->in.from, w->keyid, left, minutes, wait, NULL);
    if (attempts == 1) dsp_fate(d, w->in.id, w->in.from, w->in.type, SS_FATE_WAITING, 4405);
    d->stats.waiting++;
    return OUT_WAIT;
}

/* Whether w waits for its key and its next lookup is not due yet (nor
 * made due by a key that arrived for its site): this scan only passes it
 * by (dsp_key_missing), and its log stays quiet. */
bool dsp_retry_not_due(ss_despooler *d, const work *w)
{
    if (!d->retries_pending || dsp_force_has(d, w->in.from)) return false;
    int attempts = 0;
    int64_t next_at = 0;
    ss_error e = {0};
    return retry_get(d, w->in.id, &attempts, &next_at, &e) == 1 && next_at > ss_now();
}

/* The status message w's hold note was raised with (4420, 4416, 4419,
 * 4426) and its reason; 0 if it has none. */
int dsp_hold_of(ss_despooler *d, const work *w, char *reason, size_t len)
{
    if (!d->notes_pending) return 0;
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT reason FROM holds WHERE id=?", NULL);
    if (!st) return 0;
    sqlite3_bind_text(st, 1, w->in.id, -1, SQLITE_STATIC);
    int status = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        snprintf(reason, len, "%s", (const char *)sqlite3_column_text(st, 0));
        status = hold_status(reason);
    }
    sqlite3_finalize(st);
    return status;
}

/* Records that instruction w waits for reason; true the first time (or
 * when the reason changed), so that its status message is raised once per
 * instruction and reason, not on every scan.  The note goes when the pair
 * leaves receive (dsp_forget_notes). */
bool dsp_note_once(ss_despooler *d, const work *w, const char *reason)
{
    return dsp_note_once_id(d, w->in.id, w->in.from, reason);
}

static int hold_status(const char *reason);

bool dsp_note_once_id(ss_despooler *d, const char *id, const char *from, const char *reason)
{
    sqlite3_stmt *st =
        ss_db_prepare(d->db,
                      "INSERT INTO holds(id, from_site, reason, since) VALUES(?1,?2,?3,?4) "
                      "ON CONFLICT(id) DO UPDATE SET reason=?3 WHERE reason<>?3 RETURNING id",
                      NULL);
    /* If the note cannot be read or written, say it again rather than never. */
    bool fresh = true;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, from, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, ss_now());
        int rc = sqlite3_step(st);
        fresh = rc == SQLITE_ROW || (rc != SQLITE_DONE);
        sqlite3_finalize(st);
    }
    d->notes_pending = true;
    if (fresh && strncmp(reason, HOLD_INPUT_PREFIX, strlen(HOLD_INPUT_PREFIX)) != 0)
        dsp_fate(d, id, from, SS_TYPE_DATA, SS_FATE_HELD, hold_status(reason));
    return fresh;
}

/* Keeps the instruction in receive until an administrator acts; 4420 is
 * raised once per instruction and reason, not on every scan. */
enum outcome dsp_hold(ss_despooler *d, const work *w, const char *reason)
{
    if (dsp_note_once(d, w, reason)) ss_report(d->rep, 4420, w->in.id, w->in.from, reason, NULL);
    d->stats.waiting++;
    return OUT_WAIT;
}

/* The destination could not be written (disk full, quota, read-only, no
 * permission, I/O error): the pair stays in receive and the daemon retries
 * with back-off; 4416 once per instruction and cause. */
enum outcome dsp_dest_failed(ss_despooler *d, const work *w, const ss_error *e)
{
    char reason[300];
    snprintf(reason, sizeof reason, HOLD_DEST_PREFIX "%s: %s", w->in.dest, e->msg);
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot deliver %s into %s: %s", w->in.id,
            w->in.dest, e->msg);
    if (dsp_note_once(d, w, reason))
        ss_report(d->rep, 4416, w->in.id, w->in.from, w->in.dest, e->msg, NULL);
    d->stats.waiting++;
    d->stats.dest_failed++;
    return OUT_WAIT;
}

/* Hold notes of instructions that left receive some other way go. */
static void drop_stale_holds(ss_despooler *d)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT id FROM holds", NULL);
    char stale[SS_FORCE_MAX][SS_ID_HEX + 1];
    int n = 0;
    while (st && n < SS_FORCE_MAX && sqlite3_step(st) == SQLITE_ROW) {
        char name[64];
        snprintf(name, sizeof name, "%s.ins", sqlite3_column_text(st, 0));
        if (faccessat(d->receive_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
            snprintf(stale[n++], sizeof stale[0], "%s", sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    for (int i = 0; i < n; i++)
        dsp_forget_notes(d, stale[i]);
}

/* Sites with instructions waiting for a key: look again in the directory
 * and hman.box, so a key published there retries them at once.  Retry rows
 * whose instruction has left receive (an administrator moved it) go. */
void dsp_recheck_waiting_keys(ss_despooler *d)
{
    struct waiting {
        char site[SS_SITE_CODE_MAX + 1];
        char key_id[SS_KEYID_HEX + 1];
        int count;
    } waiting[SS_FORCE_MAX];
    int n = 0;
    /* Only instructions not yet due count: once a found key made them due
     * (below), later scans do not announce the same key again. */
    sqlite3_stmt *st =
        ss_db_prepare(d->db, "SELECT id, from_site, key_id FROM retries WHERE next_at > ?", NULL);
    if (!st) return;
    sqlite3_bind_int64(st, 1, ss_now());
    char stale[SS_FORCE_MAX][SS_ID_HEX + 1];
    int nstale = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *site = (const char *)sqlite3_column_text(st, 1);
        const char *key_id = (const char *)sqlite3_column_text(st, 2);
        char name[64];
        snprintf(name, sizeof name, "%s.ins", id);
        if (faccessat(d->receive_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
            if (nstale < SS_FORCE_MAX) snprintf(stale[nstale++], sizeof stale[0], "%s", id);
            continue;
        }
        int i = 0;
        while (i < n && (strcmp(waiting[i].site, site) || strcmp(waiting[i].key_id, key_id)))
            i++;
        if (i == n && n < SS_FORCE_MAX) {
            snprintf(waiting[n].site, sizeof waiting[n].site, "%s", site);
            snprintf(waiting[n].key_id, sizeof waiting[n].key_id, "%s", key_id);
            waiting[n++].count = 0;
        }
        if (i < n) waiting[i].count++;
    }
    sqlite3_finalize(st);
    for (int i = 0; i < nstale; i++)
        dsp_retry_forget(d, stale[i]);
    drop_stale_holds(d);
    for (int i = 0; i < n; i++) {
        unsigned char keyid[SS_KEYID_BYTES];
        ss_keyrec k;
        ss_key_found how;
        ss_error e = {0};
        /* Only a hint to retry now: the instruction's own lookup verifies
         * and judges what was found. */
        if (ss_keyid_parse(waiting[i].key_id, keyid) != 0 ||
            ss_key_find(&d->keys, waiting[i].site, keyid, &k, &how, &e) != 1)
            continue;
        char count[32];
        snprintf(count, sizeof count, "%d", waiting[i].count);
        sqlite3_stmt *due = ss_db_prepare(
            d->db, "UPDATE retries SET next_at = 0 WHERE from_site = ?1 AND key_id = ?2", NULL);
        if (due) {
            sqlite3_bind_text(due, 1, waiting[i].site, -1, SQLITE_STATIC);
            sqlite3_bind_text(due, 2, waiting[i].key_id, -1, SQLITE_STATIC);
            db_step_done(d, due, "making waiting instructions due");
        }
        ss_report(d->rep, 4417, waiting[i].site, count, NULL);
        dsp_force_add(d, waiting[i].site);
    }
}

/* Whether data signed under pk (NULL: unsigned) from site is still
 * accepted: 1 yes, 0 no, -1 the keystore could not be read. */
static int still_accepted(ss_despooler *d, const char *site, const ss_pubkey *pk, ss_error *e)
{
    ss_verdict v;
    if (!pk)
        return ss_trust_judge_unsigned(&d->keys, site, &v, e) ? -1 : v.action == SS_TRUST_ACCEPT;
    ss_keyrec rec;
    int found = ss_keys_get_pk(d->db, site, pk, &rec, e);
    if (found <= 0) return found; /* forgotten (untrust): not accepted */
    if (ss_trust_judge_use(&d->keys, site, &rec, true, &v, e) != 0) return -1;
    return v.action == SS_TRUST_ACCEPT;
}

int dsp_recheck_trust(ss_despooler *d, work *batch, size_t n, ss_error *e)
{
    struct {
        const work *first; /* the first item judged with this site and key */
        int ok;
    } seen[8];
    int nseen = 0, withdrawn = 0;
    for (size_t i = 0; i < n; i++) {
        work *w = &batch[i];
        if (w->dest_fd < 0) continue;
        int k = 0;
        while (k < nseen && (strcmp(seen[k].first->in.from, w->in.from) ||
                             seen[k].first->is_signed != w->is_signed ||
                             (w->is_signed && memcmp(&seen[k].first->pk, &w->pk, sizeof w->pk))))
            k++;
        int ok =
            k < nseen ? seen[k].ok : still_accepted(d, w->in.from, w->is_signed ? &w->pk : NULL, e);
        if (ok < 0) return -1;
        if (k == nseen && nseen < (int)(sizeof seen / sizeof seen[0]))
            seen[nseen].first = w, seen[nseen++].ok = ok;
        if (ok) continue;
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Not delivering %s from site %s: trust in its key changed while it was being "
                "staged; it stays in receive and is judged again",
                w->in.id, w->in.from);
        ss_atomic_abort(&w->out);
        dsp_bundle_abort(w, w->nmembers);
        close(w->dest_fd);
        w->dest_fd = -1;
        withdrawn++;
    }
    return withdrawn;
}

/* Warns (4414) about files that have waited longer than backlog_warning_age,
 * then again at most once a day (a short age must not turn every rescan
 * into a warning); removes package leftovers of delivered instructions. */
int dsp_check_backlog(ss_despooler *d, ss_error *e)
{
    int fd = dup(d->receive_fd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0) close(fd);
        return ss_err_sys(e, "cannot list %s", d->receive_path);
    }
    rewinddir(dir);
    int64_t now = ss_now(), now_ms = ss_now_ms(), age_limit = d->conf->backlog_warning_age;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        struct stat st;
        if (!strcmp(name, ".") || !strcmp(name, "..") ||
            fstatat(d->receive_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (ss_name_is_temporary(name)) {
            /* A peer's writer killed mid-copy leaves its temporary file. */
            if (S_ISREG(st.st_mode) && now - st.st_mtime > STALE_TMP_AGE &&
                unlinkat(d->receive_fd, name, 0) == 0)
                ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                        "Removed %s: a temporary file a sender left in receive %lld hours ago",
                        name, (long long)((now - st.st_mtime) / 3600));
            continue;
        }
        if (len < 5) continue;
        char base[64], other[96], path[PATH_MAX];
        int64_t t;
        base_of(name, base, sizeof base);
        bool is_pck = !strcmp(name + len - 4, ".pck");
        snprintf(other, sizeof other, "%s.ins", base);
        bool orphan = is_pck && faccessat(d->receive_fd, other, F_OK, AT_SYMLINK_NOFOLLOW) != 0;
        ss_error le = {0};
        if (orphan && dsp_ledger_lookup(d, base, path, sizeof path, &t, &le) == 1) {
            ss_reaper_take(d->reaper, d->receive_fd, name); /* left over after a delivery */
            continue;
        }
        /* In milliseconds: whole seconds would call a file touched just
         * before a second boundary a second old. */
        int64_t mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        if (now_ms - mtime_ms < age_limit * 1000) continue;
        sqlite3_stmt *q = ss_db_prepare(
            d->db,
            "INSERT INTO backlog(name, warned) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE "
            "SET warned=?2 WHERE warned <= ?2 - ?3 RETURNING name",
            e);
        if (!q) {
            closedir(dir);
            return -1;
        }
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, now);
        sqlite3_bind_int64(q, 3, age_limit > BACKLOG_REWARN ? age_limit : BACKLOG_REWARN);
        int rc = sqlite3_step(q);
        bool warn = rc == SQLITE_ROW;
        if (rc == SQLITE_ROW) rc = sqlite3_step(q);
        sqlite3_finalize(q);
        if (rc != SQLITE_DONE) {
            closedir(dir);
            return ss_err(e, SS_E_DB, "database error while noting the backlog: %s",
                          sqlite3_errmsg(d->db->h));
        }
        if (warn) {
            char hours[32];
            snprintf(hours, sizeof hours, "%lld", (long long)((now - st.st_mtime) / 3600));
            ss_report(d->rep, 4414, name, hours,
                      orphan   ? "a package without its instruction"
                      : is_pck ? "its instruction is waiting"
                               : "waiting for its package or the sender's key",
                      NULL);
        }
    }
    closedir(dir);
    return 0;
}

/* Whether retry, backlog and hold rows (and notes of unreadable files)
 * exist at all, so that a scan does not pay for deletes of rows that are
 * not there (if in doubt: yes). */
void dsp_waiting_pending(ss_despooler *d)
{
    sqlite3_stmt *q = ss_db_prepare(d->db,
                                    "SELECT EXISTS(SELECT 1 FROM retries), EXISTS(SELECT 1 FROM "
                                    "backlog) OR EXISTS(SELECT 1 FROM holds), EXISTS(SELECT 1 "
                                    "FROM holds WHERE substr(reason, 1, length(?1))=?1)",
                                    NULL);
    d->retries_pending = d->notes_pending = d->input_faults_pending = true;
    if (q) sqlite3_bind_text(q, 1, HOLD_INPUT_PREFIX, -1, SQLITE_STATIC);
    if (q && sqlite3_step(q) == SQLITE_ROW) {
        d->retries_pending = sqlite3_column_int(q, 0) != 0;
        d->notes_pending = sqlite3_column_int(q, 1) != 0;
        d->input_faults_pending = sqlite3_column_int(q, 2) != 0;
    }
    sqlite3_finalize(q);
}

/* Seconds until the earliest key lookup retry is due (-1: none). */
int64_t dsp_next_retry_in(ss_despooler *d)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT min(next_at) FROM retries", NULL);
    int64_t in = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        in = sqlite3_column_int64(st, 0) - ss_now();
        if (in < 0) in = 0;
    }
    sqlite3_finalize(st);
    return in;
}

/* ---------------------------------------------- for administrators (admin.h) */

/* The status message a hold was raised with, told by its reason. */
static int hold_status(const char *reason)
{
    if (!strncmp(reason, HOLD_DEST_PREFIX, strlen(HOLD_DEST_PREFIX))) return 4416;
    if (!strncmp(reason, HOLD_QUARANTINE_PREFIX, strlen(HOLD_QUARANTINE_PREFIX))) return 4426;
    if (!strncmp(reason, HOLD_INPUT_PREFIX, strlen(HOLD_INPUT_PREFIX))) return 4419;
    return 4420;
}

static void column_text(sqlite3_stmt *st, int col, char *out, size_t len)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, len, "%s", t ? (const char *)t : "");
}

/* The per-pair lookups of a listing, prepared once for all of it. */
struct lookups {
    sqlite3_stmt *retry, *hold, *backlog;
};

static void lookups_free(struct lookups *l)
{
    sqlite3_finalize(l->retry);
    sqlite3_finalize(l->hold);
    sqlite3_finalize(l->backlog);
}

static int lookups_prepare(ss_db *db, struct lookups *l, ss_error *e)
{
    l->retry = ss_db_prepare(
        db, "SELECT from_site, key_id, attempts, next_at, first_seen FROM retries WHERE id=?", e);
    l->hold = ss_db_prepare(db, "SELECT from_site, reason, since FROM holds WHERE id=?", e);
    l->backlog = ss_db_prepare(
        db, "SELECT EXISTS(SELECT 1 FROM backlog WHERE name IN (?1||'.ins', ?1||'.pck'))", e);
    if (l->retry && l->hold && l->backlog) return 0;
    lookups_free(l);
    return -1;
}

/* Runs a lookup for key: 1 a row (the statement stays on it until
 * lookup_done), 0 none, -1 on error. */
static int lookup(ss_db *db, sqlite3_stmt *st, const char *key, ss_error *e)
{
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) return 1;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading what waits in the receive inbox", e);
}

static void lookup_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
}

static int lookup_retry(ss_db *db, sqlite3_stmt *st, const char *id, ss_retry_info *r, ss_error *e)
{
    int rc = lookup(db, st, id, e);
    if (rc != 1) return rc;
    column_text(st, 0, r->site, sizeof r->site);
    column_text(st, 1, r->key_id, sizeof r->key_id);
    r->attempts = sqlite3_column_int(st, 2);
    r->next_at = sqlite3_column_int64(st, 3);
    r->first_seen = sqlite3_column_int64(st, 4);
    lookup_done(st);
    return 1;
}

static int lookup_hold(ss_db *db, sqlite3_stmt *st, const char *id, ss_hold_info *h, ss_error *e)
{
    int rc = lookup(db, st, id, e);
    if (rc != 1) return rc;
    column_text(st, 0, h->site, sizeof h->site);
    column_text(st, 1, h->reason, sizeof h->reason);
    h->since = sqlite3_column_int64(st, 2);
    h->status_id = hold_status(h->reason);
    lookup_done(st);
    return 1;
}

/* What the tables say of the pair p names. */
static int annotate(ss_db *db, struct lookups *l, ss_receive_pair *p, ss_error *e)
{
    int rc;
    if ((rc = lookup_retry(db, l->retry, p->base, &p->retry, e)) < 0) return -1;
    p->waiting_key = rc == 1;
    if ((rc = lookup_hold(db, l->hold, p->base, &p->hold, e)) < 0) return -1;
    p->held = rc == 1;
    if ((rc = lookup(db, l->backlog, p->base, e)) < 0) return -1;
    p->warned = rc == 1 && sqlite3_column_int(l->backlog, 0) != 0;
    lookup_done(l->backlog);
    return 0;
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && !strcmp(name + n - k, suffix);
}

/* Describes the pair of receive file name (an instruction, or a package
 * whose instruction is not there); false for anything else. */
static bool describe_pair(int fd, const char *name, ss_receive_pair *p)
{
    bool ins = has_suffix(name, ".ins"), pck = has_suffix(name, ".pck");
    if (ss_name_is_temporary(name) || (!ins && !pck) || strlen(name) >= sizeof p->base)
        return false;
    memset(p, 0, sizeof *p);
    base_of(name, p->base, sizeof p->base);
    char ins_name[sizeof p->base + 4], pck_name[sizeof p->base + 4];
    snprintf(ins_name, sizeof ins_name, "%s.ins", p->base);
    snprintf(pck_name, sizeof pck_name, "%s.pck", p->base);
    p->has_ins = dsp_exists_at(fd, ins_name);
    if (pck && p->has_ins) return false; /* listed with its instruction */
    if (ss_id_valid(p->base)) snprintf(p->id, sizeof p->id, "%s", p->base);
    struct stat st;
    p->has_pck = fstatat(fd, pck_name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (p->has_pck) {
        p->pck_size = (uint64_t)st.st_size;
        p->since = st.st_mtime;
    }
    if (p->has_ins && fstatat(fd, ins_name, &st, AT_SYMLINK_NOFOLLOW) == 0) p->since = st.st_mtime;
    if (p->has_ins) dsp_read_claim(fd, ins_name, &p->claim);
    return p->has_ins || p->has_pck;
}

int dsp_open_site_dir(const char *root, const char *rel, ss_error *e)
{
    char path[PATH_MAX];
    if (ss_path(path, sizeof path, root, rel) != 0)
        return ss_err(e, SS_E_TOOBIG, "site path too long: %s", root);
    return ss_open_dir(path, e);
}

int ss_receive_foreach(const char *root, ss_db *db, ss_receive_pair_fn fn, void *ctx, ss_error *e)
{
    int fd = dsp_open_site_dir(root, SS_DIR_RECEIVE, e);
    if (fd < 0) return -1;
    DIR *dir = fdopendir(fd);
    struct lookups l = {0};
    ss_receive_pair *p = malloc(sizeof *p);
    int rc = !dir ? ss_err_sys(e, "cannot list the receive inbox")
             : !p ? ss_err(e, SS_E_NOMEM, "out of memory")
                  : lookups_prepare(db, &l, e);
    if (rc == 0) {
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            if (!describe_pair(fd, de->d_name, p)) continue;
            if ((rc = annotate(db, &l, p, e)) != 0 || fn(ctx, p) != 0) break;
        }
        lookups_free(&l);
    }
    free(p);
    if (dir)
        closedir(dir);
    else
        close(fd);
    return rc;
}

/* Removes the rows that describe id (it left receive). */
static int forget_rows(ss_db *db, const char *id, ss_error *e)
{
    static const char *const sql[] = {
        "DELETE FROM holds WHERE id=?1",
        "DELETE FROM retries WHERE id=?1",
        "DELETE FROM backlog WHERE name IN (?1||'.ins', ?1||'.pck')",
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *st = ss_db_prepare(db, sql[i], e);
        if (!st) return -1;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "forgetting a pair", e);
        sqlite3_finalize(st);
        if (rc != 0) return -1;
    }
    return 0;
}

/* Why a pair in receive that is not held is not deleted. */
static int not_held(ss_db *db, const char *id, ss_error *e)
{
    ss_retry_info r;
    struct lookups l = {0};
    if (lookups_prepare(db, &l, e) != 0) return -1;
    int waiting = lookup_retry(db, l.retry, id, &r, e);
    lookups_free(&l);
    if (waiting < 0) return -1;
    if (waiting)
        return ss_err(e, SS_E_PERM,
                      "%s waits in the receive inbox for the public key %s of site %s (4405, %d "
                      "lookup(s) so far): the despooler is still working on it, so it is not "
                      "deleted. It is quarantined (4406) when its lookups run out, and can be "
                      "deleted then",
                      id, r.key_id, r.site, r.attempts);
    return ss_err(e, SS_E_PERM,
                  "%s is in the receive inbox but not held: the despooler has not judged it yet "
                  "(or is judging it now), so it is not deleted. 'sitespool queue' shows its "
                  "state; once it is held or quarantined it can be deleted",
                  id);
}

static int unlink_pair(int fd, const char *id, ss_error *e)
{
    char name[SS_ID_HEX + 8];
    /* The instruction first: without it the despooler no longer sees a pair. */
    snprintf(name, sizeof name, "%s.ins", id);
    if (unlinkat(fd, name, 0) != 0 && errno != ENOENT)
        return ss_err_sys(e, "cannot remove %s from the receive inbox", name);
    snprintf(name, sizeof name, "%s.pck", id);
    if (unlinkat(fd, name, 0) != 0 && errno != ENOENT)
        return ss_err_sys(e, "cannot remove %s from the receive inbox", name);
    return ss_fsync_dirfd(fd, e);
}

int ss_held_delete(const char *root, ss_db *db, ss_reporter *rep, const char *id, const char *by,
                   ss_receive_pair *out, ss_error *e)
{
    if (!ss_id_valid(id)) return ss_err(e, SS_E_USAGE, "'%s' is not an instruction id", id);
    int fd = dsp_open_site_dir(root, SS_DIR_RECEIVE, e);
    if (fd < 0) return -1;
    ss_receive_pair *p = malloc(sizeof *p);
    char name[SS_ID_HEX + 8];
    snprintf(name, sizeof name, "%s.ins", id);
    if (!p) {
        close(fd);
        return ss_err(e, SS_E_NOMEM, "out of memory");
    }
    if (!describe_pair(fd, name, p)) { /* nothing of it in receive */
        free(p);
        close(fd);
        return 0;
    }
    int rc = 0;
    struct lookups l = {0};
    if (rc == 0 && (rc = lookups_prepare(db, &l, e)) == 0) {
        int held = lookup_hold(db, l.hold, id, &p->hold, e);
        lookups_free(&l);
        rc = held < 0 ? -1 : held == 0 ? not_held(db, id, e) : 0;
    }
    if (rc == 0) rc = unlink_pair(fd, id, e);
    if (rc == 0) {
        ss_error fe = {0};
        if (forget_rows(db, id, &fe) != 0)
            ss_logf(ss_reporter_log(rep, SS_COMP_DESPOOLER), "Deleted %s but kept its notes: %s",
                    id, fe.msg);
        char what[sizeof p->hold.reason + 64];
        snprintf(what, sizeof what, "held in the receive inbox (status %d: %s)", p->hold.status_id,
                 p->hold.reason);
        ss_report(rep, 4429, id, p->claim.parsed ? p->claim.in.name : "name unknown", p->hold.site,
                  what, by, NULL);
        p->held = true;
        if (out) *out = *p;
        rc = 1;
    }
    free(p);
    close(fd);
    return rc;
}
