/*
 * scan.c - one pass over the inboxes: hman.box imports, a look for keys
 * that waiting instructions need, then the instructions in receive in name
 * order, in batches of at most batch_max; in each batch key instructions
 * first (they may change which keys are usable), then data.
 *
 * Security stance: an instruction file name must be <32 hex id>.ins before
 * anything is opened; anything else is quarantined by name.  A keystore
 * failure stops the batch (fail closed, see verify.c).
 * Diagnostics: 4403 for a bad name; the rest is raised by the phases.
 * Known limits: a scan lists receive once; files arriving during it are
 * found by the next scan, which their inotify event triggers.
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool dsp_force_has(const ss_despooler *d, const char *site)
{
    for (int i = 0; i < d->nforce; i++)
        if (!strcmp(d->force[i], site)) return true;
    return false;
}

void dsp_force_add(void *ctx, const char *site)
{
    ss_despooler *d = ctx;
    if (!dsp_force_has(d, site) && d->nforce < SS_FORCE_MAX)
        snprintf(d->force[d->nforce++], sizeof d->force[0], "%s", site);
}

static bool ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && !strcmp(name + n - k, suffix);
}

static bool is_instruction(const char *name)
{
    return !ss_name_is_temporary(name) && ends_with(name, ".ins");
}

typedef char dsp_name[256];

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const dsp_name *)a, *(const dsp_name *)b);
}

/* The next (up to) max instruction names of receive, sorted: receive is
 * read in pieces, so a backlog of any size costs the same memory.  Files
 * that arrive meanwhile may or may not be listed (the next scan finds
 * them).  Returns the count, 0 at the end, -1 on error. */
static int list_next(DIR *dir, dsp_name *out, size_t max, ss_error *e)
{
    size_t n = 0;
    struct dirent *de = NULL;
    errno = 0;
    while (n < max && (de = readdir(dir)) != NULL)
        if (is_instruction(de->d_name) && strlen(de->d_name) < sizeof out[0])
            memcpy(out[n++], de->d_name, strlen(de->d_name) + 1);
    if (!de && errno) return ss_err_sys(e, "cannot list the receive inbox");
    qsort(out, n, sizeof out[0], by_name);
    return (int)n;
}

/* Instruction files are named <32 hex id>.ins; anything else is refused
 * before it is opened, so later code only handles well-formed names. */
static bool ins_name_valid(ss_despooler *d, const char *name)
{
    char base[64];
    if (strlen(name) == SS_ID_HEX + 4) {
        base_of(name, base, sizeof base);
        if (ss_id_valid(base)) return true;
    }
    if (strlen(name) < sizeof base) {
        /* Like any quarantined pair: with its package, and a .why file. */
        base_of(name, base, sizeof base);
        QUARANTINE(d, base, 4403, name, "the file name is not <32 hex digit id>.ins");
        return false;
    }
    char target[128];
    ss_error e = {0};
    if (dsp_move_to_rejected(d, name, target, sizeof target, &e) < 0) {
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot quarantine %s: %s", name,
                e.msg);
        d->stats.waiting++;
        return false;
    }
    ss_report(d->rep, 4403, name, "the file name is not <32 hex digit id>.ins", NULL);
    d->stats.rejected++;
    return false;
}

/* Key exchange first, then data, each in arrival (name) order. */
static int type_rank(const work *w)
{
    return w->in.type == SS_TYPE_DATA ? 1 : 0;
}

