/*
 * pipe.h - a write-behind stage for the sender's large packages.  The
 * thread that reads and deflates a payload hands what comes out of it, in
 * order, to a second thread that does the rest - seals it (when sealing),
 * hashes the package bytes, writes them - so that on two cores deflating
 * (most of the time of a large send) no longer waits for the rest.
 * pack.c engages it for large payloads only (see stream_feed there).
 *
 * Records are copied into a bounded ring of SS_PIPE_SLOTS buffers of
 * SS_PIPE_SLOT_BYTES (constant memory: 1 MiB per pipe); each record has
 * a kind (the caller's: package bytes, or plaintext to hash for the
 * duplicate index), and the writer gets them in exactly the order they
 * were put, kinds interleaved as they came, in pieces of at most one
 * buffer (a change of kind starts a new buffer).  The producer waits
 * only when all the buffers are full (the writer is behind).
 *
 * Threads: one producer (the caller of put and end) and the writer
 * thread, a mutex and two condition variables, no global state.  The
 * writer thread starts with every signal blocked, so that a signal meant
 * for the process (SIGTERM, SIGHUP) reaches a thread that handles it, and
 * a write past a limit fails with EFBIG (SIGXFSZ blocked) or EPIPE
 * instead of killing the process from a helper thread.  What the
 * consumer touches (a sealer, hashes, the file) belongs to the writer
 * thread from the first record until end returns (it joins the thread):
 * the producer must not touch it in between.
 *
 * Security stance: with wipe set (a sealed package) the buffers hold
 * plaintext - the payload before it is sealed - so each is wiped with
 * sodium_memzero as soon as the writer is done with it, and every buffer
 * again before it is freed (also after a failure, when some were never
 * consumed).
 *
 * Diagnostics: the writer's failure (ENOSPC, EIO, ...) is its consumer's
 * ss_error, word for word; the producer gets it from the next put that
 * needs a buffer (within one buffer's worth of bytes) and from end.  Its
 * failure comes first in the stream, so it is what end reports even when
 * the producer failed too.
 *
 * Known limits: one producer; a consumer that blocks for ever (a write to
 * a pipe nobody reads) blocks end, which always joins.  Starting costs a
 * thread and 1 MiB: not for small payloads.
 */
#ifndef SS_PIPE_H
#define SS_PIPE_H

#include "../inboxes/error.h"

#include <stdbool.h>
#include <stddef.h>

#define SS_PIPE_SLOTS 4
#define SS_PIPE_SLOT_BYTES (256 * 1024)

typedef struct ss_pipe ss_pipe;

/* What the writer thread does with each record, in order.  A failure
 * (-1, e set) stops the pipe. */
typedef int (*ss_pipe_fn)(void *ctx, int kind, const void *buf, size_t len, ss_error *e);

/* Starts the writer thread, which calls fn(ctx, ...) for each record.
 * wipe: the records hold plaintext (see above).  NULL (e set) without
 * memory or a thread. */
ss_pipe *ss_pipe_start(ss_pipe_fn fn, void *ctx, bool wipe, ss_error *e);
/* Copies len bytes of the given kind into the ring, waiting for a free
 * buffer when they are all full.  -1 with the writer's error once it has
 * failed. */
int ss_pipe_put(ss_pipe *p, int kind, const void *buf, size_t len, ss_error *e);
/* Ends the pipe, joins the thread and frees it all.  rc == 0: every
 * record put is consumed first; rc != 0 (the producer failed): the writer
 * stops after the record it is on.  Returns rc, or -1 with the writer's
 * error in e if the writer failed. */
int ss_pipe_end(ss_pipe *p, int rc, ss_error *e);

#endif
