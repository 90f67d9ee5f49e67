/*
 * lookup.h - finding a sending site's public key (DESIGN §4 step 4): the
 * keystore first, then the key directory (a folder, or a directory server
 * through the despooler's cache, dircache.h), then inboxes/hman.box,
 * where an administrator drops <SITE>.pub (or .ct4/.ct5).  What a key found
 * in the directory or hman.box becomes is decided by trust.h (an hman.box
 * drop is an administrator's import; a directory record, once an
 * instruction verified with it, is directory evidence: a first record is
 * trusted, a differing one blocks the site); imported files are archived
 * to hman.box/pubkey/.
 *
 * Security stance: key files are read with the same care as spool files
 * (no symlinks, size-limited, strict parse); a file that is refused (does
 * not parse, names two different sites, is revoked, belongs to another
 * site) is renamed to <name>.bad with status 3301 and never consulted
 * again.  A lookup only ever finds keys; it never decides that one may be
 * used (ss_trust_judge_use does).
 */
#ifndef SS_LOOKUP_H
#define SS_LOOKUP_H

#include "trust.h"

/* Imports every key file waiting in hman.box (only_site: that site's
 * only).  on_site is called with the site of each key imported.  Returns
 * the number imported, -1 on error. */
typedef void (*ss_site_fn)(void *ctx, const char *site);
int ss_hman_scan(const ss_keyctx *k, const char *only_site, ss_site_fn on_site, void *ctx,
                 ss_error *e);

/* Where ss_key_find found a key. */
typedef struct ss_key_found {
    enum { SS_FOUND_KEYSTORE, SS_FOUND_DIRECTORY, SS_FOUND_HMAN } where;
    char path[PATH_MAX]; /* SS_FOUND_DIRECTORY: the record's file, or server/DN */
    /* SS_FOUND_DIRECTORY: how to present it to the trust rules - as a
     * directory record (SS_EV_DIRECTORY), or, for the next key of an entry
     * on a directory server whose proof and vouch verified and whose
     * current key the keystore holds for the site, as a key vouched for by
     * that key with its proof (SS_EV_VOUCHED; signer: its keystore record,
     * which trust.h re-checks is still trusted).  Not as SS_EV_ROLLOVER:
     * that would retire the current key at once, and the site's own
     * rollover instruction, signed by it and arriving later, would then be
     * refused (a retired key never vouches, 4422) and quarantined; this way
     * the next key is trusted now and the rollover instruction retires the
     * old key, with its grace period, when it comes. */
    enum ss_evidence evidence;
    bool has_signer;
    ss_keyrec signer;
} ss_key_found;

/* Finds the key (site, keyid): 1 found (*out filled), 0 not found
 * anywhere, -1 error.  From the keystore (any state) or imported from
 * hman.box just now (an administrator's act), *out is the keystore's
 * record.  From the key directory it is only a candidate, not in the
 * keystore: the caller offers it to the trust rules (SS_EV_DIRECTORY) once
 * an instruction verified with it - a record is never judged on a key id
 * alone, which anyone can copy. */
int ss_key_find(const ss_keyctx *k, const char *site, const unsigned char keyid[SS_KEYID_BYTES],
                ss_keyrec *out, ss_key_found *how, ss_error *e);

/* Raises 3304 for every own or trusted key within expiry_warning_days of
 * its validity end, at most once a day per key.  -1 on a database error. */
int ss_warn_expiring_keys(const ss_keyctx *k, ss_error *e);

#endif
