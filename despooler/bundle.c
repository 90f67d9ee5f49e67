/*
 * bundle.c - staging a bundle (files=N): the package is read once, hashed
 * and inflated, and the inflated stream read as a POSIX tar (libarchive,
 * tar format only, no filters) whose N members are written to
 * .sitespool-<id>-<k>.tmp in the destination inbox.  They become visible
 * only through the batch commit of deliver.c, member by member, each with
 * its own ledger row, exactly like a single-file pair.
 *
 * Security stance: the tar stream is parsed before the signature over the
 * package is known (one pass, constant memory, no second read that a
 * writer could race), but nothing of it is used until the signature
 * verified: member data goes only to temporary files named by the
 * instruction id and the member's position, never by its tar name.  A
 * member must be a regular file (no links, devices, directories or sparse
 * maps) whose name is a plain file name as name= of a pair (no '/', no
 * leading '.', no control characters), distinct within the bundle, and the
 * bundle must hold exactly files= members; the inflated stream is bounded
 * by size= as for any package.  Whatever fails, every temporary member is
 * removed.  The verdicts come in the order of deliver.c: a forgery is a
 * bad signature (4407), then a bad compressed stream (4413), then a bad
 * tar or member (4427, the whole bundle is quarantined).
 * A sealed bundle (sealed.c) is read the same way from the opened
 * stream, after its signature verified in a pass of its own; a fault of
 * the seal comes before 4413 and 4427.
 * Diagnostics: 4427 (through quarantine.c); 4407, 4413 and 4419 (the
 * package cannot be read) as for a pair; 4445-4448 for a sealed one.
 * Known limits: members are written as they come; a bundle refused late
 * has cost the writes of its earlier members.
 */
