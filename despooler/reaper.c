/*
 * reaper.c - background removal of consumed pairs.  See reaper.h for why.
 */
#include "reaper.h"
#include "../inboxes/thread.h"
#include "../inboxes/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REAPER_THREADS 4
/* Enough for several batches; beyond it the despooler unlinks in place. */
#define REAPER_QUEUE 8192
#define REAPER_NAME 64

struct ss_reaper {
    int consumed_fd;
    pthread_mutex_t lock;
    pthread_cond_t work;
    size_t head, count;
    bool stopping;
    int nthreads;
    pthread_t threads[REAPER_THREADS];
    char names[REAPER_QUEUE][REAPER_NAME];
};

static void *reap(void *arg)
{
    ss_reaper *r = arg;
    char name[REAPER_NAME];
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (r->count == 0 && !r->stopping)
            pthread_cond_wait(&r->work, &r->lock);
        if (r->count == 0) break; /* stopping and drained */
        memcpy(name, r->names[r->head], REAPER_NAME);
        r->head = (r->head + 1) % REAPER_QUEUE;
        r->count--;
        pthread_mutex_unlock(&r->lock);
        (void)unlinkat(r->consumed_fd, name, 0);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Queues a name already in consumed/; false if the queue is full. */
static bool enqueue(ss_reaper *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    bool queued = r->count < REAPER_QUEUE;
    if (queued) {
        snprintf(r->names[(r->head + r->count) % REAPER_QUEUE], REAPER_NAME, "%s", name);
        r->count++;
        pthread_cond_signal(&r->work);
    }
    pthread_mutex_unlock(&r->lock);
    return queued;
}

static void forget_or_remove(ss_reaper *r, const char *name)
{
    if (!enqueue(r, name)) (void)unlinkat(r->consumed_fd, name, 0);
}

/* What a previous run left behind (it was killed before its threads got
 * to it) is as dead as what this run consumes. */
static void queue_leftovers(ss_reaper *r)
{
    int fd = dup(r->consumed_fd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0) close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strlen(de->d_name) < REAPER_NAME)
            forget_or_remove(r, de->d_name);
    closedir(dir);
}

/* consumed/ must be ours and on receive's filesystem, or renames into it
 * would either fail or hand our garbage to someone else. */
static int open_consumed(int receive_fd, const char *path, ss_error *e)
{
    if (ss_mkdirs(path, 0700, e) != 0) return -1;
    int fd = ss_open_dir(path, e);
    if (fd < 0) return -1;
    struct stat cst, rst;
    if (fstat(fd, &cst) != 0 || fstat(receive_fd, &rst) != 0) {
        ss_err_sys(e, "cannot stat %s", path);
    } else if (cst.st_dev != rst.st_dev) {
        ss_err(e, SS_E_IO, "%s is not on the filesystem of receive", path);
    } else if (cst.st_uid != geteuid() || (cst.st_mode & 022)) {
        ss_err(e, SS_E_PERM, "%s is not a private folder of this user", path);
    } else {
        return fd;
    }
    close(fd);
    return -1;
}

ss_reaper *ss_reaper_start(int receive_fd, const char *consumed_path, ss_error *e)
{
    int fd = open_consumed(receive_fd, consumed_path, e);
    if (fd < 0) return NULL;
    ss_reaper *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        ss_err(e, SS_E_NOMEM, "out of memory");
        return NULL;
    }
    r->consumed_fd = fd;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->work, NULL);
    for (int i = 0; i < REAPER_THREADS; i++) {
        if (ss_thread_start(&r->threads[r->nthreads], reap, r) != 0) break;
        r->nthreads++;
    }
    if (r->nthreads == 0) {
        ss_err(e, SS_E_NOMEM, "cannot start a thread to remove consumed files");
        ss_reaper_stop(r);
        return NULL;
    }
    queue_leftovers(r);
    return r;
}

void ss_reaper_take(ss_reaper *r, int receive_fd, const char *name)
{
    if (r && strlen(name) < REAPER_NAME && renameat(receive_fd, name, r->consumed_fd, name) == 0) {
        forget_or_remove(r, name);
        return;
    }
    (void)unlinkat(receive_fd, name, 0);
}

void ss_reaper_stop(ss_reaper *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->work);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->nthreads; i++)
        pthread_join(r->threads[i], NULL);
    /* Without threads (start failed half-way) nothing drained the queue. */
    for (; r->count; r->count--, r->head = (r->head + 1) % REAPER_QUEUE)
        (void)unlinkat(r->consumed_fd, r->names[r->head], 0);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->work);
    close(r->consumed_fd);
    free(r);
}
