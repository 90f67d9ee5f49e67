/*
 * codec.h - the package codec: streaming zlib (RFC 1950) in constant memory.
 *
 * Security stance: inflation of hostile input is bounded.  The inflater is
 * given the declared size as a hard limit and fails (SS_E_SIZE) the moment
 * the output would pass it, so a decompression bomb costs at most one buffer
 * of work beyond the limit.  Data after the end of the zlib stream is an
 * error (SS_E_TRAILING), as is a stream that ends early (SS_E_TRUNCATED).
 *
 * Output goes to a sink callback so that the caller can hash, write and count
 * in the same pass without an extra copy.
 */
#ifndef SS_CODEC_H
#define SS_CODEC_H

#include "error.h"

#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>

#define SS_CODEC_CHUNK (128 * 1024)

typedef int (*ss_sink_fn)(void *ctx, const void *buf, size_t len, ss_error *e);

enum ss_zip { SS_ZIP_NONE = 0, SS_ZIP_ZLIB = 1 };

typedef struct ss_deflater {
    z_stream z;
    enum ss_zip zip;
    uint64_t in_bytes;
    uint64_t out_bytes;
    unsigned char *out; /* SS_CODEC_CHUNK bytes */
} ss_deflater;

int ss_deflater_init(ss_deflater *d, enum ss_zip zip, int level, ss_error *e);
int ss_deflater_feed(ss_deflater *d, const void *in, size_t len, ss_sink_fn sink, void *ctx,
                     ss_error *e);
int ss_deflater_finish(ss_deflater *d, ss_sink_fn sink, void *ctx, ss_error *e);
/* Makes a finished deflater ready for the next stream without reallocating
 * zlib's state (a fresh deflateInit costs more than packing a small file). */
int ss_deflater_reset(ss_deflater *d, ss_error *e);
void ss_deflater_free(ss_deflater *d);

typedef struct ss_inflater {
    z_stream z;
    enum ss_zip zip;
    uint64_t limit;
    uint64_t out_bytes;
    bool ended;
    unsigned char *out;
    /* ss_inflater_skip_checksum: the zlib header and trailer are parsed
     * here and the deflate data inflated raw, without Adler-32. */
    bool raw;
    bool deflate_done;
    unsigned hdr_need, trailer_need;
    unsigned char hdr[2];
} ss_inflater;

/* limit: the most output bytes accepted. */
int ss_inflater_init(ss_inflater *f, enum ss_zip zip, uint64_t limit, ss_error *e);
int ss_inflater_feed(ss_inflater *f, const void *in, size_t len, ss_sink_fn sink, void *ctx,
                     ss_error *e);
/* Makes an inflater (initialised, used or not) ready for the next stream,
 * keeping zlib's state and buffer: for many small packages in a row. */
int ss_inflater_reset(ss_inflater *f, enum ss_zip zip, uint64_t limit, ss_error *e);
/* For a package whose every byte a verified signature covers: zlib's
 * Adler-32 of the output adds nothing there and costs an eighth of a large
 * delivery, so it is not computed (call after reset, before feeding).  The
 * header is still checked strictly and the four trailer bytes must be there
 * and be the last. */
void ss_inflater_skip_checksum(ss_inflater *f);
/* The pull form of feed, for a reader that asks for output (a tar reader):
 * inflates from *in (advancing *in and *in_len) into at most one internal
 * buffer and points *out at what came out (*out_len may be 0: give more
 * input).  The same bounds as feed: the declared size, trailing data. */
int ss_inflater_pull(ss_inflater *f, const unsigned char **in, size_t *in_len, const void **out,
                     size_t *out_len, ss_error *e);
/* Checks that the stream ended properly. */
int ss_inflater_finish(ss_inflater *f, ss_error *e);
void ss_inflater_free(ss_inflater *f);

#endif
