/*
 * despooler.h - the despooler (DESIGN §4): takes instruction + package pairs
 * that peers dropped into inboxes/despoolr.box/receive, finds the sender's
 * key, verifies, decompresses and delivers each exactly once into
 * inboxes/<dest>/incoming, quarantines what must not be delivered, and keeps
 * what cannot be processed yet (missing package, missing key) with persisted
 * retries.
 *
 * Security stance: every file in receive is hostile until proven otherwise.
 * Files are opened without following symlinks, must be regular and within
 * size limits; the instruction fields are used only after the trusted
 * comment's signature verified with a key the keystore trusts for the
 * claimed site (except for the unsigned form, accepted only when
 * require_secure_key_exchange = no); the package is hashed and inflated in
 * the same pass into a temporary file that becomes visible only after the
 * package signature verified and its size equals the declared size.  A
 * destination can only name an allowed inbox, and a delivered name can only
 * be a plain file name: nothing escapes the destination folder and nothing
 * is overwritten.
 *
 * Exactly once: package data is made durable under a temporary name derived
 * from the instruction id (a bundle, files=N: one per member, <id>-<n>),
 * then the ledger rows are committed (a bundle's own and one per member),
 * then the files are renamed, then the pair is moved out of receive (into
 * consumed/, where background threads unlink it, see reaper.h).  After a
 * crash at any point the restart finds either no ledger row (redo from
 * scratch), a ledger row and temporary files (finish the renames), or a
 * ledger row alone (already delivered: the leftover pair is removed as a
 * duplicate).
 *
 * Threads: the caller's thread alone uses site.db, status messages,
 * quarantine and the ledger; a pool (stage.c) reads instructions, checks
 * signatures and stages packages, one batch while the previous one
 * commits; the reaper unlinks consumed pairs.
 *
 * Diagnostics: status messages 4400-4499 (see `sitespool status
 * --catalogue`) and despool.log; quarantined pairs carry a .why file.
 */
#ifndef SS_DESPOOLER_H
#define SS_DESPOOLER_H

#include "../inboxes/codec.h"
#include "../keystore/dircache.h"
#include "../keystore/lookup.h"
#include "reaper.h"

#include <signal.h>

typedef struct ss_despool_stats {
    size_t delivered;
    size_t rejected;
    size_t duplicates;
    size_t waiting;     /* left in receive: key or package missing, held */
    size_t dest_failed; /* left in receive: the destination could not be written */
    /* Since start, for the metrics file. */
    uint64_t batches;
    double batch_seconds; /* their total duration */
    double batch_seconds_max;
    uint64_t fates; /* fates noted for receipts (reports.c): new ones wait to be queued */
} ss_despool_stats;

#define SS_FORCE_MAX 64
#define SS_SEAL_KEYS_MAX 16

typedef struct dsp_pool dsp_pool; /* staging threads (stage.c) */

typedef struct ss_despooler {
    const char *root;
    const ss_conf *conf;
    ss_db *db;
    ss_reporter *rep;
    ss_keyctx keys;
    int receive_fd;
    int rejected_fd;
    int lock_fd;
    ss_reaper *reaper;       /* NULL: consumed pairs are unlinked in place */
    dsp_pool *pool;          /* NULL: packages are staged on this thread */
    unsigned char *read_buf; /* package reads */
    ss_inflater inflater;    /* reset for each package */
    char receive_path[PATH_MAX];
    /* Sites whose key just arrived: their waiting instructions retry now. */
    char force[SS_FORCE_MAX][SS_SITE_CODE_MAX + 1];
    int nforce;
    /* Per scan: whether retry, backlog and hold rows exist at all, so the
     * common case does not pay for deletes of rows that are not there. */
    bool retries_pending;
    bool notes_pending;
    bool input_faults_pending; /* hold notes of unreadable files (4419) */
    /* Housekeeping (backlog, expiry, ledger pruning): 0 = every scan. */
    int64_t housekeeping_every_ms;
    int64_t housekeeping_last_ms;
    /* Per batch (data pass): keys already found usable for a site, and the
     * destination folders already opened. */
    struct {
        char site[SS_SITE_CODE_MAX + 1];
        unsigned char keyid[8];
        ss_keyrec key;
    } usable[8];
    int nusable;
    struct {
        char dest[40];
        int fd;
    } dests[8];
    int ndests;
    ss_despool_stats stats;
    ss_error trust_error; /* the first keystore failure of a batch */
    int64_t high_water;   /* the latest time the site's clock has shown */
    bool sync_each;       /* this batch: fdatasync per file, not syncfs */
    /* This site's secret keys that sealed packages were opened with
     * (sealed.c): loaded by the main thread when first needed, in guarded
     * memory (sodium_malloc), read by the pool, wiped and freed on close. */
    ss_seckey *seal_keys[SS_SEAL_KEYS_MAX];
    int nseal_keys;
    /* The stream keys of the sends whose packages were opened
     * (ss_open_cache, seal.h): made with the first key, shared by the
     * pool, wiped and freed with the keys. */
    struct ss_open_cache *seal_cache;
} ss_despooler;

/* Takes the site's despooler lock (SS_E_LOCKED if another one runs). */
int ss_despooler_open(ss_despooler *d, const char *root, const ss_conf *conf, ss_db *db,
                      ss_reporter *rep, ss_error *e);
void ss_despooler_close(ss_despooler *d);
/* One pass over hman.box and receive, in batches; *progress is set when
 * anything left receive. */
int ss_despooler_scan(ss_despooler *d, bool *progress, ss_error *e);
/* Scans until a pass makes no progress (the --once mode). */
int ss_despooler_drain(ss_despooler *d, ss_error *e);
/* Per sending site: ledger rows (delivered within the replay window),
 * pairs waiting for a key, held pairs (census.c). */
typedef struct ss_site_census {
    char site[SS_SITE_CODE_MAX + 1];
    uint64_t delivered, waiting, held;
} ss_site_census;
int ss_despooler_site_census(ss_db *db, ss_site_census *out, size_t max, size_t *n, ss_error *e);

/* Instructions in receive and quarantined pairs, with the oldest mtimes. */
typedef struct ss_folder_census {
    uint64_t receive, quarantined;
    int64_t receive_oldest, quarantined_oldest; /* 0: none */
} ss_folder_census;
void ss_despooler_folder_census(const ss_despooler *d, ss_folder_census *out);

/* What the daemon loop takes from and tells its caller (tools/service.c:
 * signals and the service manager). */
typedef struct ss_daemon_hooks {
    volatile sig_atomic_t *stop;   /* set: finish the batch in hand and return */
    volatile sig_atomic_t *reload; /* set: on_reload between scans (SIGHUP) */
    int tick_ms;                   /* on_tick at least this often; 0: after scans only */
    void (*on_ready)(void *ctx);   /* the first scan is done and receive is watched */
    void (*on_tick)(void *ctx);    /* watchdog pings, the metrics file */
    void (*on_reload)(void *ctx);  /* settings read again, logs reopened */
    void *ctx;
} ss_daemon_hooks;

/* Runs until *h->stop: inotify hints, rescans, retry timers. */
int ss_despooler_run(ss_despooler *d, const ss_daemon_hooks *h, ss_error *e);

#endif
