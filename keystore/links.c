/*
 * links.c - sent pairs and their fates, fates due to be reported, peers'
 * heartbeats and link states.  See links.h.
 */
#include "links.h"

#include "../inboxes/site.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void text_col(sqlite3_stmt *st, int col, char *out, size_t len)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, len, "%s", t ? (const char *)t : "");
}

/* Steps a statement that returns no rows, then gives it back. */
static int step_done(ss_db *db, sqlite3_stmt *st, const char *what, ss_error *e)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, what, e);
    ss_db_release(db, st);
    return rc;
}

/* ------------------------------------------------------ receipts due */

int ss_receipt_note(ss_db *db, const char *from, const char *id, enum ss_fate fate, int status_id,
                    int64_t now, ss_error *e)
{
    static const char sql[] =
        "INSERT INTO receipts_due(site, id, fate, status_id, time) VALUES(?,?,?,?,?) "
        "ON CONFLICT(site, id) DO UPDATE SET fate=excluded.fate, status_id=excluded.status_id, "
        "time=excluded.time";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, ss_fate_name(fate), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, status_id);
    sqlite3_bind_int64(st, 5, now);
    return step_done(db, st, "noting a fate to report", e);
}

int ss_receipt_sites(ss_db *db, int (*fn)(void *ctx, const char *site), void *ctx, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, "SELECT DISTINCT site FROM receipts_due ORDER BY site", e);
    if (!st) return -1;
    /* Collected first: fn may write to site.db.  Every site: a cap would
     * starve the sites after it while those before it have no address. */
    typedef char site_code[SS_SITE_CODE_MAX + 1];
    site_code *sites = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            site_code *more = realloc(sites, (cap = cap ? 2 * cap : 16) * sizeof *sites);
            if (!more) {
                rc = ss_err(e, SS_E_NOMEM, "out of memory listing fates to report");
                break;
            }
            sites = more;
        }
        text_col(st, 0, sites[n++], sizeof sites[0]);
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc != -1)
        rc = ss_db_fail(db, "listing fates to report", e);
    sqlite3_finalize(st);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = fn(ctx, sites[i]);
    free(sites);
    return rc;
}

int ss_receipt_take(ss_db *db, const char *site, ss_receipt_line *out, size_t max, size_t *n,
                    ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db,
                                     "SELECT id, fate, status_id FROM receipts_due WHERE site=? "
                                     "ORDER BY time, id LIMIT ?",
                                     e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    *n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ss_receipt_line *l = &out[*n];
        char fate[16];
        text_col(st, 0, l->id, sizeof l->id);
        text_col(st, 1, fate, sizeof fate);
        l->status_id = sqlite3_column_int(st, 2);
        if (ss_fate_parse(fate, &l->fate) != 0 || !ss_id_valid(l->id)) continue;
        ++*n;
    }
    rc = rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading fates to report", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_receipt_forget(ss_db *db, const char *site, const ss_receipt_line *lines, size_t n,
                      ss_error *e)
{
    /* The status id too: held 4420 -> held 3303 is a fate that changed. */
    static const char sql[] =
        "DELETE FROM receipts_due WHERE site=? AND id=? AND fate=? AND status_id=?";
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = ss_db_cached(db, sql, e);
        if (!st) return -1;
        sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, lines[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, ss_fate_name(lines[i].fate), -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, lines[i].status_id);
        if (step_done(db, st, "forgetting reported fates", e) != 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------- sent pairs */

#define SENT_COLUMNS                                                                               \
    "id, peer, type, name, size, queued, coalesce(sent_at, 0), fate, coalesce(status_id, 0), "     \
    "coalesce(heard_at, 0)"

/* Receipts and heartbeats have rows only until they are delivered. */
#define NOT_REPORT "type NOT IN ('receipt','heartbeat')"

static void sent_row(sqlite3_stmt *st, ss_sent *s)
{
    char fate[16];
    memset(s, 0, sizeof *s);
    text_col(st, 0, s->id, sizeof s->id);
    text_col(st, 1, s->peer, sizeof s->peer);
    text_col(st, 2, s->type, sizeof s->type);
    text_col(st, 3, s->name, sizeof s->name);
    s->size = (uint64_t)sqlite3_column_int64(st, 4);
    s->queued = sqlite3_column_int64(st, 5);
    s->sent_at = sqlite3_column_int64(st, 6);
    text_col(st, 7, fate, sizeof fate);
    s->has_fate = fate[0] && ss_fate_parse(fate, &s->fate) == 0;
    s->status_id = sqlite3_column_int(st, 8);
    s->heard_at = sqlite3_column_int64(st, 9);
}

int ss_sent_queued(ss_db *db, const char *peer, const char *id, const char *type, const char *name,
                   uint64_t size, int64_t now, ss_error *e)
{
    static const char sql[] = "INSERT OR IGNORE INTO sent(id, peer, type, name, size, queued) "
                              "VALUES(?,?,?,?,?,?)";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)size);
    sqlite3_bind_int64(st, 6, now);
    return step_done(db, st, "recording a queued pair", e);
}

