/*
 * admin.h - the despooler's state as an administrator's commands see and
 * change it without running a despooler (`sitespool queue`, `release`,
 * `delete`): the pairs in despoolr.box/receive with what the waiting
 * tables say of them (waiting.c owns retries, holds and backlog), the
 * quarantined pairs in despoolr.box/rejected with their .why files
 * (quarantine.c), and the ledger (ledger.c).
 *
 * Release moves a quarantined pair back into receive the way a peer
 * delivers one: package first, then instruction, never replacing a name,
 * each move made durable (both folders fsynced) before the next; the .why
 * file goes last.  The despooler then judges the pair afresh, like any
 * arrival; nothing is woken (its inotify watch sees the rename, and it
 * rescans every rescan_interval).
 *
 * Delete removes only what the despooler will not touch on its own: a
 * quarantined pair (every copy of the id in rejected/), or a pair held in
 * receive, i.e. named by the holds table (4420 waiting for an
 * administrator's decision, 4416 a destination that cannot be written,
 * 4426 a quarantine that failed).  A pair that waits for its key (4405),
 * or that the despooler has not judged yet, is refused: the despooler may
 * be working on it.  A held pair's instruction is unlinked first, so the
 * next scan no longer sees the pair; a decision that releases it at the
 * same moment (another administrator's `key trust`, a destination fixed
 * for a 4416) races with the delete, and then the ledger and its 4400
 * tell what happened.
 *
 * Security stance: every file in both folders came from a peer: names are
 * checked (release and delete take a 32-hex id only), instructions are
 * read with the safe-open rules and parsed, never trusted - the site and
 * name shown are what the instruction claims; text read from them is
 * escaped before it is shown or stored (status messages do it).  Files are
 * moved by rename only and never replace anything.
 *
 * Diagnostics: 4428 (released) and 4429 (deleted), naming who did it.
 * Known limits: release handles the pair under its own names
 * (<ID>.pck, <ID>.ins); a second rejection of the same id is kept under
 * suffixed names (<ID>.ins.<time>-<n>), which delete removes and release
 * refuses (rename them first).
 */
#ifndef SS_DESPOOLER_ADMIN_H
#define SS_DESPOOLER_ADMIN_H

#include "../inboxes/instruction.h"
#include "../keystore/status.h"
#include "../keystore/store.h"

#include <stdbool.h>
#include <stdint.h>

/* What a pair's instruction claims (parsed, not verified). */
typedef struct ss_claim {
    bool parsed;
    ss_instr in;
    char keyid[SS_KEYID_HEX + 1]; /* "" for the unsigned form */
    char error[160];              /* why it could not be parsed */
} ss_claim;

/* ------------------------------------------------------------ receive */

/* A row of the retries table: an instruction waiting for its key. */
typedef struct ss_retry_info {
    char site[SS_SITE_CODE_MAX + 1];
    char key_id[SS_KEYID_HEX + 1];
    int attempts;
    int64_t next_at, first_seen;
} ss_retry_info;

/* A row of the holds table, and the status message that raised it. */
typedef struct ss_hold_info {
    char site[SS_SITE_CODE_MAX + 1];
    char reason[320];
    int64_t since;
    int status_id; /* 4420, 4416, 4419 or 4426 */
} ss_hold_info;

/* A pair (or half of one) in despoolr.box/receive. */
typedef struct ss_receive_pair {
    char base[256];         /* the name without .ins / .pck */
    char id[SS_ID_HEX + 1]; /* base if it is an instruction id, else "" */
    bool has_ins, has_pck;
    uint64_t pck_size;
    int64_t since; /* mtime of the instruction, else of the package */
    bool waiting_key;
    ss_retry_info retry;
    bool held;
    ss_hold_info hold;
    bool warned; /* 4414 was raised for one of its files */
    ss_claim claim;
} ss_receive_pair;

typedef int (*ss_receive_pair_fn)(void *ctx, const ss_receive_pair *p);
/* Every pair in receive, in directory order, dot-names (work in progress)
 * left out; fn returning non-zero stops.  0 or -1. */
int ss_receive_foreach(const char *root, ss_db *db, ss_receive_pair_fn fn, void *ctx, ss_error *e);

/* Deletes the pair id held in receive (see above) and its notes, raising
 * 4429; 1 deleted (*out, may be NULL, says what), 0 receive holds no such
 * pair, -1 refused or failed (*e says why: SS_E_PERM when it is there but
 * not held). */
int ss_held_delete(const char *root, ss_db *db, ss_reporter *rep, const char *id, const char *by,
                   ss_receive_pair *out, ss_error *e);

/* --------------------------------------------------------- quarantine */

/* A quarantined pair in despoolr.box/rejected. */
typedef struct ss_quarantined {
    char base[256];                    /* the name the despooler gave it, without .ins */
    char id[SS_ID_HEX + 1];            /* base if it is an instruction id, else "" */
    char copy[48];                     /* "" or the suffix of a second rejection: <time>-<n> */
    char ins[320], pck[320], why[320]; /* file names in rejected/, "" if absent */
    uint64_t pck_size;
    int64_t since;   /* when it was quarantined */
    int status_id;   /* from its .why file, 0 if none */
    char severity;   /* 'E', 'W' ... or '?' */
    char text[1024]; /* the status message, from its .why file */
    ss_claim claim;
} ss_quarantined;

typedef int (*ss_quarantined_fn)(void *ctx, const ss_quarantined *q);
int ss_quarantine_foreach(const char *root, ss_quarantined_fn fn, void *ctx, ss_error *e);

/* Moves rejected/<id>.pck, then <id>.ins, into receive and removes
 * <id>.why, raising 4428 (see above).  An earlier release interrupted
 * after the package moved is finished.  Refused (-1, *e) when id is not
 * quarantined under its own names (SS_E_NOENT), the pair is incomplete or
 * not regular files (SS_E_NOTREG), receive already holds either name
 * (SS_E_EXISTS) or the id was already delivered (SS_E_EXISTS, as the
 * despooler would only remove it again).  *out (may be NULL) receives
 * what was released. */
int ss_quarantine_release(const char *root, ss_db *db, ss_reporter *rep, const char *id,
                          const char *by, ss_quarantined *out, ss_error *e);

/* Removes every quarantined copy of id (instruction, package, .why)
 * and raises 4429 for each; returns how many copies, 0 if none, -1.
 * *out (may be NULL) receives the last one deleted. */
int ss_quarantine_delete(const char *root, ss_reporter *rep, const char *id, const char *by,
                         ss_quarantined *out, ss_error *e);

/* ------------------------------------------------------------- ledger */

/* 1 if id was delivered (its path and time), 0 if not, -1 on error. */
int ss_ledger_get(ss_db *db, const char *id, char *path, size_t len, int64_t *when, ss_error *e);

#endif