static enum outcome process_one(ss_despooler *d, work *w)
{
    char base[64];
    ss_keyrec key;
    memset(&key, 0, sizeof key);
    base_of(w->ins_name, base, sizeof base);
    /* What the ledger says comes first: an interrupted delivery is
     * finished whatever becomes of its leftover pair. */
    enum outcome done = dsp_check_delivered(d, w, base);
    if (done != OUT_STAGED) return done;
    /* Every key is judged by the trust rules (keystore/trust.h) once the
     * instruction verified with it: see dsp_find_signer. */
    /* Key, rollover, receipt and heartbeat instructions are never sealed:
     * they must be readable before keys are known (4444). */
    if (dsp_is_sealed(w) && w->in.type != SS_TYPE_DATA) return dsp_seal_check(d, w, base);
    if (w->in.type == SS_TYPE_KEY) return dsp_key_exchange(d, w, base);
    if (!w->is_signed && w->in.type == SS_TYPE_ROLLOVER) {
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, "a rollover must be signed");
        return OUT_DONE;
    }
    if (!w->is_signed && dsp_is_report(w)) {
        QUARANTINE(d, base, 4440, w->in.id, w->in.from, ss_itype_name(w->in.type),
                   "it is not signed; receipts and heartbeats must be");
        return OUT_DONE;
    }
    enum outcome o = OUT_STAGED;
    if (!w->is_signed) {
        ss_verdict v;
        ss_error e = {0};
        if (ss_trust_judge_unsigned(&d->keys, w->in.from, &v, &e) != 0)
            return dsp_trust_failed(d, w, &e);
        o = dsp_act_on_verdict(d, w, base, &v, NULL);
    } else {
        o = dsp_authenticate(d, w, base, &key); /* logs "Verifying signature ..." */
    }
    if (o == OUT_STAGED) o = dsp_check_fields(d, w, base);
    /* Sealed: to one of this site's keys, opened only after the package
     * signature verified (sealed.c). */
    if (o == OUT_STAGED && dsp_is_sealed(w)) o = dsp_seal_check(d, w, base);
    if (o != OUT_STAGED) return o;
    if (w->in.type == SS_TYPE_ROLLOVER) return dsp_apply_rollover(d, w, base, &key);
    if (dsp_is_report(w)) return dsp_apply_report(d, w, base, &key);
    return dsp_prepare_stage(d, w, &key);
}

/* A batch on its way: loaded and judged, staged by the pool, committed
 * while the next batch is being staged. */
struct batch {
    ss_despooler *d; /* pool threads read only receive_fd and conf */
    work *items;
    size_t n;
    dsp_name *names;      /* the valid names being loaded */
    ss_error *load_err;   /* per name */
    bool pooled;          /* being staged by the pool */
    bool failed;          /* a keystore failure: nothing more this scan */
    ss_error trust_error; /* its first keystore failure */
    int64_t started_ms;   /* loading began (batch durations, metrics) */
};

static void load_job(dsp_stager *st, void *ctx, size_t i)
{
    (void)st;
    struct batch *b = ctx;
    b->load_err[i] = (ss_error){0};
    (void)dsp_load(b->d->receive_fd, b->names[i], &b->items[i], &b->load_err[i]);
}

/* Reads and parses the batch's instructions on the pool; those that
 * cannot be loaded are dealt with here, the rest close ranks. */
static size_t load_batch(ss_despooler *d, dsp_name *names, int count, struct batch *b,
                         dsp_name *valid, ss_error *errs)
{
    size_t nvalid = 0, n = 0;
    b->started_ms = ss_now_ms();
    for (int i = 0; i < count; i++)
        if (ins_name_valid(d, names[i])) memcpy(valid[nvalid++], names[i], sizeof valid[0]);
    b->names = valid;
    b->load_err = errs;
    dsp_run_jobs(d, load_job, b, nvalid);
    for (size_t i = 0; i < nvalid; i++) {
        if (errs[i].code != SS_OK) {
            dsp_load_failed(d, valid[i], &errs[i], b->items[i].input_errno);
            continue;
        }
        dsp_input_readable(d, b->items[i].in.id, valid[i]);
        if (n != i) memcpy(&b->items[n], &b->items[i], sizeof b->items[n]);
        n++;
    }
    return n;
}

/* The key the keystore holds for each data instruction's key id, so that
 * a pool thread can check the fields' signature before they are judged. */
static void find_pre_keys(ss_despooler *d, struct batch *b)
{
    struct {
        char site[SS_SITE_CODE_MAX + 1];
        char keyid[SS_KEYID_HEX + 1];
        int found;
        ss_pubkey pk;
    } seen[8];
    int nseen = 0;
    for (size_t i = 0; i < b->n; i++) {
        work *w = &b->items[i];
        if (!w->is_signed || w->in.type != SS_TYPE_DATA) continue;
        int k = 0;
        while (k < nseen && (strcmp(seen[k].site, w->in.from) || strcmp(seen[k].keyid, w->keyid)))
            k++;
        if (k == nseen) {
            if (nseen == (int)(sizeof seen / sizeof seen[0])) continue;
            ss_keyrec rec;
            ss_error e = {0};
            snprintf(seen[k].site, sizeof seen[k].site, "%s", w->in.from);
            snprintf(seen[k].keyid, sizeof seen[k].keyid, "%s", w->keyid);
            seen[k].found = ss_keys_get(d->db, w->in.from, w->keyid, &rec, &e) == 1;
            if (seen[k].found) seen[k].pk = rec.pk;
            nseen++;
        }
        if (!seen[k].found) continue;
        w->pre_pk = seen[k].pk;
        w->pre_state = 1;
    }
}

