/*
 * dupes.c - the index of queued data instructions.  See dupes.h.
 */
#include "dupes.h"
#include "outbox.h"

#include <stdlib.h>
#include <string.h>

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

int ss_dupes_add(ss_dupes *d, const ss_instr *in, const char *pck, size_t *index, ss_error *e)
{
    if (grow_slots(d, e) != 0) return -1;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        ss_dupe *v = realloc(d->v, cap * sizeof *v);
        if (!v) return ss_err(e, SS_E_NOMEM, "out of memory for the outbox index");
        d->v = v;
        d->cap = cap;
    }
    ss_dupe *x = &d->v[d->n];
    memset(x, 0, sizeof *x);
    memcpy(x->id, in->id, sizeof x->id);
    snprintf(x->pck, sizeof x->pck, "%s", pck);
    snprintf(x->name, sizeof x->name, "%s", in->name);
    snprintf(x->dest, sizeof x->dest, "%s", in->dest);
    x->size = in->size;
    x->zip = in->zip;
    slot_insert(d->slots, d->nslots, x->name, d->n);
    if (index) *index = d->n;
    d->n++;
    return 0;
}

void ss_dupes_rename(ss_dupes *d, size_t index, const char *pck)
{
    if (index < d->n) snprintf(d->v[index].pck, sizeof d->v[index].pck, "%s", pck);
}

int ss_dupes_load(ss_dupes *d, int outbox_fd, ss_error *e)
{
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
        char pck[NAME_MAX + 1];
        snprintf(pck, sizeof pck, "%.*s.pck", (int)(strlen(name) - 4), name);
        rc = ss_dupes_add(d, &in, pck, NULL, e);
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

const ss_dupe *ss_dupes_find(ss_dupes *d, int outbox_fd, const ss_instr *in, const char *pck)
{
    if (!d->nslots) return NULL;
    ss_dupe self = {.zip = in->zip, .size = in->size};
    snprintf(self.pck, sizeof self.pck, "%s", pck);
    for (size_t i = name_hash(in->name) & (d->nslots - 1); d->slots[i];
         i = (i + 1) & (d->nslots - 1)) {
        ss_dupe *x = &d->v[d->slots[i] - 1];
        if (strcmp(x->name, in->name) || strcmp(x->dest, in->dest) || x->size != in->size) continue;
        if (entry_hash(&self, outbox_fd) && entry_hash(x, outbox_fd) &&
            !memcmp(self.hash, x->hash, sizeof self.hash))
            return x;
        if (self.hashed < 0) return NULL; /* our own package: cannot compare */
    }
    return NULL;
}

void ss_dupes_free(ss_dupes *d)
{
    free(d->v);
    free(d->slots);
    memset(d, 0, sizeof *d);
}
