/*
 * lookup.h - finding a sending site's public key (DESIGN §4 step 4): the
 * keystore first, then the key directory folder, then inboxes/hman.box,
 * where an administrator drops <SITE>.pub (or .ct4/.ct5).  What a key found
 * in the directory or hman.box becomes is decided by trust.h (a first
 * directory record is trusted, a differing one blocks the site; an hman.box
 * drop is an administrator's import); imported files are archived to
 * hman.box/pubkey/.
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

/* Finds the key (site, keyid): 1 found (*out filled, any state), 0 not
 * found anywhere, -1 error. */
int ss_key_find(const ss_keyctx *k, const char *site, const unsigned char keyid[SS_KEYID_BYTES],
                ss_keyrec *out, ss_error *e);

/* Raises 3304 for every own or trusted key within expiry_warning_days of
 * its validity end, at most once a day per key. */
void ss_warn_expiring_keys(const ss_keyctx *k);

#endif
