/*
 * outbox.h - one peer's outbox, inboxes/schedule.box/outbox/<PEER>/: its
 * folder, its lock, the publication journal in the lock file, and reading
 * what is queued there.
 *
 * A queued pair is <seq>-<ID>.pck and <seq>-<ID>.ins; the instruction is
 * what makes the pair queued.  Dot-names are work in progress.  .lock is
 * taken (flock) by whoever publishes into or delivers from the outbox -
 * before any site.db write transaction, never while holding one.
 *
 * The journal: while a publisher holds the lock, the lock file names the
 * sequence numbers it is publishing and since when, and a deliverer the
 * pair it is delivering; it says "idle" once their 4504 or 4500 rows are
 * stored.  A later holder that finds a record there knows that its writer
 * died between moving files and recording them, and records what is
 * missing (recover.h).  The record is rewritten in place, never truncated,
 * so that it needs no new disk space once written.
 *
 * Security stance: this is the site's own folder, but names are still
 * checked (no symlink is followed: O_NOFOLLOW, safe_open rules).
 */
#ifndef SS_OUTBOX_H
#define SS_OUTBOX_H

#include "../inboxes/instruction.h"
#include "../keystore/sigfile.h"

#include <dirent.h>
#include <limits.h>

typedef struct ss_outbox {
    char path[PATH_MAX];
    int fd;      /* the folder */
    int lock_fd; /* the lock file while locked, else -1 */
} ss_outbox;

/* Creates (if needed) and opens root's outbox for site. */
int ss_outbox_open(ss_outbox *o, const char *root, const char *site, ss_error *e);
void ss_outbox_close(ss_outbox *o); /* unlocks too */
int ss_outbox_lock(ss_outbox *o, ss_error *e);
/* Without waiting: 1 locked, 0 another process holds it, -1 error. */
int ss_outbox_trylock(ss_outbox *o, ss_error *e);
void ss_outbox_unlock(ss_outbox *o);

/* What the holder of the lock is doing, for the next holder should it die:
 * publishing the numbers first..last, or delivering one pair. */
enum ss_journal_kind { SS_JOURNAL_IDLE, SS_JOURNAL_PUBLISHING, SS_JOURNAL_DELIVERING };

typedef struct ss_journal {
    enum ss_journal_kind kind;
    uint64_t first_seq, last_seq; /* publishing */
    char queued[64];              /* delivering: <seq>-<ID> */
    int64_t since_ms;
} ss_journal;

/* Records j in the lock file (NULL: idle).  No flush: the journal is for a
 * holder that dies, not for a power failure. */
int ss_outbox_journal_set(ss_outbox *o, const ss_journal *j, ss_error *e);
/* Reads the lock file's record; kind is SS_JOURNAL_IDLE when it holds none. */
void ss_outbox_journal_get(const ss_outbox *o, ss_journal *j);

bool ss_outbox_is_queued_ins(const char *name);
/* The sequence number and id in a queued name <seq>-<ID>.ext. */
uint64_t ss_queued_seq(const char *name);
const char *ss_queued_id(const char *name);
/* Queued instruction names, sorted (queue order); free with
 * ss_outbox_list_free.  Returns the count or -1. */
int ss_outbox_list(const ss_outbox *o, struct dirent ***names, ss_error *e);
void ss_outbox_list_free(struct dirent **names, int count);

/* The fields of a queued instruction (this site's own file: parsed, not
 * verified); *is_signed tells a signature file from the unsigned line. */
int ss_outbox_read_instr(int dirfd, const char *name, ss_instr *in, bool *is_signed, ss_error *e);
/* BLAKE2b-512 of the payload a package in dirfd unpacks to. */
int ss_package_payload_hash(int dirfd, const char *name, enum ss_zip zip, uint64_t size,
                            unsigned char out[SS_HASH_BYTES], ss_error *e);

#endif
