/*
 * store.h - the keystore and peer table in site.db, and this site's own
 * key pair on disk.
 *
 * Key states: own (this site's keys), trusted, pending (waiting for an
 * administrator's approval), retired (replaced by a rollover, accepted until
 * grace_until), revoked (never accepted again).
 */
#ifndef SS_STORE_H
#define SS_STORE_H

#include "../inboxes/site.h"
#include "db.h"
#include "keys.h"

typedef struct ss_keyrec {
    char site[SS_SITE_CODE_MAX + 1];
    char key_id[SS_KEYID_HEX + 1];
    ss_pubkey pk;
    char state[12];
    char source[16];
    int64_t created;
    int64_t not_after; /* 0: no end */
    int64_t last_seen; /* 0: never */
    int64_t grace_until;
} ss_keyrec;

/* Adds a key.  The same (site, key id) with the same key is a no-op
 * returning 0; with a different key it is SS_E_EXISTS (a forged key id). */
int ss_keys_add(ss_db *db, const ss_keyrec *k, ss_error *e);
/* 1 found, 0 not found, -1 error. */
int ss_keys_get(ss_db *db, const char *site, const char *key_id, ss_keyrec *out, ss_error *e);
typedef int (*ss_keyrec_fn)(void *ctx, const ss_keyrec *k);
/* site NULL: all keys. */
int ss_keys_foreach(ss_db *db, const char *site, ss_keyrec_fn fn, void *ctx, ss_error *e);
int ss_keys_touch(ss_db *db, const char *site, const char *key_id, int64_t when, ss_error *e);
/* Fills a key record for a public key. */
void ss_keyrec_init(ss_keyrec *k, const char *site, const ss_pubkey *pk, const char *state,
                    const char *source, int64_t not_after);

typedef struct ss_peer {
    char site[SS_SITE_CODE_MAX + 1];
    char inbox[PATH_MAX];
    int64_t added;
    int64_t last_success;
    int64_t next_attempt;
    unsigned failures;
    uint64_t next_seq;
    char last_error[256];
} ss_peer;

int ss_peer_add(ss_db *db, const char *site, const char *inbox, ss_error *e);
int ss_peer_remove(ss_db *db, const char *site, ss_error *e);            /* SS_E_NOENT if unknown */
int ss_peer_get(ss_db *db, const char *site, ss_peer *out, ss_error *e); /* 1, 0, -1 */
typedef int (*ss_peer_fn)(void *ctx, const ss_peer *p);
int ss_peer_foreach(ss_db *db, ss_peer_fn fn, void *ctx, ss_error *e);
/* Reserves count consecutive outgoing sequence numbers for site; *first
 * receives the first of them. */
int ss_peer_take_seqs(ss_db *db, const char *site, uint64_t count, uint64_t *first, ss_error *e);
int ss_peer_record_attempt(ss_db *db, const char *site, bool ok, const char *error,
                           int64_t next_attempt, ss_error *e);

/* keys/<SITE>.key and keys/<SITE>.pub */
int ss_own_key_paths(const char *root, const char *site, char *sk_path, char *pk_path, size_t len);
/* Loads this site's secret key and the matching public key. */
int ss_own_key_load(const char *root, const ss_conf *c, ss_seckey **sk, ss_pubkey *pk, ss_error *e);

/* Reads a public key file and derives the site it is for: the explicit
 * site, else the file name <SITE>.pub|.ct4|.ct5, else the comment
 * "... for site CODE".  site_out gets the code. */
int ss_pubkey_file_site(const char *path, const char *explicit_site, ss_pubkey *pk,
                        char site_out[SS_SITE_CODE_MAX + 1], char *comment, size_t comment_len,
                        ss_error *e);

#endif