#include "pipeline.h"
#include "../inboxes/text.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Members are numbered from 1, in tar order, in temporary names, the
 * ledger and status messages (<id>#<n>). */
void dsp_member_tmp_name(const char *id, unsigned number, char *out, size_t len)
{
    snprintf(out, len, ".sitespool-%s-%u.tmp", id, number);
}

/* The package read once (pkgread.c: every byte read is hashed), or a
 * sealed one opened; inflated output is handed to libarchive on request. */
struct bundle_reader {
    dsp_stager *st;
    dsp_pkgread rd;     /* an unsealed bundle's package */
    dsp_sealed *sealed; /* a sealed bundle: the payload comes from here */
    bool sealed_failed; /* its verdict is dsp_sealed_verdict's */
    const unsigned char *in;
    size_t in_len;
    bool eof;
    ss_error read_err;   /* reading the package failed: a local fault (4419) */
    int read_errno;      /* its error number */
    ss_error unpack_err; /* not a valid compressed stream, or the wrong size */
};

/* The next piece of a sealed bundle's payload (opened, authenticated). */
static int sealed_next(struct bundle_reader *r)
{
    const void *p;
    ssize_t n = dsp_sealed_pull(r->sealed, &p);
    if (n < 0) {
        r->sealed_failed = true;
        return -1;
    }
    r->eof = n == 0;
    r->in = p;
    r->in_len = (size_t)n;
    return 0;
}

/* Next piece of inflated output: its length, 0 at the end, -1 on error. */
static ssize_t reader_next(struct bundle_reader *r, const void **out)
{
    for (;;) {
        if (r->in_len == 0 && !r->eof && r->sealed) {
            if (sealed_next(r) != 0) return -1;
        } else if (r->in_len == 0 && !r->eof) {
            ssize_t n = dsp_pkgread_next(&r->rd, &r->in);
            if (n < 0) {
                r->read_err = r->rd.err;
                r->read_errno = r->rd.err_no;
                return -1;
            }
            r->eof = n == 0;
            r->in_len = (size_t)n;
        }
        size_t out_len;
        if (ss_inflater_pull(r->st->inflater, &r->in, &r->in_len, out, &out_len, &r->unpack_err) !=
            0)
            return -1;
        if (out_len) return (ssize_t)out_len;
        if (r->eof && r->in_len == 0) return 0;
    }
}

static la_ssize_t reader_callback(struct archive *a, void *ctx, const void **buf)
{
    struct bundle_reader *r = ctx;
    ssize_t n = reader_next(r, buf);
    if (n < 0)
        archive_set_error(a, EIO, "%s",
                          r->sealed_failed   ? "the sealed stream could not be opened"
                          : r->read_err.code ? r->read_err.msg
                                             : r->unpack_err.msg);
    return n;
}

/* After the tar ended or failed: the rest of the package is still hashed
 * (a forgery must read as a bad signature; hash receives it) and, while
 * the stream is good, inflated and counted against size=.  -1 if reading
 * the package failed. */
static int reader_finish(struct bundle_reader *r, const ss_instr *in,
                         unsigned char hash[SS_HASH_BYTES])
{
    const void *out;
    ssize_t n;
    if (!r->unpack_err.code && !r->read_err.code)
        while ((n = reader_next(r, &out)) > 0)
            ;
    /* A sealed stream is opened to its end: a fault of it comes first
     * (its bytes are judged by dsp_sealed_verdict). */
    while (r->sealed && !r->sealed_failed && !r->eof)
        (void)sealed_next(r);
    if (r->sealed_failed) return 0;
    if (!r->sealed && !r->read_err.code && dsp_pkgread_close(&r->rd, hash) != 0) {
        r->read_err = r->rd.err;
        r->read_errno = r->rd.err_no;
    }
    if (r->read_err.code) return -1;
    if (!r->unpack_err.code) dsp_inflate_end(r->st->inflater, in->size, &r->unpack_err);
    return 0;
}

/* Why a tar entry cannot be a member, or NULL. */
static const char *entry_refusal(struct archive_entry *ent, const char *name)
{
    if (archive_entry_filetype(ent) != AE_IFREG || archive_entry_hardlink(ent) ||
        archive_entry_symlink(ent))
        return "it is not a regular file (links, folders and devices are refused)";
    if (!name || !ss_file_name_valid(name))
        return "its name is not a plain file name (empty, '/', leading '.', control "
               "characters or longer than 255 bytes)";
    if (!archive_entry_size_is_set(ent) || archive_entry_size(ent) < 0) return "it has no size";
    if (archive_entry_sparse_count(ent) > 0) return "it is a sparse file";
    return NULL;
}

/* Where staging a bundle stands: the members created so far and the first
 * fault, which decides the outcome (see dsp_stage_bundle). */
/* Members written but not yet durable: their writeback was started
 * (sync_file_range) when they were written; the oldest is made durable
 * (fdatasync) and closed when the window is full, the rest at the end. */
#define SYNC_WINDOW 32

struct bundle_stage {
    work *w;
    struct archive *a;
    unsigned created; /* members 0..created-1 have temporary files */
    ss_error io_err;  /* writing into the destination failed */
    char refusal[256];
    int pending[SYNC_WINDOW];
    unsigned npending;
};

/* Makes the oldest pending member durable and closes it. */
static void settle_oldest(struct bundle_stage *s)
{
    int fd = s->pending[0];
    if (!s->io_err.code && fdatasync(fd) != 0)
        ss_err_sys(&s->io_err, "cannot make a member of bundle %s durable", s->w->in.id);
    if (close(fd) != 0 && !s->io_err.code)
        ss_err_sys(&s->io_err, "cannot close a member of bundle %s", s->w->in.id);
    memmove(s->pending, s->pending + 1, --s->npending * sizeof s->pending[0]);
}

static void settle_all(struct bundle_stage *s)
{
    while (s->npending)
        settle_oldest(s);
}

static const char *tar_error(struct archive *a)
{
    const char *msg = archive_error_string(a);
    return msg ? msg : "unreadable tar data";
}

/* Keeps the first reason: "<what>: <why>". */
static void refuse(struct bundle_stage *s, const char *what, const char *why)
{
    if (!s->refusal[0]) snprintf(s->refusal, sizeof s->refusal, "%s: %s", what, why);
}

static void refuse_member(struct bundle_stage *s, const char *name, const char *why)
{
    char what[320];
    snprintf(what, sizeof what, "member %s", name);
    refuse(s, what, why);
}

/* Copies the current entry's data into its temporary file. */
static int write_member(struct bundle_stage *s, dsp_member *m, unsigned k)
{
    char tmp[96];
    dsp_member_tmp_name(s->w->in.id, k + 1, tmp, sizeof tmp);
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(s->w->dest_fd, tmp, flags, 0640);
    if (fd < 0 && errno == EEXIST && unlinkat(s->w->dest_fd, tmp, 0) == 0)
        fd = openat(s->w->dest_fd, tmp, flags, 0640); /* a stale one from a crash */
    if (fd < 0) return ss_err_sys(&s->io_err, "cannot create a temporary file for %s", m->name);
    s->created = k + 1;
    const void *buf;
    size_t len;
    la_int64_t offset;
    uint64_t written = 0;
    int r;
    while ((r = archive_read_data_block(s->a, &buf, &len, &offset)) == ARCHIVE_OK) {
        if ((uint64_t)offset != written) {
            refuse_member(s, m->name, "its data has holes");
            break;
        }
        if (ss_write_all(fd, buf, len, &s->io_err) != 0) break;
        written += len;
    }
    if (r != ARCHIVE_OK && r != ARCHIVE_EOF)
        refuse_member(s, m->name, tar_error(s->a));
    else if (!s->io_err.code && !s->refusal[0] && written != m->size)
        refuse_member(s, m->name, "its data is shorter than its header says");
    if (s->io_err.code || s->refusal[0]) {
        close(fd);
        return -1;
    }
    /* Writeback starts now; durability comes from settle_oldest/settle_all
     * or from the batch's syncfs (dsp_choose_flush). */
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    if (!s->w->sync_each) { /* the batch's syncfs makes it durable */
        if (close(fd) != 0)
            ss_err_sys(&s->io_err, "cannot close the temporary file of %s", m->name);
        return s->io_err.code ? -1 : 0;
    }
    if (s->npending == SYNC_WINDOW) settle_oldest(s);
    s->pending[s->npending++] = fd;
    return s->io_err.code ? -1 : 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const dsp_member *const *)a)->name, (*(const dsp_member *const *)b)->name);
}

