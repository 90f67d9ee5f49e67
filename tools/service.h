/*
 * service.h - what the two daemons (despool, sender) share as services:
 * signals (SIGTERM/SIGINT stop, SIGHUP reload), readiness, status, the
 * watchdog and stopping told to systemd (sd_notify, when built with
 * libsystemd and started by systemd with NOTIFY_SOCKET; otherwise silent),
 * and reloading the settings.
 *
 * Reload (SIGHUP, `systemctl reload`): site.conf is read again; settings
 * that parse replace the running ones (site_code must stay the same),
 * settings that do not are reported and the old ones kept; the logs are
 * opened again (after logrotate) in the format log_format now names.
 */
#ifndef SS_SERVICE_H
#define SS_SERVICE_H

#include "cli.h"

#include <signal.h>
#include <stdint.h>

typedef struct svc {
    cli *c;
    enum ss_component component; /* whose log gets the service's lines */
    volatile sig_atomic_t *stop;
    volatile sig_atomic_t *reload;
    uint64_t watchdog_usec; /* from systemd's WatchdogSec=; 0: none */
    int64_t last_ping_ms;
    void (*on_tick)(void *ctx); /* also called on each tick (metrics) */
    void *tick_ctx;
} svc;

/* Installs the signal handlers (without SA_RESTART, so a signal cuts a
 * wait short) and reads the watchdog interval. */
void svc_start(svc *s, cli *c, enum ss_component component);
/* How often svc_tick must run: half the watchdog interval, at most 5 s. */
int svc_tick_ms(const svc *s);
/* READY=1 with a STATUS= line. */
void svc_ready(svc *s, const char *status);
/* WATCHDOG=1 when due, then on_tick. */
void svc_tick(svc *s);
/* SIGHUP: RELOADING=1, settings and logs again, READY=1. */
void svc_reload(svc *s);
/* STOPPING=1. */
void svc_stopping(svc *s);

#endif
