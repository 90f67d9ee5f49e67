/*
 * deliver.c - delivery: once the pool has staged a batch (stage.c: each
 * package hashed and inflated into .sitespool-<id>.tmp, or one temporary
 * file per bundle member), the staged files are made durable, the ledger
 * committed, the files renamed to their final names and the pairs removed
 * from receive (the exactly-once order of despooler.h).
 *
 * Security stance: output is bounded by the declared size (no
 * decompression bombs); the final name is a plain file name in an allowed
 * inbox, never overwriting; a forgery reads as a bad signature, not as bad
 * data.
 * Diagnostics: 4400 delivered, 4407, 4411-4413 (via quarantine.c), 4416
 * a destination that cannot be written (the pair stays and is retried).
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

#define NAME_ATTEMPTS 1000

void dsp_tmp_name_for(const char *id, char *out, size_t len)
{
    snprintf(out, len, ".sitespool-%s.tmp", id);
}

/* A descriptor of inboxes/<dest>/incoming for one staged item (a dup of the
 * batch's cached one, so each item can close its own). */
int dsp_open_dest(ss_despooler *d, const char *dest, ss_error *e)
{
    for (int i = 0; i < d->ndests; i++)
        if (!strcmp(d->dests[i].dest, dest)) return dup(d->dests[i].fd);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/inboxes/%s/incoming", d->root, dest) >= (int)sizeof path)
        return ss_err(e, SS_E_TOOBIG, "path too long");
    if (ss_mkdirs(path, 0750, e) != 0) return -1;
    int fd = ss_open_dir(path, e);
    if (fd >= 0 && d->ndests < (int)(sizeof d->dests / sizeof d->dests[0])) {
        snprintf(d->dests[d->ndests].dest, sizeof d->dests[0].dest, "%s", dest);
        d->dests[d->ndests++].fd = fd;
        return dup(fd);
    }
    return fd;
}

void dsp_forget_batch_caches(ss_despooler *d)
{
    for (int i = 0; i < d->ndests; i++)
        close(d->dests[i].fd);
    d->ndests = 0;
    d->nusable = 0;
}

/* A data instruction that verified and passed the trust rules: its
 * destination is opened here (the cache is the main thread's) and the
 * package is staged by the pool (stage.c). */
enum outcome dsp_prepare_stage(ss_despooler *d, work *w, const ss_keyrec *key)
{
    ss_error e = {0};
    w->pk = key->pk;
    w->sync_each = d->sync_each;
    w->dest_fd = dsp_open_dest(d, w->in.dest, &e);
    if (w->dest_fd < 0) return dsp_dest_failed(d, w, &e);
    w->sv = SV_PENDING;
    return OUT_STAGED;
}

/* Candidate final names, in order: name, name.<id>, name.<id>.2, ...
 * (id is <id>#<n> for a bundle member: unique per member). */
static void candidate_name(const char *name, const char *id, int attempt, char *out, size_t len)
{
    if (attempt == 0)
        snprintf(out, len, "%s", name);
    else if (attempt == 1)
        snprintf(out, len, "%.200s.%s", name, id);
    else
        snprintf(out, len, "%.200s.%s.%d", name, id, attempt);
}

/* "<id>#<n>": how a bundle member is named in messages and collisions. */
static void member_label(const work *w, unsigned k, char *out, size_t len)
{
    snprintf(out, len, "%s#%u", w->in.id, k + 1);
}

static void set_dest_rel(work *w)
{
    snprintf(w->dest_rel, sizeof w->dest_rel, "inboxes/%s/incoming/%s", w->in.dest, w->out.final);
}

/* The names a batch has chosen so far, per destination: an open-addressing
 * set of "dest/name" (a batch of bundles chooses tens of thousands). */
struct nameset {
    char **slot;
    size_t cap;
};

static int nameset_init(struct nameset *ns, size_t files, ss_error *e)
{
    ns->cap = 64;
    while (ns->cap < files * 2)
        ns->cap <<= 1;
    ns->slot = calloc(ns->cap, sizeof *ns->slot);
    return ns->slot ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
}

