/*
 * dupes.h - is this file still queued for the peer?  The index of the data
 * instructions queued in one outbox, by delivered name, so that sending the
 * same file again while the first copy waits is recognised instead of
 * delivering it twice.
 *
 * A duplicate has the same delivered name, destination inbox and size, and
 * a payload with the same BLAKE2b-512 hash.  The payload hash of a queued
 * pair is computed only when name, destination and size already match, by
 * unpacking its package (so a different compression level or an unsigned
 * copy is still recognised), and then kept.
 *
 * Used under the outbox lock only: the index is loaded from the folder when
 * a publication starts and grows with what the publication queues.
 */
#ifndef SS_DUPES_H
#define SS_DUPES_H

#include "../inboxes/instruction.h"
#include "../keystore/sigfile.h"

#include <limits.h>

typedef struct ss_dupe {
    char id[SS_ID_HEX + 1];
    char pck[NAME_MAX + 1]; /* its package, relative to the outbox */
    char name[SS_NAME_MAX + 1];
    char dest[40];
    uint64_t size;
    enum ss_zip zip;
    int hashed; /* 0: not yet, 1: hash is valid, -1: the package cannot be read */
    unsigned char hash[SS_HASH_BYTES];
} ss_dupe;

typedef struct ss_dupes {
    ss_dupe *v;
    size_t n, cap;
    size_t *slots; /* open addressing by name: index + 1, 0 empty */
    size_t nslots;
} ss_dupes;

/* Reads every queued data instruction of the outbox folder. */
int ss_dupes_load(ss_dupes *d, int outbox_fd, ss_error *e);
/* Adds a queued pair whose package is pck; *index receives its place. */
int ss_dupes_add(ss_dupes *d, const ss_instr *in, const char *pck, size_t *index, ss_error *e);
/* The package of entry index has a new name (it was published). */
void ss_dupes_rename(ss_dupes *d, size_t index, const char *pck);
/* The queued pair that in (whose package is the file pck in the outbox)
 * duplicates, or NULL. */
const ss_dupe *ss_dupes_find(ss_dupes *d, int outbox_fd, const ss_instr *in, const char *pck);
void ss_dupes_free(ss_dupes *d);

#endif
