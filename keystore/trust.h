/*
 * trust.h - the trust rules of DESIGN §6 over the keystore: which keys a
 * site is trusted with, blocking a site whose key changed without a
 * rollover or an administrator, approval of pending keys, rollover with a
 * grace period for the old key, revocation, expiry.
 *
 * Security stance: a key becomes trusted only by an administrator's act
 * (import, hman.box drop, approve, trust, a first directory record) or over
 * an already trusted key (signed key exchange, rollover with proof of the
 * new key).  A different key for a trusted site is never trusted silently:
 * the site is blocked and its data held until an administrator decides.
 * Revocation wins over everything and is checked first.
 */
#ifndef SS_TRUST_H
#define SS_TRUST_H

#include "store.h"

/* Key ids (at most max) of the site's keys in `state`; returns the count. */
int ss_site_keys_in_state(ss_db *db, const char *site, const char *state,
                          char ids[][SS_KEYID_HEX + 1], int max, ss_error *e);
/* Comma-separated list of the site's trusted key ids ("" if none). */
void ss_site_trusted_list(ss_db *db, const char *site, char *out, size_t len);

/* 1 and the key id that caused it if site is blocked, 0 if not. */
int ss_site_blocked(ss_db *db, const char *site, char key_id[SS_KEYID_HEX + 1]);
int ss_site_set_blocked(ss_db *db, const char *site, const char *key_id, ss_error *e);
int ss_site_clear_block(ss_db *db, const char *site, ss_error *e);

int ss_keys_set_state(ss_db *db, const char *site, const char *key_id, const char *state,
                      int64_t grace_until, ss_error *e);
/* 1 if a key with this id is revoked (for any site), else 0. */
int ss_key_is_revoked(ss_db *db, const char *key_id);
/* Deletes every non-revoked key of site and its block ('key untrust');
 * returns the number of keys removed. */
int ss_site_untrust(ss_db *db, const char *site, ss_error *e);

/* Why a key record cannot verify now, or NULL if it can (own, trusted, or
 * retired within its grace period; not revoked, not past not_after). */
const char *ss_key_unusable_reason(const ss_keyrec *k, int64_t now);

/* Rollover payload: the next public key file followed by the line
 *   sitespool-rollover/1 previous=<old id> proof=<base64 Ed25519 signature by
 *   the next key over "sitespool-rollover/1 site=<S> previous=<old> next=<new>">
 * which proves the sender holds the next key. */
int ss_rollover_payload(const char *site, const ss_pubkey *old_pk, const ss_seckey *next_sk,
                        int64_t next_not_after, char *out, size_t len, ss_error *e);
int ss_rollover_parse(const char *site, const char *text, size_t len,
                      unsigned char previous[SS_KEYID_BYTES], ss_pubkey *next,
                      int64_t *next_not_after, ss_error *e);

/* Whole days until not_after, rounded up (0 once it passed). */
long long ss_days_left(int64_t not_after, int64_t now);

/* "sitespool public key for site PS1 valid until 1858000000" and back. */
void ss_pubkey_comment(const char *site, int64_t not_after, char *out, size_t len);
int64_t ss_pubkey_comment_not_after(const char *comment);

#endif