int ss_sent_delivered(ss_db *db, const char *id, int64_t now, ss_error *e)
{
    /* A receipt or heartbeat is forgotten once delivered: nothing awaits
     * a receipt for it. */
    static const char del[] = "DELETE FROM sent WHERE id=? AND type IN ('receipt','heartbeat')";
    sqlite3_stmt *st = ss_db_cached(db, del, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (step_done(db, st, "forgetting a delivered report", e) != 0) return -1;
    if (sqlite3_changes(db->h) > 0) return SS_SENT_REPORT;
    static const char sql[] = "UPDATE sent SET sent_at=coalesce(sent_at, ?) WHERE id=?";
    st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    if (step_done(db, st, "recording a sent pair", e) != 0) return -1;
    int kind = sqlite3_changes(db->h) > 0 ? SS_SENT_PAIR : SS_SENT_UNKNOWN;
    /* Rows left by a failure here belong to no queued pair: the sender's
     * next listing of the outbox forgets them (links.h). */
    (void)ss_queued_files_forget(db, id, NULL);
    return kind;
}

int ss_sent_resent(ss_db *db, const char *id, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db,
                                     "UPDATE sent SET sent_at=NULL, fate=NULL, status_id=NULL, "
                                     "heard_at=NULL, warned=0 WHERE id=?",
                                     e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "recording a resend", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_sent_get(ss_db *db, const char *id, ss_sent *out, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, "SELECT " SENT_COLUMNS " FROM sent WHERE id=?", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        sent_row(st, out);
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading a sent pair", e);
    }
    sqlite3_finalize(st);
    return rc;
}

int ss_sent_apply(ss_db *db, const char *peer, const ss_receipt_line *line, int64_t now,
                  ss_sent *now_row, enum ss_fate *before, bool *had_before, ss_error *e)
{
    ss_sent row;
    int found = ss_sent_get(db, line->id, &row, e);
    if (found <= 0) return found;
    if (strcmp(row.peer, peer) != 0) return 0; /* another peer's pair: not this one's to tell */
    if (row.has_fate &&
        (ss_fate_final(row.fate) || (row.fate == line->fate && row.status_id == line->status_id)))
        return 0;
    static const char sql[] = "UPDATE sent SET fate=?, status_id=?, heard_at=?, "
                              "sent_at=coalesce(sent_at, ?) WHERE id=?";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, ss_fate_name(line->fate), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, line->status_id);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, line->id, -1, SQLITE_STATIC);
    if (step_done(db, st, "recording a receipt", e) != 0) return -1;
    *had_before = row.has_fate;
    *before = row.fate;
    row.has_fate = true;
    row.fate = line->fate;
    row.status_id = line->status_id;
    row.heard_at = now;
    if (!row.sent_at) row.sent_at = now;
    *now_row = row;
    return 1;
}

int ss_sent_summary_get(ss_db *db, const char *peer, ss_sent_summary *out, ss_error *e)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "SELECT coalesce(sum(sent_at IS NULL), 0),"
        " coalesce(sum(sent_at IS NOT NULL AND fate IS NULL), 0),"
        " coalesce(sum(fate='waiting'), 0), coalesce(sum(fate='held'), 0),"
        " coalesce(sum(fate='quarantined'), 0), coalesce(sum(fate IN ('delivered','duplicate')), "
        "0),"
        " coalesce(min(CASE WHEN sent_at IS NOT NULL AND fate IS NULL THEN sent_at END), 0)"
        " FROM sent WHERE peer=? AND " NOT_REPORT,
        e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->queued = (size_t)sqlite3_column_int64(st, 0);
        out->unconfirmed = (size_t)sqlite3_column_int64(st, 1);
        out->waiting = (size_t)sqlite3_column_int64(st, 2);
        out->held = (size_t)sqlite3_column_int64(st, 3);
        out->quarantined = (size_t)sqlite3_column_int64(st, 4);
        out->confirmed = (size_t)sqlite3_column_int64(st, 5);
        out->oldest_unconfirmed = sqlite3_column_int64(st, 6);
        rc = 0;
    } else {
        rc = ss_db_fail(db, "summing a peer's sent pairs", e);
    }
    sqlite3_finalize(st);
    return rc;
}

