/*
 * bench_flush.c - how fast can a batch of small files be made durable, and
 * which way of flushing suffers least from a neighbour on the same
 * filesystem with a lot of unsynced dirty data (issue 14).
 *
 *   bench_flush DIR N SIZE STRATEGY
 *
 * Creates N files of SIZE bytes (non-zero, different in every file) under
 * temporary names in DIR (tmp.<pid>.<i>, O_CREAT|O_EXCL), makes their
 * contents durable with STRATEGY, renames each to its final name
 * (f.<pid>.<i>) and fsyncs DIR once - the despooler's order: durable data,
 * then the publishing renames, then one directory fsync, then the ledger.
 * Timed from the first open to the return of the directory fsync; prints
 * files/s on stdout and the batch time on stderr.  Files are left behind
 * (tests/bench/flush.sh gives each run a fresh folder).  Not a test.
 *
 * Strategies, and what each one guarantees once it returns (before the
 * renames; the renames themselves are made durable by the fsync of DIR):
 *
 *   syncfs            write+close all, one syncfs(DIR).  Durable: syncfs
 *                     writes back every dirty inode and page of the whole
 *                     filesystem, waits, and flushes the device cache.  It
 *                     also writes everybody else's dirty data, which is the
 *                     problem of issue 14.  Errors: since Linux 5.8 syncfs
 *                     reports writeback errors of the filesystem (errseq on
 *                     the superblock), not the file that failed.
 *   fsync-serial      fdatasync each file right after writing it.
 *   fsync-end         write all keeping the fds open, then fdatasync each in
 *                     order.
 *   fsync-threads:K   K worker threads (started before the clock) fdatasync
 *                     each file as soon as the main thread has written it,
 *                     while the main thread goes on creating and writing.
 *   sfr               after each write sync_file_range(fd, 0, 0,
 *                     SYNC_FILE_RANGE_WRITE) (start writeback, no wait),
 *                     keep the fd; at the end fdatasync each in order.
 *   sfr-threads:K     the same, with K threads doing the final fdatasyncs.
 *   odsync            open with O_DSYNC: each write(2) returns only once
 *                     data and size are durable (a built-in fdatasync of
 *                     the written range, generic_write_sync).
 *   odsync-threads:K  K threads each create and write their share of the
 *                     files with O_DSYNC (needs the producer parallel, so a
 *                     different despooler structure; shown as a bound).
 *   none              write+close, no flush at all: NOT durable, the
 *                     ceiling the others are measured against.
 *
 * Durability equivalent to a per-file fsync: every strategy above except
 * `none`.  All the fdatasync-based ones (and O_DSYNC) give what fsync gives
 * for what the ledger needs: fdatasync skips only metadata not needed to
 * read the data back (mtime, atime), and a write that extends the file
 * changes i_size and allocates blocks, which marks the inode
 * I_DIRTY_DATASYNC, so fdatasync writes the inode too (ext4 with a journal:
 * it commits the transaction holding the inode, tracked by i_datasync_tid;
 * ext4 without a journal: generic_buffers_fsync_noflush writes the inode
 * and, for a newly created inode, ext4_sync_parent writes the directory
 * entry too).  Each ext4 fsync/fdatasync ends with a device cache flush
 * when the filesystem is mounted with barriers (the default).
 * sync_file_range ALONE IS NOT DURABLE: it only starts (or waits for) the
 * writeout of data pages; it writes no metadata (size, block map, inode),
 * issues no cache flush, and with SYNC_FILE_RANGE_WRITE alone does not even
 * wait.  In `sfr` and `sfr-threads` it is only a hint that overlaps the
 * data writeout with the writing of the next files; the fdatasync that
 * follows is what makes each file durable.
 *
 * ext4 WITHOUT a journal (the repository's disk when this was written, see
 * tests/bench/flush.sh): fsync is a plain writeout of the file's pages, its
 * inode table block and, for a new file, its directory block and inode
 * (ext4_fsync_nojournal / ext4_sync_parent), then a cache flush; there is
 * no transaction to share, so N files cost N flushes unless concurrent
 * fsyncs get their flushes merged by the block layer (the threaded
 * strategies); with a journal, fsyncs of files whose changes sit in one
 * transaction share that transaction's commit and flush instead.  Kernels before "ext4: fix fsync(2) for nojournal mode"
 * (upstream 1308255bbf84, 2026, marked for stable) could leave an inode
 * table block unwritten by fsync in that mode; syncfs, which writes every
 * dirty buffer of the device, was not affected.  Also in that mode ext4
 * avoids reusing inodes deleted in the last 60 s (recently_deleted() in
 * ialloc.c), so back-to-back runs allocate differently from a fresh disk.
 *
 * Every error of open/write/fsync/fdatasync/syncfs/rename ends the run with
 * exit status 1 (a despooler would drop the whole batch).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syncfs, sync_file_range */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum strategy {
    S_SYNCFS,
    S_FSYNC_SERIAL,
    S_FSYNC_END,
    S_FSYNC_THREADS,
    S_SFR,
    S_SFR_THREADS,
    S_ODSYNC,
    S_ODSYNC_THREADS,
    S_NONE,
};

