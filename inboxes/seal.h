/*
 * seal.h - sealed packages: a package's bytes encrypted to the receiving
 * site, end to end, whatever carries them (issue 15).  libsodium only.
 *
 * The sealed package file (what <ID>.pck holds when the instruction says
 * enc=<KEYID>):
 *
 *   magic      8 bytes  "SSSEAL01"
 *   key id     8 bytes  the receiver's key id (as in the key file: the 8
 *                       bytes minisign stores) the package is sealed to
 *   ephemeral 32 bytes  the sender's ephemeral X25519 public key: a fresh
 *                       one per send and receiver key (every package one
 *                       sending call seals to one key carries the same)
 *   header    24 bytes  crypto_secretstream_xchacha20poly1305 header,
 *                       random, fresh for every package
 *   chunks              crypto_secretstream_xchacha20poly1305 messages:
 *                       each SS_SEAL_CHUNK plaintext bytes (+17), the
 *                       last one shorter (possibly empty) and tagged
 *                       FINAL; nothing may follow it.
 *
 * The receiver's X25519 key is its Ed25519 site key converted with
 * crypto_sign_ed25519_pk_to_curve25519 (the secret half with
 * crypto_sign_ed25519_sk_to_curve25519), so the keys peers already hold,
 * trust, rotate and revoke are the keys packages are sealed to: no second
 * key to distribute, publish or roll over.  The stream key is
 *   BLAKE2b-256(key = "sitespool-seal/1",
 *               X25519(eph_sk, rcpt_pk) || eph_pk || rcpt_pk)
 * (an all-zero shared secret is refused), so it is bound to both public
 * keys; the ephemeral secret is wiped as soon as the stream key is
 * derived, and the stream key (sodium_malloc'd) when the send ends.
 *
 * One stream key for the packages of a send: secretstream derives each
 * stream's subkey and nonce from its random 24-byte header (HChaCha20
 * over the key and 16 random bytes, then 8 more as the nonce), so many
 * streams under one key are its documented use - the streams of a send
 * are as independent as streams under different keys, up to the birthday
 * bound of the 192-bit header, far beyond any send.  Nothing of a
 * package can be moved into another: chunks authenticate only under
 * their own stream's subkey and nonce.  What a shared ephemeral key
 * reveals is that packages belong to one send - which their sequence
 * numbers, times and trusted comments show anyway.  Forward secrecy is
 * unchanged: the sender keeps no ephemeral secret past the send, and the
 * receiver's secret key opens every package, as before.  The receiver
 * derives per package from its header, so an opener that does not cache
 * (tests/e2e/seal_oracle.py) opens them all the same.
 *
 * What is inside (the plaintext stream) is the business of the sender and
 * the despooler: a metadata line "sitespool-sealed/1 name=<pct> size=<n>
 * zip=zlib|none [files=<n>]" and then the payload as it would be stored
 * unsealed.
 *
 * Security stance: the opener authenticates every chunk (Poly1305) and
 * their order (secretstream's nonce), and tells apart a bad header, a
 * chunk that does not authenticate (tampered, reordered, from another
 * stream), a stream that ends before its FINAL chunk, and bytes after it;
 * a pinned opener (ss_open_pin) refuses any header but the pinned one
 * before it derives a key.  libsodium checks each chunk's tag before it
 * decrypts it, and plaintext is handed out chunk by chunk only after that
 * chunk authenticated; it stays in the opener's buffer until the next
 * chunk overwrites it (the caller reads it in place) and the buffers are
 * wiped when the opener ends.  Secret material lives in sodium_malloc'd
 * memory (the caller's, a send's ss_seal_key, an ss_open_cache) or on the
 * stack for one call and is wiped (sodium_memzero).
 * Constant memory: one chunk of buffer on each side (a whole chunk in the
 * caller's input is opened where it lies, not copied).
 */
#ifndef SS_SEAL_H
#define SS_SEAL_H

#include "error.h"

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SS_SEAL_MAGIC "SSSEAL01"
#define SS_SEAL_CHUNK (64 * 1024)
#define SS_SEAL_HEADER_BYTES (8 + 8 + 32 + crypto_secretstream_xchacha20poly1305_HEADERBYTES)
#define SS_SEAL_CHUNK_BYTES (SS_SEAL_CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES)
#define SS_SEAL_KEYID_BYTES 8
#define SS_SEAL_PIN_BYTES 32

