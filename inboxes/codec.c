/*
 * codec.c - streaming zlib with hard output limits.  See codec.h.
 */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

int ss_deflater_init(ss_deflater *d, enum ss_zip zip, int level, ss_error *e)
{
    memset(d, 0, sizeof *d);
    d->zip = zip;
    if (zip == SS_ZIP_NONE) return 0;
    d->out = malloc(SS_CODEC_CHUNK);
    if (!d->out) return ss_err(e, SS_E_NOMEM, "out of memory for the compressor");
    if (deflateInit(&d->z, level) != Z_OK) {
        free(d->out);
        d->out = NULL;
        return ss_err(e, SS_E_ZLIB, "cannot initialise zlib compression (level %d)", level);
    }
    return 0;
}

static int deflate_pump(ss_deflater *d, int flush, ss_sink_fn sink, void *ctx, ss_error *e)
{
    int zrc;
    do {
        d->z.next_out = d->out;
        d->z.avail_out = SS_CODEC_CHUNK;
        zrc = deflate(&d->z, flush);
        if (zrc == Z_STREAM_ERROR) return ss_err(e, SS_E_ZLIB, "zlib compression failed");
        size_t have = SS_CODEC_CHUNK - d->z.avail_out;
        if (have && sink(ctx, d->out, have, e) != 0) return -1;
        d->out_bytes += have;
    } while (d->z.avail_out == 0 || (flush == Z_FINISH && zrc != Z_STREAM_END));
    return 0;
}

int ss_deflater_feed(ss_deflater *d, const void *in, size_t len, ss_sink_fn sink, void *ctx,
                     ss_error *e)
{
    d->in_bytes += len;
    if (d->zip == SS_ZIP_NONE) {
        d->out_bytes += len;
        return len ? sink(ctx, in, len, e) : 0;
    }
    d->z.next_in = (Bytef *)in;
    d->z.avail_in = (uInt)len;
    return deflate_pump(d, Z_NO_FLUSH, sink, ctx, e);
}

int ss_deflater_finish(ss_deflater *d, ss_sink_fn sink, void *ctx, ss_error *e)
{
    if (d->zip == SS_ZIP_NONE) return 0;
    d->z.next_in = NULL;
    d->z.avail_in = 0;
    return deflate_pump(d, Z_FINISH, sink, ctx, e);
}

int ss_deflater_reset(ss_deflater *d, ss_error *e)
{
    d->in_bytes = d->out_bytes = 0;
    if (d->zip == SS_ZIP_NONE) return 0;
    if (deflateReset(&d->z) != Z_OK) return ss_err(e, SS_E_ZLIB, "cannot reset zlib compression");
    return 0;
}

void ss_deflater_free(ss_deflater *d)
{
    if (d->out) {
        deflateEnd(&d->z);
        free(d->out);
        d->out = NULL;
    }
}

int ss_inflater_init(ss_inflater *f, enum ss_zip zip, uint64_t limit, ss_error *e)
{
    memset(f, 0, sizeof *f);
    return ss_inflater_reset(f, zip, limit, e);
}

int ss_inflater_reset(ss_inflater *f, enum ss_zip zip, uint64_t limit, ss_error *e)
{
    f->zip = zip;
    f->limit = limit;
    f->out_bytes = 0;
    f->ended = false;
    bool was_raw = f->raw;
    f->raw = f->deflate_done = false;
    f->hdr_need = f->trailer_need = 0;
    if (f->out) { /* zlib state from an earlier stream: reuse it */
        if ((was_raw ? inflateReset2(&f->z, 15) : inflateReset(&f->z)) != Z_OK)
            return ss_err(e, SS_E_ZLIB, "cannot reset zlib decompression");
        return 0;
    }
    if (zip == SS_ZIP_NONE) return 0;
    memset(&f->z, 0, sizeof f->z);
    f->out = malloc(SS_CODEC_CHUNK);
    if (!f->out) return ss_err(e, SS_E_NOMEM, "out of memory for the decompressor");
    if (inflateInit(&f->z) != Z_OK) {
        free(f->out);
        f->out = NULL;
        return ss_err(e, SS_E_ZLIB, "cannot initialise zlib decompression");
    }
    return 0;
}

static int count_out(ss_inflater *f, size_t len, ss_error *e);

void ss_inflater_skip_checksum(ss_inflater *f)
{
    if (f->zip != SS_ZIP_ZLIB || !f->out || inflateReset2(&f->z, -15) != Z_OK) return;
    f->raw = true;
    f->hdr_need = 2;
    f->trailer_need = 4;
}

/* Raw mode: the two header bytes (RFC 1950: deflate, a window of at most
 * 32 KiB, no preset dictionary, the check bits right) before anything is
 * inflated, and the four trailer bytes after the end of the deflate data,
 * which end the stream; anything after them is trailing data. */
static int take_frame(ss_inflater *f, const unsigned char **in, size_t *len, ss_error *e)
{
    while (f->hdr_need && *len) {
        f->hdr[2 - f->hdr_need--] = *(*in)++;
        (*len)--;
        if (f->hdr_need) continue;
        unsigned cmf = f->hdr[0], flg = f->hdr[1];
        if ((cmf & 0x0f) != 8 || (cmf >> 4) > 7 || (flg & 0x20) || (cmf * 256 + flg) % 31)
            return ss_err(e, SS_E_ZLIB, "the package is not a valid zlib stream (bad header)");
    }
    if (!f->deflate_done || !*len) return 0;
    if (*len > f->trailer_need)
        return ss_err(e, SS_E_TRAILING, "data follows the end of the compressed stream");
    f->trailer_need -= (unsigned)*len;
    *in += *len;
    *len = 0;
    f->ended = f->trailer_need == 0;
    return 0;
}

