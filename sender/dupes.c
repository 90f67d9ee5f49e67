/*
 * dupes.c - the index of queued data files.  See dupes.h.
 */
#include "dupes.h"
#include "bundle.h"
#include "outbox.h"

#include "../inboxes/fileio.h"
#include "../keystore/links.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void slot_insert(size_t *slots, size_t nslots, const char *name, size_t index)
{
    size_t i = name_hash(name) & (nslots - 1);
    while (slots[i])
        i = (i + 1) & (nslots - 1);
    slots[i] = index + 1;
}

/* Keeps the table at most half full. */
static int grow_slots(ss_dupes *d, ss_error *e)
{
    if ((d->n + 1) * 2 <= d->nslots) return 0;
    size_t nslots = d->nslots ? d->nslots * 2 : 64;
    size_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return ss_err(e, SS_E_NOMEM, "out of memory for the outbox index");
    for (size_t i = 0; i < d->n; i++)
        slot_insert(slots, nslots, d->v[i].name, i);
    free(d->slots);
    d->slots = slots;
    d->nslots = nslots;
    return 0;
}

/* Appends x to a growing array of entries (first capacity: first). */
static int push_entry(ss_dupe **v, size_t *n, size_t *cap, size_t first, const ss_dupe *x,
                      ss_error *e)
{
    if (*n == *cap) {
        size_t grown = *cap ? *cap * 2 : first;
        ss_dupe *nv = realloc(*v, grown * sizeof *nv);
        if (!nv) return ss_err(e, SS_E_NOMEM, "out of memory for the outbox index");
        *v = nv;
        *cap = grown;
    }
    (*v)[(*n)++] = *x;
    return 0;
}

int ss_dupes_add(ss_dupes *d, const ss_dupe *x, size_t *index, ss_error *e)
{
    if (grow_slots(d, e) != 0 || push_entry(&d->v, &d->n, &d->cap, 64, x, e) != 0) return -1;
    slot_insert(d->slots, d->nslots, x->name, d->n - 1);
    if (index) *index = d->n - 1;
    return 0;
}

/* The entry of a queued instruction whose package is pck. */
static void entry_of(const ss_instr *in, const char *pck, ss_dupe *x)
{
    memset(x, 0, sizeof *x);
    memcpy(x->id, in->id, sizeof x->id);
    snprintf(x->pck, sizeof x->pck, "%s", pck);
    snprintf(x->name, sizeof x->name, "%s", in->name);
    snprintf(x->dest, sizeof x->dest, "%s", in->dest);
    x->size = in->size;
    x->zip = in->zip;
    x->files = in->files;
}

/* A queued bundle, read when a file for its destination is looked up. */
static int add_bundle(ss_dupes *d, const ss_dupe *x, ss_error *e)
{
    return push_entry(&d->bundles, &d->nbundles, &d->bcap, 16, x, e);
}

void ss_dupes_rename(ss_dupes *d, size_t index, const char *pck)
{
    if (index < d->n) snprintf(d->v[index].pck, sizeof d->v[index].pck, "%s", pck);
}

/* ------------------------------------------------------- sealed pairs */

/* A queued sealed instruction, by id: its package. */
typedef struct sealed_pair {
    char id[SS_ID_HEX + 1];
    char pck[NAME_MAX + 1];
} sealed_pair;

/* The sealed pairs of the outbox, then their files from site.db. */
struct sealed_load {
    ss_dupes *d;
    sealed_pair *v;
    size_t n, cap;
    char (*stale)[SS_ID_HEX + 1]; /* ids of rows whose pair is not queued */
    size_t nstale, scap;
    ss_error *e;
};

static int add_sealed_pair(struct sealed_load *sl, const ss_instr *in, const char *ins, ss_error *e)
{
    if (sl->n == sl->cap) {
        size_t cap = sl->cap ? sl->cap * 2 : 64;
        sealed_pair *v = realloc(sl->v, cap * sizeof *v);
        if (!v) return ss_err(e, SS_E_NOMEM, "out of memory for the outbox index");
        sl->v = v;
        sl->cap = cap;
    }
    sealed_pair *p = &sl->v[sl->n++];
    memcpy(p->id, in->id, sizeof p->id);
    snprintf(p->pck, sizeof p->pck, "%.*s.pck", (int)(strlen(ins) - 4), ins);
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const sealed_pair *)a)->id, ((const sealed_pair *)b)->id);
}

