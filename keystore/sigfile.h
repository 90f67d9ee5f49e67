/*
 * sigfile.h - minisign signature files, hashed mode (ED): Ed25519 over the
 * BLAKE2b-512 of the file, plus a global signature over the signature and the
 * trusted comment.  The trusted comment carries the instruction fields.
 *
 *   untrusted comment: <text>
 *   base64("ED" || keyid[8] || sig[64])
 *   trusted comment: <text>
 *   base64(global_sig[64])          global_sig = Ed25519(sig || trusted comment)
 *
 * Security stance: parsing is strict and total: every deviation (missing or
 * extra lines, bad base64, a wrong length, the legacy 'Ed' algorithm, an
 * over-long or non-printable comment, trailing bytes) is refused with its
 * own error code.  The trusted comment is only ever handed out after both
 * signatures verified.  Hashing streams the file in constant memory.
 */
#ifndef SS_SIGFILE_H
#define SS_SIGFILE_H

#include "keys.h"

#include <sodium.h>

#define SS_TRUSTED_COMMENT_MAX 8192
#define SS_HASH_BYTES crypto_generichash_BYTES_MAX /* 64: BLAKE2b-512 */
#define SS_SIGFILE_MAX (SS_COMMENT_MAX + SS_TRUSTED_COMMENT_MAX + 512)

typedef struct ss_sig {
    unsigned char keyid[SS_KEYID_BYTES];
    unsigned char sig[crypto_sign_BYTES];
    unsigned char global_sig[crypto_sign_BYTES];
    char untrusted_comment[SS_COMMENT_MAX + 1];
    char trusted_comment[SS_TRUSTED_COMMENT_MAX + 1];
} ss_sig;

typedef crypto_generichash_state ss_hash;
void ss_hash_init(ss_hash *h);
void ss_hash_update(ss_hash *h, const void *buf, size_t len);
void ss_hash_final(ss_hash *h, unsigned char out[SS_HASH_BYTES]);
/* Hashes a whole file descriptor from its current offset, streaming. */
int ss_hash_fd(int fd, unsigned char out[SS_HASH_BYTES], uint64_t *bytes, ss_error *e);

/* Produces the four-line signature text into out (SS_SIGFILE_MAX bytes). */
int ss_sign_hash(const ss_seckey *sk, const unsigned char hash[SS_HASH_BYTES],
                 const char *trusted_comment, const char *untrusted_comment, char *out,
                 size_t out_len, ss_error *e);

/* Strict parse of a signature file's text. */
int ss_sig_parse(const char *text, size_t len, ss_sig *sig, ss_error *e);
/* True if text looks like a signature file (starts with "untrusted comment: "). */
bool ss_sig_looks_signed(const char *text, size_t len);

/* Checks the key id (SS_E_KEYID naming both) and the global signature over
 * the signature and trusted comment (SS_E_BADGLOBAL): after this the
 * instruction fields are authentic, before the package is even read. */
int ss_sig_verify_comment(const ss_sig *sig, const ss_pubkey *pk, ss_error *e);
/* Checks the package hash against the signature (SS_E_BADSIG). */
int ss_sig_verify_package(const ss_sig *sig, const ss_pubkey *pk,
                          const unsigned char hash[SS_HASH_BYTES], ss_error *e);
/* Both of the above: the key id, then the signature over hash
 * (SS_E_BADSIG), then the global signature (SS_E_BADGLOBAL). */
int ss_sig_verify_hash(const ss_sig *sig, const ss_pubkey *pk,
                       const unsigned char hash[SS_HASH_BYTES], ss_error *e);

/* Convenience for whole files: sign path into sig_path (atomic), verify. */
int ss_sign_file(const ss_seckey *sk, const char *path, const char *sig_path,
                 const char *trusted_comment, const char *untrusted_comment, ss_error *e);
int ss_verify_file(const ss_pubkey *pk, const char *path, const char *sig_path, ss_sig *sig,
                   ss_error *e);

#endif
