/*
 * service.c - signals, sd_notify and reloads for the daemons.  See
 * service.h.
 */
#include "service.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef SITESPOOL_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* Set by the handlers, read by the daemon loops: the only way a signal
 * handler can talk to them. */
static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t reload_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_reload(int sig)
{
    (void)sig;
    reload_flag = 1;
}

static void notify(const char *state)
{
#ifdef SITESPOOL_HAVE_LIBSYSTEMD
    (void)sd_notify(0, state);
#else
    (void)state;
#endif
}

void svc_start(svc *s, cli *c, enum ss_component component)
{
    memset(s, 0, sizeof *s);
    s->c = c;
    s->component = component;
    s->stop = &stop_flag;
    s->reload = &reload_flag;
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_reload;
    sigaction(SIGHUP, &sa, NULL);
#ifdef SITESPOOL_HAVE_LIBSYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0) s->watchdog_usec = usec;
#endif
}

int svc_tick_ms(const svc *s)
{
    int64_t ms = 5000;
    if (s->watchdog_usec && (int64_t)(s->watchdog_usec / 2000) < ms)
        ms = (int64_t)(s->watchdog_usec / 2000);
    return ms < 10 ? 10 : (int)ms;
}

void svc_ready(svc *s, const char *status)
{
    char state[600];
    snprintf(state, sizeof state, "READY=1\nSTATUS=%s\nMAINPID=%d", status, (int)getpid());
    notify(state);
    s->last_ping_ms = ss_now_ms();
}

void svc_tick(svc *s)
{
    int64_t now = ss_now_ms();
    if (s->watchdog_usec && now - s->last_ping_ms >= (int64_t)(s->watchdog_usec / 2000)) {
        notify("WATCHDOG=1");
        s->last_ping_ms = now;
    }
    if (s->on_tick) s->on_tick(s->tick_ctx);
}

/* MONOTONIC_USEC lets systemd (253+, Type=notify-reload) match the
 * RELOADING=1 to the signal it sent. */
static void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char state[96];
    snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    notify(state);
}

void svc_reload(svc *s)
{
    *s->reload = 0;
    notify_reloading();
    ss_log *log = ss_reporter_log(&s->c->rep, s->component);
    ss_conf fresh;
    ss_error e = {0};
    if (ss_conf_load(&fresh, s->c->root, &e) != 0) {
        ss_logf(log, "Reload: kept the running settings; site.conf is not usable: %s", e.msg);
    } else if (strcmp(fresh.site_code, s->c->conf.site_code) != 0) {
        ss_logf(log, "Reload: kept the running settings; site.conf now names site %s, not %s",
                fresh.site_code, s->c->conf.site_code);
    } else {
        s->c->conf = fresh;
        ss_reporter_reopen(&s->c->rep);
        ss_logf(log, "Reload: settings read again from site.conf, logs reopened");
    }
    notify("READY=1\nSTATUS=Running (settings reloaded)");
}

void svc_stopping(svc *s)
{
    (void)s;
    notify("STOPPING=1");
}