static void verify_job(dsp_stager *st, void *ctx, size_t i)
{
    (void)st;
    work *w = &((struct batch *)ctx)->items[i];
    if (w->pre_state != 1) return;
    ss_error e = {0};
    if (ss_sig_verify_comment(&w->sig, &w->pre_pk, &e) == 0) {
        w->pre_state = 2;
        return;
    }
    w->pre_state = 3;
    snprintf(w->pre_detail, sizeof w->pre_detail, "%s", e.msg);
}

static bool has_key_instructions(const struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (type_rank(&b->items[i]) == 0) return true;
    return false;
}

static void unstage(work *w)
{
    ss_atomic_abort(&w->out);
    if (w->dest_fd >= 0) close(w->dest_fd);
    w->dest_fd = -1;
    w->sv = SV_NONE;
}

/* Key instructions first (they may change which keys are usable), then
 * data: everything the main thread decides before a package is read. */
static void judge_batch(ss_despooler *d, struct batch *b)
{
    d->trust_error = (ss_error){0};
    for (int pass = 0; pass < 2; pass++) {
        d->nusable = 0; /* key instructions of pass 0 may change what is usable */
        for (size_t i = 0; i < b->n; i++) {
            if (type_rank(&b->items[i]) != pass) continue;
            /* After a keystore failure nothing more is judged this scan. */
            enum outcome o = b->failed ? OUT_WAIT : process_one(d, &b->items[i]);
            b->failed |= o == OUT_FAIL;
            if (o != OUT_STAGED) unstage(&b->items[i]);
        }
    }
    b->trust_error = d->trust_error;
    dsp_forget_batch_caches(d); /* the items hold their own descriptors */
}

/* The pool's verdicts, acted on in name order. */
static void apply_verdicts(ss_despooler *d, struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].sv != SV_NONE && dsp_stage_apply(d, &b->items[i]) != OUT_STAGED)
            unstage(&b->items[i]);
}

static void stage_job(dsp_stager *st, void *ctx, size_t i)
{
    struct batch *b = ctx;
    work *w = &b->items[i];
    if (w->sv == SV_PENDING) dsp_stage_job(st, b->d->receive_fd, b->d->conf->max_package_bytes, w);
}

/* On the pool while the previous batch commits; a batch of one or two
 * pairs (the idle daemon's case) is staged here, without a hand-over. */
static void stage_batch(ss_despooler *d, struct batch *b)
{
    b->pooled = d->pool && b->n >= POOL_MIN_ITEMS;
    if (b->pooled)
        dsp_pool_submit(d->pool, stage_job, b, b->n);
    else
        dsp_run_jobs(d, stage_job, b, b->n);
}

static void stage_wait(ss_despooler *d, struct batch *b)
{
    if (b->pooled) dsp_pool_wait(d->pool);
    apply_verdicts(d, b);
}

/* Commits a staged batch and lets it go. */
static int finish_batch(ss_despooler *d, struct batch *b, ss_error *e)
{
    if (!b->items) return 0;
    int rc = dsp_commit_batch(d, b->items, b->n, e);
    if (rc == 0 && b->failed) rc = ss_err(e, b->trust_error.code, "%s", b->trust_error.msg);
    double seconds = (double)(ss_now_ms() - b->started_ms) / 1000.0;
    d->stats.batches++;
    d->stats.batch_seconds += seconds;
    if (seconds > d->stats.batch_seconds_max) d->stats.batch_seconds_max = seconds;
    dsp_release_batch(b->items, b->n);
    b->items = NULL;
    b->n = 0;
    return rc;
}

