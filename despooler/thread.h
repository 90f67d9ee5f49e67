/*
 * thread.h - private to the despooler: how its helper threads start.
 * Every signal is blocked in them, so SIGTERM and SIGHUP always reach the
 * main thread and interrupt its wait (poll) instead of landing on a thread
 * that ignores them.
 */
#ifndef SS_DESPOOLER_THREAD_H
#define SS_DESPOOLER_THREAD_H

#include <pthread.h>
#include <signal.h>

/* pthread_create with every signal blocked in the new thread. */
static inline int dsp_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

#endif
