/*
 * recover.h - what a sender killed under the outbox lock left behind,
 * finished by the next holder of the lock (see outbox.h, the journal).
 *
 * A publisher makes a pair queued (renames its instruction) and then stores
 * its 4504 row; killed in between, the pair is queued without its row.  The
 * journal names the sequence numbers that were being published: each queued
 * pair among them without a 4504 row gets it now (with 4503 if unsigned),
 * logged as recorded late - a bundle's 4504 names its count and each of
 * its files gets its sender.log line, as when its send records it (a
 * sealed pair's name and files come from its rows in site.db's
 * queued_files, committed with the batch's numbers before anything was
 * published, so they are there whenever the pair is) - and packages
 * among them whose instruction was never queued are removed.
 *
 * A deliverer moves a pair's instruction out of the outbox (into the peer's
 * inbox, or removes it once copied there) and then stores its 4500 row;
 * killed in between, the journal names that pair: gone from the outbox and
 * without a 4500 row, it gets it now.
 *
 * Nothing is published, delivered or removed that the dead sender had
 * recorded, and nothing is recorded twice.
 */
#ifndef SS_RECOVER_H
#define SS_RECOVER_H

#include "outbox.h"
#include "sender.h"

/* Call right after ss_outbox_lock.  0 when nothing was interrupted or the
 * missing rows are stored (the journal is idle again); -1 when site.db
 * could not store them: they stay queued in s->notices, the journal still
 * names the work, and a later holder checks again. */
int ss_sender_recover(ss_sender *s, ss_outbox *o, const char *site, ss_error *e);

#endif