/* One row of queued_files: an entry of the index, or a row to forget. */
static int add_sealed_file(void *ctx, const ss_queued_file *f)
{
    struct sealed_load *sl = ctx;
    sealed_pair key, *p = NULL;
    memcpy(key.id, f->id, sizeof key.id);
    if (sl->n) p = bsearch(&key, sl->v, sl->n, sizeof *sl->v, by_id);
    if (p) {
        ss_dupe x;
        memset(&x, 0, sizeof x);
        memcpy(x.id, f->id, sizeof x.id);
        snprintf(x.pck, sizeof x.pck, "%s", p->pck);
        snprintf(x.name, sizeof x.name, "%s", f->name);
        snprintf(x.dest, sizeof x.dest, "%s", f->dest);
        x.size = f->size;
        x.zip = SS_ZIP_NONE;
        x.files = f->files;
        x.hashed = 1;
        memcpy(x.hash, f->hash, sizeof x.hash);
        return ss_dupes_add(sl->d, &x, NULL, sl->e);
    }
    if (sl->nstale && !strcmp(sl->stale[sl->nstale - 1], f->id)) return 0; /* (rows by id) */
    if (sl->nstale == sl->scap) {
        size_t cap = sl->scap ? sl->scap * 2 : 16;
        char(*v)[SS_ID_HEX + 1] = realloc(sl->stale, cap * sizeof *v);
        if (!v) return 0; /* forgotten next time */
        sl->stale = v;
        sl->scap = cap;
    }
    memcpy(sl->stale[sl->nstale++], f->id, SS_ID_HEX + 1);
    return 0;
}

/* The files of the outbox's sealed pairs, in one query; the rows of pairs
 * no longer queued are forgotten. */
static int load_sealed(struct sealed_load *sl, ss_db *db, const char *peer, ss_error *e)
{
    if (sl->n) qsort(sl->v, sl->n, sizeof *sl->v, by_id); /* never qsort(NULL, 0): UB */
    sl->e = e;
    if (ss_queued_files_each(db, peer, NULL, add_sealed_file, sl, e) != 0) return -1;
    for (size_t i = 0; i < sl->nstale; i++)
        (void)ss_queued_files_forget(db, sl->stale[i], NULL);
    return 0;
}

int ss_dupes_load(ss_dupes *d, int outbox_fd, ss_db *db, const char *peer, ss_error *e)
{
    ss_outbox o = {.fd = outbox_fd, .lock_fd = -1};
    struct dirent **names;
    int count = ss_outbox_list(&o, &names, e);
    if (count < 0) return -1;
    struct sealed_load sl = {.d = d};
    int rc = 0;
    for (int i = 0; rc == 0 && i < count; i++) {
        const char *name = names[i]->d_name;
        ss_instr in;
        bool is_signed;
        ss_error ignored;
        /* One that cannot be read cannot be compared: the deliverer
         * reports it; here it is simply not a duplicate of anything. */
        if (ss_outbox_read_instr(outbox_fd, name, &in, &is_signed, &ignored) != 0 ||
            in.type != SS_TYPE_DATA)
            continue;
        if (in.enc[0]) { /* sealed: what it holds is in site.db */
            rc = add_sealed_pair(&sl, &in, name, e);
            continue;
        }
        char pck[NAME_MAX + 1];
        snprintf(pck, sizeof pck, "%.*s.pck", (int)(strlen(name) - 4), name);
        ss_dupe x;
        entry_of(&in, pck, &x);
        rc = in.files ? add_bundle(d, &x, e) : ss_dupes_add(d, &x, NULL, e);
    }
    ss_outbox_list_free(names, count);
    if (rc == 0) rc = load_sealed(&sl, db, peer, e);
    free(sl.v);
    free(sl.stale);
    return rc;
}

