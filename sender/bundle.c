/*
 * bundle.c - grouping small files into bundles, and writing and reading
 * a bundle's tar stream with libarchive.  See bundle.h.
 */
#include "bundle.h"
#include "../inboxes/text.h"
#include "../inboxes/fileio.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK_BYTES (64 * 1024) /* libarchive's output blocks, our read chunks */
#define MEMBER_MODE 0640

/* ---------------------------------------------------------------- grouping */

/* Which bundle holds which name: open addressing over (pair, name). */
typedef struct name_set {
    struct slot {
        const char *name;
        size_t pair;
    } * v;
    size_t mask;
} name_set;

static size_t slot_hash(const char *name, size_t pair)
{
    size_t h = 1469598103934665603u ^ (pair * 0x9e3779b97f4a7c15u); /* FNV-1a, salted */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
}

static bool set_has(const name_set *s, size_t pair, const char *name)
{
    for (size_t i = slot_hash(name, pair) & s->mask; s->v[i].name; i = (i + 1) & s->mask)
        if (s->v[i].pair == pair && !strcmp(s->v[i].name, name)) return true;
    return false;
}

static void set_add(name_set *s, size_t pair, const char *name)
{
    size_t i = slot_hash(name, pair) & s->mask;
    while (s->v[i].name)
        i = (i + 1) & s->mask;
    s->v[i] = (struct slot){name, pair};
}

/* Grouping in progress. */
typedef struct planner {
    name_set set; /* the names in each open bundle */
    size_t *open; /* bundles with room, oldest first */
    size_t nopen;
    size_t *count; /* files per pair */
    size_t npairs;
    unsigned max;
} planner;

/* The first open bundle without name (*at: its place in open), or SIZE_MAX. */
static size_t bundle_for(const planner *pl, const char *name, size_t *at)
{
    for (*at = 0; *at < pl->nopen; ++*at)
        if (!set_has(&pl->set, pl->open[*at], name)) return pl->open[*at];
    return SIZE_MAX;
}

static size_t new_pair(planner *pl)
{
    pl->count[pl->npairs] = 0;
    return pl->npairs++;
}

/* The pair of the next file. */
static size_t plan_one(planner *pl, const char *name, bool small)
{
    if (pl->max <= 1 || !small) {
        size_t p = new_pair(pl);
        pl->count[p] = 1;
        return p;
    }
    size_t at, p = bundle_for(pl, name, &at);
    if (p == SIZE_MAX) { /* a new bundle, last of the open ones (at == nopen) */
        p = new_pair(pl);
        pl->open[pl->nopen++] = p;
    }
    if (++pl->count[p] < pl->max) {
        set_add(&pl->set, p, name);
        return p;
    }
    /* Full: no longer a candidate. */
    memmove(pl->open + at, pl->open + at + 1, (--pl->nopen - at) * sizeof *pl->open);
    return p;
}

