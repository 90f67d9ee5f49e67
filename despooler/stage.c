/*
 * stage.c - staging, on both cores: for each data instruction the main
 * thread has authenticated and judged, a worker opens the package, hashes
 * and inflates it in one pass into .sitespool-<id>.tmp (a bundle: one
 * temporary file per member, bundle.c) in the destination inbox, and
 * checks the package signature and the size.  Workers only read receive,
 * write temporary files and compute; what they found (a stage verdict) is
 * acted on by the main thread, which alone touches site.db, status
 * messages, quarantine and the ledger (dsp_stage_apply).
 *
 * The pool runs one batch's staging while the main thread commits the
 * batch before it (scan.c), so the flushes of one batch (syncfs, the
 * ledger commit, directory fsyncs) overlap the reading, hashing, inflating
 * and writing of the next.  Nothing a worker writes is visible before the
 * batch commit of deliver.c: the exactly-once order of despooler.h holds
 * unchanged.
 *
 * Security stance: as deliver.c: output bounded by the declared size, a
 * forgery reads as a bad signature (the whole package is always hashed),
 * packages opened without following links, regular and size-limited.
 * Diagnostics: none of its own; the verdicts become 4407, 4411-4413, 4416,
 * 4419 (a package this host cannot read), 4427 and a sealed package's
 * 4445-4449 (sealed.c) in dsp_stage_apply.
 * Known limits: a pool that cannot start its threads stages on the main
 * thread (logged once).
 */
#include "pipeline.h"
#include "../inboxes/thread.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Written output is handed to the device this often (write-behind), so
 * the flush before the commit finds little left to write. */
#define WRITE_BEHIND (8u << 20)

int dsp_stager_init(dsp_stager *st, ss_error *e)
{
    memset(st, 0, sizeof *st);
    st->read_buf = malloc(READ_CHUNK);
    if (!st->read_buf) return ss_err(e, SS_E_NOMEM, "out of memory");
    st->inflater = &st->own_inflater;
    return 0;
}

void dsp_stager_free(dsp_stager *st)
{
    ss_inflater_free(&st->own_inflater);
    free(st->read_buf);
    st->read_buf = NULL;
}

void dsp_stage_refuse(work *w, int status, const char *detail)
{
    w->sv = SV_REFUSED;
    w->sv_status = status;
    snprintf(w->sv_detail, sizeof w->sv_detail, "%s", detail);
}

int dsp_unpack_write(void *ctx, const void *data, size_t len, ss_error *e)
{
    struct unpack_sink *s = ctx;
    if (s->fd >= 0) {
        if (ss_write_all(s->fd, data, len, &s->io_err) == 0) {
            s->written += len;
            if (s->written - s->flushed >= WRITE_BEHIND) {
                /* Start writeback now; durability still comes from the
                 * flush before the commit. */
                (void)sync_file_range(s->fd, (off_t)s->flushed, (off_t)(s->written - s->flushed),
                                      SYNC_FILE_RANGE_WRITE);
                s->flushed = s->written;
            }
            return 0;
        }
        s->io_failed = true;
        return ss_err(e, s->io_err.code, "%s", s->io_err.msg);
    }
    if (s->buf_len + len > s->buf_cap) return ss_err(e, SS_E_SIZE, "key payload too large");
    memcpy(s->buf + s->buf_len, data, len);
    s->buf_len += len;
    return 0;
}

void dsp_inflate_end(ss_inflater *inf, uint64_t declared, ss_error *unpack_err)
{
    if (ss_inflater_finish(inf, unpack_err) == 0 && inf->out_bytes != declared)
        ss_err(unpack_err, SS_E_SIZE, "it expands to %llu bytes, not the declared %llu",
               (unsigned long long)inf->out_bytes, (unsigned long long)declared);
}

