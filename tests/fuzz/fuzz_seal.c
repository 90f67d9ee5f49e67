/*
 * fuzz_seal.c - libFuzzer target: the chunk reader of sealed packages,
 * inboxes/seal.h (ss_open_begin/update/end/abort), with a fixed test key
 * pair (from a fixed seed; key id bytes 1..8).  Build and run: see
 * README.md here.
 *
 * At start-up one reference stream is sealed to the test key: the pattern
 * plaintext (byte i = (i * 31 + 7) & 0xff) of 3 full chunks and 1000
 * bytes, so 4 chunks.  Its ephemeral key is random per process, so inputs
 * describe what to do with it rather than carrying its bytes.
 *
 * Input: byte 0 the mode (and, bit 7, pinned: the opener is pinned to
 * the reference header, ss_open_pin), byte 1 the feed piece (0: all at
 * once, else byte1 * 13 bytes per ss_open_update), then:
 *   mode % 3 == 0  arbitrary whole sealed bytes (magic, key id, header,
 *                  chunks: anything);
 *   mode % 3 == 1  the reference stream's header, then arbitrary bytes as
 *                  its chunks;
 *   mode % 3 == 2  the reference header, then one splice op per byte:
 *                  op = byte >> 6, arg = byte & 63:
 *                    0 chunk arg % 4 of the reference stream
 *                    1 that chunk cut to (arg * 97) % its length bytes
 *                    2 that chunk with byte (arg * 1021) % its length flipped
 *                    3 arg + 1 bytes of value arg (garbage)
 * Seeds: corpus/seal.
 *
 * Invariants:
 *   - no crash; ss_open_end/update fail exactly when a fault is recorded
 *     (the sink never fails here), and every failure is one of the four
 *     faults;
 *   - plaintext only from authenticated chunks: whatever reaches the sink
 *     is a prefix of the pattern (only the test key's streams, all of the
 *     pattern, authenticate), in pieces of SS_SEAL_CHUNK bytes but the
 *     last, and a failed open never hands out a final chunk;
 *   - splices: the stream opens exactly when the ops are the four chunks
 *     in order, untouched; the chunks 0..k (k < 3) in order alone are
 *     TRUNCATED; the four in order plus up to 64 garbage bytes TRAILING;
 *   - pinned: a stream whose header is not the reference one is a bad
 *     header and hands out nothing.
 */
#include "../../inboxes/seal.h"
#include "fuzz_common.h"

#include <sodium.h>

#define PLAIN_LEN (3 * SS_SEAL_CHUNK + 1000)
#define NCHUNKS 4

static unsigned char pattern(uint64_t i)
{
    return (unsigned char)((i * 31 + 7) & 0xff);
}

struct ref {
    unsigned char pk[32];
    unsigned char *sk;
    unsigned char keyid[SS_SEAL_KEYID_BYTES];
    unsigned char *stream;
    size_t len;
    unsigned char pin[SS_SEAL_PIN_BYTES];
};

static int ref_write(void *ctx, const unsigned char *data, size_t len, ss_error *e)
{
    (void)e;
    struct ref *r = ctx;
    memcpy(r->stream + r->len, data, len);
    r->len += len;
    return 0;
}

static const struct ref *reference(void)
{
    static struct ref r;
    if (r.stream) return &r;
    unsigned char seed[crypto_sign_SEEDBYTES];
    for (size_t i = 0; i < sizeof seed; i++)
        seed[i] = (unsigned char)(i + 1);
    FUZZ_CHECK(sodium_init() >= 0, "sodium_init");
    r.sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    crypto_sign_seed_keypair(r.pk, r.sk, seed);
    for (int i = 0; i < SS_SEAL_KEYID_BYTES; i++)
        r.keyid[i] = (unsigned char)(i + 1);
    unsigned char *plain = malloc(PLAIN_LEN);
    for (size_t i = 0; i < PLAIN_LEN; i++)
        plain[i] = pattern(i);
    r.stream = malloc(SS_SEAL_HEADER_BYTES + PLAIN_LEN + NCHUNKS * 17);
    ss_sealer s;
    ss_error e;
    FUZZ_CHECK(ss_seal_begin(&s, r.pk, r.keyid, ref_write, &r, &e) == 0, "%s", e.msg);
    memcpy(r.pin, s.pin, sizeof r.pin);
    FUZZ_CHECK(ss_seal_update(&s, plain, PLAIN_LEN, &e) == 0, "%s", e.msg);
    FUZZ_CHECK(ss_seal_end(&s, &e) == 0, "%s", e.msg);
    FUZZ_CHECK(r.len == SS_SEAL_HEADER_BYTES + PLAIN_LEN + NCHUNKS * 17, "len %zu", r.len);
    free(plain);
    return &r;
}

static size_t chunk_off(int k)
{
    return SS_SEAL_HEADER_BYTES + (size_t)k * SS_SEAL_CHUNK_BYTES;
}

static size_t chunk_len(int k)
{
    return k < NCHUNKS - 1 ? SS_SEAL_CHUNK_BYTES : 1000 + 17;
}

/* What the sink got. */
struct got {
    uint64_t n;
    bool short_piece; /* a piece shorter than a chunk came (it must be the last) */
};

