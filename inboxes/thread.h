/*
 * thread.h - how every helper thread of sitespool starts (the despooler's
 * pool, reapers and package readers, the sender's write-behind thread).
 * Every signal is blocked in them, so SIGTERM and SIGHUP always reach the
 * main thread and interrupt its wait (poll) instead of landing on a thread
 * that ignores them, and a write past a limit fails with EFBIG or EPIPE
 * (SIGXFSZ, SIGPIPE blocked) instead of killing the process from a helper.
 */
#ifndef SS_INBOXES_THREAD_H
#define SS_INBOXES_THREAD_H

#include <pthread.h>
#include <signal.h>

/* pthread_create with every signal blocked in the new thread. */
static inline int ss_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

#endif