int dsp_stage_begin_output(work *w, char *tmp, size_t len)
{
    dsp_tmp_name_for(w->in.id, tmp, len);
    if (ss_atomic_begin_named(&w->out, w->dest_fd, w->in.name, tmp, 0640, &w->sv_err) == 0)
        return 0;
    w->sv = SV_LOCAL_FAULT;
    return -1;
}

void dsp_stage_payload_verdict(work *w, const char *tmp, const ss_error *unpack_err)
{
    if (unpack_err->code != SS_OK) {
        dsp_stage_refuse(w, 4413, unpack_err->msg);
    } else if (w->sync_each && fdatasync(w->out.fd) != 0) {
        /* Durable here, on this thread, in parallel with the other
         * stagings and the previous batch's commit (see despooler.h). */
        ss_err_sys(&w->sv_err, "cannot make %s durable", tmp);
        w->sv = SV_LOCAL_FAULT;
    } else {
        w->sv = SV_STAGED;
    }
    if (w->sv != SV_STAGED) ss_atomic_abort(&w->out);
}

int dsp_stream_package(dsp_stager *st, int pck_fd, const work *w, struct unpack_sink *sink,
                       unsigned char hash[SS_HASH_BYTES], ss_error *unpack_err, ss_error *e)
{
    ss_inflater *inf = st->inflater;
    if (ss_inflater_reset(inf, w->in.zip, w->in.size, e) != 0) return -1;
    /* A signature covers every byte: zlib's own checksum adds nothing. */
    if (w->is_signed) ss_inflater_skip_checksum(inf);
    dsp_pkgread r;
    dsp_pkgread_open(&r, st, pck_fd, w->pck_size);
    bool inflating = true;
    const unsigned char *p;
    ssize_t n;
    while ((n = dsp_pkgread_next(&r, &p)) > 0)
        if (inflating && ss_inflater_feed(inf, p, (size_t)n, dsp_unpack_write, sink, unpack_err))
            inflating =
                false; /* the reader keeps hashing: a forgery must read as a bad signature */
    if (inflating && n == 0) dsp_inflate_end(inf, w->in.size, unpack_err);
    if (dsp_pkgread_close(&r, hash) != 0) {
        *e = r.err;
        errno = r.err_no;
        return -2;
    }
    return 0;
}

/* The package could not be read (errno err): this host's fault, kept and
 * retried (4419). */
static void input_fault(work *w, int err, const ss_error *e)
{
    w->sv = SV_INPUT_FAULT;
    w->input_errno = err;
    w->sv_err = *e;
}

int dsp_stage_open_package(int receive_fd, uint64_t max_bytes, work *w)
{
    ss_error e = {0};
    struct stat st = {0};
    int fd = ss_open_regular(receive_fd, w->pck_name, max_bytes, &st, &e);
    int err = errno; /* ss_open_regular leaves it as the failed call set it */
    w->pck_size = (uint64_t)st.st_size;
    if (fd >= 0) return fd;
    if (e.code == SS_E_IO && dsp_input_fault_is_local(err)) {
        input_fault(w, err, &e);
    } else if (e.code == SS_E_NOTREG || e.code == SS_E_IO) { /* SS_E_IO: a socket, a device */
        dsp_stage_refuse(w, 4411, e.msg);
    } else if (e.code == SS_E_TOOBIG) {
        w->sv_size = (uint64_t)st.st_size;
        dsp_stage_refuse(w, 4412, e.msg);
    } else {
        w->sv = SV_MISSING; /* ENOENT: the package has not arrived yet */
        w->sv_err = e;
    }
    return -1;
}

enum outcome dsp_open_package(ss_despooler *d, work *w, int *fd)
{
    *fd = dsp_stage_open_package(d->receive_fd, d->conf->max_package_bytes, w);
    return *fd >= 0 ? OUT_STAGED : dsp_stage_apply(d, w);
}

/* A single file: streamed into .sitespool-<id>.tmp; the verdicts in the
 * order that makes a forgery a bad signature, not bad data. */
