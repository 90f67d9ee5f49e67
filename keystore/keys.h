/*
 * keys.h - Ed25519 key pairs in exactly minisign's file formats.
 *
 *   public key:  untrusted comment: ...\n base64("Ed" || keyid[8] || pk[32])\n
 *   secret key:  untrusted comment: ...\n base64("Ed" || kdf "\0\0" || "B2" ||
 *                salt[32] || opslimit[8] || memlimit[8] || keyid[8] || sk[64] || chk[32])\n
 *
 * The key id is 8 random bytes, shown as minisign shows it: 16 uppercase hex
 * digits of the bytes read as a little-endian number.
 *
 * Security stance: secret keys live only in sodium_malloc() memory (guarded,
 * locked, wiped by sodium_free) and are written with mode 0600; loading a
 * secret key whose file is readable by group or others is refused, as is a
 * password-encrypted key (a daemon cannot type a password).
 */
#ifndef SS_KEYS_H
#define SS_KEYS_H

#include "../inboxes/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SS_KEYID_BYTES 8
#define SS_KEYID_HEX 16
#define SS_PK_BYTES 32
#define SS_SK_BYTES 64
#define SS_COMMENT_MAX 1024

typedef struct ss_pubkey {
    unsigned char keyid[SS_KEYID_BYTES];
    unsigned char pk[SS_PK_BYTES];
} ss_pubkey;

typedef struct ss_seckey {
    unsigned char keyid[SS_KEYID_BYTES];
    unsigned char sk[SS_SK_BYTES]; /* libsodium layout: seed || pk */
} ss_seckey;

void ss_keyid_hex(const unsigned char keyid[SS_KEYID_BYTES], char out[SS_KEYID_HEX + 1]);
int ss_keyid_parse(const char *hex, unsigned char keyid[SS_KEYID_BYTES]);
/* Rewrites a key id as typed (minisign's unpadded form, lower case) into the
 * 16-digit upper-case form sitespool stores and prints; -1 if it is none. */
int ss_keyid_canonical(const char *hex, char out[SS_KEYID_HEX + 1]);

/* Secret keys are always allocated here and released with ss_seckey_free. */
ss_seckey *ss_seckey_new(void);
void ss_seckey_free(ss_seckey *sk);
void ss_seckey_public(const ss_seckey *sk, ss_pubkey *pk);

int ss_keypair_generate(ss_pubkey *pk, ss_seckey **sk, ss_error *e);

/* Public key text (two lines). */
int ss_pubkey_format(const ss_pubkey *pk, const char *comment, char *out, size_t len);
/* Strict parse; comment_out (may be NULL) receives the untrusted comment. */
int ss_pubkey_parse(const char *text, size_t len, ss_pubkey *pk, char *comment_out,
                    size_t comment_len, ss_error *e);
int ss_pubkey_load(const char *path, ss_pubkey *pk, char *comment_out, size_t comment_len,
                   ss_error *e);

/* Writes the unencrypted minisign secret key file, mode 0600, atomically,
 * refusing to replace an existing file. */
int ss_seckey_save(const char *path, const ss_seckey *sk, ss_error *e);
int ss_seckey_load(const char *path, ss_seckey **sk, ss_error *e);

#endif