int ss_sent_each(ss_db *db, const char *peer, bool all, int (*fn)(void *ctx, const ss_sent *s),
                 void *ctx, ss_error *e)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " SENT_COLUMNS " FROM sent WHERE (?1 IS NULL OR peer=?1) AND " NOT_REPORT "%s "
             "ORDER BY queued, id",
             all ? "" : " AND (fate IS NULL OR fate NOT IN ('delivered','duplicate'))");
    sqlite3_stmt *st = ss_db_prepare(db, sql, e);
    if (!st) return -1;
    if (peer) sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        ss_sent s;
        sent_row(st, &s);
        stop = fn(ctx, &s);
    }
    if (!stop && rc != SQLITE_DONE) stop = ss_db_fail(db, "listing sent pairs", e);
    sqlite3_finalize(st);
    return stop;
}

int ss_sent_overdue(ss_db *db, int64_t sent_before,
                    int (*fn)(void *ctx, const char *peer, size_t count, const ss_sent *oldest),
                    void *ctx, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "SELECT " SENT_COLUMNS ", count(*) OVER (PARTITION BY peer), "
        "row_number() OVER (PARTITION BY peer ORDER BY sent_at, id) "
        "FROM sent WHERE fate IS NULL AND warned=0 AND sent_at < ? AND " NOT_REPORT " "
        "ORDER BY peer",
        e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, sent_before);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_int64(st, 11) != 1) continue;
        ss_sent s;
        sent_row(st, &s);
        stop = fn(ctx, s.peer, (size_t)sqlite3_column_int64(st, 10), &s);
    }
    if (!stop && rc != SQLITE_DONE) stop = ss_db_fail(db, "listing overdue pairs", e);
    sqlite3_finalize(st);
    if (stop) return stop;
    st = ss_db_prepare(
        db,
        "UPDATE sent SET warned=1 WHERE fate IS NULL AND warned=0 AND sent_at < ? AND " NOT_REPORT,
        e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, sent_before);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "marking overdue pairs", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_sent_prune(ss_db *db, int64_t before, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db, "DELETE FROM sent WHERE fate IN ('delivered','duplicate') AND heard_at < ?", e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, before);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "pruning sent pairs", e);
    sqlite3_finalize(st);
    return rc;
}

/* ------------------------------------------------- queued sealed files */

int ss_queued_file_add(ss_db *db, const char *peer, const ss_queued_file *f, ss_error *e)
{
    static const char sql[] =
        "INSERT OR REPLACE INTO queued_files(id, member, peer, dest, files, name, size, hash) "
        "VALUES(?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, f->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, f->member);
    sqlite3_bind_text(st, 3, peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, f->dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, f->files);
    sqlite3_bind_text(st, 6, f->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)f->size);
    sqlite3_bind_blob(st, 8, f->hash, sizeof f->hash, SQLITE_STATIC);
    return step_done(db, st, "recording a queued sealed file", e);
}

/* One row into f: 0, or -1 when it cannot be a file of a queued pair. */
static int queued_file_row(sqlite3_stmt *st, ss_queued_file *f)
{
    memset(f, 0, sizeof *f);
    text_col(st, 0, f->id, sizeof f->id);
    sqlite3_int64 member = sqlite3_column_int64(st, 1), files = sqlite3_column_int64(st, 2);
    text_col(st, 3, f->dest, sizeof f->dest);
    text_col(st, 4, f->name, sizeof f->name);
    sqlite3_int64 size = sqlite3_column_int64(st, 5);
    const void *hash = sqlite3_column_blob(st, 6);
    if (!ss_id_valid(f->id) || member < 0 || member > UINT32_MAX || files < 0 ||
        files > UINT32_MAX || size < 0 || !ss_dest_name_valid(f->dest) ||
        !ss_file_name_valid(f->name) || !hash || sqlite3_column_bytes(st, 6) != (int)sizeof f->hash)
        return -1;
    f->member = (unsigned)member;
    f->files = (unsigned)files;
    f->size = (uint64_t)size;
    memcpy(f->hash, hash, sizeof f->hash);
    return 0;
}

