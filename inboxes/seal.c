/*
 * seal.c - sealed packages: the sealer, the opener and the metadata line.
 * See seal.h for the format, the key derivation and the security stance.
 *
 * Chunking: the sealer emits a MESSAGE chunk the moment SS_SEAL_CHUNK
 * plaintext bytes are buffered, so the FINAL chunk always holds fewer
 * (possibly none).  The opener relies on that: a whole SS_SEAL_CHUNK_BYTES
 * buffer must be a MESSAGE chunk, and only what is left when the input
 * ends may be (and must be) the FINAL one.  Anything else - another tag,
 * a full-size FINAL chunk, a chunk that does not authenticate - is a bad
 * chunk.  Bytes after the FINAL chunk are found as such when the FINAL
 * chunk authenticated before them (the caller fed them later), or when
 * the input ends at most TRAILING_PROBE bytes after it: a remainder that
 * does not authenticate whole is tried shorter by one byte at a time that
 * far (each try costs one chunk's MAC, so the probe is bounded; longer
 * extensions are bad chunks - the despooler compares the package's length
 * with the instruction's size= before it opens it anyway).  Errors are
 * SS_E_FORMAT (header, chunk), SS_E_TRUNCATED and
 * SS_E_TRAILING, with o->fault saying which.
 */
#include "seal.h"

#include "instruction.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_KDF_KEY "sitespool-seal/1"
#define MAGIC_BYTES 8
#define EPH_OFF (MAGIC_BYTES + SS_SEAL_KEYID_BYTES)
#define SS_HDR_OFF (EPH_OFF + crypto_scalarmult_BYTES)
#define TAG_MESSAGE crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define TAG_FINAL crypto_secretstream_xchacha20poly1305_TAG_FINAL
#define TRAILING_PROBE 64

_Static_assert(sizeof SEAL_KDF_KEY - 1 >= crypto_generichash_KEYBYTES_MIN, "KDF key too short");
_Static_assert(SS_HDR_OFF + crypto_secretstream_xchacha20poly1305_HEADERBYTES ==
                   SS_SEAL_HEADER_BYTES,
               "header layout");

/* ------------------------------------------------------------------ keys */

/* The stream key for a shared secret and both public keys (seal.h).  -1
 * for an all-zero shared secret (a low-order public key). */
static int stream_key(unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES],
                      const unsigned char our_sk[32], const unsigned char their_pk[32],
                      const unsigned char eph_pk[32], const unsigned char rcpt_pk[32])
{
    unsigned char shared[crypto_scalarmult_BYTES];
    int rc = crypto_scalarmult(shared, our_sk, their_pk);
    if (rc == 0 && sodium_is_zero(shared, sizeof shared)) rc = -1;
    if (rc == 0) {
        crypto_generichash_state h;
        crypto_generichash_init(&h, (const unsigned char *)SEAL_KDF_KEY, sizeof SEAL_KDF_KEY - 1,
                                crypto_secretstream_xchacha20poly1305_KEYBYTES);
        crypto_generichash_update(&h, shared, sizeof shared);
        crypto_generichash_update(&h, eph_pk, 32);
        crypto_generichash_update(&h, rcpt_pk, 32);
        crypto_generichash_final(&h, key, crypto_secretstream_xchacha20poly1305_KEYBYTES);
        sodium_memzero(&h, sizeof h);
    }
    sodium_memzero(shared, sizeof shared);
    return rc;
}

/* ---------------------------------------------------------------- sealer */

/* The chunk buffers hold data, not keys: plain malloc (sodium_malloc's
 * guard pages and mlock cost a dozen system calls per package, which
 * small packages felt: measured 0.6x), wiped before they are freed.  The
 * keys (the stream state, the derived secret) stay in sodium memory or on
 * the stack, wiped. */
static void *chunk_alloc(size_t n)
{
    return malloc(n);
}

static void chunk_free(void *p, size_t n)
{
    if (!p) return;
    sodium_memzero(p, n);
    free(p);
}

/* Wiped as far as they were used: a small package fills a few bytes of
 * them, and wiping both whole cost more than sealing it. */
static void sealer_free(ss_sealer *s)
{
    size_t used = s->plain_bytes < SS_SEAL_CHUNK ? (size_t)s->plain_bytes : SS_SEAL_CHUNK;
    chunk_free(s->plain, used);
    chunk_free(s->cipher, used + crypto_secretstream_xchacha20poly1305_ABYTES);
    s->plain = s->cipher = NULL;
    sodium_memzero(&s->st, sizeof s->st);
    s->fill = 0;
}