/* After inflate: the end of the deflate data (raw mode: the trailer then
 * follows), or the end of the zlib stream. */
static void note_end(ss_inflater *f)
{
    if (!f->raw) {
        f->ended = true;
        return;
    }
    f->deflate_done = true;
}

static int inflate_emit(ss_inflater *f, const void *buf, size_t len, ss_sink_fn sink, void *ctx,
                        ss_error *e)
{
    if (count_out(f, len, e) != 0) return -1;
    return len ? sink(ctx, buf, len, e) : 0;
}

/* One inflate call into the whole output buffer: 0 and zlib's result in
 * *zrc (Z_OK, Z_STREAM_END or Z_BUF_ERROR: no progress possible), or -1
 * with *e on a bad stream or no memory. */
static int inflate_step(ss_inflater *f, int *zrc, ss_error *e)
{
    f->z.next_out = f->out;
    f->z.avail_out = SS_CODEC_CHUNK;
    *zrc = inflate(&f->z, Z_NO_FLUSH);
    if (*zrc == Z_NEED_DICT || *zrc == Z_DATA_ERROR || *zrc == Z_STREAM_ERROR)
        return ss_err(e, SS_E_ZLIB, "the package is not a valid zlib stream (%s)",
                      f->z.msg ? f->z.msg : "data error");
    if (*zrc == Z_MEM_ERROR) return ss_err(e, SS_E_NOMEM, "out of memory while decompressing");
    if (*zrc == Z_STREAM_END) note_end(f);
    return 0;
}

int ss_inflater_feed(ss_inflater *f, const void *in, size_t len, ss_sink_fn sink, void *ctx,
                     ss_error *e)
{
    if (f->zip == SS_ZIP_NONE) return inflate_emit(f, in, len, sink, ctx, e);
    if (len == 0) return 0;
    if (f->ended) return ss_err(e, SS_E_TRAILING, "data follows the end of the compressed stream");
    const unsigned char *p = in;
    if (f->raw && take_frame(f, &p, &len, e) != 0) return -1;
    if (!len || f->deflate_done) return 0;
    f->z.next_in = (Bytef *)p;
    f->z.avail_in = (uInt)len;
    /* Loop while input remains or zlib filled the buffer (it may hold more). */
    do {
        int zrc;
        if (inflate_step(f, &zrc, e) != 0) return -1;
        if (inflate_emit(f, f->out, SS_CODEC_CHUNK - f->z.avail_out, sink, ctx, e) != 0) return -1;
        if (zrc == Z_BUF_ERROR) break;
    } while (!f->ended && !f->deflate_done && (f->z.avail_in > 0 || f->z.avail_out == 0));
    if (f->raw && f->deflate_done) {
        const unsigned char *rest = f->z.next_in;
        size_t left = f->z.avail_in;
        f->z.avail_in = 0;
        return take_frame(f, &rest, &left, e);
    }
    if (f->ended && f->z.avail_in > 0)
        return ss_err(e, SS_E_TRAILING, "data follows the end of the compressed stream");
    return 0;
}

static int count_out(ss_inflater *f, size_t len, ss_error *e)
{
    if (len > f->limit - f->out_bytes)
        return ss_err(e, SS_E_SIZE,
                      "the package expands beyond its declared size of %llu bytes "
                      "(decompression bomb or wrong size field)",
                      (unsigned long long)f->limit);
    f->out_bytes += len;
    return 0;
}

int ss_inflater_pull(ss_inflater *f, const unsigned char **in, size_t *in_len, const void **out,
                     size_t *out_len, ss_error *e)
{
    *out_len = 0;
    if (f->zip == SS_ZIP_NONE) {
        if (count_out(f, *in_len, e) != 0) return -1;
        *out = *in;
        *out_len = *in_len;
        *in += *in_len;
        *in_len = 0;
        return 0;
    }
    if (f->ended) {
        if (*in_len == 0) return 0;
        return ss_err(e, SS_E_TRAILING, "data follows the end of the compressed stream");
    }
    if (f->raw && take_frame(f, in, in_len, e) != 0) return -1;
    if (f->deflate_done) return 0; /* take_frame consumed the trailer */
    f->z.next_in = (Bytef *)*in;
    f->z.avail_in = (uInt)*in_len;
    int zrc;
    if (inflate_step(f, &zrc, e) != 0) return -1;
    *in = f->z.next_in;
    *in_len = f->z.avail_in;
    *out = f->out;
    *out_len = SS_CODEC_CHUNK - f->z.avail_out;
    if (count_out(f, *out_len, e) != 0) return -1;
    if (f->raw && f->deflate_done) return take_frame(f, in, in_len, e);
    if (f->ended && *in_len > 0)
        return ss_err(e, SS_E_TRAILING, "data follows the end of the compressed stream");
    return 0;
}

int ss_inflater_finish(ss_inflater *f, ss_error *e)
{
    if (f->zip == SS_ZIP_ZLIB && !f->ended)
        return ss_err(e, SS_E_TRUNCATED, "the compressed stream ends early (truncated package)");
    return 0;
}

void ss_inflater_free(ss_inflater *f)
{
    if (f->out) {
        inflateEnd(&f->z);
        free(f->out);
        f->out = NULL;
    }
}
