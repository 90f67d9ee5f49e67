/*
 * db.c - opening, migrating and using site.db.  See db.h.
 */
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* Migration i brings the schema from version i to i + 1. */
static const char *const migrations[] = {
    "CREATE TABLE keys("
    "  site TEXT NOT NULL, key_id TEXT NOT NULL, public_key BLOB NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('own','trusted','pending','retired','revoked')),"
    "  source TEXT NOT NULL, created INTEGER NOT NULL, not_after INTEGER,"
    "  last_seen INTEGER, grace_until INTEGER, warned_at INTEGER,"
    "  PRIMARY KEY (site, key_id));"
    "CREATE TABLE peers("
    "  site TEXT PRIMARY KEY, inbox TEXT NOT NULL, added INTEGER NOT NULL,"
    "  next_seq INTEGER NOT NULL DEFAULT 1, last_success INTEGER, last_error TEXT,"
    "  next_attempt INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE sites("
    "  site TEXT PRIMARY KEY, blocked INTEGER NOT NULL DEFAULT 0, blocked_key_id TEXT,"
    "  last_seq_in INTEGER NOT NULL DEFAULT 0, last_key_id TEXT, last_seen INTEGER);"
    "CREATE TABLE ledger("
    "  id TEXT PRIMARY KEY, from_site TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,"
    "  outcome TEXT NOT NULL, path TEXT, size INTEGER, time INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL);"
    "CREATE INDEX ledger_expires ON ledger(expires);"
    "CREATE TABLE retries("
    "  id TEXT PRIMARY KEY, from_site TEXT NOT NULL, key_id TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, first_seen INTEGER NOT NULL);"
    "CREATE TABLE status("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, msg_id INTEGER NOT NULL,"
    "  severity TEXT NOT NULL, component TEXT NOT NULL, site TEXT NOT NULL,"
    "  istr TEXT NOT NULL, text TEXT NOT NULL);"
    "CREATE INDEX status_time ON status(time_ms);"
    "CREATE TABLE backlog(name TEXT PRIMARY KEY, warned INTEGER NOT NULL);"
    "CREATE TABLE holds(id TEXT PRIMARY KEY, from_site TEXT NOT NULL, reason TEXT NOT NULL,"
    "  since INTEGER NOT NULL);",
    /* 2: a key is (site, public key), not the id its owner chose; a key id
     * still names one key within a site. */
    "CREATE TABLE keys2("
    "  site TEXT NOT NULL, key_id TEXT NOT NULL, public_key BLOB NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('own','trusted','pending','retired','revoked')),"
    "  source TEXT NOT NULL, created INTEGER NOT NULL, not_after INTEGER,"
    "  last_seen INTEGER, grace_until INTEGER, warned_at INTEGER,"
    "  PRIMARY KEY (site, public_key), UNIQUE (site, key_id));"
    "INSERT INTO keys2 SELECT site, key_id, public_key, state, source, created, not_after,"
    "  last_seen, grace_until, warned_at FROM keys;"
    "DROP TABLE keys;"
    "ALTER TABLE keys2 RENAME TO keys;"
    "CREATE INDEX keys_public_key ON keys(public_key);"
    "CREATE INDEX keys_key_id ON keys(key_id);",
    /* 3: the latest time this site's clock has shown (ledger pruning and
     * expiry are judged by it, so a clock set back cannot reopen a
     * pruned replay window). */
    "CREATE TABLE clock(id INTEGER PRIMARY KEY CHECK (id = 1), high_water INTEGER NOT NULL);"
    "INSERT INTO clock VALUES(1, 0);"
    /* Sequence numbers: all below seq_next were seen; the ones seen above
     * it (out of order) wait in seq_early until the gap closes or is
     * reported (4415) and skipped. */
    "ALTER TABLE sites ADD COLUMN seq_next INTEGER;"
    "CREATE TABLE seq_early(site TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
    "  PRIMARY KEY (site, seq));",
    /* 4: which instruction file a delivery was made from, so that a restart
     * tells the leftover of its own interrupted batch from a resend. */
    "ALTER TABLE ledger ADD COLUMN ins_identity TEXT;",
    /* 5: the files of a bundle (files=N), one row each, committed with
     * the bundle's own ledger row and pruned with it. */
    "CREATE TABLE ledger_files(id TEXT NOT NULL, member INTEGER NOT NULL, name TEXT NOT NULL,"
    "  path TEXT NOT NULL, PRIMARY KEY (id, member)) WITHOUT ROWID;",
    /* 6: a peer has several addresses (tried in order, or in turn), each
     * with its own state; SSH host keys offered by SFTP servers and
     * fingerprints pinned ahead of a first connection (the pinned keys
     * themselves are in keys/known_hosts, OpenSSH's format). */
    "ALTER TABLE peers ADD COLUMN round_robin INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE peers ADD COLUMN rr_next INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE peer_addresses(site TEXT NOT NULL, pos INTEGER NOT NULL,"
    "  address TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'untried', last_error TEXT,"
    "  last_attempt INTEGER, last_success INTEGER, PRIMARY KEY (site, pos)) WITHOUT ROWID;"
    "INSERT INTO peer_addresses(site, pos, address) SELECT site, 0, inbox FROM peers;"
    "CREATE TABLE host_keys(site TEXT NOT NULL, host TEXT NOT NULL, fingerprint TEXT NOT NULL,"
    "  known_hosts_line TEXT, state TEXT NOT NULL CHECK (state IN ('offered','pinned')),"
    "  time INTEGER NOT NULL, PRIMARY KEY (site, host, fingerprint)) WITHOUT ROWID;",
    /* 7: receipts and heartbeats (keystore/links.h): the pairs sent to
     * each peer and what became of them; at a receiver, the fates due to
     * be reported; each peer's last heartbeat and link state; when every
     * peer held one of our keys. */
    "CREATE TABLE sent(id TEXT PRIMARY KEY, peer TEXT NOT NULL, type TEXT NOT NULL,"
    "  name TEXT NOT NULL, size INTEGER NOT NULL, queued INTEGER NOT NULL, sent_at INTEGER,"
    "  fate TEXT CHECK (fate IN ('delivered','duplicate','quarantined','waiting','held')),"
    "  status_id INTEGER, heard_at INTEGER, warned INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX sent_peer ON sent(peer, fate);"
    "CREATE TABLE receipts_due(site TEXT NOT NULL, id TEXT NOT NULL, fate TEXT NOT NULL,"
    "  status_id INTEGER NOT NULL, time INTEGER NOT NULL, PRIMARY KEY (site, id)) WITHOUT ROWID;"
    "CREATE TABLE peer_view(site TEXT PRIMARY KEY, last_heard INTEGER, heartbeat_time INTEGER,"
    "  key_id TEXT, next_key_id TEXT, holds TEXT NOT NULL DEFAULT '',"
    "  link TEXT NOT NULL DEFAULT 'unknown', link_since INTEGER, hb_sent INTEGER,"
    "  first_hb_sent INTEGER, hb_due INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE own_rollouts(key_id TEXT PRIMARY KEY, complete_at INTEGER NOT NULL);",
    /* 8: the files of each sealed pair still queued (keystore/links.h),
     * written before the pair is published and removed when it leaves the
     * outbox: what the sender's duplicate check needs of a pair whose
     * instruction names no file. */
    "CREATE TABLE queued_files(id TEXT NOT NULL, member INTEGER NOT NULL, peer TEXT NOT NULL,"
    "  dest TEXT NOT NULL, files INTEGER NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,"
    "  hash BLOB NOT NULL, PRIMARY KEY (id, member)) WITHOUT ROWID;"
    "CREATE INDEX queued_files_peer ON queued_files(peer);",
};

