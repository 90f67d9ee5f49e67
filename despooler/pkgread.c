/*
 * pkgread.c - a package read once, every byte hashed: how stage.c,
 * bundle.c and sealed.c read packages.  A package of LARGE_PACKAGE bytes
 * or more is read and hashed on a thread of its own, a ring of RING_SLOTS
 * READ_CHUNK buffers ahead of the caller, while the caller inflates,
 * opens and writes what it is handed (both cores on one package); a
 * smaller one is read on the caller's thread into the stager's buffer (a
 * thread would cost more than it saves).
 *
 * Security stance: every byte read is hashed, in order, before the caller
 * sees it, and dsp_pkgread_close reads and hashes whatever the caller did
 * not take: a forgery reads as a bad signature however early its consumer
 * stopped.  The file is read once, so what the signature is checked over
 * is exactly what the caller was handed.
 * Diagnostics: none of its own: a failed read is the caller's to report
 * (4419, with the error and errno kept here).
 * Known limits: a reader thread that cannot start (or a ring that cannot
 * be allocated) means reading on the caller's thread, as for a small
 * package.
 */
#include "pipeline.h"
#include "../inboxes/thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#define RING_SLOTS 4
#define LARGE_PACKAGE (8u << 20)

struct dsp_pkgring {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned char *mem;
    unsigned char *slot[RING_SLOTS];
    size_t len[RING_SLOTS];
    size_t head, count; /* next slot to fill = (head + count) % RING_SLOTS */
    bool holding;       /* the caller holds slot head */
    bool eof, failed, stop;
    int fd;
    ss_hash hash;
    uint64_t total;
    ss_error err;
    int err_no;
};

static void *ring_reader(void *arg)
{
    struct dsp_pkgring *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        while (r->count == RING_SLOTS && !r->stop)
            pthread_cond_wait(&r->changed, &r->lock);
        bool stop = r->stop;
        size_t i = (r->head + r->count) % RING_SLOTS;
        pthread_mutex_unlock(&r->lock);
        ssize_t n = stop ? 0 : ss_read_full(r->fd, r->slot[i], READ_CHUNK, &r->err);
        if (n < 0) r->err_no = errno;
        if (n > 0) ss_hash_update(&r->hash, r->slot[i], (size_t)n);
        pthread_mutex_lock(&r->lock);
        if (n > 0) {
            r->len[i] = (size_t)n;
            r->count++;
            r->total += (uint64_t)n;
        } else {
            r->eof = true;
            r->failed = n < 0;
        }
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->lock);
        if (n <= 0) return NULL;
    }
}

static void ring_free(struct dsp_pkgring *r)
{
    pthread_cond_destroy(&r->changed);
    pthread_mutex_destroy(&r->lock);
    free(r->mem);
    free(r);
}

/* A ring with its reader thread running, or NULL. */
static struct dsp_pkgring *ring_start(int fd)
{
    struct dsp_pkgring *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->fd = fd;
    r->mem = malloc((size_t)RING_SLOTS * READ_CHUNK);
    ss_hash_init(&r->hash);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->changed, NULL);
    for (int i = 0; r->mem && i < RING_SLOTS; i++)
        r->slot[i] = r->mem + (size_t)i * READ_CHUNK;
    if (!r->mem || ss_thread_start(&r->thread, ring_reader, r) != 0) {
        ring_free(r);
        return NULL;
    }
    return r;
}

void dsp_pkgread_open(dsp_pkgread *r, dsp_stager *st, int fd, uint64_t size)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->buf = st->read_buf;
    ss_hash_init(&r->hash);
    if (size >= LARGE_PACKAGE) r->ring = ring_start(fd);
}

/* The ring's next piece (the one held before goes back to the reader). */
static ssize_t ring_next(dsp_pkgread *rd, const unsigned char **p)
{
    struct dsp_pkgring *r = rd->ring;
    pthread_mutex_lock(&r->lock);
    if (r->holding) {
        r->head = (r->head + 1) % RING_SLOTS;
        r->count--;
        r->holding = false;
        pthread_cond_broadcast(&r->changed);
    }
    while (r->count == 0 && !r->eof)
        pthread_cond_wait(&r->changed, &r->lock);
    ssize_t n = 0;
    if (r->count) {
        *p = r->slot[r->head];
        n = (ssize_t)r->len[r->head];
        r->holding = true;
    } else if (r->failed) {
        n = -1;
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

ssize_t dsp_pkgread_next(dsp_pkgread *r, const unsigned char **p)
{
    if (r->failed) return -1;
    if (r->eof) return 0;
    ssize_t n;
    if (r->ring) {
        n = ring_next(r, p);
    } else {
        n = ss_read_full(r->fd, r->buf, READ_CHUNK, &r->err);
        if (n < 0) r->err_no = errno;
        if (n > 0) {
            ss_hash_update(&r->hash, r->buf, (size_t)n);
            r->total += (uint64_t)n;
            *p = r->buf;
        }
    }
    r->eof = n == 0;
    r->failed = n < 0;
    return n;
}

/* Joins the reader thread; its hash, count and error become r's. */
static void ring_join(dsp_pkgread *rd)
{
    struct dsp_pkgring *r = rd->ring;
    pthread_join(r->thread, NULL);
    rd->hash = r->hash;
    rd->total = r->total;
    if (r->failed) {
        rd->failed = true;
        rd->err = r->err;
        rd->err_no = r->err_no;
    }
    ring_free(r);
    rd->ring = NULL;
}

int dsp_pkgread_close(dsp_pkgread *r, unsigned char hash[SS_HASH_BYTES])
{
    const unsigned char *p;
    while (!r->eof && !r->failed && dsp_pkgread_next(r, &p) > 0)
        ;
    if (r->ring) ring_join(r);
    if (r->failed) return -1;
    ss_hash_final(&r->hash, hash);
    return 0;
}

void dsp_pkgread_abandon(dsp_pkgread *r)
{
    struct dsp_pkgring *ring = r->ring;
    if (!ring) return;
    pthread_mutex_lock(&ring->lock);
    ring->stop = true;
    pthread_cond_broadcast(&ring->changed);
    pthread_mutex_unlock(&ring->lock);
    pthread_join(ring->thread, NULL);
    ring_free(ring);
    r->ring = NULL;
}