static int sealer_out(ss_sealer *s, const unsigned char *data, size_t len, ss_error *e)
{
    if (s->write(s->ctx, data, len, e) != 0) return -1;
    s->sealed_bytes += len;
    return 0;
}

/* ------------------------------------------------------- a send's key */

void ss_seal_key_init(ss_seal_key *k, const unsigned char rcpt_ed25519_pk[32],
                      const unsigned char rcpt_keyid[SS_SEAL_KEYID_BYTES])
{
    memset(k, 0, sizeof *k);
    memcpy(k->rcpt_pk, rcpt_ed25519_pk, sizeof k->rcpt_pk);
    memcpy(k->keyid, rcpt_keyid, SS_SEAL_KEYID_BYTES);
}

void ss_seal_key_free(ss_seal_key *k)
{
    if (k->key) {
        sodium_memzero(k->key, crypto_secretstream_xchacha20poly1305_KEYBYTES);
        sodium_free(k->key);
    }
    k->key = NULL;
}

/* The ephemeral key pair and the stream key, once per ss_seal_key: the
 * ephemeral secret lives on the stack for this call and is wiped. */
static int seal_key_make(ss_seal_key *k, ss_error *e)
{
    unsigned char rcpt_x[crypto_scalarmult_BYTES], eph_sk[crypto_scalarmult_SCALARBYTES];
    if (crypto_sign_ed25519_pk_to_curve25519(rcpt_x, k->rcpt_pk) != 0)
        return ss_err(e, SS_E_FORMAT,
                      "the receiver's public key is not a usable Ed25519 key: nothing can be "
                      "sealed to it");
    unsigned char *key = sodium_malloc(crypto_secretstream_xchacha20poly1305_KEYBYTES);
    if (!key) return ss_err(e, SS_E_NOMEM, "out of memory for sealing");
    randombytes_buf(eph_sk, sizeof eph_sk);
    int rc = crypto_scalarmult_base(k->eph_pk, eph_sk);
    if (rc == 0) rc = stream_key(key, eph_sk, rcpt_x, k->eph_pk, rcpt_x);
    sodium_memzero(eph_sk, sizeof eph_sk);
    if (rc != 0) {
        sodium_memzero(key, crypto_secretstream_xchacha20poly1305_KEYBYTES);
        sodium_free(key);
        return ss_err(e, SS_E_FORMAT,
                      "the receiver's key gives no usable shared secret (a low-order key): "
                      "nothing can be sealed to it");
    }
    k->key = key;
    return 0;
}

void ss_seal_pin(const unsigned char header[SS_SEAL_HEADER_BYTES],
                 unsigned char pin[SS_SEAL_PIN_BYTES])
{
    crypto_generichash(pin, SS_SEAL_PIN_BYTES, header, SS_SEAL_HEADER_BYTES, NULL, 0);
}

/* The sealed header: the send's ephemeral key, a fresh random stream
 * header (init_push draws it); the key schedule in s->st, the pin in
 * s->pin. */
static int sealer_header(ss_sealer *s, const ss_seal_key *k, ss_error *e)
{
    unsigned char head[SS_SEAL_HEADER_BYTES];
    memcpy(head, SS_SEAL_MAGIC, MAGIC_BYTES);
    memcpy(head + MAGIC_BYTES, k->keyid, SS_SEAL_KEYID_BYTES);
    memcpy(head + EPH_OFF, k->eph_pk, crypto_scalarmult_BYTES);
    crypto_secretstream_xchacha20poly1305_init_push(&s->st, head + SS_HDR_OFF, k->key);
    ss_seal_pin(head, s->pin);
    return sealer_out(s, head, sizeof head, e);
}

int ss_seal_begin_key(ss_sealer *s, ss_seal_key *k, ss_seal_write_fn write, void *ctx, ss_error *e)
{
    memset(s, 0, sizeof *s);
    s->write = write;
    s->ctx = ctx;
    if (!k->key && seal_key_make(k, e) != 0) return -1;
    s->plain = chunk_alloc(SS_SEAL_CHUNK);
    s->cipher = chunk_alloc(SS_SEAL_CHUNK_BYTES);
    int rc = s->plain && s->cipher ? 0 : ss_err(e, SS_E_NOMEM, "out of memory for sealing");
    if (rc == 0) rc = sealer_header(s, k, e);
    if (rc != 0) sealer_free(s);
    return rc;
}

