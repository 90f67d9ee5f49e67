/*
 * pipeline.h - private to the despooler's files: the instruction being
 * processed (work), what became of it (outcome), and each phase's entry
 * points.  See despooler.c for the order of the phases.
 */
#ifndef SS_DESPOOLER_PIPELINE_H
#define SS_DESPOOLER_PIPELINE_H

#include "despooler.h"
#include "admin.h"
#include "../inboxes/fileio.h"
#include "../inboxes/instruction.h"
#include "../inboxes/report.h"
#include "../inboxes/seal.h"
#include "../keystore/keyfile.h"
#include "../keystore/sigfile.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)
#define KEY_PAYLOAD_MAX 4096
/* A file still waiting is warned about again (4414) at most this often. */
#define BACKLOG_REWARN 86400
/* A truncated instruction this young may still be being written. */
#define WRITER_GRACE_S 5
/* A temporary file in receive older than this is a dead writer's. */
#define STALE_TMP_AGE (2 * 86400)
/* How the reasons of holds that are not trust decisions (4420) begin:
 * a destination that cannot be written (4416), a quarantine that failed
 * (4426).  waiting.c tells a hold's status message by them. */
#define HOLD_DEST_PREFIX "destination "
#define HOLD_QUARANTINE_PREFIX "quarantine failed: "
/* A file in receive that this site cannot read (4419, localfault.c):
 * "cannot read <name>: <error>". */
#define HOLD_INPUT_PREFIX "cannot read "

/* What became of an instruction: staged for the batch commit, finished
 * (delivered, quarantined or removed), left in receive for later, or
 * left in receive because the keystore could not be read (the batch stops
 * and the scan fails: fail closed, 4423). */
enum outcome { OUT_STAGED, OUT_DONE, OUT_WAIT, OUT_FAIL };

/* What staging found (stage.c), acted on by the main thread: NONE not to
 * be staged, PENDING waiting for a worker; LOCAL_FAULT the destination (or
 * memory) failed, INPUT_FAULT the package could not be read (4419). */
enum stage_verdict {
    SV_NONE,
    SV_PENDING,
    SV_STAGED,
    SV_MISSING,
    SV_LOCAL_FAULT,
    SV_INPUT_FAULT,
    SV_REFUSED
};

/* A staging thread's own buffers: the read buffer and the inflater. */
typedef struct dsp_stager {
    unsigned char *read_buf;
    ss_inflater *inflater;
    ss_inflater own_inflater;
} dsp_stager;

/* A sealed package being opened (sealed.c). */
typedef struct dsp_sealed dsp_sealed;

/* pkgread.c: a package read once, every byte hashed before the caller
 * sees it; large ones on a reader thread of their own, a few buffers
 * ahead of the caller. */
typedef struct dsp_pkgread {
    int fd;
    unsigned char *buf;       /* the stager's (read on the caller's thread) */
    struct dsp_pkgring *ring; /* the reader thread's, or NULL */
    ss_hash hash;             /* (on the caller's thread) */
    uint64_t total;           /* bytes read */
    bool eof, failed;
    ss_error err; /* a failed read's, with its errno */
    int err_no;
} dsp_pkgread;
/* size: the package's length when opened (large ones get the thread). */
void dsp_pkgread_open(dsp_pkgread *r, dsp_stager *st, int fd, uint64_t size);
/* The next piece (valid until the next call): its length, 0 at the end,
 * -1 if reading failed (r->err, r->err_no). */
ssize_t dsp_pkgread_next(dsp_pkgread *r, const unsigned char **p);
/* Reads and hashes the rest, ends the thread: 0 with the hash of every
 * byte (r->total of them), -1 if reading failed. */
int dsp_pkgread_close(dsp_pkgread *r, unsigned char hash[SS_HASH_BYTES]);
/* Ends the thread without reading further (the pair is not judged by its
 * bytes this time: a local fault).  Safe after close. */
void dsp_pkgread_abandon(dsp_pkgread *r);

