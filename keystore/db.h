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

#define SS_DB_SCHEMA_VERSION 4

typedef struct ss_db {
    sqlite3 *h;
} ss_db;

/* create: make the file if missing (init); otherwise it must exist. */
int ss_db_open(ss_db *db, const char *path, bool create, ss_error *e);
void ss_db_close(ss_db *db);
int ss_db_exec(ss_db *db, const char *sql, ss_error *e);
int ss_db_begin(ss_db *db, ss_error *e); /* BEGIN IMMEDIATE */
int ss_db_commit(ss_db *db, ss_error *e);
void ss_db_rollback(ss_db *db);
/* Prepares sql; reports errors with the statement's purpose. */
sqlite3_stmt *ss_db_prepare(ss_db *db, const char *sql, ss_error *e);
/* Records the database error after a failed step. */
int ss_db_fail(ss_db *db, const char *what, ss_error *e);
int ss_db_schema_version(ss_db *db);

int64_t ss_now(void);    /* seconds, honours faketime */
int64_t ss_now_ms(void); /* milliseconds */

#endif