long ss_bundle_plan(const char *const *names, const bool *small, size_t n, unsigned max_files,
                    size_t *pair, ss_error *e)
{
    size_t slots = 64;
    while (slots < 2 * n)
        slots *= 2;
    planner pl = {.set = {.v = calloc(slots, sizeof *pl.set.v), .mask = slots - 1},
                  .open = malloc((n ? n : 1) * sizeof *pl.open),
                  .count = malloc((n ? n : 1) * sizeof *pl.count),
                  .max = max_files};
    long rc = pl.set.v && pl.open && pl.count
                  ? 0
                  : ss_err(e, SS_E_NOMEM, "out of memory grouping %zu files", n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        pair[i] = plan_one(&pl, names[i], small[i]);
    free(pl.set.v);
    free(pl.open);
    free(pl.count);
    return rc == 0 ? (long)pl.npairs : -1;
}

void ss_bundle_name(unsigned n, char *out, size_t len)
{
    snprintf(out, len, "bundle-%u-files.tar", n);
}

void ss_bundle_describe(const ss_instr *in, char *out, size_t len)
{
    if (in->files)
        snprintf(out, len, "%u files in %s", in->files, in->name);
    else
        snprintf(out, len, "%s", in->name);
}

/* ----------------------------------------------------------------- writing */

static la_ssize_t write_cb(struct archive *a, void *ctx, const void *buf, size_t len)
{
    ss_bundle_writer *w = ctx;
    if (!w->sink || w->sink(w->ctx, buf, len, &w->sink_error) == 0) return (la_ssize_t)len;
    w->sink_failed = true;
    archive_set_error(a, EIO, "%s", w->sink_error.msg);
    return -1;
}

/* The sink's own error (a full disk says so), else libarchive's. */
static int writer_fail(ss_bundle_writer *w, ss_error *e, const char *what)
{
    if (w->sink_failed) {
        *e = w->sink_error;
        return -1;
    }
    const char *why = w->a ? archive_error_string(w->a) : NULL;
    return ss_err(e, SS_E_IO, "cannot %s: %s", what, why ? why : "libarchive failed");
}

int ss_bundle_writer_open(ss_bundle_writer *w, ss_sink_fn sink, void *ctx, ss_error *e)
{
    memset(w, 0, sizeof *w);
    w->sink = sink;
    w->ctx = ctx;
    w->utf8 = ss_utf8_locale();
    if (!(w->a = archive_write_new())) {
        ss_bundle_writer_abort(w);
        return ss_err(e, SS_E_NOMEM, "out of memory for a bundle");
    }
    locale_t old = ss_locale_enter(w->utf8);
    /* Restricted pax: ustar headers, pax only where a name needs it; no
     * filter (the package codec compresses); nothing after the end blocks. */
    int rc = archive_write_set_format_pax_restricted(w->a) == ARCHIVE_OK &&
                     archive_write_add_filter_none(w->a) == ARCHIVE_OK &&
                     archive_write_set_bytes_per_block(w->a, BLOCK_BYTES) == ARCHIVE_OK &&
                     archive_write_set_bytes_in_last_block(w->a, 1) == ARCHIVE_OK &&
                     archive_write_open(w->a, w, NULL, write_cb, NULL) == ARCHIVE_OK
                 ? 0
                 : writer_fail(w, e, "start a bundle");
    ss_locale_leave(old);
    if (rc != 0) ss_bundle_writer_abort(w);
    return rc;
}

int ss_bundle_writer_add(ss_bundle_writer *w, const char *name, uint64_t size, int64_t mtime,
                         ss_error *e)
{
    if (w->left)
        return ss_err(e, SS_E_SIZE, "bundle member before %s is %llu byte(s) short", name,
                      (unsigned long long)w->left);
    struct archive_entry *en = archive_entry_new();
    if (!en) return ss_err(e, SS_E_NOMEM, "out of memory for a bundle member");
    archive_entry_set_pathname(en, name);
    archive_entry_set_filetype(en, AE_IFREG);
    archive_entry_set_perm(en, MEMBER_MODE);
    archive_entry_set_size(en, (la_int64_t)size);
    archive_entry_set_mtime(en, (time_t)mtime, 0);
    archive_entry_set_uid(en, 0);
    archive_entry_set_gid(en, 0);
    locale_t old = ss_locale_enter(w->utf8);
    /* ARCHIVE_WARN: a name that is not UTF-8, stored as its bytes. */
    int r = archive_write_header(w->a, en);
    ss_locale_leave(old);
    archive_entry_free(en);
    if (r < ARCHIVE_WARN) {
        char what[SS_NAME_MAX + 32];
        snprintf(what, sizeof what, "add %s to a bundle", name);
        return writer_fail(w, e, what);
    }
    w->left = size;
    return 0;
}

int ss_bundle_writer_data(ss_bundle_writer *w, const void *buf, size_t len, ss_error *e)
{
    if (len > w->left) return ss_err(e, SS_E_SIZE, "bundle member data beyond its declared size");
    locale_t old = ss_locale_enter(w->utf8);
    la_ssize_t n = len ? archive_write_data(w->a, buf, len) : 0;
    ss_locale_leave(old);
    if (n < 0 || (size_t)n != len) return writer_fail(w, e, "write a bundle");
    w->left -= len;
    return 0;
}

int ss_bundle_writer_close(ss_bundle_writer *w, ss_error *e)
{
    int rc = 0;
    if (w->left)
        rc = ss_err(e, SS_E_SIZE, "the last bundle member is %llu byte(s) short",
                    (unsigned long long)w->left);
    locale_t old = ss_locale_enter(w->utf8);
    if (rc == 0 && archive_write_close(w->a) != ARCHIVE_OK) rc = writer_fail(w, e, "end a bundle");
    ss_locale_leave(old);
    ss_bundle_writer_abort(w);
    return rc;
}

void ss_bundle_writer_abort(ss_bundle_writer *w)
{
    w->sink = NULL; /* what libarchive still writes while it frees a given-up stream is dropped */
    if (w->a) {
        locale_t old = ss_locale_enter(w->utf8);
        archive_write_free(w->a); /* closes first if still open; the sink may be called */
        ss_locale_leave(old);
    }
    w->a = NULL;
    if (w->utf8) freelocale(w->utf8);
    w->utf8 = (locale_t)0;
}

/* ----------------------------------------------------------------- reading */

/* The package, inflated on demand for libarchive (the codec's pull form:
 * never beyond the declared size, nothing after the stream). */
typedef struct reader {
    int fd;
    ss_inflater f;
    bool f_ready, eof;
    unsigned char *in;
    const unsigned char *next; /* input not yet inflated */
    size_t avail;
    ss_error err;
    bool failed;
} reader;

/* The next inflated bytes: their length, 0 at the end of the file. */
static ssize_t pull(reader *r, const void **out)
{
    for (;;) {
        if (r->avail == 0 && !r->eof) {
            ssize_t n = ss_read_full(r->fd, r->in, BLOCK_BYTES, &r->err);
            if (n < 0) return -1;
            r->eof = n == 0;
            r->next = r->in;
            r->avail = (size_t)n;
        }
        if (r->avail == 0) return 0;
        size_t len;
        if (ss_inflater_pull(&r->f, &r->next, &r->avail, out, &len, &r->err) != 0) return -1;
        if (len) return (ssize_t)len;
    }
}

static la_ssize_t read_cb(struct archive *a, void *ctx, const void **buf)
{
    reader *r = ctx;
    ssize_t n = pull(r, buf);
    if (n >= 0) return (la_ssize_t)n;
    r->failed = true;
    archive_set_error(a, EIO, "%s", r->err.msg);
    return -1;
}

/* After the end of the archive: the rest of the stream (libarchive need
 * not have read it), which must end exactly at the declared size. */
static int reader_finish(reader *r, ss_error *e)
{
    const void *out;
    ssize_t n;
    while ((n = pull(r, &out)) > 0)
        ;
    if (n < 0 || ss_inflater_finish(&r->f, &r->err) != 0) {
        *e = r->err;
        return -1;
    }
    if (r->f.out_bytes != r->f.limit)
        return ss_err(e, SS_E_SIZE, "the package unpacks to %llu bytes, not %llu",
                      (unsigned long long)r->f.out_bytes, (unsigned long long)r->f.limit);
    return 0;
}

static int reader_open(reader *r, int dirfd, const char *pck, enum ss_zip zip, uint64_t size,
                       ss_error *e)
{
    memset(r, 0, sizeof *r);
    r->fd = ss_open_regular(dirfd, pck, 0, NULL, e);
    if (r->fd < 0) return -1;
    if (!(r->in = malloc(BLOCK_BYTES))) return ss_err(e, SS_E_NOMEM, "out of memory");
    if (ss_inflater_init(&r->f, zip, size, e) != 0) return -1;
    r->f_ready = true;
    return 0;
}

static void reader_close(reader *r)
{
    if (r->f_ready) ss_inflater_free(&r->f);
    if (r->fd >= 0) close(r->fd);
    free(r->in);
}

/* A member's data, in chunks, to the visitor. */
static int read_member(struct archive *a, const ss_bundle_visitor *v, void *ctx, unsigned char *buf,
                       ss_error *e)
{
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, BLOCK_BYTES)) > 0)
        if (v->data && v->data(ctx, buf, (size_t)n, e) != 0) return -1;
    if (n < 0) return -2; /* libarchive's error (or the reader's) */
    return v->end ? v->end(ctx, e) : 0;
}