/* One file of a bundle (files=N): staged as .sitespool-<id>-<k>.tmp. */
typedef struct dsp_member {
    char name[SS_NAME_MAX + 1];  /* its name in the tar stream */
    char final[SS_NAME_MAX + 1]; /* the name it is published under */
    uint64_t size;
    int64_t status_row; /* its stored 4400 */
} dsp_member;

/* One instruction being processed. */
typedef struct work {
    char ins_name[64];
    char pck_name[64];
    bool is_signed;
    ss_sig sig;
    ss_instr in;
    char keyid[SS_KEYID_HEX + 1];
    char ins_identity[128]; /* device, inode, size, mtime of the .ins read */
    /* staged delivery */
    int dest_fd;
    ss_atomic out;
    char dest_rel[SS_NAME_MAX + 64]; /* inboxes/<dest>/incoming/<name> */
    int64_t status_row;              /* its stored 4400, corrected if the name changes */
    /* staged bundle (in.files > 0): its members, all written */
    dsp_member *members;
    unsigned nmembers;
    bool committed; /* its ledger rows are committed */
    bool complete;  /* every file published */
    /* staging (stage.c): the key the instruction verified with, and the
     * verdict with its status id, detail, local error or package size */
    ss_pubkey pk;
    /* the fields' signature checked on a pool thread with the keystore's
     * key for the key id (verify.c uses it if that is the key it judges) */
    ss_pubkey pre_pk;
    int pre_state; /* 0 not checked, 1 pending, 2 good, 3 bad (pre_detail) */
    char pre_detail[160];
    enum stage_verdict sv;
    int sv_status;
    char sv_detail[256];
    ss_error sv_err;
    int input_errno; /* errno of a failed read of the .ins (load) or .pck (staging) */
    uint64_t sv_size;
    uint64_t pck_size; /* the package file's size when opened */
    /* Made durable file by file on its staging thread (fdatasync), or left
     * to the one syncfs of the batch commit (dsp_choose_flush). */
    bool sync_each;
    /* A sealed package (in.enc, sealed.c): this site's secret key it is
     * sealed to (the despooler's cache, read only on the pool), its sealed
     * length (size= of the instruction), and whether in.name, size, zip
     * and files are the metadata's yet (decrypted). */
    const ss_seckey *seal_key;
    ss_open_cache *seal_cache; /* the despooler's, shared by the pool */
    uint64_t sealed_size;
    bool seal_named;
} work;

/* "dev:ino:size:mtime_ns" of a file: which file this is, not what it says. */
static inline void dsp_file_identity(const struct stat *st, char *out, size_t len)
{
    /* ctime cannot be set from user space: a copy restored with its old
     * mtime into a reused inode is still another file. */
    snprintf(out, len, "%llu:%llu:%lld:%lld.%09ld:%lld.%09ld", (unsigned long long)st->st_dev,
             (unsigned long long)st->st_ino, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
             (long)st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, (long)st->st_ctim.tv_nsec);
}

/* Where an unpacked package goes: a file, or (fd -1) a bounded buffer.
 * A failed write into the file is the destination's fault, not the
 * package's: it is kept apart (io_failed, io_err) from codec errors. */
struct unpack_sink {
    int fd;
    char *buf;
    size_t buf_len;
    size_t buf_cap;
    bool io_failed;
    ss_error io_err;
    uint64_t written, flushed; /* write-behind (stage.c) */
};

static inline void u64str(uint64_t v, char *out, size_t len)
{
    snprintf(out, len, "%" PRIu64, v);
}

/* "<id>" of "<id>.ins". */
static inline void base_of(const char *name, char *out, size_t len)
{
    const char *dot = strrchr(name, '.');
    snprintf(out, len, "%.*s", (int)(dot ? dot - name : (long)strlen(name)), name);
}

/* Steps and finalizes a statement; logs and returns -1 if it failed. */
static inline int db_step_done(ss_despooler *d, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc != 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Database error while %s: %s", what,
                sqlite3_errmsg(d->db->h));
    sqlite3_finalize(st);
    return rc;
}

#define QUARANTINE(d, base, id, ...)                                                               \
    do {                                                                                           \
        const char *istr_[] = {__VA_ARGS__};                                                       \
        dsp_quarantine(d, base, id, istr_, (int)(sizeof istr_ / sizeof istr_[0]));                 \
    } while (0)

