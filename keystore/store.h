/*
 * store.h - the keystore, site and peer tables in site.db, and this site's
 * own key pair on disk.  Table access only: which key may be trusted, held
 * or blocked is decided in trust.h, nowhere else.
 *
 * A key record is identified by (site, public key); within one site a key
 * id names one key (a second key under the same id is refused as a forged
 * id), across sites ids may repeat, because their owners choose them.
 *
 * Security stance: every read that a trust decision depends on returns -1
 * on a database error, never "no": callers hold and report (fail closed).
 */
#ifndef SS_STORE_H
#define SS_STORE_H

#include "../inboxes/site.h"
#include "db.h"
#include "keys.h"

/* Key states: own (this site's keys), trusted, pending (offered, waiting
 * for an administrator), retired (replaced by a rollover, accepted for data
 * until grace_until), revoked (never accepted again, for any site). */
enum ss_key_state { SS_KEY_OWN, SS_KEY_TRUSTED, SS_KEY_PENDING, SS_KEY_RETIRED, SS_KEY_REVOKED };
#define SS_KEY_STATES 5
const char *ss_key_state_name(enum ss_key_state s);
/* 0 and *out, or -1 for a name that is no state. */
int ss_key_state_parse(const char *name, enum ss_key_state *out);

typedef struct ss_keyrec {
    char site[SS_SITE_CODE_MAX + 1];
    char key_id[SS_KEYID_HEX + 1];
    ss_pubkey pk;
    enum ss_key_state state;
    char source[16];
    int64_t created;
    int64_t not_after; /* 0: no end */
    int64_t last_seen; /* 0: never */
    int64_t grace_until;
} ss_keyrec;

/* Fills a key record for a public key. */
void ss_keyrec_init(ss_keyrec *k, const char *site, const ss_pubkey *pk, enum ss_key_state state,
                    const char *source, int64_t not_after);
/* Adds a key.  The same (site, public key) again is a no-op returning 0; a
 * different key under a key id the site already has is SS_E_EXISTS. */
int ss_keys_add(ss_db *db, const ss_keyrec *k, ss_error *e);
/* 1 found, 0 not found, -1 error. */
int ss_keys_get(ss_db *db, const char *site, const char *key_id, ss_keyrec *out, ss_error *e);
/* The record of exactly this public key for site: 1, 0, -1. */
int ss_keys_get_pk(ss_db *db, const char *site, const ss_pubkey *pk, ss_keyrec *out, ss_error *e);
typedef int (*ss_keyrec_fn)(void *ctx, const ss_keyrec *k);
/* site NULL: all keys. */
int ss_keys_foreach(ss_db *db, const char *site, ss_keyrec_fn fn, void *ctx, ss_error *e);
/* Every record (any site) of this public key, or with this key id. */
int ss_keys_foreach_pk(ss_db *db, const ss_pubkey *pk, ss_keyrec_fn fn, void *ctx, ss_error *e);
int ss_keys_foreach_id(ss_db *db, const char *key_id, ss_keyrec_fn fn, void *ctx, ss_error *e);
/* Number of the site's keys in state, -1 on error; ids (may be NULL)
 * receives up to max of their key ids, oldest first. */
int ss_keys_in_state(ss_db *db, const char *site, enum ss_key_state state,
                     char ids[][SS_KEYID_HEX + 1], int max, ss_error *e);
int ss_keys_set_state(ss_db *db, const char *site, const char *key_id, enum ss_key_state state,
                      int64_t grace_until, ss_error *e);
/* Deletes the site's keys that are neither own nor revoked; returns how
 * many, -1 on error. */
int ss_keys_forget_site(ss_db *db, const char *site, ss_error *e);
int ss_keys_touch(ss_db *db, const char *site, const char *key_id, int64_t when, ss_error *e);

/* The sites table: a block and the key that caused it.  1 (blocked; key_id
 * receives the key), 0, -1 on error. */