static int dfd;
static int nfiles;
static size_t fsize;
static int *fds;
static char *data;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int i)
{
    int e = errno;
    if (i >= 0)
        fprintf(stderr, "bench_flush: %s (file %d): %s\n", what, i, strerror(e));
    else
        fprintf(stderr, "bench_flush: %s: %s\n", what, strerror(e));
    exit(1);
}

static void tmp_name(char *buf, size_t len, int i)
{
    snprintf(buf, len, "tmp.%ld.%d", (long)getpid(), i);
}

/* Non-zero bytes, different in every file (nothing can dedupe or elide). */
static void fill(char *buf, int i)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) + (uint64_t)getpid();
    for (size_t k = 0; k < fsize; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[k] = (char)((x & 0xfe) | 1);
    }
}

/* Create file i under its temporary name, write its SIZE bytes, return the
 * still open fd. */
static int create_write(int i, int extra_flags)
{
    char name[64];
    tmp_name(name, sizeof name, i);
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | extra_flags, 0644);
    if (fd < 0)
        die("open", i);
    fill(data, i);
    size_t off = 0;
    while (off < fsize) {
        ssize_t w = write(fd, data + off, fsize - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write", i);
        }
        off += (size_t)w;
    }
    return fd;
}

static void sync_close(int i)
{
    if (fdatasync(fds[i]) != 0)
        die("fdatasync", i);
    if (close(fds[i]) != 0)
        die("close", i);
}

/* ---- worker pool for the threaded strategies -------------------------------
 * Workers fdatasync+close the files published so far, in order; `published`
 * is raised by the main thread after each write (fsync-threads) or once at
 * the end (sfr-threads). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static int published, taken;

static void *sync_worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (taken >= published && taken < nfiles)
            pthread_cond_wait(&more, &mu);
        if (taken >= nfiles) {
            pthread_mutex_unlock(&mu);
            return NULL;
        }
        int i = taken++;
        pthread_mutex_unlock(&mu);
        sync_close(i);
    }
}

static void publish(int upto)
{
    pthread_mutex_lock(&mu);
    published = upto;
    pthread_cond_broadcast(&more);
    pthread_mutex_unlock(&mu);
}

/* O_DSYNC producers: file i goes to thread i % K. */
static int nthreads;
static void *odsync_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    /* each thread fills its own buffer */
    char *buf = malloc(fsize);
    if (!buf)
        die("malloc", -1);
    for (int i = t; i < nfiles; i += nthreads) {
        char name[64];
        tmp_name(name, sizeof name, i);
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DSYNC, 0644);
        if (fd < 0)
            die("open", i);
        fill(buf, i);
        size_t off = 0;
        while (off < fsize) {
            ssize_t w = write(fd, buf + off, fsize - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                die("write", i);
            }
            off += (size_t)w;
        }
        if (close(fd) != 0)
            die("close", i);
    }
    free(buf);
    return NULL;
}

static int parse_strategy(const char *s, int *k)
{
    static const struct {
        const char *name;
        enum strategy st;
        int threaded;
    } tab[] = {
        {"syncfs", S_SYNCFS, 0},
        {"fsync-serial", S_FSYNC_SERIAL, 0},
        {"fsync-end", S_FSYNC_END, 0},
        {"fsync-threads", S_FSYNC_THREADS, 1},
        {"sfr", S_SFR, 0},
        {"sfr-threads", S_SFR_THREADS, 1},
        {"odsync", S_ODSYNC, 0},
        {"odsync-threads", S_ODSYNC_THREADS, 1},
        {"none", S_NONE, 0},
    };
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : strlen(s);
    for (size_t j = 0; j < sizeof tab / sizeof tab[0]; j++) {
        if (strlen(tab[j].name) != len || strncmp(tab[j].name, s, len) != 0)
            continue;
        if (tab[j].threaded != (colon != NULL))
            return -1;
        *k = colon ? atoi(colon + 1) : 0;
        if (tab[j].threaded && (*k < 1 || *k > 256))
            return -1;
        return (int)tab[j].st;
    }
    return -1;
}

