/*
 * deliver.c - delivering a peer's queued pairs into its receive inbox.  See
 * sender.h for the order.
 *
 * Each pair is named in the lock file's journal before its files leave the
 * outbox, and its 4500 is stored right after (recover.h finishes it if the
 * deliverer dies in between); the folders and site.db are flushed once per
 * batch.
 *
 * Diagnostics: deliveries raise 4500 (on a full disk, taking a pair out of
 * the outbox is what frees the space to store it), and 4502 when a peer
 * that was failing is reached again; an unreachable peer raises 4501 with
 * the reason and the retry time, recorded in the same transaction for
 * `peer list`; a queued instruction whose package is gone is set aside with
 * 4506.  A message site.db does not take now is kept and stored with the
 * next one (notices.h).
 */
#include "deliver.h"

#include "../inboxes/text.h"
#include "../keystore/links.h"
#include "kept.h"
#include "recover.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- reports */

/* Stores what is queued; what site.db refuses stays queued for later. */
static int store_notices(ss_sender *s, ss_notices_extra_fn extra, void *ctx)
{
    ss_error e = {0};
    if (ss_notices_store(&s->notices, s->db, s->rep, extra, ctx, &e) == 0) return 0;
    ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
            "Could not store %zu status message(s) yet, kept to store later: %s", s->notices.n,
            e.msg);
    return -1;
}

void ss_deliver_journal_pair(delivery *d, const struct wire_pair *p)
{
    ss_journal j = {.kind = SS_JOURNAL_DELIVERING, .since_ms = ss_now_ms()};
    snprintf(j.queued, sizeof j.queued, "%s", p->queued);
    ss_error e = {0};
    if (!d->journal_off && ss_outbox_journal_set(d->o, &j, &e) != 0) {
        d->journal_off = true; /* delivering matters more than this record */
        ss_logf(ss_reporter_log(d->s->rep, SS_COMP_SENDER), "%s", e.msg);
    }
}

/* 4500 for a pair that left the outbox, stored at once. */
static void record_delivered(delivery *d, const struct wire_pair *p)
{
    char where[PATH_MAX + 80];
    const char *id = ss_queued_id(p->queued);
    snprintf(where, sizeof where, "%s/%s.ins", d->addr->text, id);
    ss_error ignored;
    d->delivered++;
    /* Its receipt is awaited from now on (and a sealed pair's files leave
     * queued_files); a receipt or heartbeat is only logged (a status
     * message an hour per peer would bury the others). */
    int kind = ss_sent_delivered(d->s->db, id, ss_now(), &ignored);
    if (kind == SS_SENT_REPORT) {
        ss_logf(ss_reporter_log(d->s->rep, SS_COMP_SENDER), "Delivered report %s to %s", id,
                where);
        return;
    }
    (void)ss_notices_add(&d->s->notices, &ignored, 4500, id, where, d->peer->site, NULL);
    if (!d->db_refused) d->db_refused = store_notices(d->s, NULL, NULL) != 0;
}

/* After a batch: its folders and its rows flushed, the journal idle. */
static int end_batch(delivery *d, ss_error *e)
{
    int rc =
        (d->peer_fd < 0 || ss_fsync_dirfd(d->peer_fd, e) == 0) && ss_fsync_dirfd(d->o->fd, e) == 0
            ? 0
            : -1;
    if (d->db_refused && store_notices(d->s, NULL, NULL) == 0) d->db_refused = false;
    ss_error ignored;
    (void)ss_db_sync_now(d->s->db, &ignored);
    if (!d->journal_off && !d->s->notices.n) (void)ss_outbox_journal_set(d->o, NULL, NULL);
    return rc;
}

/* -------------------------------------------------------------- batches */

/* Copies one outbox file into a temporary name in the peer's inbox. */
static int copy_to_peer(int outbox_fd, const char *src, int peer_fd, const char *wire_name,
                        ss_atomic *a, ss_error *e)
{
    int in = ss_open_regular(outbox_fd, src, 0, NULL, e);
    if (in < 0) return -1;
    int rc = ss_atomic_begin(a, peer_fd, wire_name, 0640, e);
    if (rc == 0 && ss_copy_fd(in, a->fd, e) < 0) rc = -1;
    if (rc == 0)
        rc = ss_atomic_close(a, false, e);
    else if (a->fd >= 0 || a->tmp[0])
        ss_atomic_abort(a);
    close(in);
    return rc;
}

