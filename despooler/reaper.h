/*
 * reaper.h - removes consumed pairs from receive without making the
 * despooler wait for it.
 *
 * Why: once a pair's delivery is committed, its two files are garbage, but
 * unlink() is the most expensive step of a delivery on filesystems mounted
 * with online discard (the block release waits for the device: 0.5-3 ms per
 * file on the machine measured, against 20 us for a rename).  So the
 * despooler renames a consumed file out of receive into
 * despoolr.box/consumed/ (same filesystem: one cheap rename) and a few
 * background threads unlink it from there; unlinks are latency-bound, so a
 * few in parallel overlap their waits.
 *
 * Safety: consumed/ holds only files whose delivery the ledger has
 * committed, so what is in it may go at any time.  A crash leaves some
 * behind; the next start removes them.  Peers cannot write there (it is not
 * receive).  When consumed/ cannot be used (receive on another filesystem,
 * the folder unusable, threads unavailable) files are unlinked at once, as
 * before: slower, never wrong.  Reaper threads only call unlinkat(): no
 * logging, no database.
 *
 * Diagnostics: ss_reaper_start says why it falls back (the caller logs it).
 */
#ifndef SS_REAPER_H
#define SS_REAPER_H
#include "../inboxes/error.h"

typedef struct ss_reaper ss_reaper;

/* Opens (creates) consumed_path beside receive, queues what a previous run
 * left there and starts the threads.  Returns NULL, with the reason in *e,
 * when files have to be unlinked in place instead. */
ss_reaper *ss_reaper_start(int receive_fd, const char *consumed_path, ss_error *e);

/* Takes the file name out of receive: moved to consumed/ and queued, or
 * unlinked at once (r NULL, queue full, or the move failed). */
void ss_reaper_take(ss_reaper *r, int receive_fd, const char *name);

/* Waits until every queued file is removed, stops the threads, frees r. */
void ss_reaper_stop(ss_reaper *r);

#endif
