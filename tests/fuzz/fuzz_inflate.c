/*
 * fuzz_inflate.c - libFuzzer target: the bounded inflater of
 * inboxes/codec.h (ss_inflater_init/reset/feed/finish/free) on hostile
 * packages, zip=zlib and zip=none, with a declared size.  Build and run:
 * see README.md here.
 *
 * Input: a 6-byte header, then the package bytes:
 *   byte 0   bit 0: zip=zlib (else zip=none)
 *            bit 1: reuse one inflater across inputs (ss_inflater_reset,
 *                   as the despooler does), else init and free a fresh one
 *            bit 2: declared size near UINT64_MAX (no limit overflow)
 *   byte 1   feed chunk: 0 = the whole package in one call, else the
 *            package is fed in pieces of byte1 * 7 bytes
 *   byte 2-5 declared size, little-endian (the hard output limit)
 * Seeds: corpus/inflate (real .pck files made by `sitespool send`, and a
 * small decompression bomb).
 *
 * Invariants:
 *   - the sink never receives more than the declared size, and out_bytes
 *     counts exactly what it received;
 *   - zip=none passes the bytes through unchanged (up to the limit);
 *   - zip=zlib agrees with zlib itself: a package the inflater accepts
 *     (feed and finish succeed) is exactly one complete zlib stream with
 *     nothing after it, and inflates to the same bytes; a complete stream
 *     within the limit and without trailing bytes is accepted.
 */
#include "../../inboxes/codec.h"
#include "fuzz_common.h"

#include <sodium.h>

struct sink {
    uint64_t limit;
    uint64_t got;
    crypto_generichash_state h;
};

static int sink_fn(void *ctx, const void *buf, size_t len, ss_error *e)
{
    (void)e;
    struct sink *s = ctx;
    s->got += len;
    FUZZ_CHECK(s->got <= s->limit, "sink got %llu bytes, declared %llu",
               (unsigned long long)s->got, (unsigned long long)s->limit);
    crypto_generichash_update(&s->h, buf, len);
    return 0;
}

/* zlib's own verdict: 0 one complete stream and nothing after it (its
 * output hashed into h, its length in *out), -1 anything else, -2 more
 * than cap bytes of output. */
static int reference_inflate(const uint8_t *in, size_t len, uint64_t cap, uint64_t *out,
                             crypto_generichash_state *h)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) abort();
    unsigned char buf[16384];
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    int zrc, rc = -1;
    *out = 0;
    do {
        z.next_out = buf;
        z.avail_out = sizeof buf;
        zrc = inflate(&z, Z_NO_FLUSH);
        size_t have = sizeof buf - z.avail_out;
        *out += have;
        crypto_generichash_update(h, buf, have);
        if (*out > cap) {
            rc = -2;
            break;
        }
        if (zrc == Z_STREAM_END) {
            rc = z.avail_in == 0 ? 0 : -1;
            break;
        }
    } while (zrc == Z_OK);
    inflateEnd(&z);
    return rc;
}

static ss_inflater reused;
static bool reused_ready;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6) return 0;
    enum ss_zip zip = data[0] & 1 ? SS_ZIP_ZLIB : SS_ZIP_NONE;
    bool reuse = data[0] & 2;
    size_t chunk = (size_t)data[1] * 7;
    uint64_t limit = (uint64_t)data[2] | (uint64_t)data[3] << 8 | (uint64_t)data[4] << 16 |
                     (uint64_t)data[5] << 24;
    if (data[0] & 4) limit = UINT64_MAX - limit;
    const uint8_t *pck = data + 6;
    size_t len = size - 6;

    ss_inflater fresh, *f = &fresh;
    ss_error e = {0};
    if (reuse) {
        f = &reused;
        int rc = reused_ready ? ss_inflater_reset(f, zip, limit, &e)
                              : ss_inflater_init(f, zip, limit, &e);
        FUZZ_CHECK(rc == 0, "inflater setup: %s", e.msg);
        reused_ready = true;
    } else {
        FUZZ_CHECK(ss_inflater_init(f, zip, limit, &e) == 0, "inflater init: %s", e.msg);
    }

    struct sink s = {.limit = limit};
    crypto_generichash_init(&s.h, NULL, 0, 32);
    int rc = 0;
    size_t off = 0;
    if (len == 0) rc = ss_inflater_feed(f, pck, 0, sink_fn, &s, &e);
    while (rc == 0 && off < len) {
        size_t n = chunk && chunk < len - off ? chunk : len - off;
        rc = ss_inflater_feed(f, pck + off, n, sink_fn, &s, &e);
        off += n;
    }
    bool ok = rc == 0 && ss_inflater_finish(f, &e) == 0;
    FUZZ_CHECK(f->out_bytes == s.got, "out_bytes %llu, sink got %llu",
               (unsigned long long)f->out_bytes, (unsigned long long)s.got);
    FUZZ_CHECK(s.got <= limit, "output %llu beyond the declared %llu", (unsigned long long)s.got,
               (unsigned long long)limit);
    if (!ok)
        FUZZ_CHECK(e.code == SS_E_SIZE || e.code == SS_E_ZLIB || e.code == SS_E_TRAILING ||
                       e.code == SS_E_TRUNCATED,
                   "refused with code %d: %s", (int)e.code, e.msg);
    unsigned char got_hash[32], want_hash[32];
    crypto_generichash_final(&s.h, got_hash, sizeof got_hash);

    if (zip == SS_ZIP_NONE) {
        FUZZ_CHECK(ok == (len <= limit), "zip=none: %zu bytes, limit %llu, accepted %d", len,
                   (unsigned long long)limit, ok);
        if (ok) {
            crypto_generichash_state h;
            crypto_generichash_init(&h, NULL, 0, 32);
            crypto_generichash_update(&h, pck, len);
            crypto_generichash_final(&h, want_hash, sizeof want_hash);
            FUZZ_CHECK(!memcmp(got_hash, want_hash, 32), "zip=none changed the bytes");
        }
    } else {
        crypto_generichash_state h;
        crypto_generichash_init(&h, NULL, 0, 32);
        uint64_t ref_len;
        int ref = reference_inflate(pck, len, limit, &ref_len, &h);
        crypto_generichash_final(&h, want_hash, sizeof want_hash);
        if (ok) {
            FUZZ_CHECK(ref == 0, "accepted what zlib refuses (zlib verdict %d)", ref);
            FUZZ_CHECK(ref_len == s.got && !memcmp(got_hash, want_hash, 32),
                       "output differs from zlib's (%llu vs %llu bytes)",
                       (unsigned long long)s.got, (unsigned long long)ref_len);
        } else {
            FUZZ_CHECK(ref != 0, "refused a complete stream of %llu bytes within %llu: %s",
                       (unsigned long long)ref_len, (unsigned long long)limit, e.msg);
        }
    }
    if (!reuse) ss_inflater_free(f);
    return 0;
}