/* reports.c: receipts and heartbeats from peers, and the fates this
 * site reports to the sites whose instructions it judged.  dsp_fate notes
 * one (not for receipts and heartbeats themselves, nor for names that are
 * no instruction id or site code); inside the caller's transaction if one
 * is open.  A fate that cannot be noted is logged: the sender then asks
 * for it through its receipt_timeout (4512), nothing else is lost. */
enum outcome dsp_apply_report(ss_despooler *d, work *w, const char *base, const ss_keyrec *key);
void dsp_fate(ss_despooler *d, const char *id, const char *from, enum ss_itype type, int fate,
              int status_id);
static inline bool dsp_is_report(const work *w)
{
    return w->in.type == SS_TYPE_RECEIPT || w->in.type == SS_TYPE_HEARTBEAT;
}

/* scan.c */
bool dsp_force_has(const ss_despooler *d, const char *site);
void dsp_force_add(void *ctx, const char *site);

/* load.c: dsp_load runs on pool threads (reads and parses only); when it
 * could not read the file, w->input_errno holds the error number. */
int dsp_load(int receive_fd, const char *ins_name, work *w, ss_error *e);
/* What dirfd/name claims, for listings (no name check, nothing judged). */
void dsp_read_claim(int dirfd, const char *name, ss_claim *c);
void dsp_load_failed(ss_despooler *d, const char *name, const ss_error *e, int err);

/* verify.c */
enum outcome dsp_trust_failed(ss_despooler *d, const work *w, const ss_error *e);
enum outcome dsp_refuse(ss_despooler *d, const work *w, const char *base, const ss_verdict *v,
                        const char *key_id, const char *detail);
enum outcome dsp_act_on_verdict(ss_despooler *d, work *w, const char *base, const ss_verdict *v,
                                const char *key_id);
int dsp_find_signer(ss_despooler *d, work *w, const char *base, bool for_data, ss_keyrec *key,
                    ss_verdict *v, enum outcome *o, ss_error *e);
enum outcome dsp_authenticate(ss_despooler *d, work *w, const char *base, ss_keyrec *key);
enum outcome dsp_check_delivered(ss_despooler *d, work *w, const char *base);
enum outcome dsp_check_fields(ss_despooler *d, work *w, const char *base);

/* keyinstr.c */
enum outcome dsp_key_exchange(ss_despooler *d, work *w, const char *base);
enum outcome dsp_apply_rollover(ss_despooler *d, work *w, const char *base, const ss_keyrec *key);

/* The main thread's own buffers, for staging without the pool. */
static inline dsp_stager dsp_main_stager(ss_despooler *d)
{
    return (dsp_stager){.read_buf = d->read_buf, .inflater = &d->inflater};
}

/* stage.c: workers may call only dsp_stage_job and what it calls */
int dsp_stager_init(dsp_stager *st, ss_error *e);
void dsp_stager_free(dsp_stager *st);
int dsp_unpack_write(void *ctx, const void *data, size_t len, ss_error *e);
/* Hashes and inflates the package: 0, -1 if it could not start (*e), -2
 * if reading the package failed (*e; errno is the read's error number). */
int dsp_stream_package(dsp_stager *st, int pck_fd, const work *w, struct unpack_sink *sink,
                       unsigned char hash[SS_HASH_BYTES], ss_error *unpack_err, ss_error *e);
/* The end of an inflated stream: its size must be the declared one (else
 * *unpack_err, unless zlib's own error is there first). */
void dsp_inflate_end(ss_inflater *inf, uint64_t declared, ss_error *unpack_err);
/* Begins .sitespool-<id>.tmp (its name into tmp) for w's single file in
 * its destination: -1 with a local fault as the verdict. */
int dsp_stage_begin_output(work *w, char *tmp, size_t len);
/* Once the bytes were judged good: the payload's own verdict - 4413 for
 * unpack_err, else durable (sync_each) and staged; the output is removed
 * unless staged. */