/* A sealed header's pin: BLAKE2b-256 (unkeyed) of its SS_SEAL_HEADER_BYTES
 * bytes.  The sender's signed instruction carries it (seal=, as 64
 * lower-case hex digits), so the signature checked before the package is
 * read names the very header - ephemeral key, stream header - of the one
 * stream the receiver may open for it: only the signer (who held the
 * ephemeral secret) could have made a chunk that authenticates under it. */
void ss_seal_pin(const unsigned char header[SS_SEAL_HEADER_BYTES],
                 unsigned char pin[SS_SEAL_PIN_BYTES]);

/* Why a sealed stream could not be opened (each has its own status id at
 * the despooler). */
enum ss_seal_fault {
    SS_SEAL_OK,
    SS_SEAL_BAD_HEADER, /* not a sealed package, sealed to another key id, not the pinned header */
    SS_SEAL_BAD_CHUNK,  /* a chunk did not authenticate: tampered, reordered, foreign */
    SS_SEAL_TRUNCATED,  /* the stream ended before its FINAL chunk */
    SS_SEAL_TRAILING,   /* bytes after the FINAL chunk */
};

typedef int (*ss_seal_write_fn)(void *ctx, const unsigned char *data, size_t len, ss_error *e);

typedef struct ss_sealer {
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned char *plain;  /* SS_SEAL_CHUNK, sodium_malloc'd */
    unsigned char *cipher; /* SS_SEAL_CHUNK_BYTES */
    size_t fill;
    uint64_t plain_bytes, sealed_bytes;
    unsigned char pin[SS_SEAL_PIN_BYTES]; /* of the header written (ss_seal_pin) */
    ss_seal_write_fn write;
    void *ctx;
} ss_sealer;

/* A send's sealing key for one receiver key: the ephemeral key pair is
 * made, and X25519 and the key derivation run, on the first
 * ss_seal_begin_key; later packages reuse the derived stream key (in
 * sodium_malloc'd memory), each with its own random header.  One thread
 * at a time; ss_seal_key_free wipes it (safe on an unused one, twice). */
typedef struct ss_seal_key {
    unsigned char rcpt_pk[32]; /* the receiver's Ed25519 public key */
    unsigned char keyid[SS_SEAL_KEYID_BYTES];
    unsigned char eph_pk[32]; /* once made */
    unsigned char *key;       /* the stream key, sodium_malloc'd; NULL until made */
} ss_seal_key;

/* No crypto and no allocation: the key is made when first used. */
void ss_seal_key_init(ss_seal_key *k, const unsigned char rcpt_ed25519_pk[32],
                      const unsigned char rcpt_keyid[SS_SEAL_KEYID_BYTES]);
void ss_seal_key_free(ss_seal_key *k);
/* Writes the header of a package sealed with the send's key k. */
int ss_seal_begin_key(ss_sealer *s, ss_seal_key *k, ss_seal_write_fn write, void *ctx, ss_error *e);
/* The same with a key of its own (one package): for the receiver's
 * Ed25519 public key (converted here) and its key id. */
int ss_seal_begin(ss_sealer *s, const unsigned char rcpt_ed25519_pk[32],
                  const unsigned char rcpt_keyid[SS_SEAL_KEYID_BYTES], ss_seal_write_fn write,
                  void *ctx, ss_error *e);
int ss_seal_update(ss_sealer *s, const void *data, size_t len, ss_error *e);
/* The FINAL chunk; wipes and frees the state (also after a failure). */
int ss_seal_end(ss_sealer *s, ss_error *e);
void ss_seal_abort(ss_sealer *s);