int64_t ss_now(void)
{
    return (int64_t)time(NULL);
}

int64_t ss_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int ss_db_fail(ss_db *db, const char *what, ss_error *e)
{
    return ss_err(e, SS_E_DB, "database error while %s: %s", what, sqlite3_errmsg(db->h));
}

int ss_db_exec(ss_db *db, const char *sql, ss_error *e)
{
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        ss_err(e, SS_E_DB, "database error: %s", msg ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

sqlite3_stmt *ss_db_prepare(ss_db *db, const char *sql, ss_error *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
        ss_err(e, SS_E_DB, "database error preparing a statement: %s", sqlite3_errmsg(db->h));
        return NULL;
    }
    return st;
}

void ss_db_busy_wait(ss_db *db, int ms)
{
    if (db->h) sqlite3_busy_timeout(db->h, ms);
}

int ss_db_schema_version(ss_db *db)
{
    sqlite3_stmt *st = ss_db_prepare(db, "PRAGMA user_version", NULL);
    int v = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(ss_db *db, const char *path, ss_error *e)
{
    int version = ss_db_schema_version(db);
    int latest = (int)(sizeof migrations / sizeof migrations[0]);
    if (version < 0) return ss_db_fail(db, "reading the schema version", e);
    if (version > latest)
        return ss_err(e, SS_E_DB,
                      "%s has schema version %d, newer than this sitespool "
                      "understands (%d); upgrade sitespool",
                      path, version, latest);
    for (; version < latest; version++) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", version + 1);
        if (ss_db_begin(db, e) != 0) return -1;
        if (ss_db_exec(db, migrations[version], e) != 0 || ss_db_exec(db, pragma, e) != 0) {
            ss_db_rollback(db);
            return -1;
        }
        if (ss_db_commit(db, e) != 0) return -1;
    }
    return 0;
}

/* Keeps site.db-wal and site.db-shm when the last connection closes: the
 * next command finds the shared-memory index made and sized, and can read
 * site.db even on a full disk (making the index needs free space).  The
 * log itself is emptied at that close (journal_size_limit), so that it is
 * neither read again nor checkpointed again by the next command. */
static int keep_wal_files(ss_db *db, ss_error *e)
{
    int keep = 1;
    (void)sqlite3_file_control(db->h, "main", SQLITE_FCNTL_PERSIST_WAL, &keep);
    return ss_db_exec(db, "PRAGMA journal_size_limit=4194304", e);
}

/* The last error was a full disk (or quota), not a broken database. */
static bool out_of_space(ss_db *db)
{
    int code = sqlite3_extended_errcode(db->h), err = sqlite3_system_errno(db->h);
    return code == SQLITE_FULL || code == SQLITE_IOERR_SHMSIZE ||
           ((code & 0xff) == SQLITE_IOERR && (err == ENOSPC || err == EDQUOT));
}

/* exclusive: the locking mode that keeps the WAL index in this process's
 * memory instead of site.db-shm.  *no_space (may be NULL) tells a failure
 * caused by a full disk. */
static int open_connection(ss_db *db, const char *path, bool create, bool exclusive, bool *no_space,
                           ss_error *e)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    db->h = NULL;
    db->exclusive = exclusive;
    db->ncached = 0;
    if (sqlite3_open_v2(path, &db->h, flags, NULL) != SQLITE_OK) {
        ss_err(e, SS_E_DB, "cannot open %s: %s", path,
               db->h ? sqlite3_errmsg(db->h) : "out of memory");
        ss_db_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->h, SS_DB_BUSY_MS);
    if ((exclusive && ss_db_exec(db, "PRAGMA locking_mode=EXCLUSIVE", e) != 0) ||
        keep_wal_files(db, e) != 0 ||
        ss_db_exec(db,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                   "PRAGMA foreign_keys=ON;",
                   e) != 0 ||
        migrate(db, path, e) != 0) {
        bool full = out_of_space(db);
        if (full && e) {
            char why[sizeof e->msg];
            snprintf(why, sizeof why, "%s", e->msg);
            ss_err(e, SS_E_DB, "cannot open %s: no space left on device (%s)", path, why);
        }
        if (no_space) *no_space = full;
        ss_db_close(db);
        return -1;
    }
    return 0;
}