void dsp_stage_payload_verdict(work *w, const char *tmp, const ss_error *unpack_err);
/* Opens the package; -1 with the verdict set if it cannot be staged. */
int dsp_stage_open_package(int receive_fd, uint64_t max_bytes, work *w);
void dsp_stage_refuse(work *w, int status, const char *detail);
/* The same on the main thread: OUT_STAGED and *fd, or the outcome (the
 * package missing, or quarantined). */
enum outcome dsp_open_package(ss_despooler *d, work *w, int *fd);
void dsp_stage_job(dsp_stager *st, int receive_fd, uint64_t max_bytes, work *w);
enum outcome dsp_stage_apply(ss_despooler *d, work *w);
/* Below this many items a round runs on the calling thread: handing one
 * pair to another thread and back costs more latency than it saves. */
#define POOL_MIN_ITEMS 3
/* A round of jobs: job(stager, ctx, i) for every i < n, each on exactly one
 * pool thread; submit returns at once, wait until the round is done. */
typedef void (*dsp_job_fn)(dsp_stager *st, void *ctx, size_t i);
dsp_pool *dsp_pool_start(int nthreads, ss_error *e);
void dsp_pool_submit(dsp_pool *p, dsp_job_fn job, void *ctx, size_t n);
void dsp_pool_wait(dsp_pool *p);
void dsp_pool_stop(dsp_pool *p);
/* Runs a round and waits for it (on this thread when there is no pool). */
void dsp_run_jobs(ss_despooler *d, dsp_job_fn job, void *ctx, size_t n);

/* bundle.c */
void dsp_member_tmp_name(const char *id, unsigned number, char *out, size_t len);
void dsp_stage_bundle(dsp_stager *st, int receive_fd, uint64_t max_bytes, work *w);
/* A sealed bundle: w->in.files from its metadata, the payload from s. */
void dsp_stage_sealed_bundle(dsp_stager *st, work *w, dsp_sealed *s);
void dsp_bundle_abort(work *w, unsigned created);

/* sealed.c: a sealed package (in.enc; inboxes/seal.h) */
static inline bool dsp_is_sealed(const work *w)
{
    return w->in.enc[0] != '\0';
}
/* How a sealed package is named in messages: "sealed package <id>", or
 * "<name> (sealed package <id>)" once its metadata was decrypted; an
 * unsealed one by its id. */
void dsp_package_label(const work *w, char *out, size_t len);
/* Main thread, after the fields and the signer were judged: the key the
 * instruction is sealed to must be one of this site's own keys (current,
 * or retired within its grace), not revoked; its secret half is loaded
 * (once, guarded memory) for the pool.  Non-data instructions are never
 * sealed.  OUT_STAGED, or the outcome (4444, held, keystore failure). */
enum outcome dsp_seal_check(ss_despooler *d, work *w, const char *base);
void dsp_seal_keys_free(ss_despooler *d);
/* Pool: verifies the signature over the sealed bytes (a hashing pass),
 * then opens, inflates and stages them (a second pass). */
void dsp_stage_sealed(dsp_stager *st, int receive_fd, uint64_t max_bytes, work *w);

/* The plaintext of a sealed package, pulled piece by piece (bundle.c
 * reads a sealed bundle's payload through it). */
/* The next piece of payload: its length, 0 at the end, -1 on a fault (the
 * verdict is dsp_sealed_verdict's). */
ssize_t dsp_sealed_pull(dsp_sealed *s, const void **out);
/* A fault of the sealed stream or of reading it, as w's verdict: true if
 * there was one. */
bool dsp_sealed_verdict(dsp_sealed *s, work *w);

/* deliver.c */
void dsp_tmp_name_for(const char *id, char *out, size_t len);
int dsp_open_dest(ss_despooler *d, const char *dest, ss_error *e);
void dsp_forget_batch_caches(ss_despooler *d);
/* true: make staged files durable one by one (other writers have much
 * unsynced data: a syncfs would flush it too); false: one syncfs. */
bool dsp_choose_flush(size_t files);
/* Readies a data instruction for staging (its destination opened). */
enum outcome dsp_prepare_stage(ss_despooler *d, work *w, const ss_keyrec *key);
int dsp_commit_batch(ss_despooler *d, work *batch, size_t n, ss_error *e);
int dsp_claim_name(int dirfd, const char *tmp, const char *name, const char *id, char *final,
                   size_t len, ss_error *e);