/* The payload hash of entry x, computed once. */
static bool entry_hash(ss_dupe *x, int outbox_fd)
{
    ss_error ignored;
    if (!x->hashed)
        x->hashed =
            ss_package_payload_hash(outbox_fd, x->pck, x->zip, x->size, x->hash, &ignored) == 0
                ? 1
                : -1;
    return x->hashed == 1;
}

/* ------------------------------------------------------- queued bundles */

/* The files of one bundle, each hashed as it is read. */
struct bundle_scan {
    const ss_dupe *bundle;
    ss_dupe *found;
    size_t n, cap;
    ss_hash h;
};

static int scan_entry(void *ctx, const ss_bundle_entry *m, ss_error *e)
{
    struct bundle_scan *bs = ctx;
    if (bs->n == bs->cap) {
        size_t cap = bs->cap ? bs->cap * 2 : 64;
        ss_dupe *v = realloc(bs->found, cap * sizeof *v);
        if (!v) return ss_err(e, SS_E_NOMEM, "out of memory for the outbox index");
        bs->found = v;
        bs->cap = cap;
    }
    ss_dupe *x = &bs->found[bs->n];
    *x = *bs->bundle;
    snprintf(x->name, sizeof x->name, "%s", m->name);
    x->size = m->size;
    ss_hash_init(&bs->h);
    return 1;
}

static int scan_data(void *ctx, const void *buf, size_t len, ss_error *e)
{
    (void)e;
    ss_hash_update(&((struct bundle_scan *)ctx)->h, buf, len);
    return 0;
}

static int scan_end(void *ctx, ss_error *e)
{
    (void)e;
    struct bundle_scan *bs = ctx;
    ss_hash_final(&bs->h, bs->found[bs->n].hash);
    bs->found[bs->n++].hashed = 1;
    return 0;
}

/* Indexes the files of one queued bundle; one that cannot be read whole
 * holds nothing (its files are not duplicates of anything). */
static int index_bundle(ss_dupes *d, int outbox_fd, const ss_dupe *bundle, ss_error *e)
{
    static const ss_bundle_visitor v = {scan_entry, scan_data, scan_end};
    struct bundle_scan bs = {.bundle = bundle};
    ss_error ignored;
    int rc = 0;
    if (ss_bundle_read(outbox_fd, bundle->pck, bundle->zip, bundle->size, &v, &bs, &ignored) >= 0)
        for (size_t i = 0; rc == 0 && i < bs.n; i++)
            rc = ss_dupes_add(d, &bs.found[i], NULL, e);
    free(bs.found);
    return rc;
}

/* Reads the queued bundles for dest that were not read yet. */
static void index_bundles(ss_dupes *d, int outbox_fd, const char *dest)
{
    size_t kept = 0;
    for (size_t i = 0; i < d->nbundles; i++) {
        ss_error ignored;
        if (strcmp(d->bundles[i].dest, dest) ||
            index_bundle(d, outbox_fd, &d->bundles[i], &ignored))
            d->bundles[kept++] = d->bundles[i]; /* (out of memory: tried again next time) */
    }
    d->nbundles = kept;
}

/* ------------------------------------------------------------------ find */

const ss_dupe *ss_dupes_find(ss_dupes *d, int outbox_fd, ss_dupe *probe)
{
    if (d->nbundles) index_bundles(d, outbox_fd, probe->dest);
    if (!d->nslots) return NULL;
    for (size_t i = name_hash(probe->name) & (d->nslots - 1); d->slots[i];
         i = (i + 1) & (d->nslots - 1)) {
        ss_dupe *x = &d->v[d->slots[i] - 1];
        if (strcmp(x->name, probe->name) || strcmp(x->dest, probe->dest) || x->size != probe->size)
            continue;
        if (entry_hash(probe, outbox_fd) && entry_hash(x, outbox_fd) &&
            !memcmp(probe->hash, x->hash, sizeof probe->hash))
            return x;
        if (probe->hashed < 0) return NULL; /* our own package: cannot compare */
    }
    return NULL;
}

void ss_dupes_free(ss_dupes *d)
{
    free(d->v);
    free(d->slots);
    free(d->bundles);
    memset(d, 0, sizeof *d);
}
