/*
 * keyfile.h - sitespool's conventions on top of minisign public key files:
 * the comment that names the key's site and validity end, the site a key
 * file's name gives, and the proofs of possession that key exchange and
 * rollover payloads carry.
 *
 *   comment:   "sitespool public key for site PS1 valid until 1858000000"
 *   key exchange payload (type=key):
 *              the public key file, then the line
 *              sitespool-key/1 proof=<base64 Ed25519 signature, by the offered
 *              key, over "sitespool-key/1 site=<S> key=<id>">
 *   rollover payload (type=rollover):
 *              the next public key file, then the line
 *              sitespool-rollover/1 previous=<old id> proof=<base64 signature,
 *              by the next key, over
 *              "sitespool-rollover/1 site=<S> previous=<old> next=<new>">
 *   directory next key (sitespoolNextPublicKey, during a rollover):
 *              the rollover payload above (the next key file and its proof
 *              line), then the line
 *              sitespool-vouch/1 previous=<current id> vouch=<base64
 *              signature, by the CURRENT key, over "sitespool-vouch/1
 *              site=<S> previous=<current id> next=<next id> key=<64 hex
 *              digits of the next public key> not_after=<next key's validity
 *              end, unix time, 0: none>">
 *              The proof says the next key's holder wants it to follow the
 *              current one; the vouch says the current key's holder names
 *              this very public key (not just its id, which anyone may
 *              choose) and its validity as its successor.  A peer that
 *              trusts the current key may then take the next one as it takes
 *              a rollover instruction signed by the current key.
 *
 * Security stance: a proof binds the key to the site and to its purpose
 * (the two statements cannot be mistaken for each other or for a minisign
 * signature, which covers binary data), so a key can only be offered by
 * whoever holds its secret half.  Parsing is strict: one proof line, exact
 * base64, nothing after it.  The payload's comment must name the site the
 * payload is for.  These functions check form and proofs; what a checked
 * key may then become is decided in trust.h.
 */
#ifndef SS_KEYFILE_H
#define SS_KEYFILE_H

#include "../inboxes/site.h"
#include "keys.h"

/* "sitespool public key for site PS1[ valid until N]" and back. */
void ss_pubkey_comment(const char *site, int64_t not_after, char *out, size_t len);
int64_t ss_pubkey_comment_not_after(const char *comment);
/* The site a comment names: 1 (code filled), 0 names none. */
int ss_pubkey_comment_site(const char *comment, char code[SS_SITE_CODE_MAX + 1]);
/* The site a file name gives (<SITE>.pub, .ct4, .ct5, any case): 1 or 0. */
int ss_keyfile_name_site(const char *path, char code[SS_SITE_CODE_MAX + 1]);

/* A public key file as found on disk: the key, its comment, and the sites
 * its name and its comment give ("" where they give none). */
typedef struct ss_keyfile {
    ss_pubkey pk;
    char comment[SS_COMMENT_MAX + 1];
    char name_site[SS_SITE_CODE_MAX + 1];
    char comment_site[SS_SITE_CODE_MAX + 1];
    int64_t not_after;
} ss_keyfile;
int ss_keyfile_load(const char *path, ss_keyfile *kf, ss_error *e);

/* Key exchange payload for this site's key (see above). */
int ss_key_offer_payload(const char *site, const ss_seckey *sk, int64_t not_after, char *out,
                         size_t len, ss_error *e);
/* Parses a key exchange payload for site and checks its proof:
 * SS_E_FORMAT (not a key and a proof; the comment names another site or
 * none), SS_E_BADSIG (the proof does not verify). */
int ss_key_offer_parse(const char *site, const char *text, size_t len, ss_pubkey *pk,
                       int64_t *not_after, ss_error *e);

/* Rollover payload: the next key and its proof. */
int ss_rollover_payload(const char *site, const ss_pubkey *old_pk, const ss_seckey *next_sk,
                        int64_t next_not_after, char *out, size_t len, ss_error *e);
/* Parses a rollover payload.  The next key is returned whenever the key
 * part parsed (*next_parsed), so that a rollover whose proof fails can still
 * be judged as presenting that key. */
int ss_rollover_parse(const char *site, const char *text, size_t len,
                      unsigned char previous[SS_KEYID_BYTES], ss_pubkey *next, bool *next_parsed,
                      int64_t *next_not_after, ss_error *e);

/* A directory next key value (see above): the rollover payload of
 * next_sk after cur_sk, and the vouch by cur_sk. */
int ss_dirnext_payload(const char *site, const ss_seckey *cur_sk, const ss_seckey *next_sk,
                       int64_t next_not_after, char *out, size_t len, ss_error *e);
/* Parses a directory next key value of site and checks both signatures:
 * the proof by the next key, the vouch by cur (the record's current key),
 * whose id the proof and the vouch must both name.  SS_E_FORMAT (a part
 * missing, malformed, naming another site or another current key),
 * SS_E_BADSIG (a signature does not verify). */
int ss_dirnext_parse(const char *site, const char *text, size_t len, const ss_pubkey *cur,
                     ss_pubkey *next, int64_t *next_not_after, ss_error *e);

#endif
