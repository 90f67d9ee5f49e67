/*
 * lookup.h - finding a sending site's public key (DESIGN §4 step 4): the
 * keystore first, then the key directory folder, then inboxes/hman.box,
 * where an administrator drops <SITE>.pub (or .ct4/.ct5).  A key found in
 * the directory or hman.box is imported into the keystore (an
 * administrator's act, as Active Directory or the manual drop is in
 * ConfigMgr), archived to hman.box/pubkey/ and logged to hman.log.
 *
 * Security stance: key files are read with the same care as spool files
 * (no symlinks, size-limited, strict parse); a file that does not parse is
 * renamed to <name>.bad with status 3301 and never consulted again; a key id
 * already bound to another key is refused.
 */
#ifndef SS_LOOKUP_H
#define SS_LOOKUP_H

#include "status.h"
#include "store.h"

typedef struct ss_keyctx {
    const char *root;
    const ss_conf *conf;
    ss_db *db;
    ss_reporter *rep;
} ss_keyctx;

/* Imports one public key file for site (NULL: derive it) as trusted. */
int ss_key_import_file(const ss_keyctx *k, const char *path, const char *site, const char *source,
                       ss_keyrec *out, ss_error *e);

/* Imports every key file waiting in hman.box.  on_site is called with the
 * site of each key imported.  Returns the number imported, -1 on error. */
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

/* A key usable for verification now (see ss_key_unusable_reason). */
bool ss_keyrec_usable(const ss_keyrec *k, int64_t now);

#endif