static void stage_single(dsp_stager *st, int receive_fd, uint64_t max_bytes, work *w)
{
    int pck_fd = dsp_stage_open_package(receive_fd, max_bytes, w);
    if (pck_fd < 0) return;
    char tmp[96];
    ss_error unpack_err = {0}, sig_err = {0};
    if (dsp_stage_begin_output(w, tmp, sizeof tmp) != 0) {
        close(pck_fd);
        return;
    }
    struct unpack_sink sink = {.fd = w->out.fd};
    unsigned char hash[SS_HASH_BYTES];
    ss_error read_err = {0};
    int rc = dsp_stream_package(st, pck_fd, w, &sink, hash, &unpack_err, &read_err);
    close(pck_fd);
    if (rc == -2) {
        input_fault(w, errno, &read_err); /* reading the package: never the destination */
    } else if (rc != 0) {
        w->sv = SV_LOCAL_FAULT;
        w->sv_err = read_err;
    } else if (sink.io_failed) { /* disk full, EDQUOT, EIO...: not the package's fault */
        w->sv = SV_LOCAL_FAULT;
        w->sv_err = sink.io_err;
    } else if (w->is_signed && ss_sig_verify_package(&w->sig, &w->pk, hash, &sig_err) != 0) {
        dsp_stage_refuse(w, 4407, sig_err.msg);
    } else {
        dsp_stage_payload_verdict(w, tmp, &unpack_err);
        return;
    }
    ss_atomic_abort(&w->out);
}

void dsp_stage_job(dsp_stager *st, int receive_fd, uint64_t max_bytes, work *w)
{
    if (dsp_is_sealed(w))
        dsp_stage_sealed(st, receive_fd, max_bytes, w);
    else if (w->in.files)
        dsp_stage_bundle(st, receive_fd, max_bytes, w);
    else
        stage_single(st, receive_fd, max_bytes, w);
}

/* What the main thread makes of a stage verdict: the outcome, with its
 * status message, quarantine or retry. */
enum outcome dsp_stage_apply(ss_despooler *d, work *w)
{
    char base[64], num[32], max[32], label[320];
    base_of(w->ins_name, base, sizeof base);
    dsp_package_label(w, label, sizeof label);
    /* The package was opened (or is not there): a note that it could not
     * be read goes, so that the same fault later is reported again. */
    if (w->sv != SV_NONE && w->sv != SV_PENDING && w->sv != SV_INPUT_FAULT)
        dsp_input_readable(d, w->in.id, w->pck_name);
    switch (w->sv) {
    case SV_STAGED:
        return OUT_STAGED;
    case SV_NONE:
    case SV_PENDING: /* never staged: fail closed, the pair stays */
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Instruction %s was not staged; "
                "it stays in receive",
                w->in.id);
        d->stats.waiting++;
        return OUT_WAIT;
    case SV_MISSING:
        if (w->sv_err.code != SS_E_NOENT)
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot open %s: %s", w->pck_name,
                    w->sv_err.msg);
        d->stats.waiting++;
        return OUT_WAIT;
    case SV_LOCAL_FAULT:
        return dsp_dest_failed(d, w, &w->sv_err);
    case SV_INPUT_FAULT:
        return dsp_input_fault(d, w->in.id, w->in.from, w->pck_name, w->input_errno);
    case SV_REFUSED:
        break;
    }
    switch (w->sv_status) {
    case 4411:
        QUARANTINE(d, base, 4411, w->pck_name, w->sv_detail);
        break;
    case 4412:
        u64str(w->sv_size, num, sizeof num);
        u64str(d->conf->max_package_bytes, max, sizeof max);
        QUARANTINE(d, base, 4412, label, w->in.from, num, max);
        break;
    case 4407:
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, w->sv_detail);
        break;
    case 4427:
        snprintf(num, sizeof num, "%u", w->in.files);
        QUARANTINE(d, base, 4427, label, w->in.from, num, w->sv_detail);
        break;
    case 4445: /* a fault of a sealed package (sealed.c) */
    case 4446:
    case 4447:
    case 4448:
    case 4449:
        QUARANTINE(d, base, w->sv_status, label, w->in.from, w->sv_detail);
        break;
    default:
        QUARANTINE(d, base, 4413, label, w->in.from, w->sv_detail);
        break;
    }
    return OUT_DONE;
}