static int got_write(void *ctx, const unsigned char *data, size_t len, ss_error *e)
{
    (void)e;
    struct got *g = ctx;
    FUZZ_CHECK(!g->short_piece, "plaintext after the final chunk");
    FUZZ_CHECK(len <= SS_SEAL_CHUNK, "a piece of %zu bytes", len);
    if (len < SS_SEAL_CHUNK) g->short_piece = true;
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(data[i] == pattern(g->n + i), "byte %llu is not from an authenticated chunk",
                   (unsigned long long)(g->n + i));
    g->n += len;
    return 0;
}

/* Builds the sealed bytes for the input; *expect: the splice's expected
 * outcome (-1: no expectation). */
static unsigned char *build(const struct ref *r, unsigned mode, const uint8_t *d, size_t n,
                            size_t *len, int *expect)
{
    *expect = -1;
    if (mode == 0) {
        unsigned char *out = malloc(n ? n : 1);
        memcpy(out, d, n);
        *len = n;
        return out;
    }
    if (mode == 1) {
        unsigned char *out = malloc(SS_SEAL_HEADER_BYTES + n);
        memcpy(out, r->stream, SS_SEAL_HEADER_BYTES);
        memcpy(out + SS_SEAL_HEADER_BYTES, d, n);
        *len = SS_SEAL_HEADER_BYTES + n;
        return out;
    }
    unsigned char *out = malloc(SS_SEAL_HEADER_BYTES + n * SS_SEAL_CHUNK_BYTES + 1);
    size_t o = SS_SEAL_HEADER_BYTES, garbage = 0;
    memcpy(out, r->stream, SS_SEAL_HEADER_BYTES);
    int in_order = 0; /* chunks given in order, untouched, before anything else */
    bool clean = true;
    for (size_t i = 0; i < n; i++) {
        unsigned op = d[i] >> 6, arg = d[i] & 63;
        int k = (int)(arg % NCHUNKS);
        size_t cl = chunk_len(k);
        if (op == 3) {
            memset(out + o, (int)arg, arg + 1);
            o += arg + 1;
            if (in_order == NCHUNKS && clean)
                garbage += arg + 1;
            else
                clean = false;
            continue;
        }
        size_t take = op == 1 ? (arg * 97u) % cl : cl;
        memcpy(out + o, r->stream + chunk_off(k), take);
        if (op == 2) out[o + (arg * 1021u) % cl] ^= 0x5a;
        o += take;
        if (clean && op == 0 && k == in_order && garbage == 0)
            in_order++;
        else
            clean = false;
    }
    if (clean && in_order == NCHUNKS && garbage == 0) *expect = SS_SEAL_OK;
    if (clean && in_order < NCHUNKS) *expect = SS_SEAL_TRUNCATED;
    if (clean && in_order == NCHUNKS && garbage > 0 && garbage <= 64) *expect = SS_SEAL_TRAILING;
    *len = o;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct ref *r = reference();
    if (size < 2) return 0;
    unsigned mode = (data[0] & 0x7f) % 3;
    bool pinned = data[0] & 0x80;
    size_t piece = (size_t)data[1] * 13;
    if (mode == 2 && size > 2 + 64) return 0; /* enough splices */
    size_t len;
    int expect;
    unsigned char *sealed = build(r, mode, data + 2, size - 2, &len, &expect);
    ss_opener o;
    ss_error e;
    struct got g = {0, false};
    FUZZ_CHECK(ss_open_begin(&o, r->sk, r->keyid, got_write, &g, &e) == 0, "%s", e.msg);
    if (pinned) ss_open_pin(&o, r->pin);
    bool foreign = pinned && (len < SS_SEAL_HEADER_BYTES ||
                              memcmp(sealed, r->stream, SS_SEAL_HEADER_BYTES) != 0);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < len;) {
        size_t n = piece && len - off > piece ? piece : len - off;
        rc = ss_open_update(&o, sealed + off, n, &e);
        off += n;
    }
    enum ss_seal_fault fault;
    if (rc == 0) {
        rc = ss_open_end(&o, &e);
        fault = o.fault;
    } else {
        fault = o.fault;
        ss_open_abort(&o);
    }
    FUZZ_CHECK((rc == 0) == (fault == SS_SEAL_OK), "rc %d with fault %d", rc, fault);
    FUZZ_CHECK(fault >= SS_SEAL_OK && fault <= SS_SEAL_TRAILING, "fault %d", fault);
    if (rc == 0) FUZZ_CHECK(g.n == PLAIN_LEN, "opened with %llu bytes", (unsigned long long)g.n);
    if (rc != 0) FUZZ_CHECK(!g.short_piece || fault == SS_SEAL_TRAILING, "final chunk handed out");
    if (foreign && len >= SS_SEAL_HEADER_BYTES)
        FUZZ_CHECK(fault == SS_SEAL_BAD_HEADER && g.n == 0, "pinned: fault %d, %llu bytes out",
                   fault, (unsigned long long)g.n);
    if (expect >= 0)
        FUZZ_CHECK((int)fault == expect, "splice: fault %d, expected %d (%s)", fault, expect,
                   rc ? e.msg : "opened");
    free(sealed);
    return 0;
}