int ss_queued_files_each(ss_db *db, const char *peer, const char *id,
                         int (*fn)(void *ctx, const ss_queued_file *f), void *ctx, ss_error *e)
{
    static const char sql[] = "SELECT id, member, files, dest, name, size, hash FROM queued_files "
                              "WHERE peer=?1 AND (?2 IS NULL OR id=?2) ORDER BY id, member";
    sqlite3_stmt *st = ss_db_prepare(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    if (id) sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        ss_queued_file f;
        if (queued_file_row(st, &f) == 0) stop = fn(ctx, &f);
    }
    if (!stop && rc != SQLITE_DONE) stop = ss_db_fail(db, "listing queued sealed files", e);
    sqlite3_finalize(st);
    return stop;
}

int ss_queued_files_forget(ss_db *db, const char *id, ss_error *e)
{
    static const char sql[] = "DELETE FROM queued_files WHERE id=?";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    return step_done(db, st, "forgetting queued sealed files", e);
}

/* ------------------------------------------------ peers and heartbeats */

static const char *const link_names[] = {"unknown", "healthy", "degraded", "failed"};

const char *ss_link_name(enum ss_link l)
{
    return (unsigned)l < 4 ? link_names[l] : "unknown";
}

static enum ss_link link_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, link_names[i])) return (enum ss_link)i;
    return SS_LINK_UNKNOWN;
}

/* "A,B,C" into v->holds. */
static void holds_split(const char *text, ss_peer_view *v)
{
    v->nholds = 0;
    for (const char *p = text; *p && v->nholds < SS_HEARTBEAT_HOLDS_MAX;) {
        size_t n = strcspn(p, ",");
        if (n == SS_KEYID_TEXT)
            snprintf(v->holds[v->nholds++], SS_KEYID_TEXT + 1, "%.*s", (int)n, p);
        p += n + (p[n] == ',');
    }
}

int ss_peer_view_get(ss_db *db, const char *peer, ss_peer_view *out, ss_error *e)
{
    memset(out, 0, sizeof *out);
    snprintf(out->site, sizeof out->site, "%s", peer);
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "SELECT coalesce(last_heard, 0), coalesce(heartbeat_time, 0), coalesce(key_id, ''),"
        " coalesce(next_key_id, ''), holds, link, coalesce(link_since, 0), coalesce(hb_sent, 0),"
        " coalesce(first_hb_sent, 0), hb_due FROM peer_view WHERE site=?",
        e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        char holds[SS_HEARTBEAT_HOLDS_MAX * (SS_KEYID_TEXT + 1) + 1], link[16];
        out->last_heard = sqlite3_column_int64(st, 0);
        out->heartbeat_time = sqlite3_column_int64(st, 1);
        out->has_heartbeat = out->heartbeat_time != 0;
        text_col(st, 2, out->key_id, sizeof out->key_id);
        text_col(st, 3, out->next_key_id, sizeof out->next_key_id);
        text_col(st, 4, holds, sizeof holds);
        holds_split(holds, out);
        text_col(st, 5, link, sizeof link);
        out->link = link_parse(link);
        out->link_since = sqlite3_column_int64(st, 6);
        out->hb_sent = sqlite3_column_int64(st, 7);
        out->first_hb_sent = sqlite3_column_int64(st, 8);
        out->hb_due = sqlite3_column_int(st, 9) != 0;
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading a peer's view", e);
    }
    sqlite3_finalize(st);
    return rc;
}

static int ensure_view(ss_db *db, const char *peer, ss_error *e)
{
    static const char sql[] = "INSERT OR IGNORE INTO peer_view(site) VALUES(?)";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    return step_done(db, st, "adding a peer's view", e);
}