/* ---- the pool ------------------------------------------------------------- */

struct dsp_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a round of jobs, or stop */
    pthread_cond_t idle; /* the round is done */
    pthread_t *threads;
    dsp_stager *stagers;
    int nthreads;
    bool stop;
    /* the round in hand: job(stager, ctx, i) for every i < n */
    dsp_job_fn job;
    void *ctx;
    size_t n;
    atomic_size_t next;
    size_t busy; /* threads still working on it */
    unsigned generation;
};

/* Takes items until none is left; each is run by exactly one thread. */
static void drain_items(struct dsp_pool *p, dsp_stager *st)
{
    size_t i;
    while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
        p->job(st, p->ctx, i);
}

struct worker_arg {
    struct dsp_pool *pool;
    int index;
};

static void *worker(void *arg)
{
    struct dsp_pool *p = ((struct worker_arg *)arg)->pool;
    dsp_stager *st = &p->stagers[((struct worker_arg *)arg)->index];
    free(arg);
    unsigned seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        drain_items(p, st);
        pthread_mutex_lock(&p->lock);
        if (--p->busy == 0) pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

dsp_pool *dsp_pool_start(int nthreads, ss_error *e)
{
    struct dsp_pool *p = calloc(1, sizeof *p);
    if (!p) {
        ss_err(e, SS_E_NOMEM, "out of memory");
        return NULL;
    }
    p->threads = calloc((size_t)nthreads, sizeof *p->threads);
    p->stagers = calloc((size_t)nthreads, sizeof *p->stagers);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (!p->threads || !p->stagers) {
        ss_err(e, SS_E_NOMEM, "out of memory");
        dsp_pool_stop(p);
        return NULL;
    }
    for (int i = 0; i < nthreads; i++) {
        struct worker_arg *a = malloc(sizeof *a);
        if (!a || dsp_stager_init(&p->stagers[i], e) != 0) {
            free(a);
            dsp_pool_stop(p);
            return NULL;
        }
        *a = (struct worker_arg){p, i};
        int rc = ss_thread_start(&p->threads[i], worker, a);
        if (rc != 0) {
            free(a);
            dsp_stager_free(&p->stagers[i]);
            errno = rc;
            ss_err_sys(e, "cannot start a staging thread");
            dsp_pool_stop(p);
            return NULL;
        }
        p->nthreads++;
    }
    return p;
}

void dsp_pool_submit(dsp_pool *p, dsp_job_fn job, void *ctx, size_t n)
{
    pthread_mutex_lock(&p->lock);
    p->job = job;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    p->busy = (size_t)p->nthreads;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void dsp_pool_wait(dsp_pool *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->busy > 0)
        pthread_cond_wait(&p->idle, &p->lock);
    p->n = 0;
    pthread_mutex_unlock(&p->lock);
}

void dsp_run_jobs(ss_despooler *d, dsp_job_fn job, void *ctx, size_t n)
{
    if (d->pool && n >= POOL_MIN_ITEMS) {
        dsp_pool_submit(d->pool, job, ctx, n);
        dsp_pool_wait(d->pool);
        return;
    }
    dsp_stager main = dsp_main_stager(d);
    for (size_t i = 0; i < n; i++)
        job(&main, ctx, i);
}

void dsp_pool_stop(dsp_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    for (int i = 0; i < p->nthreads; i++)
        dsp_stager_free(&p->stagers[i]);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p->stagers);
    free(p);
}