/* One header: a regular file with a delivered name, handed to the visitor. */
static int visit_entry(struct archive *a, struct archive_entry *en, unsigned index,
                       const ss_bundle_visitor *v, void *ctx, unsigned char *buf, ss_error *e)
{
    const char *name = archive_entry_pathname(en);
    if (!name || !ss_file_name_valid(name))
        return ss_err(e, SS_E_FORMAT, "member %u of the bundle has no valid file name", index + 1);
    if (archive_entry_filetype(en) != AE_IFREG || archive_entry_size(en) < 0)
        return ss_err(e, SS_E_NOTREG, "member %u of the bundle (%s) is not a regular file",
                      index + 1, name);
    ss_bundle_entry m = {.name = name,
                         .size = (uint64_t)archive_entry_size(en),
                         .mtime = (int64_t)archive_entry_mtime(en),
                         .index = index};
    int want = v->entry ? v->entry(ctx, &m, e) : 0;
    if (want < 0) return -1;
    if (want > 0) return read_member(a, v, ctx, buf, e);
    return archive_read_data_skip(a) == ARCHIVE_OK ? 0 : -2;
}

/* Every member in turn; returns how many, -1 (e set) or -2 (libarchive's). */
static long walk(struct archive *a, const ss_bundle_visitor *v, void *ctx, ss_error *e)
{
    unsigned char *buf = malloc(BLOCK_BYTES);
    if (!buf) return ss_err(e, SS_E_NOMEM, "out of memory reading a bundle");
    struct archive_entry *en;
    long count = 0;
    int r = ARCHIVE_EOF, rc = 0;
    while (rc == 0 && ((r = archive_read_next_header(a, &en)) == ARCHIVE_OK || r == ARCHIVE_WARN))
        if ((rc = visit_entry(a, en, (unsigned)count, v, ctx, buf, e)) == 0) count++;
    if (rc == 0 && r != ARCHIVE_EOF) rc = -2;
    free(buf);
    return rc ? rc : count;
}

