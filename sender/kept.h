/*
 * kept.h - copies of delivered pairs, kept in inboxes/schedule.box/sent/<PEER>/
 * (under their queued names, <seq>-<ID>.pck and .ins) so that an
 * administrator can send one again, unchanged, with `send --resend ID`:
 * the same instruction and id, so the peer's ledger delivers it at most
 * once whatever happened to the first copy.
 *
 * A copy stays until the peer's receipt confirms the pair (delivered or
 * duplicate: keystore/links.h) or resend_keep passes; the link watch
 * prunes (sender/reports.c).  Receipts and heartbeats are pruned at once.
 * resend_keep = 0 keeps nothing.
 *
 * What is kept: pairs delivered by copy (a peer inbox on another
 * filesystem: a mounted share) or over SFTP, whose outbox files are
 * renamed into the folder instead of being unlinked - no extra I/O.  A
 * pair renamed into a local inbox on this filesystem is not kept: it
 * would have to be copied, and ext4's ordered journal then writes every
 * copy with the delivery's directory flush (measured: 2,000 pairs of
 * 4 KiB took 12 times as long); that peer is on this machine, and its
 * administrator can release a quarantined pair.  A copy that cannot be
 * kept is logged and the delivery goes on: keeping is a convenience,
 * never a reason to hold data back; on a nearly full disk (under 64 MiB
 * or 1% free) nothing is kept, so that delivering frees the outbox's
 * space as before.
 *
 * Security stance: this site's own folder; no link is followed (O_NOFOLLOW
 * opens, renames within the site tree); a resend never replaces a name in
 * the outbox.
 * Diagnostics: 4518 for a resend; refusals name why (never sent, already
 * confirmed, not kept) and what to do instead.
 */
#ifndef SS_KEPT_H
#define SS_KEPT_H

#include "sender.h"

/* The kept folder of a peer, made if missing; -1 (logged) on failure or
 * when resend_keep is 0. */
int ss_kept_open(ss_sender *s, const char *site);
/* Keeps the pair <queued>.pck/.ins of outbox_fd: moved (move = true, the
 * outbox copy goes) or copied (it stays). */
void ss_kept_take(ss_sender *s, int kept_fd, int outbox_fd, const char *queued, bool move);
/* Removes what is confirmed, no longer awaited or older than resend_keep. */
int ss_kept_prune(ss_sender *s, const char *site, int64_t now, ss_error *e);
/* Puts the kept pair of instruction id back into its peer's outbox; the
 * peer in peer_out.  The caller delivers. */
int ss_kept_resend(ss_sender *s, const char *id, const char *by, char peer_out[16], ss_error *e);

#endif