int ss_db_open(ss_db *db, const char *path, bool create, ss_error *e)
{
    return open_connection(db, path, create, false, NULL, e);
}

int ss_db_open_short_lived(ss_db *db, const char *path, ss_error *e)
{
    bool no_space = false;
    if (open_connection(db, path, false, false, &no_space, e) == 0) return 0;
    if (!no_space) return -1;
    /* No process has site.db open (its index would exist): keep the index
     * in memory, holding site.db for the life of this short command. */
    return open_connection(db, path, false, true, NULL, e);
}

int ss_db_sync_defer(ss_db *db, ss_error *e)
{
    return ss_db_exec(db, "PRAGMA synchronous=NORMAL", e);
}

int ss_db_sync_now(ss_db *db, ss_error *e)
{
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(db->h, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) == SQLITE_OK &&
        wal && wal->pMethods && wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL) != SQLITE_OK)
        return ss_err(e, SS_E_DB, "cannot flush the write-ahead log of site.db to disk");
    return ss_db_exec(db, "PRAGMA synchronous=FULL", e);
}

sqlite3_stmt *ss_db_cached(ss_db *db, const char *sql, ss_error *e)
{
    for (int i = 0; i < db->ncached; i++)
        if (db->cached[i].sql == sql) return db->cached[i].st;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        ss_err(e, SS_E_DB, "database error preparing a statement: %s", sqlite3_errmsg(db->h));
        return NULL;
    }
    if (db->ncached < SS_DB_CACHED_MAX) {
        db->cached[db->ncached].sql = sql;
        db->cached[db->ncached++].st = st;
    }
    return st;
}

void ss_db_release(ss_db *db, sqlite3_stmt *st)
{
    if (!st) return;
    for (int i = 0; i < db->ncached; i++)
        if (db->cached[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    sqlite3_finalize(st); /* the cache was full */
}

void ss_db_close(ss_db *db)
{
    for (int i = 0; i < db->ncached; i++)
        sqlite3_finalize(db->cached[i].st);
    db->ncached = 0;
    if (db->h) sqlite3_close_v2(db->h);
    db->h = NULL;
}

int ss_db_begin(ss_db *db, ss_error *e)
{
    return ss_db_exec(db, "BEGIN IMMEDIATE", e);
}

int ss_db_commit(ss_db *db, ss_error *e)
{
    return ss_db_exec(db, "COMMIT", e);
}

void ss_db_rollback(ss_db *db)
{
    (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}