static void nameset_free(struct nameset *ns)
{
    for (size_t i = 0; i < ns->cap; i++)
        free(ns->slot[i]);
    free(ns->slot);
}

/* Finds key's slot: where it is, or the empty one where it would go. */
static char **nameset_slot(struct nameset *ns, const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    size_t i = (size_t)h & (ns->cap - 1);
    while (ns->slot[i] && strcmp(ns->slot[i], key) != 0)
        i = (i + 1) & (ns->cap - 1);
    return &ns->slot[i];
}

/* Picks the first candidate name that exists neither on disk nor earlier
 * in the batch and notes it; the rename claims it (without replacing)
 * after the commit.  On no memory it keeps the plain name: the rename
 * still never replaces, it only moves to the next free name then. */
static void choose_name(struct nameset *ns, int dirfd, const char *dest, const char *name,
                        const char *id, char *final, size_t len)
{
    for (int attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
        char key[320];
        candidate_name(name, id, attempt, final, len);
        snprintf(key, sizeof key, "%s/%s", dest, final);
        char **slot = ns->cap ? nameset_slot(ns, key) : NULL;
        if ((slot && *slot) || faccessat(dirfd, final, F_OK, AT_SYMLINK_NOFOLLOW) == 0) continue;
        if (slot) *slot = strdup(key);
        return;
    }
}

static void choose_final_names(work *batch, size_t n, size_t files)
{
    struct nameset ns;
    if (nameset_init(&ns, files, NULL) != 0) ns.cap = 0;
    for (size_t i = 0; i < n; i++) {
        work *w = &batch[i];
        if (w->dest_fd < 0) continue;
        if (!w->in.files) {
            choose_name(&ns, w->dest_fd, w->in.dest, w->in.name, w->in.id, w->out.final,
                        sizeof w->out.final);
            set_dest_rel(w);
            continue;
        }
        for (unsigned k = 0; k < w->nmembers; k++) {
            char label[64];
            member_label(w, k, label, sizeof label);
            choose_name(&ns, w->dest_fd, w->in.dest, w->members[k].name, label, w->members[k].final,
                        sizeof w->members[k].final);
        }
    }
    if (ns.cap) nameset_free(&ns);
}

/* Claims a final name for dirfd/tmp with a rename that never replaces:
 * *final (if set) first, then name, name.<id>, name.<id>.2 ... in turn.
 * 0 and *final the name written, or -1 (the file stays under tmp). */
int dsp_claim_name(int dirfd, const char *tmp, const char *name, const char *id, char *final,
                   size_t len, ss_error *e)
{
    char chosen[256];
    snprintf(chosen, sizeof chosen, "%s", final);
    for (int attempt = -1; attempt < NAME_ATTEMPTS; attempt++) {
        char candidate[256];
        if (attempt < 0) {
            if (!chosen[0]) continue;
            snprintf(candidate, sizeof candidate, "%s", chosen);
        } else {
            candidate_name(name, id, attempt, candidate, sizeof candidate);
            if (!strcmp(candidate, chosen)) continue;
        }
        if (ss_rename_noreplace(dirfd, tmp, dirfd, candidate, e) == 0) {
            snprintf(final, len, "%s", candidate);
            return 0;
        }
        if (e->code != SS_E_EXISTS) return -1;
    }
    return ss_err(e, SS_E_EXISTS, "no free name for %s after %d attempts", name, NAME_ATTEMPTS);
}

/* True if an earlier staged item of the batch has the same destination. */
static bool dest_seen_before(const work *batch, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (batch[j].dest_fd >= 0 && !strcmp(batch[j].in.dest, batch[i].in.dest)) return true;
    return false;
}

/* Takes a staged item out of the batch: its temporary files go, the pair
 * stays in receive and is retried (4416). */
