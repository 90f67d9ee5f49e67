/*
 * notices.h - the sender's status messages (45xx) on their way into site.db,
 * never lost to a busy or a full database.
 *
 * A message is queued in memory, then stored - with every message queued
 * before it - in one short write transaction, and logged (sender.log,
 * notify_command) only once that transaction committed.  A transaction
 * refused because another process holds site.db past its busy timeout is
 * retried; one that fails for any other reason (a full disk) leaves the
 * messages queued, and the next store - after a delivery freed space, or in
 * the daemon's next round - tries them again first.  What is still queued
 * when the sender closes is written to sender.log and standard error with
 * the reason, so that no message disappears silently.
 *
 * Lock order: callers may hold an outbox lock while storing (outbox lock,
 * then site.db); nothing here takes an outbox lock.
 */
#ifndef SS_NOTICES_H
#define SS_NOTICES_H

#include "../keystore/status.h"

typedef struct ss_notice {
    int id;
    int nistr;
    char *istr[SS_ISTR_MAX];
} ss_notice;

typedef struct ss_notices {
    ss_notice *v;
    size_t n, cap;
} ss_notices;

/* Queues message id with insertion strings (a NULL-terminated list). */
int ss_notices_add(ss_notices *q, ss_error *e, int id, ...);
/* Drops the messages queued after the first keep ones (a caller whose
 * store failed takes back what it added). */
void ss_notices_truncate(ss_notices *q, size_t keep);
void ss_notices_free(ss_notices *q);

/* Work done in the same transaction as the messages (a peer's delivery
 * record, say); its failure fails the transaction. */
typedef int (*ss_notices_extra_fn)(void *ctx, ss_error *e);

/* Stores every queued message, and runs extra (may be NULL) in the same
 * transaction, retrying while site.db is busy; then logs each message and
 * empties the queue.  On failure nothing was stored and the queue is kept. */
int ss_notices_store(ss_notices *q, ss_db *db, ss_reporter *rep, ss_notices_extra_fn extra,
                     void *ctx, ss_error *e);

/* The last resort for messages that could not be stored: each is written to
 * the log and to standard error with why, and the queue is emptied. */
void ss_notices_give_up(ss_notices *q, ss_reporter *rep, const char *why);

/* True when the last failure of db was another process holding it. */
bool ss_db_was_busy(ss_db *db);
/* True when the text of an error says the disk (or a quota) is full. */
bool ss_error_no_space(const ss_error *e);

#endif