int ss_seal_begin(ss_sealer *s, const unsigned char rcpt_ed25519_pk[32],
                  const unsigned char rcpt_keyid[SS_SEAL_KEYID_BYTES], ss_seal_write_fn write,
                  void *ctx, ss_error *e)
{
    ss_seal_key k;
    ss_seal_key_init(&k, rcpt_ed25519_pk, rcpt_keyid);
    int rc = ss_seal_begin_key(s, &k, write, ctx, e);
    ss_seal_key_free(&k); /* the state holds what it needs */
    return rc;
}

/* Seals the buffered plaintext as one chunk with tag. */
static int seal_chunk(ss_sealer *s, unsigned char tag, ss_error *e)
{
    unsigned long long clen;
    crypto_secretstream_xchacha20poly1305_push(&s->st, s->cipher, &clen, s->plain, s->fill, NULL, 0,
                                               tag);
    s->fill = 0;
    return sealer_out(s, s->cipher, (size_t)clen, e);
}

int ss_seal_update(ss_sealer *s, const void *data, size_t len, ss_error *e)
{
    const unsigned char *p = data;
    if (!s->plain) return ss_err(e, SS_E_USAGE, "sealing a stream that was not begun");
    while (len > 0) {
        size_t take = SS_SEAL_CHUNK - s->fill < len ? SS_SEAL_CHUNK - s->fill : len;
        memcpy(s->plain + s->fill, p, take);
        s->fill += take;
        s->plain_bytes += take;
        p += take;
        len -= take;
        if (s->fill == SS_SEAL_CHUNK && seal_chunk(s, TAG_MESSAGE, e) != 0) return -1;
    }
    return 0;
}

int ss_seal_end(ss_sealer *s, ss_error *e)
{
    int rc = s->plain ? seal_chunk(s, TAG_FINAL, e)
                      : ss_err(e, SS_E_USAGE, "sealing a stream that was not begun");
    sealer_free(s);
    return rc;
}

void ss_seal_abort(ss_sealer *s)
{
    sealer_free(s);
}

int ss_seal_header_keyid(const unsigned char *data, size_t len,
                         unsigned char keyid[SS_SEAL_KEYID_BYTES])
{
    if (len < SS_SEAL_HEADER_BYTES || memcmp(data, SS_SEAL_MAGIC, MAGIC_BYTES) != 0) return 0;
    memcpy(keyid, data + MAGIC_BYTES, SS_SEAL_KEYID_BYTES);
    return 1;
}

/* ---------------------------------------------------- the opener's cache */

/* Slots are found by (ephemeral public key, key id, this site's Ed25519
 * public key) - all public; the stream keys are in keys, sodium_malloc'd,
 * slot i at i * KEYBYTES.  tick orders the slots by last use (LRU). */
struct ss_open_cache {
    pthread_mutex_t lock;
    uint64_t tick;
    struct {
        uint64_t used; /* 0: empty */
        unsigned char eph[crypto_scalarmult_BYTES];
        unsigned char keyid[SS_SEAL_KEYID_BYTES];
        unsigned char own_pk[crypto_sign_PUBLICKEYBYTES];
    } slot[SS_OPEN_CACHE_SLOTS];
    unsigned char *keys;
};

#define CACHE_KEYBYTES crypto_secretstream_xchacha20poly1305_KEYBYTES

ss_open_cache *ss_open_cache_new(ss_error *e)
{
    ss_open_cache *c = calloc(1, sizeof *c);
    if (c) c->keys = sodium_malloc(SS_OPEN_CACHE_SLOTS * CACHE_KEYBYTES);
    if (!c || !c->keys || pthread_mutex_init(&c->lock, NULL) != 0) {
        if (c && c->keys) sodium_free(c->keys);
        free(c);
        ss_err(e, SS_E_NOMEM, "out of memory for the sealed packages' key cache");
        return NULL;
    }
    sodium_memzero(c->keys, SS_OPEN_CACHE_SLOTS * CACHE_KEYBYTES);
    return c;
}

