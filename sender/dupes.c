/*
 * dupes.c - the index of queued data files.  See dupes.h.
 */
#include "dupes.h"
#include "bundle.h"
#include "outbox.h"

#include "../inboxes/fileio.h"

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

/* ----------------------------------------------------------- sidecars */

int ss_sidecar_begin(int fd, const char *dest, unsigned files, ss_error *e)
{
    char line[128];
    int n = snprintf(line, sizeof line, SS_SIDECAR_MAGIC " dest=%s files=%u\n", dest, files);
    return ss_write_all(fd, line, (size_t)n, e);
}

int ss_sidecar_add(int fd, const ss_dupe *x, ss_error *e)
{
    char hex[SS_HASH_BYTES * 2 + 1], name[SS_NAME_MAX * 3 + 1], line[sizeof hex + sizeof name + 32];
    if (x->hashed != 1 || ss_pct_encode(x->name, name, sizeof name) != 0)
        return ss_err(e, SS_E_USAGE, "no payload hash or name for the sidecar of %s", x->id);
    sodium_bin2hex(hex, sizeof hex, x->hash, sizeof x->hash);
    int n = snprintf(line, sizeof line, "%s %" PRIu64 " %s\n", hex, x->size, name);
    return ss_write_all(fd, line, (size_t)n, e);
}

/* One file line of a sidecar into x (its other fields already set). */
static int sidecar_line(char *line, ss_dupe *x)
{
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL, *end;
    size_t len = strlen(line);
    if (!sp2 || len == 0 || line[len - 1] != '\n') return -1;
    line[--len] = '\0';
    if (sp1 - line != SS_HASH_BYTES * 2 ||
        sodium_hex2bin(x->hash, sizeof x->hash, line, SS_HASH_BYTES * 2, NULL, NULL, NULL) != 0)
        return -1;
    errno = 0;
    x->size = strtoull(sp1 + 1, &end, 10);
    if (errno || end != sp2 || end == sp1 + 1) return -1;
    if (ss_pct_decode(sp2 + 1, strlen(sp2 + 1), x->name, sizeof x->name) != 0 ||
        !ss_file_name_valid(x->name))
        return -1;
    x->hashed = 1;
    return 0;
}

int ss_sidecar_read(int outbox_fd, const char *ins, const ss_instr *in, ss_sidecar_fn fn, void *ctx,
                    ss_error *e)
{
    char sum[NAME_MAX + 1], line[SS_HASH_BYTES * 2 + SS_NAME_MAX * 3 + 64], dest[40];
    unsigned files;
    snprintf(sum, sizeof sum, "%.*s" SS_SIDECAR_EXT, (int)(strlen(ins) - 4), ins);
    int fd = openat(outbox_fd, sum, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return ss_err_sys(e, "cannot read %s", sum);
    }
    ss_dupe x;
    memset(&x, 0, sizeof x);
    memcpy(x.id, in->id, sizeof x.id);
    snprintf(x.pck, sizeof x.pck, "%.*s.pck", (int)(strlen(ins) - 4), ins);
    int rc = ss_err(e, SS_E_FORMAT, "%s does not start with a '" SS_SIDECAR_MAGIC "' line", sum);
    long count = 0;
    if (fgets(line, sizeof line, f) &&
        sscanf(line, SS_SIDECAR_MAGIC " dest=%39s files=%u", dest, &files) == 2 &&
        ss_dest_name_valid(dest)) {
        snprintf(x.dest, sizeof x.dest, "%s", dest);
        x.files = files;
        rc = 0;
        while (rc == 0 && fgets(line, sizeof line, f)) {
            rc = sidecar_line(line, &x) == 0
                     ? fn(ctx, &x, e)
                     : ss_err(e, SS_E_FORMAT, "%s has a damaged line after %ld files", sum, count);
            count++;
        }
    }
    fclose(f);
    return rc;
}

static int add_sidecar_entry(void *ctx, const ss_dupe *x, ss_error *e)
{
    return ss_dupes_add(ctx, x, NULL, e);
}

/* Sidecars whose instruction left the outbox (delivered, set aside, or a
 * publication that died before its instruction) go. */
static void tidy_sidecars(int outbox_fd)
{
    DIR *dir = fdopendir(dup(outbox_fd));
    if (!dir) return;
    rewinddir(dir); /* a dup() shares the read position of earlier walks */
    struct dirent *de;
    size_t ext = strlen(SS_SIDECAR_EXT);
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (ss_name_is_temporary(de->d_name) || len <= ext ||
            strcmp(de->d_name + len - ext, SS_SIDECAR_EXT))
            continue;
        char ins[NAME_MAX + 1];
        snprintf(ins, sizeof ins, "%.*s.ins", (int)(len - ext), de->d_name);
        if (faccessat(outbox_fd, ins, F_OK, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
            (void)unlinkat(outbox_fd, de->d_name, 0);
    }
    closedir(dir);
}

int ss_dupes_load(ss_dupes *d, int outbox_fd, ss_error *e)
{
    tidy_sidecars(outbox_fd);
    ss_outbox o = {.fd = outbox_fd, .lock_fd = -1};
    struct dirent **names;
    int count = ss_outbox_list(&o, &names, e);
    if (count < 0) return -1;
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
        if (in.enc[0]) { /* sealed: what it holds is in its sidecar */
            if (ss_sidecar_read(outbox_fd, name, &in, add_sidecar_entry, d, &ignored) != 0 &&
                ignored.code == SS_E_NOMEM) {
                *e = ignored;
                rc = -1;
            }
            continue;
        }
        char pck[NAME_MAX + 1];
        snprintf(pck, sizeof pck, "%.*s.pck", (int)(strlen(name) - 4), name);
        ss_dupe x;
        entry_of(&in, pck, &x);
        rc = in.files ? add_bundle(d, &x, e) : ss_dupes_add(d, &x, NULL, e);
    }
    ss_outbox_list_free(names, count);
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
