/*
 * reports.h - what a site tells its peers about itself, and what it makes
 * of their silence:
 *
 *  - receipts: the fates the despooler noted for each sending site
 *    (keystore/links.h) go back to that site as signed type=receipt
 *    instructions, one per peer per call (at most SS_RECEIPT_BATCH lines
 *    each), through the normal outbox.  A site that is not a peer (no
 *    address) keeps its fates in site.db until it becomes one.
 *  - heartbeats: every heartbeat_interval, or at once when asked for (our
 *    keys changed, or a peer's), each peer gets a signed type=heartbeat:
 *    the key this site signs with, and the peer's keys it trusts.
 *  - link watch: link states by the time each peer was last heard from
 *    (4515 degraded, 4516 failed, 4517 healthy again: one status message
 *    per transition, so notify_command sees each once), pairs without a
 *    receipt after receipt_timeout (4512, once per pair), and the history
 *    of confirmed pairs pruned after package_lifetime.
 *
 * Receipts and heartbeats are never receipted, carry no status message of
 * their own when queued or delivered (sender.log names them), and are
 * never resent: losing one costs nothing but the information, which the
 * next one carries again.
 *
 * Security stance: their content comes from this site's own tables; what
 * the peer makes of them is its despooler's business.
 * Diagnostics: the status messages above; failures to queue are returned
 * (the caller logs them and tries again next round).
 */
#ifndef SS_REPORTS_H
#define SS_REPORTS_H

#include "sender.h"

#define SS_RECEIPT_BATCH 4096

/* Queues one receipt per peer with fates due; *queued counts them. */
int ss_sender_queue_receipts(ss_sender *s, size_t *queued, ss_error *e);
/* Queues a heartbeat for each peer that is due one. */
int ss_sender_queue_heartbeats(ss_sender *s, int64_t now, size_t *queued, ss_error *e);
/* Link states, overdue receipts, pruning. */
int ss_sender_watch_links(ss_sender *s, int64_t now, ss_error *e);

#endif