static void drop_staged(ss_despooler *d, work *w, const ss_error *e)
{
    dsp_dest_failed(d, w, e);
    ss_atomic_abort(&w->out);
    dsp_bundle_abort(w, w->nmembers);
    close(w->dest_fd);
    w->dest_fd = -1;
}

/* How staged files are made durable, chosen per batch by measurement
 * (README, Performance): one syncfs flushes the whole filesystem, which is
 * cheapest when little else is unsynced, but beside a writer with
 * gigabytes of dirty data it waits for all of it (1-2 batches per second
 * measured); then each file gets its own fdatasync on its staging thread.
 * The kernel's count of dirty and writeback pages (all filesystems, so it
 * errs towards fdatasync) decides; unreadable, it is fdatasync.  A batch of
 * a few pairs (the idle daemon's) always takes fdatasync: its latency must
 * not include anyone else's data. */
#define SYNCFS_DIRTY_MAX_KB (64 * 1024)
#define SMALL_BATCH 4

static long meminfo_kb(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

bool dsp_choose_flush(size_t files)
{
    if (files <= SMALL_BATCH) return true; /* no one else's data in a small delivery's wait */
    char buf[4096];
    int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return true;
    buf[n] = '\0';
    long dirty = meminfo_kb(buf, "\nDirty:"), wb = meminfo_kb(buf, "\nWriteback:");
    return dirty < 0 || wb < 0 || dirty + wb > SYNCFS_DIRTY_MAX_KB;
}

/* Closes the staged files and makes those not yet durable so with one
 * syncfs per destination.  A failed syncfs drops every staged item (the
 * kernel reports a writeback error once, so the others' data is in doubt
 * too); they stay in receive and are retried. */
static void flush_staged(ss_despooler *d, work *batch, size_t n)
{
    bool need_syncfs = false;
    for (size_t i = 0; i < n; i++) {
        ss_error e = {0};
        if (batch[i].dest_fd < 0) continue;
        need_syncfs |= !batch[i].sync_each;
        if (!batch[i].in.files && ss_atomic_close(&batch[i].out, false, &e) != 0)
            drop_staged(d, &batch[i], &e);
    }
    for (size_t i = 0; need_syncfs && i < n; i++) {
        ss_error e = {0};
        if (batch[i].dest_fd < 0 || batch[i].sync_each || dest_seen_before(batch, i) ||
            ss_sync_fs(batch[i].dest_fd, &e) == 0)
            continue;
        for (size_t j = 0; j < n; j++)
            if (batch[j].dest_fd >= 0) drop_staged(d, &batch[j], &e);
        return;
    }
}

static int by_site_and_seq(const void *a, const void *b)
{
    const work *x = *(const work *const *)a, *y = *(const work *const *)b;
    int c = strcmp(x->in.from, y->in.from);
    return c ? c : (x->in.seq > y->in.seq) - (x->in.seq < y->in.seq);
}

static void member_rel(const work *w, const dsp_member *m, char *out, size_t len)
{
    snprintf(out, len, "inboxes/%s/incoming/%s", w->in.dest, m->final);
}

/* A bundle's ledger: its own row (the destination folder as its path) and
 * one row and one stored 4400 per member. */
static int record_bundle(ss_despooler *d, work *w, ss_error *e)
{
    snprintf(w->dest_rel, sizeof w->dest_rel, "inboxes/%s/incoming/", w->in.dest);
    if (dsp_ledger_insert(d, w, "delivered", w->dest_rel, e) != 0) return -1;
    for (unsigned k = 0; k < w->nmembers; k++) {
        dsp_member *m = &w->members[k];
        char rel[PATH_MAX], label[64];
        member_rel(w, m, rel, sizeof rel);
        member_label(w, k, label, sizeof label);
        const char *istr[] = {label, w->in.from, rel};
        if (dsp_ledger_insert_member(d, w->in.id, k + 1, m->name, rel, e) != 0 ||
            ss_report_store_row(d->rep, 4400, 3, istr, &m->status_row, e) != 0)
            return -1;
    }
    return 0;
}

/* The ledger rows, sequence notes and 4400 rows of the staged items, in
 * one transaction; any failure rolls all of it back. */
static int record_batch(ss_despooler *d, work *batch, size_t n, ss_error *e)
{
    /* In sequence order per site: the batch is in name (id) order, and
     * numbers in order are the cheap case of the sequence tracking. */
    work **order = malloc(n * sizeof *order);
    if (!order) return ss_err(e, SS_E_NOMEM, "out of memory");
    /* Trust is judged again inside the transaction (waiting.c): an untrust
     * or revoke committed since the batch was judged withdraws items. */
    int rc = ss_db_begin(d->db, e);
    if (rc == 0 && dsp_recheck_trust(d, batch, n, e) < 0) rc = -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (batch[i].dest_fd >= 0) order[m++] = &batch[i];
    qsort(order, m, sizeof *order, by_site_and_seq);
    for (size_t i = 0; rc == 0 && i < m; i++) {
        work *w = order[i];
        const char *istr[] = {w->in.id, w->in.from, w->dest_rel};
        if ((w->in.files ? record_bundle(d, w, e)
                         : (dsp_ledger_insert(d, w, "delivered", w->dest_rel, e) ||
                            ss_report_store_row(d->rep, 4400, 3, istr, &w->status_row, e))) != 0 ||
            dsp_note_sequence(d, w, e) != 0 ||
            (w->is_signed && ss_keys_touch(d->db, w->in.from, w->keyid, ss_now(), e) != 0))
            rc = -1;
        /* Its receipt is due with the delivery itself: committed together. */
        if (rc == 0) dsp_fate(d, w->in.id, w->in.from, w->in.type, SS_FATE_DELIVERED, 4400);
    }
    free(order);
    if (rc == 0 && ss_db_commit(d->db, e) == 0) return 0;
    ss_db_rollback(d->db);
    return -1;
}

/* After a rename had to take another name than the one committed: the
 * ledger and the stored 4400 follow. */
static void note_renamed(ss_despooler *d, const char *label, const char *from, const char *chosen,
                         const char *rel, int64_t status_row, const char *id, unsigned member)
{
    ss_error e = {0};
    dsp_ledger_set_path(d, id, member, rel);
    const char *istr[] = {label, from, rel};
    if (ss_report_restate(d->rep, status_row, 4400, 3, istr, &e) != 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Cannot correct the stored 4400 of %s: %s", label, e.msg);
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Stored %s as %s: the name %s was taken while the batch committed", label, rel, chosen);
}

static void publish_failed(ss_despooler *d, work *w, const char *label, const char *chosen,
                           const ss_error *e)
{
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Cannot publish %s as %s: %s; it stays under its temporary name and the next "
            "scan finishes it",
            label, chosen, e->msg);
    dsp_dest_failed(d, w, e);
}

/* Publishes one committed single file under its final name; a name
 * another writer took in the meantime moves it to the next free one, and
 * the ledger follows.  False if it stays under its temporary name for
 * now: committed data is never removed here. */
static bool publish_single(ss_despooler *d, work *w)
{
    char chosen[256];
    ss_error e = {0};
    snprintf(chosen, sizeof chosen, "%s", w->out.final);
    int rc = dsp_claim_name(w->dest_fd, w->out.tmp, w->in.name, w->in.id, w->out.final,
                            sizeof w->out.final, &e);
    w->out.tmp[0] = '\0'; /* the delivery's now, renamed or not: never aborted */
    if (rc != 0) {
        publish_failed(d, w, w->in.id, chosen, &e);
        return false;
    }
    if (strcmp(chosen, w->out.final) != 0) {
        set_dest_rel(w);
        note_renamed(d, w->in.id, w->in.from, chosen, w->dest_rel, w->status_row, w->in.id, 0);
    }
    return true;
}

/* The same for each member of a bundle; members published stay published
 * (and are announced) when a later one fails. */
static bool publish_bundle(ss_despooler *d, work *w)
{
    bool all = true;
    for (unsigned k = 0; k < w->nmembers; k++) {
        dsp_member *m = &w->members[k];
        char chosen[256], tmp[96], label[64];
        ss_error e = {0};
        snprintf(chosen, sizeof chosen, "%s", m->final);
        dsp_member_tmp_name(w->in.id, k + 1, tmp, sizeof tmp);
        member_label(w, k, label, sizeof label);
        if (dsp_claim_name(w->dest_fd, tmp, m->name, label, m->final, sizeof m->final, &e) != 0) {
            if (all) publish_failed(d, w, label, chosen, &e);
            all = false;
            m->final[0] = '\0'; /* not announced now: the next scan finishes it */
            continue;
        }
        if (strcmp(chosen, m->final) != 0) {
            char rel[PATH_MAX];
            member_rel(w, m, rel, sizeof rel);
            note_renamed(d, label, w->in.from, chosen, rel, m->status_row, w->in.id, k + 1);
        }
    }
    return all;
}

/* Log line and notify_command of each file published (their 4400 rows
 * were stored with the ledger). */
static void announce(ss_despooler *d, const work *w)
{
    if (!w->in.files) {
        const char *istr[] = {w->in.id, w->in.from, w->dest_rel};
        ss_report_announce(d->rep, 4400, 3, istr);
        d->stats.delivered++;
        return;
    }
    for (unsigned k = 0; k < w->nmembers; k++) {
        char rel[PATH_MAX], label[64];
        if (!w->members[k].final[0]) continue;
        member_rel(w, &w->members[k], rel, sizeof rel);
        member_label(w, k, label, sizeof label);
        const char *istr[] = {label, w->in.from, rel};
        ss_report_announce(d->rep, 4400, 3, istr);
        d->stats.delivered++;
    }
}

/* Makes the staged payloads durable, commits the ledger, publishes the
 * files, announces them and removes the pairs (see the exactly-once order
 * in despooler.h).  A failure before the commit delivers nothing: the
 * pairs stay in receive for the next scan. */
int dsp_commit_batch(ss_despooler *d, work *batch, size_t n, ss_error *e)
{
    size_t files = 0;
    for (size_t i = 0; i < n; i++)
        if (batch[i].dest_fd >= 0) files += batch[i].in.files ? batch[i].nmembers : 1;
    if (!files) return 0;
    flush_staged(d, batch, n);
    choose_final_names(batch, n, files);
    if (record_batch(d, batch, n, e) != 0) return -1; /* released: nothing stays */
    for (size_t i = 0; i < n; i++) {
        work *w = &batch[i];
        if (w->dest_fd < 0) continue;
        w->committed = true; /* from now on its files are never removed */
        w->complete = w->in.files ? publish_bundle(d, w) : publish_single(d, w);
    }
    for (size_t i = 0; i < n; i++)
        if (batch[i].dest_fd >= 0 && !dest_seen_before(batch, i))
            (void)ss_fsync_dirfd(batch[i].dest_fd, NULL);
    for (size_t i = 0; i < n; i++) {
        work *w = &batch[i];
        if (w->dest_fd < 0) continue;
        if (w->in.files || w->complete) announce(d, w);
        /* A pair with a file still under its temporary name stays: the
         * next scan finds its ledger row and finishes it. */
        if (!w->complete) continue;
        char base[64];
        base_of(w->ins_name, base, sizeof base);
        dsp_remove_pair(d, base);
    }
    return 0;
}

void dsp_release_batch(work *batch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* Staged but not committed: the temporary files go.  Committed
         * ones stay, whatever happened to their rename. */
        if (!batch[i].committed) dsp_bundle_abort(&batch[i], batch[i].nmembers);
        ss_atomic_abort(&batch[i].out);
        if (batch[i].dest_fd >= 0) close(batch[i].dest_fd);
        batch[i].dest_fd = -1;
        free(batch[i].members);
        batch[i].members = NULL;
        batch[i].nmembers = 0;
    }
}