void dsp_release_batch(work *batch, size_t n);

/* ledger.c */
int dsp_ledger_lookup(ss_despooler *d, const char *id, char *path, size_t len, int64_t *when,
                      ss_error *e);
/* 1 if the ledger row of id was made from this very instruction file
 * (identity as dsp_file_identity), 0 if not or unknown, -1 on error. */
int dsp_ledger_same_file(ss_despooler *d, const char *id, const char *identity, ss_error *e);
int dsp_finish_interrupted(ss_despooler *d, const work *w, const char *rel_path, ss_error *e);
int dsp_ledger_insert(ss_despooler *d, const work *w, const char *outcome, const char *path,
                      ss_error *e);
/* member 0: the instruction's own row; n > 0: member n of a bundle. */
void dsp_ledger_set_path(ss_despooler *d, const char *id, unsigned member, const char *path);
int dsp_ledger_insert_member(ss_despooler *d, const char *id, unsigned member, const char *name,
                             const char *path, ss_error *e);
int dsp_ledger_prune(ss_despooler *d, int64_t high_water, ss_error *e);
int dsp_note_sequence(ss_despooler *d, const work *w, ss_error *e);
void dsp_report_gaps(ss_despooler *d);
int dsp_clock_advance(ss_despooler *d, int64_t *high_water, ss_error *e);

/* waiting.c */
void dsp_forget_notes(ss_despooler *d, const char *base);
void dsp_retry_forget(ss_despooler *d, const char *id);
enum outcome dsp_key_missing(ss_despooler *d, work *w, const char *base);
bool dsp_retry_not_due(ss_despooler *d, const work *w);
int dsp_hold_of(ss_despooler *d, const work *w, char *reason, size_t len);
bool dsp_note_once(ss_despooler *d, const work *w, const char *reason);
bool dsp_note_once_id(ss_despooler *d, const char *id, const char *from, const char *reason);
enum outcome dsp_hold(ss_despooler *d, const work *w, const char *reason);
enum outcome dsp_dest_failed(ss_despooler *d, const work *w, const ss_error *e);
void dsp_recheck_waiting_keys(ss_despooler *d);
/* Called inside the batch's ledger transaction, which no trust change
 * can interleave with: staged items whose key is no longer accepted (an
 * untrust or revoke committed since they were judged) are withdrawn - their
 * temporary files go, the pair stays in receive for the next scan.
 * Returns how many, -1 if the keystore could not be read (fail closed). */
int dsp_recheck_trust(ss_despooler *d, work *batch, size_t n, ss_error *e);
int dsp_check_backlog(ss_despooler *d, ss_error *e);
void dsp_waiting_pending(ss_despooler *d);
int64_t dsp_next_retry_in(ss_despooler *d);

/* For administrators (admin.h): ROOT/rel opened (no symlink at its end),
 * and whether dirfd/name exists (a symbolic link counts). */
int dsp_open_site_dir(const char *root, const char *rel, ss_error *e);
static inline bool dsp_exists_at(int dirfd, const char *name)
{
    return faccessat(dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* localfault.c: an input that cannot be read for a reason of this host */
/* true: err (of open, stat or read) is this host's fault, not the file's. */
bool dsp_input_fault_is_local(int err);
/* Keeps the pair in receive; 4419 once per pair and cause.  from may be
 * NULL (the instruction itself could not be read). */
enum outcome dsp_input_fault(ss_despooler *d, const char *id, const char *from, const char *name,
                             int err);
/* name of pair id was read: a note of a fault reading it goes. */
void dsp_input_readable(ss_despooler *d, const char *id, const char *name);

/* quarantine.c */
int dsp_move_to_rejected(ss_despooler *d, const char *name, char *target, size_t len, ss_error *e);
void dsp_quarantine(ss_despooler *d, const char *base, int msg_id, const char *const istr[],
                    int nistr);
void dsp_remove_pair(ss_despooler *d, const char *base);

/* housekeeping.c */
int dsp_housekeeping(ss_despooler *d, ss_error *e);

#endif
