/*
 * links.h - what each site knows of its links to its peers, in site.db:
 *
 *  - sent: every pair queued for a peer (data, key, rollover), when it
 *    left for the peer's inbox, and what the peer's receipts said became of
 *    it (delivered, duplicate, quarantined with the peer's status id,
 *    waiting for a key, held).  Delivered and duplicate are final; a later
 *    receipt never undoes them.
 *  - receipts_due: at a receiving site, the fate of each instruction a
 *    peer sent, until a receipt carrying it is queued for that peer (one
 *    row per instruction: a newer fate replaces an older one).
 *  - peer_view: each peer's last heartbeat (its key, its next key, which
 *    of our keys it trusts), when it was last heard (a heartbeat or a
 *    receipt, both signed), the link state judged from that, and when we
 *    last sent it a heartbeat.
 *  - own_rollouts: when every peer was first seen holding one of our keys
 *    (the "safe to revoke the old key" moment is announced once).
 *  - queued_files: each file of a sealed pair still in an outbox - its
 *    destination, name, size and payload hash - since its instruction
 *    names no file (name=sealed) and its package opens only with the
 *    peer's key (the sender's duplicate index, sender/dupes.h, and its
 *    recovery, sender/recover.h, read them here).
 *
 * This module owns these tables; the despooler writes receipts_due and
 * applies receipts and heartbeats, the sender writes sent and
 * queued_files, the commands read them all.
 *
 * Security stance: rows change only from this site's own actions and from
 * receipts and heartbeats whose signature verified with a key trusted for
 * the peer (the despooler's job before it calls in here).  A receipt only
 * updates pairs queued for the peer that signed it, never another's.
 * Diagnostics: SS_E_DB with the purpose of the failed statement.
 * Limits: a peer's view holds at most SS_HEARTBEAT_HOLDS_MAX keys.
 */
#ifndef SS_LINKS_H
#define SS_LINKS_H

#include "../inboxes/report.h"
#include "db.h"
#include "sigfile.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- receiving side: fates due to be reported ---- */

/* Records (or replaces) the fate of instruction id from site `from`. */
int ss_receipt_note(ss_db *db, const char *from, const char *id, enum ss_fate fate, int status_id,
                    int64_t now, ss_error *e);
/* Sites with fates to report, through fn, in site order. */
int ss_receipt_sites(ss_db *db, int (*fn)(void *ctx, const char *site), void *ctx, ss_error *e);
/* The oldest fates due for `site`, at most max, into out; *n how many. */
int ss_receipt_take(ss_db *db, const char *site, ss_receipt_line *out, size_t max, size_t *n,
                    ss_error *e);
/* Forgets the fates a receipt now carries (a fate that changed meanwhile
 * stays due). */
int ss_receipt_forget(ss_db *db, const char *site, const ss_receipt_line *lines, size_t n,
                      ss_error *e);

/* ---- sending side: pairs sent and their fates ---- */

typedef struct ss_sent {
    char id[SS_ID_HEX + 1];
    char peer[SS_SITE_CODE_MAX + 1];
    char type[16];
    char name[SS_NAME_MAX + 1];
    uint64_t size;
    int64_t queued;    /* put in the outbox */
    int64_t sent_at;   /* in the peer's inbox; 0 while queued */
    bool has_fate;     /* a receipt named it */
    enum ss_fate fate; /* what the last receipt said */
    int status_id;     /* the peer's status id for it, 0 if none */
    int64_t heard_at;  /* when that receipt was applied */
} ss_sent;

int ss_sent_queued(ss_db *db, const char *peer, const char *id, const char *type, const char *name,
                   uint64_t size, int64_t now, ss_error *e);
/* The pair left for the peer's inbox: SS_SENT_PAIR (its row now says
 * so; the rows of its files in queued_files are gone), SS_SENT_REPORT (a
 * receipt or heartbeat: its row is gone), or SS_SENT_UNKNOWN (no row:
 * queued before receipts existed). */
enum { SS_SENT_UNKNOWN, SS_SENT_PAIR, SS_SENT_REPORT };
int ss_sent_delivered(ss_db *db, const char *id, int64_t now, ss_error *e);
/* Applies one receipt line from `peer`: 1 when it changed the pair (its
 * row, as it is now, in *now_row and the fate it had before in
 * *before and *had_before), 0 when it did not (an id this site never sent to
 * that peer, the same fate again, or a final fate already recorded). */
int ss_sent_apply(ss_db *db, const char *peer, const ss_receipt_line *line, int64_t now,
                  ss_sent *now_row, enum ss_fate *before, bool *had_before, ss_error *e);

typedef struct ss_sent_summary {
    size_t queued;              /* still in the outbox */
    size_t unconfirmed;         /* in the peer's inbox, no receipt yet */
    size_t waiting;             /* the peer waits for our key */
    size_t held;                /* the peer holds it for its administrator */
    size_t quarantined;         /* the peer quarantined it */
    size_t confirmed;           /* delivered or duplicate */
    int64_t oldest_unconfirmed; /* sent_at of the oldest unconfirmed, 0 if none */
} ss_sent_summary;

int ss_sent_summary_get(ss_db *db, const char *peer, ss_sent_summary *out, ss_error *e);
/* Every pair not yet delivered at the peer (queued, unconfirmed, waiting,
 * held, quarantined), oldest first; with `all`, the confirmed ones too.
 * peer NULL: every peer's. */
int ss_sent_each(ss_db *db, const char *peer, bool all, int (*fn)(void *ctx, const ss_sent *s),
                 void *ctx, ss_error *e);