int ss_peer_heard_heartbeat(ss_db *db, const char *peer, const ss_heartbeat *hb, int64_t now,
                            ss_error *e)
{
    char holds[SS_HEARTBEAT_HOLDS_MAX * (SS_KEYID_TEXT + 1) + 1] = "";
    size_t at = 0;
    for (size_t i = 0; i < hb->nholds; i++)
        at += (size_t)snprintf(holds + at, sizeof holds - at, "%s%s", i ? "," : "", hb->holds[i]);
    if (ensure_view(db, peer, e) != 0) return -1;
    /* A heartbeat older than the one recorded (reordered on the way)
     * changes only the time last heard.  Last heard is now by our clock,
     * even set back (a max would keep a silent peer healthy until the
     * clock caught up). */
    static const char sql[] =
        "UPDATE peer_view SET last_heard=?2,"
        " key_id=CASE WHEN ?3 >= coalesce(heartbeat_time, 0) THEN ?4 ELSE key_id END,"
        " next_key_id=CASE WHEN ?3 >= coalesce(heartbeat_time, 0) THEN ?5 ELSE next_key_id END,"
        " holds=CASE WHEN ?3 >= coalesce(heartbeat_time, 0) THEN ?6 ELSE holds END,"
        " heartbeat_time=max(coalesce(heartbeat_time, 0), ?3) WHERE site=?1";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, hb->head.time);
    sqlite3_bind_text(st, 4, hb->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, hb->next, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, holds, -1, SQLITE_STATIC);
    return step_done(db, st, "recording a heartbeat", e);
}

int ss_peer_heard(ss_db *db, const char *peer, int64_t now, ss_error *e)
{
    if (ensure_view(db, peer, e) != 0) return -1;
    static const char sql[] = "UPDATE peer_view SET last_heard=? WHERE site=?";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, peer, -1, SQLITE_STATIC);
    return step_done(db, st, "recording a peer heard", e);
}

bool ss_peer_holds(const ss_peer_view *v, const char *key_id)
{
    for (size_t i = 0; i < v->nholds; i++)
        if (!strcmp(v->holds[i], key_id)) return true;
    return false;
}

bool ss_heartbeat_is_due(const ss_peer_view *v, int64_t peer_added, int64_t now, unsigned interval)
{
    int64_t last = v->hb_sent ? v->hb_sent : peer_added;
    /* A clock set back must not silence heartbeats for as long. */
    return v->hb_due || now - last >= (int64_t)interval || now < last;
}

int ss_heartbeat_sent(ss_db *db, const char *peer, int64_t now, ss_error *e)
{
    if (ensure_view(db, peer, e) != 0) return -1;
    static const char sql[] = "UPDATE peer_view SET hb_sent=?1, "
                              "first_hb_sent=coalesce(first_hb_sent, ?1), hb_due=0 WHERE site=?2";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, peer, -1, SQLITE_STATIC);
    return step_done(db, st, "recording a heartbeat sent", e);
}

int ss_heartbeat_request(ss_db *db, const char *peer, ss_error *e)
{
    if (peer && ensure_view(db, peer, e) != 0) return -1;
    sqlite3_stmt *st =
        ss_db_prepare(db, "UPDATE peer_view SET hb_due=1 WHERE ?1 IS NULL OR site=?1", e);
    if (!st) return -1;
    if (peer) sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "asking for a heartbeat", e);
    sqlite3_finalize(st);
    return rc;
}

enum ss_link ss_link_judge(const ss_peer_view *v, int64_t now, unsigned interval,
                           unsigned degraded_after)
{
    int64_t since = v->last_heard ? v->last_heard : v->first_hb_sent;
    if (!since) return SS_LINK_UNKNOWN;
    int64_t quiet = now - since, limit = (int64_t)interval * degraded_after;
    if (quiet <= limit) return v->last_heard ? SS_LINK_HEALTHY : SS_LINK_UNKNOWN;
    return quiet <= 2 * limit ? SS_LINK_DEGRADED : SS_LINK_FAILED;
}

int ss_link_set(ss_db *db, const char *peer, enum ss_link link, int64_t now, ss_error *e)
{
    if (ensure_view(db, peer, e) != 0) return -1;
    static const char sql[] = "UPDATE peer_view SET link=?, link_since=? WHERE site=?";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, ss_link_name(link), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, peer, -1, SQLITE_STATIC);
    return step_done(db, st, "recording a link state", e);
}

/* ------------------------------------------------------- rollouts */

int ss_rollout_complete_get(ss_db *db, const char *key_id, int64_t *when, ss_error *e)
{
    *when = 0;
    sqlite3_stmt *st = ss_db_prepare(db, "SELECT complete_at FROM own_rollouts WHERE key_id=?", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *when = sqlite3_column_int64(st, 0);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading a rollout", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_rollout_complete_set(ss_db *db, const char *key_id, int64_t now, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db, "INSERT OR IGNORE INTO own_rollouts(key_id, complete_at) VALUES(?, ?)", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "recording a rollout", e);
    if (rc == 0) rc = sqlite3_changes(db->h) > 0 ? 1 : 0;
    sqlite3_finalize(st);
    return rc;
}