int ss_site_block_get(ss_db *db, const char *site, char key_id[SS_KEYID_HEX + 1], ss_error *e);
int ss_site_block_set(ss_db *db, const char *site, const char *key_id, ss_error *e);
int ss_site_block_clear(ss_db *db, const char *site, ss_error *e);
/* Every peer site the keystore or the despooler knows (seen or not): its
 * block and the key it was last seen using. */
typedef struct ss_site_view {
    const char *site;
    bool blocked;
    const char *blocked_key_id; /* NULL if none */
    const char *last_key_id;    /* NULL or "" if never seen signed */
    int64_t last_seen;
} ss_site_view;
typedef void (*ss_site_view_fn)(void *ctx, const ss_site_view *v);
int ss_sites_foreach(ss_db *db, ss_site_view_fn fn, void *ctx, ss_error *e);

/* A delivery from site: instruction id with sequence number seq, the key
 * it used and when.  Numbers may arrive out of order (a batch is in id
 * order); the contiguous run is tracked, the early ones kept aside. */
int ss_site_note_seen(ss_db *db, const char *site, const char *id, uint64_t seq, const char *key_id,
                      int64_t when, ss_error *e);
/* Gaps left once receive was drained: for each site whose numbers stop
 * before an early one, fn gets the early instruction, its number and the
 * missing run [from, to]; each gap is reported once and then skipped. */
typedef void (*ss_gap_fn)(void *ctx, const char *site, const char *id, uint64_t seq, uint64_t from,
                          uint64_t to);
int ss_site_gaps(ss_db *db, ss_gap_fn fn, void *ctx, ss_error *e);

/* A peer delivers through up to SS_PEER_ADDRESSES_MAX addresses (a local
 * path or sftp://...), tried in order, or starting with each in turn
 * (round_robin); inbox is the first of them. */
#define SS_PEER_ADDRESS_MAX 1024
#define SS_PEER_ADDRESSES_MAX 8

typedef struct ss_peer {
    char site[SS_SITE_CODE_MAX + 1];
    char inbox[PATH_MAX];
    bool round_robin;
    unsigned rr_next; /* round_robin: the address the next delivery starts with */
    int64_t added;
    int64_t last_success;
    int64_t next_attempt;
    unsigned failures;
    uint64_t next_seq;
    char last_error[256];
} ss_peer;

int ss_peer_add(ss_db *db, const char *site, const char *inbox, ss_error *e);
/* Adds the peer or replaces its addresses (their states start afresh). */
int ss_peer_set(ss_db *db, const char *site, const char *const *addresses, size_t n,
                bool round_robin, ss_error *e);

typedef struct ss_peer_address {
    unsigned pos;
    char address[SS_PEER_ADDRESS_MAX + 1];
    char state[24]; /* untried, ok, unreachable, host-key-unknown, host-key-changed */
    char last_error[256];
    int64_t last_attempt, last_success;
} ss_peer_address;

/* The peer's addresses in order; returns how many (at most max), -1. */
int ss_peer_addresses(ss_db *db, const char *site, ss_peer_address *out, size_t max, ss_error *e);
/* The outcome of using address pos: state "ok" (error NULL) or another. */
int ss_peer_address_record(ss_db *db, const char *site, unsigned pos, const char *state,
                           const char *error, ss_error *e);
/* round_robin: the next delivery starts one address further. */
int ss_peer_rotate(ss_db *db, const char *site, unsigned n_addresses, ss_error *e);
int ss_peer_remove(ss_db *db, const char *site, ss_error *e);            /* SS_E_NOENT if unknown */
int ss_peer_get(ss_db *db, const char *site, ss_peer *out, ss_error *e); /* 1, 0, -1 */
/* The peer, or an error (SS_E_NOENT) that says how to add it. */
int ss_peer_require(ss_db *db, const char *site, ss_peer *out, ss_error *e);
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

#endif
