/*
 * bundle.h - many small files in one package (issue 14): grouping the
 * files of one send into bundles, and the POSIX tar stream a bundle's
 * package carries (instruction field files=<n>, instruction.h).
 *
 * The stream: exactly n regular files, in the order given, each named by
 * its delivered name (what a pair of its own would carry in name=), mode
 * 0640, the input's mtime (seconds), uid/gid 0, no user or group names,
 * no extended attributes, ACLs or sparse maps.  ustar headers, with a pax
 * extended header only where a name needs one (non-ASCII, or longer than
 * 100 bytes); names are written as UTF-8 whatever the process locale,
 * and a name that is not UTF-8 is stored as its bytes under
 * hdrcharset=BINARY.  No padding after the two end blocks, so the
 * instruction's size= is the exact length of the stream.  libarchive
 * writes it (restricted pax format, no filter) through a callback: the
 * caller compresses, hashes and writes it in the same pass as a single
 * file, in constant memory.
 *
 * Reading (the sender's own outbox only: the duplicate index, dropping
 * files from a bundle not yet queued, recovery's log lines): the package
 * is inflated on demand, never beyond its declared size, and every entry
 * must be a regular file with a valid delivered name; the stream must end
 * exactly at that size.
 *
 * Security stance: names are the sender's own, already checked with
 * ss_file_name_valid; the reader checks them again and refuses anything
 * but regular files, so a damaged outbox file cannot make a caller
 * compare or log anything else.
 *
 * Diagnostics: failures say which file or bundle and why (libarchive's
 * message, or the sink's own error: a full disk stays "no space left").
 *
 * Limits: SS_BUNDLE_FILES_MAX files per bundle (site.h); names up to
 * SS_NAME_MAX bytes.
 */
#ifndef SS_BUNDLE_H
#define SS_BUNDLE_H

#include "../inboxes/codec.h"
#include "../inboxes/instruction.h"

#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- grouping */

/* Assigns each of n files to a pair.  small[i] tells that file i may share
 * a package; names[i] is its delivered name.  Small files fill bundles of
 * at most max_files in the order given; a file whose name is already in a
 * bundle goes into the first open bundle without it (or starts one); other
 * files get a pair each.  pair[i] receives the pair's number; pairs are
 * numbered in the order of their first file.  Returns the number of pairs,
 * or -1 (out of memory).  max_files <= 1: one pair per file. */
long ss_bundle_plan(const char *const *names, const bool *small, size_t n, unsigned max_files,
                    size_t *pair, ss_error *e);

/* The name= of a bundle of n files: "bundle-<n>-files.tar". */
void ss_bundle_name(unsigned n, char *out, size_t len);
/* What a status message calls a pair: its name, or for a bundle
 * "<n> files in bundle-<n>-files.tar". */
void ss_bundle_describe(const ss_instr *in, char *out, size_t len);

/* ----------------------------------------------------------------- writing */

typedef struct ss_bundle_writer {
    struct archive *a;
    ss_sink_fn sink;
    void *ctx;
    ss_error sink_error; /* what the sink said when it failed */
    bool sink_failed;
    locale_t utf8; /* names are converted in C.UTF-8, whatever the caller's locale */
    uint64_t left; /* bytes the current member still expects */
} ss_bundle_writer;

/* Starts a stream whose bytes go to sink(ctx, ...). */
int ss_bundle_writer_open(ss_bundle_writer *w, ss_sink_fn sink, void *ctx, ss_error *e);
/* The header of the next member: exactly size bytes of data follow. */
int ss_bundle_writer_add(ss_bundle_writer *w, const char *name, uint64_t size, int64_t mtime,
                         ss_error *e);
int ss_bundle_writer_data(ss_bundle_writer *w, const void *buf, size_t len, ss_error *e);
/* The end blocks; frees the writer.  Every member must be complete. */
int ss_bundle_writer_close(ss_bundle_writer *w, ss_error *e);
/* Frees a writer that failed or is given up (safe after close, or twice). */
void ss_bundle_writer_abort(ss_bundle_writer *w);

/* ----------------------------------------------------------------- reading */

typedef struct ss_bundle_entry {
    const char *name;
    uint64_t size;
    int64_t mtime;
    unsigned index; /* 0 for the first member */
} ss_bundle_entry;

/* Called for each member: entry returns 1 to receive its data (through
 * data, then end), 0 to skip it, -1 to stop with an error. */
typedef struct ss_bundle_visitor {
    int (*entry)(void *ctx, const ss_bundle_entry *m, ss_error *e);
    int (*data)(void *ctx, const void *buf, size_t len, ss_error *e);
    int (*end)(void *ctx, ss_error *e);
} ss_bundle_visitor;

/* Reads the bundle package dirfd/pck (zip, size: its instruction's fields)
 * member by member.  Returns the number of members, or -1. */
long ss_bundle_read(int dirfd, const char *pck, enum ss_zip zip, uint64_t size,
                    const ss_bundle_visitor *v, void *ctx, ss_error *e);

#endif