/* The batches of one scan, pipelined: batch k+1 is judged, then staged by
 * the pool while batch k is committed (unless k+1 holds key instructions:
 * those wait for k's commit, so that no key change overtakes a delivery
 * judged before it). */
static int process_batches(ss_despooler *d, DIR *dir, dsp_name *names, size_t batch_max,
                           ss_error *e)
{
    struct batch prev = {0};
    size_t rejected_seen = d->stats.rejected;
    int rc = 0, k = 0, take;
    work *bufs[2] = {NULL, NULL};
    size_t cap[2] = {0, 0};
    dsp_name *valid = malloc(batch_max * sizeof *valid);
    ss_error *errs = malloc(batch_max * sizeof *errs);
    if (!valid || !errs) rc = ss_err(e, SS_E_NOMEM, "out of memory");
    while (rc == 0 && (take = list_next(dir, names, batch_max, e)) != 0) {
        if (take < 0) {
            rc = -1;
            break;
        }
        /* A work item is ~14 KiB: a single arrival gets one, not a batch;
         * a buffer too small for a later, larger piece (receive can grow
         * while it is read) is replaced. */
        if (cap[k] < (size_t)take) {
            free(bufs[k]);
            cap[k] = (size_t)take < batch_max && !bufs[k ^ 1] ? (size_t)take : batch_max;
            if (!(bufs[k] = calloc(cap[k], sizeof(work)))) {
                cap[k] = 0;
                rc = ss_err(e, SS_E_NOMEM, "out of memory");
                break;
            }
        }
        struct batch cur = {.d = d, .items = bufs[k]};
        cur.n = load_batch(d, names, take, &cur, valid, errs);
        if (has_key_instructions(&cur)) rc = finish_batch(d, &prev, e);
        if (rc == 0) {
            size_t files = 0;
            for (size_t i = 0; i < cur.n; i++)
                files += cur.items[i].in.files ? cur.items[i].in.files : 1;
            d->sync_each = dsp_choose_flush(files);
            find_pre_keys(d, &cur);
            dsp_run_jobs(d, verify_job, &cur, cur.n);
            judge_batch(d, &cur);
        }
        stage_batch(d, &cur);
        if (rc == 0) rc = finish_batch(d, &prev, e);
        stage_wait(d, &cur);
        prev = cur;
        k ^= 1;
        if (rc == 0 && cur.failed) break; /* its commit reports the failure */
    }
    int last = finish_batch(d, &prev, e);
    /* Once per scan, not per batch: a removal from receive that a crash
     * undoes only brings back a pair the ledger already knows (removed
     * again, no 4402); the delivered name was made durable before it. */
    (void)ss_fsync_dirfd(d->receive_fd, NULL);
    if (d->stats.rejected != rejected_seen) (void)ss_fsync_dirfd(d->rejected_fd, NULL);
    free(bufs[0]);
    free(bufs[1]);
    free(valid);
    free(errs);
    return rc ? rc : last;
}

int ss_despooler_scan(ss_despooler *d, bool *progress, ss_error *e)
{
    size_t before = d->stats.delivered + d->stats.rejected + d->stats.duplicates;
    d->stats.waiting = 0;
    d->stats.dest_failed = 0;
    dsp_waiting_pending(d);
    if (ss_hman_scan(&d->keys, NULL, dsp_force_add, d, e) < 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "hman.box: %s", e->msg);
    dsp_recheck_waiting_keys(d);
    int fd = dup(d->receive_fd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0) close(fd);
        return ss_err_sys(e, "cannot list %s", d->receive_path);
    }
    rewinddir(dir); /* the duplicate shares its offset with receive_fd */
    size_t batch_max = d->conf->batch_max;
    dsp_name *names = malloc(batch_max * sizeof *names);
    int rc = names ? process_batches(d, dir, names, batch_max, e)
                   : ss_err(e, SS_E_NOMEM, "out of memory");
    free(names);
    closedir(dir);
    d->nforce = 0;
    /* After a failed scan (site.db locked, say) housekeeping would only
     * wait out the busy timeout once more per statement. */
    if (rc == 0) rc = dsp_housekeeping(d, e);
    if (progress) *progress = d->stats.delivered + d->stats.rejected + d->stats.duplicates > before;
    return rc;
}