void ss_open_cache_free(ss_open_cache *c)
{
    if (!c) return;
    sodium_memzero(c->keys, SS_OPEN_CACHE_SLOTS * CACHE_KEYBYTES);
    sodium_free(c->keys);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The stream key for header h under this site's key, computed: the
 * secret half converted on the stack for this call and wiped.  0; 1 when
 * the ephemeral key is unusable (low order); -1 when this site's key is
 * (*e). */
static int derive_key(const unsigned char ed25519_sk[64], const unsigned char *h,
                      unsigned char key[CACHE_KEYBYTES], ss_error *e)
{
    unsigned char rcpt_sk[crypto_scalarmult_SCALARBYTES], rcpt_pk[crypto_scalarmult_BYTES];
    /* libsodium's secret key is seed || public key: the receiver's X25519
     * public key is that key converted, as the sender converts it. */
    if (crypto_sign_ed25519_pk_to_curve25519(rcpt_pk, ed25519_sk + 32) != 0)
        return ss_err(e, SS_E_FORMAT, "this site's secret key holds no valid public key");
    crypto_sign_ed25519_sk_to_curve25519(rcpt_sk, ed25519_sk);
    int rc = stream_key(key, rcpt_sk, h + EPH_OFF, h + EPH_OFF, rcpt_pk);
    sodium_memzero(rcpt_sk, sizeof rcpt_sk);
    return rc == 0 ? 0 : 1;
}

/* The cached stream key for header h under this site's key: 1, or 0. */
static int cache_get(ss_open_cache *c, const unsigned char *h, const unsigned char *own_pk,
                     unsigned char key[CACHE_KEYBYTES])
{
    int found = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; !found && i < SS_OPEN_CACHE_SLOTS; i++) {
        if (c->slot[i].used && !memcmp(c->slot[i].eph, h + EPH_OFF, crypto_scalarmult_BYTES) &&
            !memcmp(c->slot[i].keyid, h + MAGIC_BYTES, SS_SEAL_KEYID_BYTES) &&
            !memcmp(c->slot[i].own_pk, own_pk, crypto_sign_PUBLICKEYBYTES)) {
            c->slot[i].used = ++c->tick;
            memcpy(key, c->keys + (size_t)i * CACHE_KEYBYTES, CACHE_KEYBYTES);
            found = 1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

/* Remembers a stream key that authenticated a chunk of header h: in the
 * least recently used slot, wiped first (or in its own slot if another
 * thread put it there meanwhile). */
static void cache_put(ss_open_cache *c, const unsigned char *h, const unsigned char *own_pk,
                      const unsigned char key[CACHE_KEYBYTES])
{
    pthread_mutex_lock(&c->lock);
    int victim = 0;
    for (int i = 0; i < SS_OPEN_CACHE_SLOTS; i++) {
        if (c->slot[i].used && !memcmp(c->slot[i].eph, h + EPH_OFF, crypto_scalarmult_BYTES) &&
            !memcmp(c->slot[i].keyid, h + MAGIC_BYTES, SS_SEAL_KEYID_BYTES) &&
            !memcmp(c->slot[i].own_pk, own_pk, crypto_sign_PUBLICKEYBYTES)) {
            victim = i;
            break;
        }
        if (c->slot[i].used < c->slot[victim].used) victim = i;
    }
    unsigned char *slot_key = c->keys + (size_t)victim * CACHE_KEYBYTES;
    sodium_memzero(slot_key, CACHE_KEYBYTES);
    memcpy(slot_key, key, CACHE_KEYBYTES);
    memcpy(c->slot[victim].eph, h + EPH_OFF, crypto_scalarmult_BYTES);
    memcpy(c->slot[victim].keyid, h + MAGIC_BYTES, SS_SEAL_KEYID_BYTES);
    memcpy(c->slot[victim].own_pk, own_pk, crypto_sign_PUBLICKEYBYTES);
    c->slot[victim].used = ++c->tick;
    pthread_mutex_unlock(&c->lock);
}

/* ---------------------------------------------------------------- opener */

/* The chunk buffers were used as far as the chunks that opened reached,
 * or what is buffered now: that much is wiped (the plaintext is wiped
 * after each use too). */
static void opener_free(ss_opener *o)
{
    uint64_t opened = o->plain_bytes + crypto_secretstream_xchacha20poly1305_ABYTES;
    size_t used = opened < SS_SEAL_CHUNK_BYTES ? (size_t)opened : SS_SEAL_CHUNK_BYTES;
    if (o->fill > used) used = o->fill;
    chunk_free(o->cipher, used);
    chunk_free(o->plain, used < SS_SEAL_CHUNK ? used : SS_SEAL_CHUNK);
    o->cipher = o->plain = NULL;
    sodium_memzero(o->pending, sizeof o->pending);
    o->pending_set = false;
    o->ed25519_sk = NULL;
    o->cache = NULL;
    sodium_memzero(&o->st, sizeof o->st);
    o->fill = 0;
}

/* A fault: recorded, and said. */
static int fault(ss_opener *o, enum ss_seal_fault f, enum ss_errcode code, ss_error *e,
                 const char *what)
{
    o->fault = f;
    return ss_err(e, code, "%s", what);
}

int ss_open_begin_cached(ss_opener *o, ss_open_cache *cache, const unsigned char ed25519_sk[64],
                         const unsigned char keyid[SS_SEAL_KEYID_BYTES], ss_seal_write_fn write,
                         void *ctx, ss_error *e)
{
    memset(o, 0, sizeof *o);
    o->write = write;
    o->ctx = ctx;
    o->cache = cache;
    o->ed25519_sk = ed25519_sk;
    memcpy(o->keyid, keyid, SS_SEAL_KEYID_BYTES);
    o->cipher = chunk_alloc(SS_SEAL_CHUNK_BYTES);
    o->plain = chunk_alloc(SS_SEAL_CHUNK);
    if (!o->cipher || !o->plain) {
        opener_free(o);
        return ss_err(e, SS_E_NOMEM, "out of memory for opening a sealed package");
    }
    return 0;
}

int ss_open_begin(ss_opener *o, const unsigned char ed25519_sk[64],
                  const unsigned char keyid[SS_SEAL_KEYID_BYTES], ss_seal_write_fn write, void *ctx,
                  ss_error *e)
{
    return ss_open_begin_cached(o, NULL, ed25519_sk, keyid, write, ctx, e);
}

void ss_open_pin(ss_opener *o, const unsigned char pin[SS_SEAL_PIN_BYTES])
{
    memcpy(o->pin, pin, SS_SEAL_PIN_BYTES);
    o->pinned = true;
}

/* The whole header is in o->header: check it, derive the stream key. */
static int open_header(ss_opener *o, ss_error *e)
{
    const unsigned char *h = o->header;
    if (o->pinned) {
        unsigned char pin[SS_SEAL_PIN_BYTES];
        ss_seal_pin(h, pin);
        if (sodium_memcmp(pin, o->pin, sizeof pin) != 0)
            return fault(o, SS_SEAL_BAD_HEADER, SS_E_FORMAT, e,
                         "its sealed header is not the one its signed instruction names "
                         "(seal=): another package's header, or a damaged one");
    }
    if (memcmp(h, SS_SEAL_MAGIC, MAGIC_BYTES) != 0)
        return fault(o, SS_SEAL_BAD_HEADER, SS_E_FORMAT, e,
                     "the package does not start with " SS_SEAL_MAGIC
                     ": it is not a sealed package (or a newer kind)");
    if (memcmp(h + MAGIC_BYTES, o->keyid, SS_SEAL_KEYID_BYTES) != 0) {
        char got[17], want[17];
        sodium_bin2hex(got, sizeof got, h + MAGIC_BYTES, SS_SEAL_KEYID_BYTES);
        sodium_bin2hex(want, sizeof want, o->keyid, SS_SEAL_KEYID_BYTES);
        o->fault = SS_SEAL_BAD_HEADER;
        return ss_err(e, SS_E_KEYID,
                      "the package is sealed to key bytes %s, and this opener holds the key "
                      "with bytes %s",
                      got, want);
    }
    unsigned char key[CACHE_KEYBYTES];
    int rc = 0;
    if (!o->cache || !cache_get(o->cache, h, o->ed25519_sk + 32, key)) {
        rc = derive_key(o->ed25519_sk, h, key, e);
        /* Cached once a chunk authenticated under it (open_chunk): only a
         * key proven right for this header is ever handed out again. */
        if (rc == 0 && o->cache) {
            memcpy(o->pending, key, sizeof key);
            o->pending_set = true;
        }
    }
    if (rc == 0 && crypto_secretstream_xchacha20poly1305_init_pull(&o->st, h + SS_HDR_OFF, key))
        rc = 1;
    sodium_memzero(key, sizeof key);
    if (rc < 0) return -1; /* this site's key is unusable: not the package's fault */
    if (rc != 0)
        return fault(o, SS_SEAL_BAD_HEADER, SS_E_FORMAT, e,
                     "the sealed package's ephemeral key is unusable (a low-order point): "
                     "the header was forged or damaged");
    o->started = true;
    return 0;
}

/* Does a shorter prefix of the buffered remainder authenticate as the
 * FINAL chunk (bytes were appended after it)?  Nothing is handed out:
 * secretstream's state only changes when a chunk authenticates, and the
 * stream is refused either way. */
static bool final_then_trailing(ss_opener *o)
{
    size_t low = crypto_secretstream_xchacha20poly1305_ABYTES;
    if (o->fill > TRAILING_PROBE + low) low = o->fill - TRAILING_PROBE;
    for (size_t len = o->fill - 1; len >= low && len < o->fill; len--) {
        crypto_secretstream_xchacha20poly1305_state st = o->st;
        unsigned long long mlen;
        unsigned char tag;
        int rc = crypto_secretstream_xchacha20poly1305_pull(&st, o->plain, &mlen, &tag, o->cipher,
                                                            len, NULL, 0);
        sodium_memzero(&st, sizeof st);
        if (rc == 0) sodium_memzero(o->plain, (size_t)mlen);
        if (rc == 0 && tag == TAG_FINAL) return true;
    }
    return false;
}

/* Opens the chunk of len bytes at src (the buffered one, or a whole one
 * in the caller's input); final: it is the last (the input ended). */
static int open_chunk(ss_opener *o, const unsigned char *src, size_t len, bool final, ss_error *e)
{
    unsigned long long mlen;
    unsigned char tag;
    if (crypto_secretstream_xchacha20poly1305_pull(&o->st, o->plain, &mlen, &tag, src, len, NULL,
                                                   0) != 0) {
        if (final && final_then_trailing(o))
            return fault(o, SS_SEAL_TRAILING, SS_E_TRAILING, e,
                         "bytes follow the final chunk of the sealed package");
        o->fault = SS_SEAL_BAD_CHUNK;
        return ss_err(e, SS_E_FORMAT,
                      "chunk %" PRIu64 " of the sealed package does not authenticate: it was "
                      "damaged, reordered or taken from another package",
                      o->chunks + 1);
    }
    unsigned char want = final ? TAG_FINAL : TAG_MESSAGE;
    if (tag != want) {
        sodium_memzero(o->plain, (size_t)mlen);
        o->fault = SS_SEAL_BAD_CHUNK;
        return ss_err(e, SS_E_FORMAT,
                      "chunk %" PRIu64 " of the sealed package is tagged %u where a %s chunk "
                      "must be",
                      o->chunks + 1, tag, final ? "final (shorter)" : "full-size message");
    }
    if (o->pending_set) {
        cache_put(o->cache, o->header, o->ed25519_sk + 32, o->pending);
        sodium_memzero(o->pending, sizeof o->pending);
        o->pending_set = false;
    }
    o->fill = 0;
    o->chunks++;
    o->plain_bytes += mlen;
    o->final_seen = final;
    /* The plaintext stays in o->plain until the next chunk overwrites it
     * (the caller may read it until its next call) and is wiped when the
     * opener ends. */
    return mlen ? o->write(o->ctx, o->plain, (size_t)mlen, e)
                : 0; /* a write failure leaves fault at SS_SEAL_OK */
}

/* Takes header bytes; returns how many were used. */
static size_t take_header(ss_opener *o, const unsigned char *p, size_t len)
{
    size_t take = SS_SEAL_HEADER_BYTES - o->header_fill;
    if (take > len) take = len;
    memcpy(o->header + o->header_fill, p, take);
    o->header_fill += take;
    return take;
}

int ss_open_update(ss_opener *o, const void *data, size_t len, ss_error *e)
{
    const unsigned char *p = data;
    if (o->fault != SS_SEAL_OK) return ss_err(e, SS_E_USAGE, "the sealed stream already failed");
    if (!o->cipher) return ss_err(e, SS_E_USAGE, "opening a stream that was not begun");
    while (len > 0) {
        if (o->final_seen)
            return fault(o, SS_SEAL_TRAILING, SS_E_TRAILING, e,
                         "bytes follow the final chunk of the sealed package");
        if (!o->started) {
            size_t used = take_header(o, p, len);
            p += used;
            len -= used;
            if (o->header_fill == SS_SEAL_HEADER_BYTES && open_header(o, e) != 0) return -1;
            continue;
        }
        if (o->fill == 0 && len >= SS_SEAL_CHUNK_BYTES) { /* a whole chunk: opened in place */
            if (open_chunk(o, p, SS_SEAL_CHUNK_BYTES, false, e) != 0) return -1;
            p += SS_SEAL_CHUNK_BYTES;
            len -= SS_SEAL_CHUNK_BYTES;
            continue;
        }
        size_t take = SS_SEAL_CHUNK_BYTES - o->fill < len ? SS_SEAL_CHUNK_BYTES - o->fill : len;
        memcpy(o->cipher + o->fill, p, take);
        o->fill += take;
        p += take;
        len -= take;
        if (o->fill == SS_SEAL_CHUNK_BYTES && open_chunk(o, o->cipher, o->fill, false, e) != 0)
            return -1;
    }
    return 0;
}

/* The end of the input: what is buffered must be the final chunk. */
static int open_finish(ss_opener *o, ss_error *e)
{
    if (o->fault != SS_SEAL_OK) return ss_err(e, SS_E_USAGE, "the sealed stream already failed");
    if (!o->cipher) return ss_err(e, SS_E_USAGE, "opening a stream that was not begun");
    if (o->final_seen) return 0;
    if (!o->started)
        return fault(o, SS_SEAL_TRUNCATED, SS_E_TRUNCATED, e,
                     "the sealed package ends inside its header");
    if (o->fill < crypto_secretstream_xchacha20poly1305_ABYTES)
        return fault(o, SS_SEAL_TRUNCATED, SS_E_TRUNCATED, e,
                     "the sealed package ends before its final chunk");
    return open_chunk(o, o->cipher, o->fill, true, e);
}

int ss_open_end(ss_opener *o, ss_error *e)
{
    int rc = open_finish(o, e);
    opener_free(o);
    return rc;
}

void ss_open_abort(ss_opener *o)
{
    opener_free(o);
}

/* ---------------------------------------------------------- metadata line */

int ss_sealed_meta_format(const ss_sealed_meta *m, char *out, size_t len, ss_error *e)
{
    char name[SS_NAME_MAX * 3 + 1], files[32] = "";
    if (!ss_file_name_valid(m->name))
        return ss_err(e, SS_E_FIELD, "'%.64s' is not a deliverable file name", m->name);
    if (m->files > SS_BUNDLE_FILES_MAX)
        return ss_err(e, SS_E_FIELD, "files %u is out of range (1 to %d)", m->files,
                      SS_BUNDLE_FILES_MAX);
    if (m->zip != SS_ZIP_ZLIB && m->zip != SS_ZIP_NONE)
        return ss_err(e, SS_E_FIELD, "zip %d is neither zlib nor none", m->zip);
    if (ss_pct_encode(m->name, name, sizeof name) != 0)
        return ss_err(e, SS_E_FIELD, "the file name is too long to encode");
    if (m->files) snprintf(files, sizeof files, " files=%u", m->files);
    size_t cap = len < SS_SEALED_META_MAX + 1 ? len : SS_SEALED_META_MAX + 1;
    int n = snprintf(out, cap, SS_SEALED_META_MAGIC " name=%s size=%" PRIu64 " zip=%s%s\n", name,
                     m->size, m->zip == SS_ZIP_ZLIB ? "zlib" : "none", files);
    if (n < 0 || (size_t)n >= cap)
        return ss_err(e, SS_E_TOOBIG, "the sealed metadata line does not fit in %zu bytes",
                      cap - 1);
    return 0;
}

/* "key=" at *p: advances past it, or -1. */
static int expect_key(const char **p, const char *end, const char *key, ss_error *e)
{
    size_t n = strlen(key);
    if ((size_t)(end - *p) <= n || memcmp(*p, key, n) != 0 || (*p)[n] != '=')
        return ss_err(
            e, SS_E_FIELD,
            "the sealed metadata line must have '%s=' here (the form is '" SS_SEALED_META_MAGIC
            " name=... size=... zip=...[ files=...]')",
            key);
    *p += n + 1;
    return 0;
}

/* The value at *p up to the next space or the end; advances past it. */
static size_t value_len(const char **p, const char *end)
{
    const char *v = *p;
    while (*p < end && **p != ' ')
        ++*p;
    return (size_t)(*p - v);
}

/* A decimal number without a leading zero, at most max. */
static int meta_number(const char *v, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 20 || (v[0] == '0' && n > 1)) return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (max - d) / 10) return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

static int meta_name(const char **p, const char *end, ss_sealed_meta *m, ss_error *e)
{
    if (expect_key(p, end, "name", e) != 0) return -1;
    const char *v = *p;
    size_t n = value_len(p, end);
    if (ss_pct_decode(v, n, m->name, sizeof m->name) != 0 || !ss_file_name_valid(m->name))
        return ss_err(e, SS_E_FIELD,
                      "name in the sealed metadata is not a plain file name (bad "
                      "percent-encoding, empty, '/', leading '.', control characters or longer "
                      "than 255 bytes)");
    return 0;
}

static int meta_size(const char **p, const char *end, ss_sealed_meta *m, ss_error *e)
{
    if (expect_key(p, end, "size", e) != 0) return -1;
    const char *v = *p;
    size_t n = value_len(p, end);
    if (meta_number(v, n, INT64_MAX, &m->size) != 0)
        return ss_err(e, SS_E_FIELD,
                      "size '%.*s' in the sealed metadata is not a number (decimal, no leading "
                      "zeros, at most %" PRId64 ")",
                      (int)(n > 24 ? 24 : n), v, INT64_MAX);
    return 0;
}

static int meta_zip(const char **p, const char *end, ss_sealed_meta *m, ss_error *e)
{
    if (expect_key(p, end, "zip", e) != 0) return -1;
    const char *v = *p;
    size_t n = value_len(p, end);
    if (n == 4 && !memcmp(v, "zlib", 4))
        m->zip = SS_ZIP_ZLIB;
    else if (n == 4 && !memcmp(v, "none", 4))
        m->zip = SS_ZIP_NONE;
    else
        return ss_err(e, SS_E_FIELD, "zip '%.*s' in the sealed metadata is not zlib or none",
                      (int)(n > 16 ? 16 : n), v);
    return 0;
}

static int meta_files(const char **p, const char *end, ss_sealed_meta *m, ss_error *e)
{
    if (expect_key(p, end, "files", e) != 0) return -1;
    const char *v = *p;
    size_t n = value_len(p, end);
    uint64_t files;
    if (meta_number(v, n, SS_BUNDLE_FILES_MAX, &files) != 0 || files < 1)
        return ss_err(e, SS_E_FIELD,
                      "files '%.*s' in the sealed metadata is out of range (1 to %d)",
                      (int)(n > 24 ? 24 : n), v, SS_BUNDLE_FILES_MAX);
    m->files = (unsigned)files;
    return 0;
}

/* One space, then field f. */
typedef int (*meta_field_fn)(const char **p, const char *end, ss_sealed_meta *m, ss_error *e);

static int meta_next(const char **p, const char *end, meta_field_fn f, ss_sealed_meta *m,
                     ss_error *e)
{
    if (*p >= end || **p != ' ')
        return ss_err(e, SS_E_FIELD,
                      "the sealed metadata line is incomplete or not single-spaced (the form is "
                      "'" SS_SEALED_META_MAGIC " name=... size=... zip=...[ files=...]')");
    ++*p;
    return f(p, end, m, e);
}

int ss_sealed_meta_parse(const char *line, size_t len, ss_sealed_meta *m, ss_error *e)
{
    memset(m, 0, sizeof *m);
    size_t mlen = strlen(SS_SEALED_META_MAGIC);
    if (len == 0 || len > SS_SEALED_META_MAX || line[len - 1] != '\n')
        return ss_err(e, SS_E_FIELD,
                      "the sealed metadata line must end in a newline within %d bytes",
                      SS_SEALED_META_MAX);
    if (len < mlen || memcmp(line, SS_SEALED_META_MAGIC, mlen) != 0)
        return ss_err(e, SS_E_FIELD,
                      "the sealed payload does not start with '" SS_SEALED_META_MAGIC
                      "' (not a sitespool sealed payload, or a newer version)");
    if (memchr(line, '\0', len) || memchr(line, '\n', len - 1))
        return ss_err(e, SS_E_FIELD,
                      "the sealed metadata line holds a NUL byte or more than one line");
    const char *p = line + mlen, *end = line + len - 1;
    if (meta_next(&p, end, meta_name, m, e) != 0 || meta_next(&p, end, meta_size, m, e) != 0 ||
        meta_next(&p, end, meta_zip, m, e) != 0)
        return -1;
    if (p < end && meta_next(&p, end, meta_files, m, e) != 0) return -1;
    if (p != end)
        return ss_err(e, SS_E_FIELD,
                      "the sealed metadata line has more than name, size, zip and files");
    return 0;
}
