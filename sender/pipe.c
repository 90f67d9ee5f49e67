/*
 * pipe.c - the sender's write-behind stage.  See pipe.h.
 *
 * The ring: slots[head] .. slots[head + count - 1] are handed over (the
 * one the writer is on included, so that the producer cannot reuse it);
 * the producer fills slots[tail], tail == head + count (mod SS_PIPE_SLOTS)
 * while it holds it, which it may only while count < SS_PIPE_SLOTS.  The
 * mutex guards head, count, end, failed and err; a slot's bytes belong to
 * whoever the indices say, and change hands under the mutex.
 */
#include "pipe.h"

#include "../inboxes/thread.h"

#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    unsigned char *buf; /* SS_PIPE_SLOT_BYTES */
    size_t fill;
    int kind;
} slot;

enum pipe_end { PIPE_RUN, PIPE_DRAIN, PIPE_STOP };

struct ss_pipe {
    pthread_mutex_t mu;
    pthread_cond_t ready; /* to the writer: a slot handed over, or the end */
    pthread_cond_t freed; /* to the producer: a slot consumed, or a failure */
    slot slots[SS_PIPE_SLOTS];
    unsigned head, count;
    enum pipe_end end;
    bool failed;
    ss_error err;  /* the writer's, once failed */
    unsigned tail; /* the producer's own, as is holding */
    bool holding;
    ss_pipe_fn fn;
    void *ctx;
    bool wipe;
    pthread_t thread;
};

/* ---------------------------------------------------------------- writer */

/* The next slot to consume; NULL once stopped, failed, or drained. */
static slot *next_full(ss_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->count == 0 && p->end == PIPE_RUN)
        pthread_cond_wait(&p->ready, &p->mu);
    slot *s = p->count > 0 && p->end != PIPE_STOP && !p->failed ? &p->slots[p->head] : NULL;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* Gives a consumed slot back (wiped when it held plaintext); rc != 0:
 * consuming it failed with *e. */
static void give_back(ss_pipe *p, slot *s, int rc, const ss_error *e)
{
    if (p->wipe) sodium_memzero(s->buf, s->fill);
    s->fill = 0;
    pthread_mutex_lock(&p->mu);
    if (rc != 0) {
        p->err = *e;
        p->failed = true;
    }
    p->head = (p->head + 1) % SS_PIPE_SLOTS;
    p->count--;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
}

static void *writer_main(void *arg)
{
    ss_pipe *p = arg;
    ss_error e = {0};
    slot *s;
    while ((s = next_full(p)))
        give_back(p, s, p->fn(p->ctx, s->kind, s->buf, s->fill, &e), &e);
    return NULL;
}

/* -------------------------------------------------------------- producer */

/* The writer's error, if it failed (under the mutex). */
static int writer_failed(ss_pipe *p, ss_error *e)
{
    if (!p->failed) return 0;
    *e = p->err;
    return -1;
}

/* Waits for a free slot and holds it. */
static int take(ss_pipe *p, ss_error *e)
{
    pthread_mutex_lock(&p->mu);
    while (p->count == SS_PIPE_SLOTS && !p->failed)
        pthread_cond_wait(&p->freed, &p->mu);
    int rc = writer_failed(p, e);
    pthread_mutex_unlock(&p->mu);
    p->holding = rc == 0;
    return rc;
}

/* Hands the held slot to the writer. */
static int hand_over(ss_pipe *p, ss_error *e)
{
    p->holding = false;
    p->tail = (p->tail + 1) % SS_PIPE_SLOTS;
    pthread_mutex_lock(&p->mu);
    p->count++;
    pthread_cond_signal(&p->ready);
    int rc = writer_failed(p, e);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int ss_pipe_put(ss_pipe *p, int kind, const void *buf, size_t len, ss_error *e)
{
    const unsigned char *b = buf;
    if (p->holding && p->slots[p->tail].kind != kind && hand_over(p, e) != 0) return -1;
    while (len > 0) {
        if (!p->holding && take(p, e) != 0) return -1;
        slot *s = &p->slots[p->tail];
        size_t n = SS_PIPE_SLOT_BYTES - s->fill < len ? SS_PIPE_SLOT_BYTES - s->fill : len;
        s->kind = kind;
        memcpy(s->buf + s->fill, b, n);
        s->fill += n;
        b += n;
        len -= n;
        if (s->fill == SS_PIPE_SLOT_BYTES && hand_over(p, e) != 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ life cycle */

/* Frees the slots (wiped first when they held plaintext) and p. */
static void pipe_free(ss_pipe *p)
{
    for (unsigned i = 0; i < SS_PIPE_SLOTS; i++) {
        if (p->wipe && p->slots[i].buf) sodium_memzero(p->slots[i].buf, SS_PIPE_SLOT_BYTES);
        free(p->slots[i].buf);
    }
    free(p);
}

ss_pipe *ss_pipe_start(ss_pipe_fn fn, void *ctx, bool wipe, ss_error *e)
{
    ss_pipe *p = calloc(1, sizeof *p);
    bool ok = p != NULL;
    for (unsigned i = 0; ok && i < SS_PIPE_SLOTS; i++)
        ok = (p->slots[i].buf = malloc(SS_PIPE_SLOT_BYTES)) != NULL;
    if (!ok) {
        if (p) pipe_free(p);
        ss_err(e, SS_E_NOMEM, "out of memory for the package writer");
        return NULL;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->wipe = wipe;
    p->end = PIPE_RUN;
    int rc = pthread_mutex_init(&p->mu, NULL);
    if (rc == 0 && (rc = pthread_cond_init(&p->ready, NULL)) != 0) pthread_mutex_destroy(&p->mu);
    if (rc == 0 && (rc = pthread_cond_init(&p->freed, NULL)) != 0) {
        pthread_cond_destroy(&p->ready);
        pthread_mutex_destroy(&p->mu);
    }
    if (rc == 0 && (rc = ss_thread_start(&p->thread, writer_main, p)) != 0) {
        pthread_cond_destroy(&p->freed);
        pthread_cond_destroy(&p->ready);
        pthread_mutex_destroy(&p->mu);
    }
    if (rc != 0) {
        pipe_free(p);
        ss_err(e, SS_E_IO, "cannot start the package writer thread: %s", strerror(rc));
        return NULL;
    }
    return p;
}

int ss_pipe_end(ss_pipe *p, int rc, ss_error *e)
{
    if (rc == 0 && p->holding) rc = hand_over(p, e);
    pthread_mutex_lock(&p->mu);
    p->end = rc == 0 ? PIPE_DRAIN : PIPE_STOP;
    pthread_cond_signal(&p->ready);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    if (p->failed) { /* joined: err is ours to read */
        *e = p->err;
        rc = -1;
    }
    pthread_cond_destroy(&p->freed);
    pthread_cond_destroy(&p->ready);
    pthread_mutex_destroy(&p->mu);
    pipe_free(p);
    return rc;
}