int main(int argc, char **argv)
{
    int k = 0, st;
    if (argc != 5 || (nfiles = atoi(argv[2])) < 1 || atol(argv[3]) < 1 ||
        (st = parse_strategy(argv[4], &k)) < 0) {
        fprintf(stderr,
                "usage: bench_flush DIR N SIZE STRATEGY\n"
                "  STRATEGY: syncfs fsync-serial fsync-end fsync-threads:K sfr\n"
                "            sfr-threads:K odsync odsync-threads:K none\n");
        return 2;
    }
    fsize = (size_t)atol(argv[3]);
    /* fsync-end, sfr and the threaded strategies keep all N fds open */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nfiles + 32) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)nfiles + 32
                          ? (rlim_t)nfiles + 32
                          : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    dfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        die(argv[1], -1);
    fds = calloc((size_t)nfiles, sizeof *fds);
    data = malloc(fsize);
    if (!fds || !data)
        die("malloc", -1);

    /* The pool a despooler would keep: started before the clock. */
    pthread_t *th = NULL;
    nthreads = k;
    if (st == S_FSYNC_THREADS || st == S_SFR_THREADS) {
        th = calloc((size_t)k, sizeof *th);
        for (int t = 0; t < k; t++)
            if ((errno = pthread_create(&th[t], NULL, sync_worker, NULL)) != 0)
                die("pthread_create", -1);
    }

    double t0 = now_s();
    switch ((enum strategy)st) {
    case S_SYNCFS:
        for (int i = 0; i < nfiles; i++)
            if (close(create_write(i, 0)) != 0)
                die("close", i);
        if (syncfs(dfd) != 0)
            die("syncfs", -1);
        break;
    case S_FSYNC_SERIAL:
        for (int i = 0; i < nfiles; i++) {
            fds[i] = create_write(i, 0);
            sync_close(i);
        }
        break;
    case S_FSYNC_END:
    case S_SFR:
        for (int i = 0; i < nfiles; i++) {
            fds[i] = create_write(i, 0);
            if (st == S_SFR && sync_file_range(fds[i], 0, 0, SYNC_FILE_RANGE_WRITE) != 0)
                die("sync_file_range", i);
        }
        for (int i = 0; i < nfiles; i++)
            sync_close(i);
        break;
    case S_FSYNC_THREADS:
    case S_SFR_THREADS:
        for (int i = 0; i < nfiles; i++) {
            fds[i] = create_write(i, 0);
            if (st == S_SFR_THREADS) {
                if (sync_file_range(fds[i], 0, 0, SYNC_FILE_RANGE_WRITE) != 0)
                    die("sync_file_range", i);
            } else {
                publish(i + 1);
            }
        }
        publish(nfiles);
        for (int t = 0; t < k; t++)
            pthread_join(th[t], NULL);
        break;
    case S_ODSYNC:
        for (int i = 0; i < nfiles; i++)
            if (close(create_write(i, O_DSYNC)) != 0)
                die("close", i);
        break;
    case S_ODSYNC_THREADS:
        th = calloc((size_t)k, sizeof *th);
        for (int t = 0; t < k; t++)
            if ((errno = pthread_create(&th[t], NULL, odsync_worker, (void *)(intptr_t)t)) != 0)
                die("pthread_create", -1);
        for (int t = 0; t < k; t++)
            pthread_join(th[t], NULL);
        break;
    case S_NONE:
        for (int i = 0; i < nfiles; i++)
            if (close(create_write(i, 0)) != 0)
                die("close", i);
        break;
    }

    /* Publish: the renames, then one fsync of the directory. */
    for (int i = 0; i < nfiles; i++) {
        char from[64], to[64];
        tmp_name(from, sizeof from, i);
        snprintf(to, sizeof to, "f.%ld.%d", (long)getpid(), i);
        if (renameat(dfd, from, dfd, to) != 0)
            die("rename", i);
    }
    if (st != S_NONE && fsync(dfd) != 0)
        die("fsync DIR", -1);
    double dt = now_s() - t0;

    printf("%.1f\n", nfiles / dt);
    fprintf(stderr, "%s: %d x %zu B in %.3f ms\n", argv[4], nfiles, fsize, dt * 1e3);
    return 0;
}