long ss_bundle_read(int dirfd, const char *pck, enum ss_zip zip, uint64_t size,
                    const ss_bundle_visitor *v, void *ctx, ss_error *e)
{
    reader r;
    locale_t utf8 = ss_utf8_locale(), old = ss_locale_enter(utf8);
    struct archive *a = NULL;
    long count = reader_open(&r, dirfd, pck, zip, size, e);
    if (count == 0 && !(a = archive_read_new())) count = ss_err(e, SS_E_NOMEM, "out of memory");
    if (count == 0 && (archive_read_support_format_tar(a) != ARCHIVE_OK ||
                       archive_read_open(a, &r, NULL, read_cb, NULL) != ARCHIVE_OK))
        count = -2;
    if (count == 0) count = walk(a, v, ctx, e);
    if (count == -2) {
        const char *why = a ? archive_error_string(a) : NULL;
        if (r.failed)
            *e = r.err;
        else
            ss_err(e, SS_E_FORMAT, "not a bundle: %s", why ? why : "unreadable tar stream");
        count = -1;
    }
    if (count >= 0 && reader_finish(&r, e) != 0) count = -1;
    if (count < 0) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        ss_err(e, e->code, "cannot read the bundle %s: %s", pck, why);
    }
    if (a) archive_read_free(a);
    reader_close(&r);
    ss_locale_leave(old);
    if (utf8) freelocale(utf8);
    return count;
}