/* True when the package already reached the peer (an earlier delivery by
 * rename stopped between the package and its instruction). */
static bool package_at_peer(int outbox_fd, int peer_fd, const struct wire_pair *p)
{
    char src[160], wire[64];
    snprintf(src, sizeof src, "%s.pck", p->queued);
    snprintf(wire, sizeof wire, "%s.pck", ss_queued_id(p->queued));
    return faccessat(outbox_fd, src, F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
           faccessat(peer_fd, wire, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Same filesystem: each pair's files, already durable, are renamed into
 * the peer's inbox - package, then instruction, then its 4500 - with no
 * copy and no unlink: a pair is never in both places. */
static int deliver_batch_by_rename(delivery *d, struct wire_pair *pairs, size_t n, ss_error *e)
{
    for (size_t i = 0; i < n; i++) {
        char src[160], wire[64];
        const char *id = ss_queued_id(pairs[i].queued);
        ss_deliver_journal_pair(d, &pairs[i]);
        snprintf(src, sizeof src, "%s.pck", pairs[i].queued);
        snprintf(wire, sizeof wire, "%s.pck", id);
        if (!package_at_peer(d->o->fd, d->peer_fd, &pairs[i]) &&
            renameat(d->o->fd, src, d->peer_fd, wire) != 0)
            return ss_err_sys(e, "cannot move %s into the peer's inbox", src);
        snprintf(src, sizeof src, "%s.ins", pairs[i].queued);
        snprintf(wire, sizeof wire, "%s.ins", id);
        if (renameat(d->o->fd, src, d->peer_fd, wire) != 0)
            return ss_err_sys(e, "cannot move %s into the peer's inbox", src);
        record_delivered(d, &pairs[i]);
    }
    return 0;
}

/* Copies one pair under temporary names (its package only if not there). */
static int copy_pair(int outbox_fd, int peer_fd, struct wire_pair *p, ss_error *e)
{
    char src[160], wire[64];
    const char *id = ss_queued_id(p->queued);
    snprintf(src, sizeof src, "%s.pck", p->queued);
    snprintf(wire, sizeof wire, "%s.pck", id);
    if (!package_at_peer(outbox_fd, peer_fd, p) &&
        copy_to_peer(outbox_fd, src, peer_fd, wire, &p->pck, e) != 0)
        return -1;
    snprintf(src, sizeof src, "%s.ins", p->queued);
    snprintf(wire, sizeof wire, "%s.ins", id);
    return copy_to_peer(outbox_fd, src, peer_fd, wire, &p->ins, e);
}

/* Once the copies are durable under their names at the peer: the pair
 * leaves the outbox (instruction first) and gets its 4500. */
void ss_deliver_remove_delivered(delivery *d, struct wire_pair *p)
{
    char name[160];
    ss_deliver_journal_pair(d, p);
    if (d->kept_fd >= 0) {
        ss_kept_take(d->s, d->kept_fd, d->o->fd, p->queued, true);
    } else {
        snprintf(name, sizeof name, "%s.ins", p->queued);
        (void)unlinkat(d->o->fd, name, 0);
        snprintf(name, sizeof name, "%s.pck", p->queued);
        (void)unlinkat(d->o->fd, name, 0);
    }
    record_delivered(d, p);
}

/* Another filesystem (a mounted share): copy under temporary names, one
 * flush for the batch, rename packages then instructions, flush the
 * folder, then take the pairs out of the outbox. */
static int deliver_batch_by_copy(delivery *d, struct wire_pair *pairs, size_t n, ss_error *e)
{
    int rc = 0;
    size_t copied = 0;
    for (; copied < n && rc == 0; copied++)
        rc = copy_pair(d->o->fd, d->peer_fd, &pairs[copied], e);
    if (rc == 0) rc = ss_sync_fs(d->peer_fd, e);
    /* Packages become visible before any instruction that names them. */
    for (size_t i = 0; i < n && rc == 0; i++)
        if (pairs[i].pck.tmp[0]) rc = ss_atomic_rename(&pairs[i].pck, 0, e);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = ss_atomic_rename(&pairs[i].ins, 0, e);
    if (rc == 0) rc = ss_fsync_dirfd(d->peer_fd, e);
    for (size_t i = 0; i < copied; i++) {
        ss_atomic_abort(&pairs[i].pck);
        ss_atomic_abort(&pairs[i].ins);
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        ss_deliver_remove_delivered(d, &pairs[i]);
    return rc;
}

static int deliver_batch(delivery *d, struct wire_pair *pairs, size_t n, ss_error *e)
{
    for (size_t i = 0; i < n; i++) {
        pairs[i].pck.fd = pairs[i].ins.fd = -1;
        pairs[i].pck.tmp[0] = pairs[i].ins.tmp[0] = '\0';
    }
    ss_error ignored;
    (void)ss_db_sync_defer(d->s->db, &ignored);
    int rc = d->remote    ? ss_deliver_batch_sftp(d, pairs, n, e)
             : d->same_fs ? deliver_batch_by_rename(d, pairs, n, e)
                          : deliver_batch_by_copy(d, pairs, n, e);
    ss_error late = {0};
    if (end_batch(d, &late) != 0 && rc == 0) {
        *e = late;
        rc = -1;
    }
    return rc;
}

/* -------------------------------------------------------- peer records */

/* A delivery attempt, recorded in the peers table with its messages. */
struct attempt {
    ss_db *db;
    const char *site;
    bool ok;
    const char *reason;
    int64_t next_attempt;
};

static int record_attempt(void *ctx, ss_error *e)
{
    const struct attempt *a = ctx;
    return ss_peer_record_attempt(a->db, a->site, a->ok, a->reason, a->next_attempt, e);
}

static void report_unreachable(ss_sender *s, const ss_peer *peer, const char *where,
                               const char *reason, size_t queued)
{
    unsigned wait = ss_sender_backoff(s->conf, peer->failures + 1);
    char count[32], minutes[32], in_words[48];
    snprintf(count, sizeof count, "%zu", queued);
    snprintf(minutes, sizeof minutes, "%u", (wait + 59) / 60);
    ss_duration_text(wait, in_words, sizeof in_words);
    ss_error ignored;
    (void)ss_notices_add(&s->notices, &ignored, 4501, peer->site, where, reason, count, minutes,
                         in_words, NULL);
    struct attempt a = {s->db, peer->site, false, reason, ss_now() + wait};
    (void)store_notices(s, record_attempt, &a);
}

static void report_reached(ss_sender *s, const ss_peer *peer, size_t delivered)
{
    ss_error ignored;
    if (peer->failures > 0) {
        char n[32];
        snprintf(n, sizeof n, "%zu", delivered);
        (void)ss_notices_add(&s->notices, &ignored, 4502, peer->site, n, NULL);
    }
    struct attempt a = {s->db, peer->site, true, NULL, 0};
    (void)store_notices(s, record_attempt, &a);
}

/* ------------------------------------------------------------------ tidy */

/* A temporary file of an interrupted packer, older than a day. */
static void tidy_temporary(ss_sender *s, int outbox_fd, const char *name, const struct stat *st,
                           const char *site)
{
    if (ss_now() - st->st_mtime > 86400 && unlinkat(outbox_fd, name, 0) == 0)
        ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
                "Removed %s, left in the outbox of %s by an interrupted packer", name, site);
}

/* Publishers rename a package before its instruction under the lock, so
 * a package without its instruction here was left by a killed send. */
static void tidy_package(ss_sender *s, int outbox_fd, const char *name, const char *site)
{
    char ins[NAME_MAX + 1];
    snprintf(ins, sizeof ins, "%.*s.ins", (int)(strlen(name) - 4), name);
    if (faccessat(outbox_fd, ins, F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
        unlinkat(outbox_fd, name, 0) == 0)
        ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
                "Removed %s from the outbox of %s: its send was interrupted before the "
                "instruction was queued",
                name, site);
}

void ss_deliver_set_aside(ss_sender *s, int outbox_fd, const char *name, const char *site)
{
    char broken[PATH_MAX], target[PATH_MAX], id[SS_ID_HEX + 1];
    snprintf(id, sizeof id, "%.*s", SS_ID_HEX, ss_queued_id(name));
    snprintf(broken, sizeof broken, "%s/inboxes/schedule.box/broken/%s", s->root, site);
    snprintf(target, sizeof target, "%s/%s", broken, name);
    int bfd = ss_mkdirs(broken, 0750, NULL) == 0 ? ss_open_dir(broken, NULL) : -1;
    if (bfd >= 0 && ss_rename_noreplace(outbox_fd, name, bfd, name, NULL) == 0) {
        ss_error ignored;
        (void)ss_fsync_dirfd(bfd, NULL);
        (void)ss_queued_files_forget(s->db, id, NULL); /* a sealed pair's files */
        (void)ss_notices_add(&s->notices, &ignored, 4506, id, site, target, NULL);
    }
    if (bfd >= 0) close(bfd);
}

/* An instruction whose package is neither queued nor at the (local) peer
 * can never be delivered: set aside.  SFTP peers are asked per batch. */
static void tidy_instruction(ss_sender *s, int outbox_fd, int peer_fd, const char *name,
                             const char *site)
{
    char pck[NAME_MAX + 1], wire[64];
    snprintf(pck, sizeof pck, "%.*s.pck", (int)(strlen(name) - 4), name);
    snprintf(wire, sizeof wire, "%.*s.pck", SS_ID_HEX, ss_queued_id(name));
    /* Without the peer we cannot tell a lost package from a delivered one. */
    if (faccessat(outbox_fd, pck, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || peer_fd < 0 ||
        faccessat(peer_fd, wire, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return;
    ss_deliver_set_aside(s, outbox_fd, name, site);
}

/* Under the outbox lock, before listing: leftovers of killed senders go,
 * and a pair that lost its package is set aside so it cannot block the
 * peer's queue. */
static void tidy_outbox(ss_sender *s, int outbox_fd, int peer_fd, const char *site)
{
    DIR *dir = fdopendir(dup(outbox_fd));
    if (!dir) return;
    rewinddir(dir); /* a dup() shares the read position of earlier walks */
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        struct stat st;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, ".lock") ||
            fstatat(outbox_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (ss_name_is_temporary(name))
            tidy_temporary(s, outbox_fd, name, &st, site);
        else if (len > 4 && !strcmp(name + len - 4, ".pck"))
            tidy_package(s, outbox_fd, name, site);
        else if (ss_outbox_is_queued_ins(name))
            tidy_instruction(s, outbox_fd, peer_fd, name, site);
    }
    closedir(dir);
    if (s->notices.n) (void)store_notices(s, NULL, NULL);
}

/* --------------------------------------------------------------- delivery */

/* Delivers the listed pairs batch by batch until one fails (-1, *why). */
static int deliver_listed(delivery *d, struct dirent **names, int count, ss_deliver_result *res,
                          ss_error *why)
{
    /* Over SFTP a batch costs a few round trips whatever its size: on a
     * 100 ms link 2,048 pairs per batch deliver ~8x faster than 256. */
    size_t batch = d->remote ? d->s->conf->sftp_batch_max : d->s->conf->batch_max;
    if (!batch) batch = 1;
    struct wire_pair *pairs = calloc(batch, sizeof *pairs);
    if (!pairs) return ss_err(why, SS_E_NOMEM, "out of memory");
    int rc = 0;
    for (int start = 0; start < count; start += (int)batch) {
        size_t n = (size_t)(count - start) < batch ? (size_t)(count - start) : batch;
        for (size_t i = 0; i < n; i++) {
            const char *nm = names[start + (int)i]->d_name;
            snprintf(pairs[i].queued, sizeof pairs[i].queued, "%.*s", (int)(strlen(nm) - 4), nm);
        }
        if ((rc = deliver_batch(d, pairs, n, why)) != 0) break;
    }
    res->delivered = d->delivered;
    free(pairs);
    return rc;
}

static bool same_filesystem(int a, int b)
{
    struct stat sa, sb;
    return a >= 0 && b >= 0 && fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev;
}

/* ------------------------------------------------------------- addresses */

/* The peer's addresses, parsed; one that does not parse keeps its text
 * and its error (it is skipped like an unreachable one). */
struct address_slot {
    ss_address addr;
    unsigned pos;
    bool bad;
    char error[256];
};

static int load_addresses(ss_sender *s, const ss_peer *peer, struct address_slot *slots,
                          ss_error *e)
{
    ss_peer_address *rows = calloc(SS_PEER_ADDRESSES_MAX, sizeof *rows);
    if (!rows) return ss_err(e, SS_E_NOMEM, "out of memory");
    int n = ss_peer_addresses(s->db, peer->site, rows, SS_PEER_ADDRESSES_MAX, e);
    if (n == 0) { /* a peer row without addresses: its inbox column */
        snprintf(rows[0].address, sizeof rows[0].address, "%s", peer->inbox);
        n = 1;
    }
    for (int i = 0; i < n; i++) {
        ss_error bad = {0};
        slots[i].pos = rows[i].pos;
        slots[i].bad = ss_address_parse(rows[i].address, &slots[i].addr, &bad) != 0;
        snprintf(slots[i].error, sizeof slots[i].error, "%s", bad.msg);
    }
    free(rows);
    return n;
}

/* Host key refusals and pins get messages of their own. */
static void report_host(ss_sender *s, const ss_peer *peer, const ss_address *a,
                        const ss_host_check *h)
{
    ss_error ignored;
    if (h->newly_pinned)
        (void)ss_notices_add(&s->notices, &ignored, 4511, h->offered, a->host_label, peer->site,
                             "a fingerprint pinned in advance, met at the first connection", NULL);
    if (h->verdict == SS_HOST_UNKNOWN)
        (void)ss_notices_add(&s->notices, &ignored, 4507, peer->site, a->text, h->offered, NULL);
    if (h->verdict == SS_HOST_CHANGED)
        (void)ss_notices_add(&s->notices, &ignored, 4508, peer->site, a->text, h->offered,
                             h->pinned, NULL);
}

/* Opens the address for delivery: its folder, or an SFTP session. */
static int open_address(delivery *d, const struct address_slot *slot, ss_remote *remote,
                        ss_host_check *host, ss_error *why)
{
    memset(host, 0, sizeof *host);
    d->addr = &slot->addr;
    d->peer_fd = -1;
    d->remote = NULL;
    if (slot->bad) return ss_err(why, SS_E_CONF, "%s", slot->error);
    if (!slot->addr.remote) {
        d->peer_fd = ss_open_dir_follow(slot->addr.path, why);
        d->same_fs = same_filesystem(d->o->fd, d->peer_fd);
        return d->peer_fd < 0 ? -1 : 0;
    }
    int rc = ss_remote_open(remote, &slot->addr, d->s->root, d->s->conf, d->s->db, d->peer->site,
                            host, why);
    report_host(d->s, d->peer, &slot->addr, host);
    if (rc != 0) return -1;
    d->remote = remote;
    if (!ss_sftp_can_fsync(remote->sftp)) {
        ss_error ignored;
        (void)ss_notices_add(&d->s->notices, &ignored, 4509, d->peer->site, slot->addr.text, NULL);
        ss_logf(ss_reporter_log(d->s->rep, SS_COMP_SENDER),
                "%s offers no fsync@openssh.com: deliveries to %s are not flushed to its disk",
                slot->addr.host_label, d->peer->site);
    }
    return 0;
}

static void close_address(delivery *d)
{
    if (d->remote) ss_remote_close(d->remote);
    d->remote = NULL;
    if (d->peer_fd >= 0) close(d->peer_fd);
    d->peer_fd = -1;
}

/* What a try left an address in: its state in peer_addresses. */
static void record_address(ss_sender *s, const char *site, unsigned pos, const ss_host_check *h,
                           const char *error)
{
    const char *state = !error                          ? "ok"
                        : h->verdict == SS_HOST_UNKNOWN ? "host-key-unknown"
                        : h->verdict == SS_HOST_CHANGED ? "host-key-changed"
                                                        : "unreachable";
    ss_error ignored;
    (void)ss_peer_address_record(s->db, site, pos, state, error, &ignored);
}

/* A local address that tidying may consult (a lost package is told from a
 * delivered one by looking at the peer), or -1. */
static int tidy_peer_fd(const struct address_slot *slots, int n)
{
    for (int i = 0; i < n; i++)
        if (!slots[i].bad && !slots[i].addr.remote)
            return ss_open_dir_follow(slots[i].addr.path, NULL);
    return -1;
}

/* --------------------------------------------------------------- delivery */

/* Tries each address in turn (from the round-robin start) until the
 * outbox is empty; an address that fails hands the rest to the next.
 * Returns the pairs still queued; *last is the last address tried. */
static int deliver_through(delivery *d, const struct address_slot *slots, int n,
                           ss_deliver_result *res, const ss_address **last, ss_error *why)
{
    unsigned start = d->peer->round_robin ? d->peer->rr_next % (unsigned)n : 0;
    struct dirent **names = NULL;
    int count = ss_outbox_list(d->o, &names, why);
    ss_remote remote;
    if (count > 0) d->kept_fd = ss_kept_open(d->s, d->peer->site);
    for (int k = 0; k < n && count > 0; k++) {
        const struct address_slot *slot = &slots[(start + (unsigned)k) % (unsigned)n];
        ss_host_check host;
        ss_err_clear(why);
        *last = &slot->addr;
        bool ok = open_address(d, slot, &remote, &host, why) == 0 &&
                  deliver_listed(d, names, count, res, why) == 0;
        close_address(d);
        record_address(d->s, d->peer->site, slot->pos, &host, ok ? NULL : why->msg);
        ss_outbox_list_free(names, count);
        names = NULL;
        ss_error list_error = {0};
        count = ss_outbox_list(d->o, &names, &list_error);
        if (count < 0) {
            *why = list_error;
            if (d->kept_fd >= 0) close(d->kept_fd);
            d->kept_fd = -1;
            return -1;
        }
        if (!ok && count > 0 && k + 1 < n) {
            ss_error ignored;
            (void)ss_notices_add(&d->s->notices, &ignored, 4510, d->peer->site, slot->addr.text,
                                 why->msg, slots[(start + (unsigned)k + 1) % (unsigned)n].addr.text,
                                 NULL);
        }
    }
    ss_outbox_list_free(names, count > 0 ? count : 0);
    if (d->kept_fd >= 0) close(d->kept_fd);
    d->kept_fd = -1;
    return count;
}

/* Under the lock: tidy, deliver through the addresses, report. */
static int deliver_locked(ss_sender *s, const ss_peer *peer, ss_outbox *o, ss_deliver_result *res,
                          ss_error *e)
{
    struct address_slot *slots = calloc(SS_PEER_ADDRESSES_MAX, sizeof *slots);
    if (!slots) return ss_err(e, SS_E_NOMEM, "out of memory");
    int n = load_addresses(s, peer, slots, e);
    if (n < 0) {
        free(slots);
        return -1;
    }
    int tidy_fd = tidy_peer_fd(slots, n);
    tidy_outbox(s, o->fd, tidy_fd, peer->site);
    if (tidy_fd >= 0) close(tidy_fd);
    ss_error why = {0};
    delivery d = {.s = s, .peer = peer, .o = o, .peer_fd = -1, .kept_fd = -1};
    const ss_address *last = &slots[0].addr;
    size_t before = d.delivered;
    int left = deliver_through(&d, slots, n, res, &last, &why);
    res->delivered = d.delivered;
    if (left < 0) {
        *e = why;
        free(slots);
        return -1;
    }
    res->queued = (size_t)left;
    res->unreachable = left > 0;
    if (res->unreachable)
        report_unreachable(s, peer, last->text, why.msg[0] ? why.msg : "unknown error",
                           res->queued);
    else if (d.delivered > before)
        report_reached(s, peer, res->delivered);
    if (peer->round_robin && n > 1 && d.delivered > before) {
        ss_error ignored;
        (void)ss_peer_rotate(s->db, peer->site, (unsigned)n, &ignored);
    }
    free(slots);
    return 0;
}

int ss_sender_deliver(ss_sender *s, const char *site, ss_deliver_result *res, ss_error *e)
{
    memset(res, 0, sizeof *res);
    ss_peer peer;
    if (ss_peer_require(s->db, site, &peer, e) != 0) return -1;
    ss_outbox o;
    if (ss_outbox_open(&o, s->root, site, e) != 0) return -1;
    int locked = s->skip_busy ? ss_outbox_trylock(&o, e) : ss_outbox_lock(&o, e) == 0;
    if (locked <= 0) {
        ss_outbox_close(&o);
        res->busy = locked == 0;
        return locked == 0 ? 0 : -1;
    }
    ss_error late = {0};
    /* Rows that cannot be stored now stay queued: delivery goes on (on a
     * full disk it is what frees the space to store them). */
    if (ss_sender_recover(s, &o, site, &late) != 0)
        ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
                "Could not yet record the pairs of an interrupted send to %s: %s", site, late.msg);
    int rc = deliver_locked(s, &peer, &o, res, e);
    ss_outbox_close(&o);
    return rc;
}