typedef struct ss_opener {
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned char header[SS_SEAL_HEADER_BYTES];
    size_t header_fill;
    bool started, final_seen;
    unsigned char *cipher; /* SS_SEAL_CHUNK_BYTES, sodium_malloc'd */
    unsigned char *plain;  /* SS_SEAL_CHUNK */
    size_t fill;
    uint64_t chunks, plain_bytes;
    const unsigned char *ed25519_sk; /* the caller's (see ss_open_begin) */
    unsigned char keyid[SS_SEAL_KEYID_BYTES];
    struct ss_open_cache *cache; /* NULL: none */
    /* a derived stream key, cached once a chunk authenticated; wiped */
    unsigned char pending[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    bool pending_set;
    enum ss_seal_fault fault;
    unsigned char pin[SS_SEAL_PIN_BYTES]; /* ss_open_pin's */
    bool pinned;
    ss_seal_write_fn write;
    void *ctx;
} ss_opener;

/* The key id a sealed header names (1), or 0 if data is not (yet, len <
 * SS_SEAL_HEADER_BYTES) a sealed header. */
int ss_seal_header_keyid(const unsigned char *data, size_t len,
                         unsigned char keyid[SS_SEAL_KEYID_BYTES]);
/* Prepares to open a stream sealed to the Ed25519 key pair whose secret
 * key is ed25519_sk (64 bytes, libsodium's form, in the caller's guarded
 * memory: it is read, not copied, when the header arrives, so it must
 * stay until ss_open_end or ss_open_abort) and key id keyid.  The X25519
 * secret is converted on the stack for that moment and wiped. */
int ss_open_begin(ss_opener *o, const unsigned char ed25519_sk[64],
                  const unsigned char keyid[SS_SEAL_KEYID_BYTES], ss_seal_write_fn write, void *ctx,
                  ss_error *e);

/* Stream keys an opener derived, by (ephemeral public key, key id, the
 * opening key's Ed25519 public key): the packages of one send share an
 * ephemeral key, so they cost one X25519 at the receiver.  At most
 * SS_OPEN_CACHE_SLOTS keys (the least recently used is wiped and
 * replaced), in sodium_malloc'd memory, wiped by ss_open_cache_free.
 * A key is cached only once a chunk authenticated under it, so a cached
 * key is the one derivation gives (a hit opens exactly what a miss
 * opens), a header that never authenticates caches nothing, and a key is
 * only ever used again for the same ephemeral key, key id and own public
 * key.  Safe to share between threads (a mutex, not held while deriving:
 * threads that start on one send together may each derive once). */
#define SS_OPEN_CACHE_SLOTS 16
typedef struct ss_open_cache ss_open_cache;
ss_open_cache *ss_open_cache_new(ss_error *e);
void ss_open_cache_free(ss_open_cache *c);
/* ss_open_begin with a cache (NULL: none, as ss_open_begin). */
int ss_open_begin_cached(ss_opener *o, ss_open_cache *cache, const unsigned char ed25519_sk[64],
                         const unsigned char keyid[SS_SEAL_KEYID_BYTES], ss_seal_write_fn write,
                         void *ctx, ss_error *e);
/* The header must have this pin (ss_seal_pin), or the stream is refused
 * as a bad header before any key is derived.  Call before the first
 * ss_open_update. */
void ss_open_pin(ss_opener *o, const unsigned char pin[SS_SEAL_PIN_BYTES]);
/* Feeds sealed bytes in pieces of any size; plaintext goes to write as
 * each chunk authenticates.  -1 with o->fault set on a sealing fault (or
 * SS_SEAL_OK when write failed). */
int ss_open_update(ss_opener *o, const void *data, size_t len, ss_error *e);
/* The end of the sealed bytes: -1 (SS_SEAL_TRUNCATED) unless the FINAL
 * chunk came.  Wipes and frees the state (also after a failure). */
int ss_open_end(ss_opener *o, ss_error *e);
void ss_open_abort(ss_opener *o);

/* ---- what is inside: the metadata line, then the payload ----
 *
 *   sitespool-sealed/1 name=<pct-encoded> size=<n> zip=zlib|none[ files=<n>]\n
 *
 * name, size, zip and files mean what they mean in an unsealed
 * instruction (instruction.h) and are checked by the same rules; the line
 * is at most SS_SEALED_META_MAX bytes including its newline.  The sealed
 * instruction itself carries enc=<16 hex: the receiver's key id>,
 * seal=<64 hex: the header's pin>, name=sealed, zip=none,
 * size=<the sealed package's length> and no files=
 * (instruction.c enforces this), so the file name, the real size, the
 * compression and the number of files of a bundle travel sealed. */
#define SS_SEALED_META_MAGIC "sitespool-sealed/1"
#define SS_SEALED_META_MAX 1024
#define SS_SEALED_NAME "sealed"

typedef struct ss_sealed_meta {
    char name[256]; /* SS_NAME_MAX + 1 */
    uint64_t size;
    int zip;        /* enum ss_zip */
    unsigned files; /* 0: one file */
} ss_sealed_meta;

int ss_sealed_meta_format(const ss_sealed_meta *m, char *out, size_t len, ss_error *e);
/* line: up to and including its newline (len counts it). */
int ss_sealed_meta_parse(const char *line, size_t len, ss_sealed_meta *m, ss_error *e);

#endif
