/*
 * dupes.h - is this file still queued for the peer?  The index of the data
 * files queued in one outbox, by delivered name, so that sending the same
 * file again while the first copy waits is recognised instead of
 * delivering it twice - whether it waits in a pair of its own or as one
 * file of a bundle (bundle.h).
 *
 * A duplicate has the same delivered name, destination inbox and size, and
 * a payload with the same BLAKE2b-512 hash.  The payload hash of a queued
 * pair of its own is computed only when name, destination and size
 * already match, by unpacking its package (so a different compression
 * level or an unsigned copy is still recognised), and then kept.  The
 * files of a queued bundle are known only by reading it: the bundles
 * waiting for a destination are read, and each of their files hashed,
 * the first time a file for that destination is looked up.
 *
 * A sealed pair (instruction field enc=, seal.h) shows neither its name
 * nor its payload to the sender any more: its instruction says
 * name=sealed and its package opens only with the peer's key.  What the
 * index needs of it - destination, and each file's name, size and
 * payload hash - is in site.db (queued_files, keystore/links.h), written
 * with the numbers of its publication before it is published (sender.h)
 * and read here in one query for the whole outbox.  Rows whose pair is
 * no longer in the outbox (delivered or set aside without them being
 * removed, or a publication that died before its instruction) are
 * forgotten when the index is loaded; a sealed pair without rows is a
 * duplicate of nothing.

 * Used under the outbox lock only: the index is loaded from the folder when
 * a publication starts and grows with what the publication queues.
 *
 * Diagnostics: none of its own; a queued pair that cannot be read is not
 * a duplicate of anything (the deliverer reports it).
 */
#ifndef SS_DUPES_H
#define SS_DUPES_H

#include "../inboxes/instruction.h"
#include "../keystore/db.h"
#include "../keystore/sigfile.h"

#include <limits.h>

typedef struct ss_dupe {
    char id[SS_ID_HEX + 1]; /* the instruction that holds it */
    char pck[NAME_MAX + 1]; /* its package, relative to the outbox */
    char name[SS_NAME_MAX + 1];
    char dest[40];
    uint64_t size; /* of the file */
    enum ss_zip zip;
    unsigned files; /* files in its pair: 0 a pair of its own, else a bundle */
    int hashed; /* 0: not yet (a pair of its own: unpack pck), 1: hash is valid, -1: unreadable */
    unsigned char hash[SS_HASH_BYTES];
} ss_dupe;

typedef struct ss_dupes {
    ss_dupe *v;
    size_t n, cap;
    size_t *slots; /* open addressing by name: index + 1, 0 empty */
    size_t nslots;
    ss_dupe *bundles; /* queued bundles not read yet (their fields; name unused) */
    size_t nbundles, bcap;
} ss_dupes;

/* Reads every queued data instruction of the outbox folder, and from db
 * the files of the sealed ones queued for peer. */
int ss_dupes_load(ss_dupes *d, int outbox_fd, ss_db *db, const char *peer, ss_error *e);
/* Adds a copy of x (a file being queued); *index (if not NULL) receives
 * its place. */
int ss_dupes_add(ss_dupes *d, const ss_dupe *x, size_t *index, ss_error *e);
/* The package of entry index has a new name (it was published). */
void ss_dupes_rename(ss_dupes *d, size_t index, const char *pck);
/* The queued file that probe duplicates, or NULL.  probe names the file
 * (name, dest, size) and its payload: hashed = 1 with hash, or hashed = 0
 * with its own package (pck, zip: a pair of its own), which is then
 * hashed into probe if a candidate needs it. */
const ss_dupe *ss_dupes_find(ss_dupes *d, int outbox_fd, ss_dupe *probe);
void ss_dupes_free(ss_dupes *d);

#endif