/* Two members with one name would be delivered as two different names. */
static void refuse_duplicates(struct bundle_stage *s)
{
    unsigned n = s->w->nmembers;
    dsp_member **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        ss_err(&s->io_err, SS_E_NOMEM, "out of memory");
        return;
    }
    for (unsigned i = 0; i < n; i++)
        sorted[i] = &s->w->members[i];
    qsort(sorted, n, sizeof *sorted, by_name);
    for (unsigned i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1]->name, sorted[i]->name)) {
            refuse_member(s, sorted[i]->name, "two members have this name");
            break;
        }
    free(sorted);
}

/* Reads every member of the tar stream into its temporary file. */
static void read_members(struct bundle_stage *s)
{
    struct archive_entry *ent;
    work *w = s->w;
    unsigned k = 0;
    int r;
    while ((r = archive_read_next_header(s->a, &ent)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname_utf8(ent);
        if (!name) name = archive_entry_pathname(ent);
        const char *why = entry_refusal(ent, name);
        if (k >= w->in.files) {
            refuse(s, "the tar stream", "it holds more members than files= declares");
            return;
        }
        if (why) {
            char shown[96];
            ss_text_safe(name ? name : "", shown, sizeof shown);
            refuse_member(s, shown, why);
            return;
        }
        dsp_member *m = &w->members[k];
        snprintf(m->name, sizeof m->name, "%s", name);
        m->size = (uint64_t)archive_entry_size(ent);
        if (write_member(s, m, k) != 0) return;
        w->nmembers = ++k;
    }
    if (r != ARCHIVE_EOF)
        refuse(s, "the tar stream", tar_error(s->a));
    else if (k != w->in.files) {
        char msg[96];
        snprintf(msg, sizeof msg, "it holds %u members, files= declares %u", k, w->in.files);
        refuse(s, "the tar stream", msg);
    } else {
        refuse_duplicates(s);
    }
}

/* Removes every temporary member file made for w. */
void dsp_bundle_abort(work *w, unsigned created)
{
    for (unsigned k = 0; k < created && w->dest_fd >= 0; k++) {
        char tmp[96];
        dsp_member_tmp_name(w->in.id, k + 1, tmp, sizeof tmp);
        (void)unlinkat(w->dest_fd, tmp, 0);
    }
    w->nmembers = 0;
}

/* The verdict on the bytes themselves, true if there is one: the
 * signature over the package, or (sealed) that and a fault of the sealed
 * stream (dsp_sealed_verdict). */
static bool bytes_refused(work *w, dsp_sealed *sealed, const unsigned char hash[SS_HASH_BYTES])
{
    ss_error sig_err = {0};
    if (sealed) return dsp_sealed_verdict(sealed, w);
    if (!w->is_signed || ss_sig_verify_package(&w->sig, &w->pk, hash, &sig_err) == 0) return false;
    dsp_stage_refuse(w, 4407, sig_err.msg);
    return true;
}

/* Parses and writes the bundle, read from pck_fd or opened from sealed;
 * the verdict goes into w (stage.c). */
static void unpack_bundle(dsp_stager *st, work *w, int pck_fd, dsp_sealed *sealed)
{
    struct bundle_reader r = {.st = st, .sealed = sealed};
    struct bundle_stage s = {.w = w};
    if (ss_inflater_reset(st->inflater, w->in.zip, w->in.size, &w->sv_err) != 0) {
        w->sv = SV_LOCAL_FAULT;
        return;
    }
    if (!sealed) dsp_pkgread_open(&r.rd, st, pck_fd, w->pck_size);
    /* A signature, or the seal's Poly1305 tags, cover every byte. */
    if (w->is_signed || sealed) ss_inflater_skip_checksum(st->inflater);
    /* Names in pax headers are UTF-8; libarchive converts them to the
     * locale's character set, which under the C locale refuses anything
     * beyond ASCII.  A UTF-8 locale for this thread only, while reading. */
    locale_t utf8 = ss_utf8_locale(), before = ss_locale_enter(utf8);
    s.a = archive_read_new();
    if (!s.a || archive_read_support_format_tar(s.a) != ARCHIVE_OK)
        ss_err(&s.io_err, SS_E_NOMEM, "cannot start the tar reader: %s",
               s.a ? tar_error(s.a) : "out of memory");
    else if (archive_read_open(s.a, &r, NULL, reader_callback, NULL) != ARCHIVE_OK)
        refuse(&s, "the tar stream", tar_error(s.a)); /* its first block is no tar header */
    else
        read_members(&s);
    if (s.a) archive_read_free(s.a);
    settle_all(&s); /* also on failure: every descriptor is closed */
    ss_locale_leave(before);
    if (utf8) freelocale(utf8);
    unsigned char hash[SS_HASH_BYTES];
    int finished = reader_finish(&r, &w->in, hash);
    if (!sealed) dsp_pkgread_abandon(&r.rd); /* (after a failed read) */
    if (finished != 0 || r.read_err.code) {  /* reading the package: not the destination */
        w->sv = SV_INPUT_FAULT;
        w->sv_err = r.read_err;
        w->input_errno = r.read_errno;
    } else if (s.io_err.code) {
        w->sv = SV_LOCAL_FAULT;
        w->sv_err = s.io_err;
    } else if (bytes_refused(w, sealed, hash)) {
        /* a forgery reads as a bad signature, tampering as a bad seal */
    } else if (r.unpack_err.code) {
        dsp_stage_refuse(w, 4413, r.unpack_err.msg);
    } else if (s.refusal[0]) {
        dsp_stage_refuse(w, 4427, s.refusal);
    } else {
        w->sv = SV_STAGED;
    }
    if (w->sv != SV_STAGED) dsp_bundle_abort(w, s.created);
}

/* Stages the members of w from pck_fd or sealed. */
static void stage_members(dsp_stager *st, work *w, int pck_fd, dsp_sealed *sealed)
{
    w->members = calloc(w->in.files, sizeof *w->members);
    if (!w->members) {
        w->sv = SV_LOCAL_FAULT;
        ss_err(&w->sv_err, SS_E_NOMEM, "out of memory for %u members", w->in.files);
    } else {
        unpack_bundle(st, w, pck_fd, sealed);
    }
    if (w->sv != SV_STAGED) {
        free(w->members);
        w->members = NULL;
        w->nmembers = 0;
    }
}

void dsp_stage_bundle(dsp_stager *st, int receive_fd, uint64_t max_bytes, work *w)
{
    int pck_fd = dsp_stage_open_package(receive_fd, max_bytes, w);
    if (pck_fd < 0) return;
    stage_members(st, w, pck_fd, NULL);
    close(pck_fd);
}

void dsp_stage_sealed_bundle(dsp_stager *st, work *w, dsp_sealed *s)
{
    stage_members(st, w, -1, s);
}
