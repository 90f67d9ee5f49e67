/*
 * db.h - site.db: the SQLite database of a site (keys, peers, ledger, key
 * lookup retries, status messages).
 *
 * WAL mode (readers never block the despooler), synchronous=FULL (a commit
 * is durable: the ledger is what makes delivery exactly-once), a busy
 * timeout so the CLI and the daemons can share it, and a schema version in
 * PRAGMA user_version with forward-only migrations.  A database newer than
 * this program is refused rather than guessed at.
 */
#ifndef SS_DB_H
#define SS_DB_H

#include "../inboxes/error.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#define SS_DB_SCHEMA_VERSION 8

#define SS_DB_CACHED_MAX 32

typedef struct ss_db {
    sqlite3 *h;
    bool exclusive; /* opened by the full-disk fallback of ss_db_open_short_lived */
    /* Statements of the per-file hot path, prepared once (ss_db_cached). */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cached[SS_DB_CACHED_MAX];
    int ncached;
} ss_db;

/* create: make the file if missing (init); otherwise it must exist.
 * site.db-wal and site.db-shm are kept when the last connection closes,
 * so that site.db can still be opened when the disk is full. */
int ss_db_open(ss_db *db, const char *path, bool create, ss_error *e);
/* For short-lived commands (status, peer list, send): when the disk is too
 * full for SQLite to make site.db-shm, opens in exclusive locking mode,
 * which keeps that index in memory; site.db is then held by this process
 * until it closes it (db->exclusive tells).  Never for daemons. */
int ss_db_open_short_lived(ss_db *db, const char *path, ss_error *e);
/* Many small transactions: after ss_db_sync_defer a commit is not flushed
 * to disk on its own (synchronous=NORMAL; it survives the process being
 * killed, not a power failure), until ss_db_sync_now flushes the
 * write-ahead log and returns to synchronous=FULL. */
int ss_db_sync_defer(ss_db *db, ss_error *e);
int ss_db_sync_now(ss_db *db, ss_error *e);
void ss_db_close(ss_db *db);
int ss_db_exec(ss_db *db, const char *sql, ss_error *e);
int ss_db_begin(ss_db *db, ss_error *e); /* BEGIN IMMEDIATE */
int ss_db_commit(ss_db *db, ss_error *e);
void ss_db_rollback(ss_db *db);
/* Prepares sql; reports errors with the statement's purpose. */
sqlite3_stmt *ss_db_prepare(ss_db *db, const char *sql, ss_error *e);
/* The same for a statement run once per delivered file: prepared once per
 * connection, keyed by the address of sql (a string literal).  Give it
 * back with ss_db_release (never sqlite3_finalize): that resets it, so no
 * read transaction stays open between uses. */
sqlite3_stmt *ss_db_cached(ss_db *db, const char *sql, ss_error *e);
void ss_db_release(ss_db *db, sqlite3_stmt *st);
/* Records the database error after a failed step. */
int ss_db_fail(ss_db *db, const char *what, ss_error *e);
int ss_db_schema_version(ss_db *db);
/* How long a statement waits for another process's lock: SS_DB_BUSY_MS
 * normally; a shorter wait for work that may as well be done later. */
#define SS_DB_BUSY_MS 10000
void ss_db_busy_wait(ss_db *db, int ms);

int64_t ss_now(void);    /* seconds, honours faketime */
int64_t ss_now_ms(void); /* milliseconds */

#endif
