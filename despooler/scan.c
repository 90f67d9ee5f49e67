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

static int select_ins(const struct dirent *de)
{
    return !ss_name_is_temporary(de->d_name) && ends_with(de->d_name, ".ins");
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
    if (w->in.type == SS_TYPE_KEY) return dsp_key_exchange(d, w, base);
    if (!w->is_signed && w->in.type == SS_TYPE_ROLLOVER) {
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, "a rollover must be signed");
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
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Verifying signature for instruction %s from site %s with key %s", w->ins_name,
                w->in.from, w->keyid);
        o = dsp_authenticate(d, w, base, &key);
    }
    if (o == OUT_STAGED) o = dsp_check_fields(d, w, base);
    if (o != OUT_STAGED) return o;
    if (w->in.type == SS_TYPE_ROLLOVER) return dsp_apply_rollover(d, w, base, &key);
    return w->in.files ? dsp_stage_bundle(d, w, base, &key) : dsp_stage_data(d, w, base, &key);
}

static int process_batch(ss_despooler *d, struct dirent **names, int count, work *batch,
                         ss_error *e)
{
    size_t n = 0, rejected_before = d->stats.rejected;
    for (int i = 0; i < count; i++)
        if (ins_name_valid(d, names[i]->d_name) &&
            dsp_load_or_reject(d, names[i]->d_name, &batch[n]))
            n++;
    int rc = 0;
    bool failed = false;
    d->trust_error = (ss_error){0};
    for (int pass = 0; pass < 2; pass++) {
        d->nusable = 0; /* key instructions of pass 0 may change what is usable */
        for (size_t i = 0; i < n; i++) {
            if (type_rank(&batch[i]) != pass) continue;
            /* After a keystore failure nothing more is judged this scan. */
            enum outcome o = failed ? OUT_WAIT : process_one(d, &batch[i]);
            failed |= o == OUT_FAIL;
            if (o != OUT_STAGED) {
                ss_atomic_abort(&batch[i].out);
                if (batch[i].dest_fd >= 0) close(batch[i].dest_fd);
                batch[i].dest_fd = -1;
            }
        }
    }
    rc = dsp_commit_batch(d, batch, n, e);
    if (rc == 0 && failed) rc = ss_err(e, d->trust_error.code, "%s", d->trust_error.msg);
    dsp_release_batch(batch, n);
    dsp_forget_batch_caches(d);
    (void)ss_fsync_dirfd(d->receive_fd, NULL);
    if (d->stats.rejected != rejected_before) (void)ss_fsync_dirfd(d->rejected_fd, NULL);
    return rc;
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
    struct dirent **names = NULL;
    int count = scandirat(d->receive_fd, ".", &names, select_ins, alphasort);
    if (count < 0) return ss_err_sys(e, "cannot list %s", d->receive_path);
    /* A work item is ~14 KiB: size the batch to what is there, so that a
     * single arrival does not clear megabytes. */
    size_t batch_max = d->conf->batch_max;
    if ((size_t)count < batch_max) batch_max = count ? (size_t)count : 1;
    work *batch = calloc(batch_max, sizeof *batch);
    int rc = batch ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    for (int start = 0; rc == 0 && start < count; start += (int)batch_max) {
        int n = count - start < (int)batch_max ? count - start : (int)batch_max;
        rc = process_batch(d, names + start, n, batch, e);
    }
    free(batch);
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    d->nforce = 0;
    /* After a failed scan (site.db locked, say) housekeeping would only
     * wait out the busy timeout once more per statement. */
    if (rc == 0) rc = dsp_housekeeping(d, e);
    if (progress) *progress = d->stats.delivered + d->stats.rejected + d->stats.duplicates > before;
    return rc;
}