/* Pairs that reached a peer before sent_before and have no receipt yet,
 * not told before: each peer's count and oldest through fn, then marked
 * as told (so the status message is raised once per pair). */
int ss_sent_overdue(ss_db *db, int64_t sent_before,
                    int (*fn)(void *ctx, const char *peer, size_t count, const ss_sent *oldest),
                    void *ctx, ss_error *e);
/* Sent again (send --resend): awaiting its delivery and receipt afresh. */
int ss_sent_resent(ss_db *db, const char *id, ss_error *e);
/* One pair by id (1 found, 0 not). */
int ss_sent_get(ss_db *db, const char *id, ss_sent *out, ss_error *e);
/* Forgets final fates heard before `before` (the history kept). */
int ss_sent_prune(ss_db *db, int64_t before, ss_error *e);

/* ---- sending side: the files of queued sealed pairs ---- */

/* One file of a sealed pair in peer's outbox.  The rows of a pair are
 * written (in the caller's transaction) before the pair is published,
 * and removed when it leaves the outbox: delivered (ss_sent_delivered) or
 * set aside (ss_queued_files_forget).  Rows whose pair is not in the
 * outbox (a send stopped before publishing it) are forgotten by whoever
 * next lists the outbox under its lock. */
typedef struct ss_queued_file {
    char id[SS_ID_HEX + 1]; /* the pair's instruction */
    unsigned member;        /* its place in the pair, from 0 */
    unsigned files;         /* files in the pair: 0 a file of its own, else a bundle */
    char dest[40];
    char name[SS_NAME_MAX + 1];
    uint64_t size;
    unsigned char hash[SS_HASH_BYTES]; /* BLAKE2b-512 of the file */
} ss_queued_file;

int ss_queued_file_add(ss_db *db, const char *peer, const ss_queued_file *f, ss_error *e);
/* The files queued for peer (id NULL), or those of pair id, through fn
 * in id and member order; fn returns non-zero to stop (returned).  A row
 * that cannot be read (a name or destination that is not valid, a hash
 * of another length) is skipped. */
int ss_queued_files_each(ss_db *db, const char *peer, const char *id,
                         int (*fn)(void *ctx, const ss_queued_file *f), void *ctx, ss_error *e);
/* Pair id left the outbox without being delivered (set aside, or found
 * no longer queued). */
int ss_queued_files_forget(ss_db *db, const char *id, ss_error *e);

/* ---- heartbeats and link states ---- */

enum ss_link { SS_LINK_UNKNOWN, SS_LINK_HEALTHY, SS_LINK_DEGRADED, SS_LINK_FAILED };
const char *ss_link_name(enum ss_link l);

typedef struct ss_peer_view {
    char site[SS_SITE_CODE_MAX + 1];
    int64_t last_heard;                  /* a signed heartbeat or receipt arrived; 0 never */
    int64_t heartbeat_time;              /* the time its last heartbeat carried */
    char key_id[SS_KEYID_TEXT + 1];      /* the key it signs with, by its heartbeat */
    char next_key_id[SS_KEYID_TEXT + 1]; /* its next key, "" if none */
    char holds[SS_HEARTBEAT_HOLDS_MAX][SS_KEYID_TEXT + 1]; /* our keys it trusts */
    size_t nholds;
    bool has_heartbeat; /* the fields above come from a heartbeat */
    enum ss_link link;
    int64_t link_since;
    int64_t hb_sent;       /* our last heartbeat to it, 0 never */
    int64_t first_hb_sent; /* our first heartbeat to it, 0 never */
    bool hb_due;           /* send one at once (our keys changed, or its) */
} ss_peer_view;

/* 1 and *out filled, or 0 (all zero, link unknown) for a peer never heard
 * from nor sent to. */
int ss_peer_view_get(ss_db *db, const char *peer, ss_peer_view *out, ss_error *e);
/* A signed heartbeat from peer. */
int ss_peer_heard_heartbeat(ss_db *db, const char *peer, const ss_heartbeat *hb, int64_t now,
                            ss_error *e);
/* A signed receipt from peer: heard, the key view unchanged. */
int ss_peer_heard(ss_db *db, const char *peer, int64_t now, ss_error *e);
bool ss_peer_holds(const ss_peer_view *v, const char *key_id);
/* A heartbeat is due for a peer: one was asked for, or an interval passed
 * since the last one (since the peer was added, before the first). */
bool ss_heartbeat_is_due(const ss_peer_view *v, int64_t peer_added, int64_t now, unsigned interval);
int ss_heartbeat_sent(ss_db *db, const char *peer, int64_t now, ss_error *e);
/* Asks for an early heartbeat to peer (NULL: to every peer). */
int ss_heartbeat_request(ss_db *db, const char *peer, ss_error *e);
/* The link state by the clock: healthy when heard within degraded_after
 * heartbeat intervals, degraded up to twice that, failed beyond; a peer
 * never heard from counts from our first heartbeat to it (unknown before
 * that). */
enum ss_link ss_link_judge(const ss_peer_view *v, int64_t now, unsigned interval,
                           unsigned degraded_after);
int ss_link_set(ss_db *db, const char *peer, enum ss_link link, int64_t now, ss_error *e);

/* ---- our key rollouts ---- */

/* When every peer was first seen holding our key key_id (0: not yet);
 * set records that moment once (1 when this call recorded it). */
int ss_rollout_complete_get(ss_db *db, const char *key_id, int64_t *when, ss_error *e);
int ss_rollout_complete_set(ss_db *db, const char *key_id, int64_t now, ss_error *e);

#endif
