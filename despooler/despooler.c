/*
 * despooler.c - processing of the receive inbox.  See despooler.h for the
 * security stance and the exactly-once argument.
 */
#include "despooler.h"
#include "../inboxes/fileio.h"
#include "../inboxes/instruction.h"
#include "../keystore/sigfile.h"
#include "../keystore/keyfile.h"
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)
#define KEY_PAYLOAD_MAX 4096
/* Below this many files a batch fsyncs each one; above, one syncfs. */
#define SMALL_BATCH 4
/* A file still waiting is warned about again (4414) at most this often. */
#define BACKLOG_REWARN 86400
/* A truncated instruction this young may still be being written. */
#define WRITER_GRACE_S 5
/* A temporary file in receive older than this is a dead writer's. */
#define STALE_TMP_AGE (2 * 86400)

/* What became of an instruction: staged for the batch commit, finished
 * (delivered, quarantined or removed), left in receive for later, or
 * left in receive because the keystore could not be read (the batch stops
 * and the scan fails: fail closed, 4423). */
enum outcome { OUT_STAGED, OUT_DONE, OUT_WAIT, OUT_FAIL };

/* One instruction being processed. */
typedef struct work {
    char ins_name[64];
    char pck_name[64];
    bool is_signed;
    ss_sig sig;
    ss_instr in;
    char keyid[SS_KEYID_HEX + 1];
    /* staged delivery */
    int dest_fd;
    ss_atomic out;
    char dest_rel[PATH_MAX];
} work;

/* ------------------------------------------------------------ utilities */

static void u64str(uint64_t v, char *out, size_t len)
{
    snprintf(out, len, "%" PRIu64, v);
}

static void base_of(const char *name, char *out, size_t len)
{
    const char *dot = strrchr(name, '.');
    snprintf(out, len, "%.*s", (int)(dot ? dot - name : (long)strlen(name)), name);
}

static bool force_has(const ss_despooler *d, const char *site)
{
    for (int i = 0; i < d->nforce; i++)
        if (!strcmp(d->force[i], site)) return true;
    return false;
}

static void force_add(void *ctx, const char *site)
{
    ss_despooler *d = ctx;
    if (!force_has(d, site) && d->nforce < SS_FORCE_MAX)
        snprintf(d->force[d->nforce++], sizeof d->force[0], "%s", site);
}

static int db_step_done(ss_despooler *d, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc != 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Database error while %s: %s", what,
                sqlite3_errmsg(d->db->h));
    sqlite3_finalize(st);
    return rc;
}

/* The pair left receive: forget its backlog warnings and hold notes. */
static void forget_notes(ss_despooler *d, const char *base)
{
    if (!d->notes_pending) return;
    sqlite3_stmt *st = ss_db_prepare(d->db,
                                     "DELETE FROM backlog WHERE name IN (?1||'.ins', "
                                     "?1||'.pck')",
                                     NULL);
    if (st) {
        sqlite3_bind_text(st, 1, base, -1, SQLITE_STATIC);
        db_step_done(d, st, "clearing backlog notes");
    }
    st = ss_db_prepare(d->db, "DELETE FROM holds WHERE id=?", NULL);
    if (st) {
        sqlite3_bind_text(st, 1, base, -1, SQLITE_STATIC);
        db_step_done(d, st, "clearing a hold");
    }
}

/* ----------------------------------------------------------- quarantine */

/* Moves name from receive to rejected without replacing anything. */
static void move_to_rejected(ss_despooler *d, const char *name, const char *reason)
{
    char target[128];
    snprintf(target, sizeof target, "%s", name);
    for (int attempt = 0; attempt < 100; attempt++) {
        ss_error e = {0};
        if (ss_rename_noreplace(d->receive_fd, name, d->rejected_fd, target, &e) == 0) return;
        if (e.code != SS_E_EXISTS) {
            if (e.code != SS_E_NOENT)
                ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot quarantine %s (%s): %s",
                        name, reason, e.msg);
            return;
        }
        snprintf(target, sizeof target, "%s.%lld-%d", name, (long long)ss_now(), attempt + 1);
    }
}

/* Quarantines the pair named by base (either file may be missing), with a
 * .why file holding the rendered status message. */
static void quarantine(ss_despooler *d, const char *base, int msg_id, const char *const istr[],
                       int nistr)
{
    char name[96], why[2300], text[2048];
    const ss_msgdef *def = ss_msgdef_find(msg_id);
    ss_msg_render(def ? def->format : "", nistr, istr, text, sizeof text);
    int n = snprintf(why, sizeof why, "status %d (%c): %s\nrejected at %lld by site %s\n", msg_id,
                     def ? def->severity : 'E', text, (long long)ss_now(), d->conf->site_code);
    snprintf(name, sizeof name, "%s.why", base);
    ss_error e = {0};
    (void)unlinkat(d->rejected_fd, name, 0);
    if (ss_write_file_atomic(d->rejected_fd, name, why, (size_t)n, 0640, 0, &e) != 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot write %s: %s", name, e.msg);
    snprintf(name, sizeof name, "%s.pck", base);
    move_to_rejected(d, name, text);
    snprintf(name, sizeof name, "%s.ins", base);
    move_to_rejected(d, name, text);
    forget_notes(d, base);
    ss_reportv(d->rep, msg_id, nistr, istr);
    d->stats.rejected++;
}

#define QUARANTINE(d, base, id, ...)                                                               \
    do {                                                                                           \
        const char *istr_[] = {__VA_ARGS__};                                                       \
        quarantine(d, base, id, istr_, (int)(sizeof istr_ / sizeof istr_[0]));                     \
    } while (0)

/* Removes a pair from receive (after delivery or as a duplicate). */
static void remove_pair(ss_despooler *d, const char *base)
{
    char name[96];
    /* The instruction first: a package left alone is an orphan that
     * check_backlog recognises by the ledger and removes. */
    snprintf(name, sizeof name, "%s.ins", base);
    ss_reaper_take(d->reaper, d->receive_fd, name);
    snprintf(name, sizeof name, "%s.pck", base);
    ss_reaper_take(d->reaper, d->receive_fd, name);
    forget_notes(d, base);
}

/* ------------------------------------------------------------- loading */

static int load_work(ss_despooler *d, const char *ins_name, work *w, ss_error *e)
{
    char base[64], *text = NULL;
    size_t len;
    memset(w, 0, sizeof *w);
    w->dest_fd = -1;
    w->out.fd = -1;
    snprintf(w->ins_name, sizeof w->ins_name, "%s", ins_name);
    base_of(ins_name, base, sizeof base);
    snprintf(w->pck_name, sizeof w->pck_name, "%s.pck", base);
    if (ss_read_small_file(d->receive_fd, ins_name, SS_SIGFILE_MAX, &text, &len, e) != 0) return -1;
    int rc;
    if (ss_sig_looks_signed(text, len)) {
        w->is_signed = true;
        rc = ss_sig_parse(text, len, &w->sig, e);
        if (rc == 0) rc = ss_instr_parse(&w->in, w->sig.trusted_comment, e);
        ss_keyid_hex(w->sig.keyid, w->keyid);
    } else {
        /* The unsigned form: exactly one line. */
        char *nl = memchr(text, '\n', len);
        if (memchr(text, '\0', len) || (nl && (size_t)(nl - text) + 1 != len))
            rc = ss_err(e, SS_E_FORMAT,
                        "not a signature file and not a one-line unsigned "
                        "instruction");
        else {
            if (nl) *nl = '\0';
            rc = ss_instr_parse(&w->in, text, e);
        }
    }
    free(text);
    if (rc == 0 && strcmp(base, w->in.id) != 0)
        rc = ss_err(e, SS_E_FIELD, "the file name does not match the instruction id %s", w->in.id);
    return rc;
}

/* -------------------------------------------------------- key handling */

static void retry_forget(ss_despooler *d, const char *id)
{
    if (!d->retries_pending) return;
    sqlite3_stmt *st = ss_db_prepare(d->db, "DELETE FROM retries WHERE id=?", NULL);
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        db_step_done(d, st, "clearing a retry");
    }
}

/* Reads the retry row: 1 found, 0 none. */
static int retry_get(ss_despooler *d, const char *id, int *attempts, int64_t *next_at)
{
    sqlite3_stmt *st =
        ss_db_prepare(d->db, "SELECT attempts, next_at FROM retries WHERE id=?", NULL);
    int found = 0;
    if (!st) return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *attempts = sqlite3_column_int(st, 0);
        *next_at = sqlite3_column_int64(st, 1);
        found = 1;
    }
    sqlite3_finalize(st);
    return found;
}

/* The sender's key is missing: count an attempt and report 4405, or give
 * up (4406) when the retries are used up. */
static enum outcome key_missing(ss_despooler *d, work *w, const char *base)
{
    int attempts = 0;
    int64_t next_at = 0, now = ss_now();
    bool known = retry_get(d, w->in.id, &attempts, &next_at);
    if (known && next_at > now && !force_has(d, w->in.from)) {
        d->stats.waiting++;
        return OUT_WAIT;
    }
    unsigned limit = d->conf->key_lookup_retries;
    char count[32];
    /* key_lookup_retries counts every lookup, this one included: the first
     * 4405 says 99 more of 100, and the lookup that leaves 0 more gives up
     * at once (announcing "0 more times, next retry in ..." would be false). */
    if ((unsigned)++attempts >= limit) {
        snprintf(count, sizeof count, "%d", attempts);
        retry_forget(d, w->in.id);
        QUARANTINE(d, base, 4406, w->in.id, w->in.from, w->keyid, count);
        return OUT_DONE;
    }
    sqlite3_stmt *st = ss_db_prepare(
        d->db,
        "INSERT INTO retries(id, from_site, key_id, attempts, next_at, first_seen) "
        "VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(id) DO UPDATE SET attempts=?4, next_at=?5",
        NULL);
    if (st) {
        sqlite3_bind_text(st, 1, w->in.id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, w->in.from, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, w->keyid, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, attempts);
        sqlite3_bind_int64(st, 5, now + d->conf->key_lookup_interval);
        sqlite3_bind_int64(st, 6, now);
        db_step_done(d, st, "recording a key lookup retry");
    }
    char left[32], minutes[32];
    snprintf(left, sizeof left, "%u", limit - (unsigned)attempts);
    snprintf(minutes, sizeof minutes, "%u", (d->conf->key_lookup_interval + 59) / 60);
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Public key %s for incoming instruction %s/%s from site %s was not found, will "
            "retry later",
            w->keyid, d->receive_path, w->ins_name, w->in.from);
    ss_report(d->rep, 4405, w->ins_name, w->in.from, w->keyid, left, minutes, NULL);
    d->stats.waiting++;
    return OUT_WAIT;
}

/* Keeps the instruction in receive until an administrator acts; 4420 is
 * raised once per instruction and reason, not on every scan. */
static enum outcome hold(ss_despooler *d, const work *w, const char *reason)
{
    sqlite3_stmt *st =
        ss_db_prepare(d->db,
                      "INSERT INTO holds(id, from_site, reason, since) VALUES(?1,?2,?3,?4) "
                      "ON CONFLICT(id) DO UPDATE SET reason=?3 WHERE reason<>?3 RETURNING id",
                      NULL);
    bool fresh = false;
    if (st) {
        sqlite3_bind_text(st, 1, w->in.id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, w->in.from, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, ss_now());
        fresh = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    if (fresh) ss_report(d->rep, 4420, w->in.id, w->in.from, reason, NULL);
    d->stats.waiting++;
    return OUT_WAIT;
}

static const ss_keyrec *usable_cached(const ss_despooler *d, const work *w)
{
    for (int i = 0; i < d->nusable; i++)
        if (!strcmp(d->usable[i].site, w->in.from) &&
            !memcmp(d->usable[i].keyid, w->sig.keyid, SS_KEYID_BYTES))
            return &d->usable[i].key;
    return NULL;
}

static void usable_remember(ss_despooler *d, const work *w, const ss_keyrec *key)
{
    if (w->in.type != SS_TYPE_DATA || d->nusable >= (int)(sizeof d->usable / sizeof d->usable[0]))
        return;
    snprintf(d->usable[d->nusable].site, sizeof d->usable[0].site, "%s", w->in.from);
    memcpy(d->usable[d->nusable].keyid, w->sig.keyid, SS_KEYID_BYTES);
    d->usable[d->nusable++].key = *key;
}

/* The keystore could not be read or written while trust was checked: the
 * pair stays in receive and the scan fails (4423), never "go ahead". */
static enum outcome trust_failed(ss_despooler *d, const work *w, const ss_error *e)
{
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Holding instruction %s from site %s: checking trust failed: %s", w->in.id, w->in.from,
            e->msg);
    if (d->trust_error.code == SS_OK)
        ss_err(&d->trust_error, e->code ? e->code : SS_E_DB, "checking trust failed: %s", e->msg);
    d->stats.waiting++;
    return OUT_FAIL;
}

/* Quarantines a pair the trust rules refused, with the verdict's status. */
static enum outcome refuse(ss_despooler *d, const work *w, const char *base, const ss_verdict *v,
                           const char *key_id, const char *detail)
{
    const char *why = detail && *detail ? detail : ss_trust_reason_text(v->reason);
    if (v->status == 4421)
        QUARANTINE(d, base, 4421, w->in.id, w->in.from, key_id);
    else if (v->status == 4404)
        QUARANTINE(d, base, 4404, w->ins_name, w->in.from);
    else if (v->status == 4422)
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, why);
    else
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, key_id, why);
    return OUT_DONE;
}

/* What a verdict on a key means for the pair in hand. */
static enum outcome act_on_verdict(ss_despooler *d, work *w, const char *base, const ss_verdict *v,
                                   const char *key_id)
{
    char reason[200];
    switch (v->action) {
    case SS_TRUST_ACCEPT:
        return OUT_STAGED;
    case SS_TRUST_MISSING:
        return key_missing(d, w, base);
    case SS_TRUST_HOLD:
        if (key_id)
            snprintf(reason, sizeof reason, "key %s of site %s: %s", key_id, w->in.from,
                     ss_trust_reason_text(v->reason));
        else
            snprintf(reason, sizeof reason, "site %s: %s", w->in.from,
                     ss_trust_reason_text(v->reason));
        return hold(d, w, reason);
    case SS_TRUST_REJECT:
        break;
    }
    return refuse(d, w, base, v, key_id, NULL);
}

/* Finds the signer's key (keystore, key directory, hman.box), checks the
 * instruction's fields against it, and asks the trust rules about this use
 * of it.  A directory record is offered to the rules (it may become trusted,
 * or block the site) only after the instruction verified with it, and only
 * then: a key id alone, which anyone can copy, is no evidence.  Returns 1
 * with *v (and *key unless the key is missing), 0 when the pair was dealt
 * with (*o: a forgery quarantined), -1 when the keystore failed (*e). */
static int find_signer(ss_despooler *d, work *w, const char *base, bool for_data, ss_keyrec *key,
                       ss_verdict *v, enum outcome *o, ss_error *e)
{
    ss_key_found how;
    int found = ss_key_find(&d->keys, w->in.from, w->sig.keyid, key, &how, e);
    if (found < 0) return -1;
    if (found) {
        ss_error bad = {0};
        if (ss_sig_verify_comment(&w->sig, &key->pk, &bad) != 0) {
            QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, bad.msg);
            *o = OUT_DONE;
            return 0;
        }
        /* A lookup that imported or judged a key may have changed what is
         * usable: no cached verdict outlives it. */
        if (how.where != SS_FOUND_KEYSTORE) d->nusable = 0;
    }
    if (found && how.where == SS_FOUND_DIRECTORY) {
        ss_offer offer = {w->in.from,  &key->pk, SS_EV_DIRECTORY,
                          "directory", how.path, key->not_after,
                          NULL,        false};
        ss_verdict ov;
        if (ss_trust_judge_offer(&d->keys, &offer, &ov, e) != 0) return -1;
        if (ov.action == SS_TRUST_REJECT)
            ss_logf(ss_reporter_log(d->rep, SS_COMP_HMAN),
                    "Key directory record %s is not used: %s", how.path, e->msg);
        found = ss_keys_get(d->db, w->in.from, w->keyid, key, e);
        if (found < 0) return -1;
    }
    return ss_trust_judge_use(&d->keys, w->in.from, found ? key : NULL, for_data, v, e) == 0 ? 1
                                                                                             : -1;
}

/* Finds and judges the key; the instruction fields verified with it.
 * Within a batch's data pass a (site, key) found usable once is not looked
 * up again: revocations, blocks and approvals made elsewhere take effect
 * from the next batch, milliseconds later. */
static enum outcome authenticate(ss_despooler *d, work *w, const char *base, ss_keyrec *key)
{
    ss_error e = {0};
    const ss_keyrec *cached = usable_cached(d, w);
    if (cached) {
        *key = *cached;
        if (ss_sig_verify_comment(&w->sig, &key->pk, &e) != 0) {
            QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
            return OUT_DONE;
        }
        return OUT_STAGED;
    }
    ss_verdict v;
    enum outcome o = OUT_DONE;
    int rc = find_signer(d, w, base, w->in.type == SS_TYPE_DATA, key, &v, &o, &e);
    if (rc < 0) return trust_failed(d, w, &e);
    if (rc == 0) return o;
    o = act_on_verdict(d, w, base, &v, w->keyid);
    if (o == OUT_STAGED) {
        retry_forget(d, w->in.id);
        usable_remember(d, w, key);
    }
    return o;
}

/* --------------------------------------------------------------- ledger */

/* 1 and the stored path if id was delivered, 0 if not. */
static int ledger_lookup(ss_despooler *d, const char *id, char *path, size_t len, int64_t *when)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT path, time FROM ledger WHERE id=?", NULL);
    int found = 0;
    if (!st) return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *p = sqlite3_column_text(st, 0);
        snprintf(path, len, "%s", p ? (const char *)p : "");
        *when = sqlite3_column_int64(st, 1);
        found = 1;
    }
    sqlite3_finalize(st);
    return found;
}

static void tmp_name_for(const char *id, char *out, size_t len)
{
    snprintf(out, len, ".sitespool-%s.tmp", id);
}

/* A crash after the ledger commit and before the rename left the data
 * under its temporary name: finish the rename.  Returns true if it did. */
static bool finish_interrupted(ss_despooler *d, const work *w, const char *rel_path)
{
    char dir[PATH_MAX], tmp[96], final[PATH_MAX];
    const char *slash = strrchr(rel_path, '/');
    if (!slash) return false;
    snprintf(dir, sizeof dir, "%s/%.*s", d->root, (int)(slash - rel_path), rel_path);
    snprintf(final, sizeof final, "%s", slash + 1);
    tmp_name_for(w->in.id, tmp, sizeof tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return false;
    bool done = false;
    if (faccessat(dfd, tmp, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        ss_error e = {0};
        if (ss_rename_noreplace(dfd, tmp, dfd, final, &e) != 0 && e.code == SS_E_EXISTS) {
            snprintf(final + strlen(final), sizeof final - strlen(final), ".%s", w->in.id);
            (void)ss_rename_noreplace(dfd, tmp, dfd, final, &e);
        }
        (void)ss_fsync_dirfd(dfd, NULL);
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Completed the delivery of instruction %s interrupted by a restart", w->in.id);
        done = true;
    }
    close(dfd);
    return done;
}

/* ------------------------------------------------------------- checks */

static enum outcome check_fields(ss_despooler *d, work *w, const char *base)
{
    char path[PATH_MAX], when[32];
    int64_t t;
    if (strcmp(w->in.to, d->conf->site_code) != 0) {
        QUARANTINE(d, base, 4408, w->in.id, w->in.from, w->in.to);
        return OUT_DONE;
    }
    if (ledger_lookup(d, w->in.id, path, sizeof path, &t)) {
        if (!finish_interrupted(d, w, path)) {
            time_t tt = (time_t)t;
            struct tm tm;
            localtime_r(&tt, &tm);
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            ss_report(d->rep, 4402, w->in.id, w->in.from, when, NULL);
            d->stats.duplicates++;
        }
        remove_pair(d, base);
        return OUT_DONE;
    }
    if (w->in.expires < ss_now()) {
        char exp[32];
        u64str((uint64_t)w->in.expires, exp, sizeof exp);
        QUARANTINE(d, base, 4409, w->in.id, w->in.from, exp);
        return OUT_DONE;
    }
    if (w->in.type == SS_TYPE_DATA && !ss_conf_dest_allowed(d->conf, w->in.dest)) {
        QUARANTINE(d, base, 4410, w->in.id, w->in.from, w->in.dest);
        return OUT_DONE;
    }
    uint64_t limit = w->in.type == SS_TYPE_DATA ? d->conf->max_package_bytes : KEY_PAYLOAD_MAX;
    if (w->in.size > limit) {
        char size[32], max[32];
        u64str(w->in.size, size, sizeof size);
        u64str(limit, max, sizeof max);
        QUARANTINE(d, base, 4412, w->in.id, w->in.from, size, max);
        return OUT_DONE;
    }
    return OUT_STAGED;
}

/* ---------------------------------------------------- package streaming */

struct unpack_sink {
    int fd; /* output file, or -1 to collect into buf */
    char *buf;
    size_t buf_len;
    size_t buf_cap;
};

static int unpack_write(void *ctx, const void *data, size_t len, ss_error *e)
{
    struct unpack_sink *s = ctx;
    if (s->fd >= 0) return ss_write_all(s->fd, data, len, e);
    if (s->buf_len + len > s->buf_cap) return ss_err(e, SS_E_SIZE, "key payload too large");
    memcpy(s->buf + s->buf_len, data, len);
    s->buf_len += len;
    return 0;
}

/* One pass over the package: hash it and inflate it into the sink.
 * unpack_err receives a codec failure; the hash is always complete. */
static int stream_package(ss_despooler *d, int pck_fd, const work *w, struct unpack_sink *sink,
                          unsigned char hash[SS_HASH_BYTES], ss_error *unpack_err, ss_error *e)
{
    ss_hash h;
    ss_inflater *inf = &d->inflater;
    ss_hash_init(&h);
    if (ss_inflater_reset(inf, w->in.zip, w->in.size, e) != 0) return -1;
    bool inflating = true;
    ssize_t n;
    while ((n = ss_read_full(pck_fd, d->read_buf, READ_CHUNK, e)) > 0) {
        ss_hash_update(&h, d->read_buf, (size_t)n);
        if (inflating &&
            ss_inflater_feed(inf, d->read_buf, (size_t)n, unpack_write, sink, unpack_err))
            inflating = false; /* keep hashing: a forgery must read as a bad signature */
    }
    if (inflating && n == 0 && ss_inflater_finish(inf, unpack_err) == 0 &&
        inf->out_bytes != w->in.size)
        ss_err(unpack_err, SS_E_SIZE, "it expands to %" PRIu64 " bytes, not the declared %" PRIu64,
               inf->out_bytes, w->in.size);
    if (n < 0) return -1;
    ss_hash_final(&h, hash);
    return 0;
}

/* A descriptor of inboxes/<dest>/incoming for one staged item (a dup of the
 * batch's cached one, so each item can close its own). */
static int open_dest(ss_despooler *d, const char *dest, ss_error *e)
{
    for (int i = 0; i < d->ndests; i++)
        if (!strcmp(d->dests[i].dest, dest)) return dup(d->dests[i].fd);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/inboxes/%s/incoming", d->root, dest) >= (int)sizeof path)
        return ss_err(e, SS_E_TOOBIG, "path too long");
    if (ss_mkdirs(path, 0750, e) != 0) return -1;
    int fd = ss_open_dir(path, e);
    if (fd >= 0 && d->ndests < (int)(sizeof d->dests / sizeof d->dests[0])) {
        snprintf(d->dests[d->ndests].dest, sizeof d->dests[0].dest, "%s", dest);
        d->dests[d->ndests++].fd = fd;
        return dup(fd);
    }
    return fd;
}

static void forget_batch_caches(ss_despooler *d)
{
    for (int i = 0; i < d->ndests; i++)
        close(d->dests[i].fd);
    d->ndests = 0;
    d->nusable = 0;
}

/* Opens the package; OUT_STAGED with *fd set, or the outcome to return. */
static enum outcome open_package(ss_despooler *d, work *w, const char *base, int *fd)
{
    ss_error e = {0};
    struct stat st;
    *fd = ss_open_regular(d->receive_fd, w->pck_name, d->conf->max_package_bytes, &st, &e);
    if (*fd >= 0) return OUT_STAGED;
    if (e.code == SS_E_NOTREG) {
        QUARANTINE(d, base, 4411, w->pck_name, e.msg);
        return OUT_DONE;
    }
    if (e.code == SS_E_TOOBIG) {
        char size[32], max[32];
        u64str((uint64_t)st.st_size, size, sizeof size);
        u64str(d->conf->max_package_bytes, max, sizeof max);
        QUARANTINE(d, base, 4412, w->in.id, w->in.from, size, max);
        return OUT_DONE;
    }
    if (e.code != SS_E_NOENT) /* NOENT: the package has not arrived yet */
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot open %s: %s", w->pck_name,
                e.msg);
    d->stats.waiting++;
    return OUT_WAIT;
}

/* Streams the package into sink and checks signature and size; the order
 * of the verdicts makes a forgery read as a bad signature, not bad data. */
static enum outcome verify_and_unpack(ss_despooler *d, work *w, const char *base,
                                      const ss_keyrec *key, int pck_fd, struct unpack_sink *sink,
                                      ss_error *io_err)
{
    ss_error unpack_err = {0}, sig_err = {0};
    unsigned char hash[SS_HASH_BYTES];
    if (stream_package(d, pck_fd, w, sink, hash, &unpack_err, io_err) != 0) return OUT_WAIT;
    if (w->is_signed && ss_sig_verify_package(&w->sig, &key->pk, hash, &sig_err) != 0) {
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, sig_err.msg);
        return OUT_DONE;
    }
    if (unpack_err.code != SS_OK) {
        QUARANTINE(d, base, 4413, w->in.id, w->in.from, unpack_err.msg);
        return OUT_DONE;
    }
    return OUT_STAGED;
}

/* Data: the payload goes to .sitespool-<id>.tmp in the destination inbox. */
static enum outcome stage_data(ss_despooler *d, work *w, const char *base, const ss_keyrec *key)
{
    int pck_fd;
    enum outcome o = open_package(d, w, base, &pck_fd);
    if (o != OUT_STAGED) return o;
    ss_error e = {0};
    char tmp[96];
    tmp_name_for(w->in.id, tmp, sizeof tmp);
    w->dest_fd = open_dest(d, w->in.dest, &e);
    if (w->dest_fd >= 0 &&
        ss_atomic_begin_named(&w->out, w->dest_fd, w->in.name, tmp, 0640, &e) == 0) {
        struct unpack_sink sink = {.fd = w->out.fd};
        o = verify_and_unpack(d, w, base, key, pck_fd, &sink, &e);
    } else {
        o = OUT_WAIT;
    }
    close(pck_fd);
    if (o == OUT_WAIT) {
        ss_report(d->rep, 4416, w->in.id, w->in.from, w->in.dest, e.msg, NULL);
        d->stats.waiting++;
    }
    if (o != OUT_STAGED) {
        ss_atomic_abort(&w->out);
        if (w->dest_fd >= 0) close(w->dest_fd);
        w->dest_fd = -1;
    }
    return o;
}

static void ledger_insert(ss_despooler *d, const work *w, const char *outcome, const char *path)
{
    sqlite3_stmt *st = ss_db_prepare(
        d->db,
        "INSERT OR IGNORE INTO ledger(id, from_site, seq, type, outcome, path, size, time, "
        "expires) VALUES(?,?,?,?,?,?,?,?,?)",
        NULL);
    if (!st) return;
    sqlite3_bind_text(st, 1, w->in.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->in.from, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)w->in.seq);
    sqlite3_bind_text(st, 4, ss_itype_name(w->in.type), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)w->in.size);
    sqlite3_bind_int64(st, 8, ss_now());
    sqlite3_bind_int64(st, 9, w->in.expires);
    db_step_done(d, st, "recording the ledger");
}

/* Reads a key payload (at most KEY_PAYLOAD_MAX bytes) into buf and its
 * package hash; OUT_STAGED when read, else the outcome to return. */
static enum outcome read_key_payload(ss_despooler *d, work *w, const char *base, char *buf,
                                     size_t *len, unsigned char hash[SS_HASH_BYTES])
{
    int pck_fd;
    enum outcome o = open_package(d, w, base, &pck_fd);
    if (o != OUT_STAGED) return o;
    struct unpack_sink sink = {.fd = -1, .buf = buf, .buf_cap = KEY_PAYLOAD_MAX};
    ss_error e = {0}, unpack_err = {0};
    int rc = stream_package(d, pck_fd, w, &sink, hash, &unpack_err, &e);
    close(pck_fd);
    if (rc != 0) {
        d->stats.waiting++;
        return OUT_WAIT;
    }
    if (unpack_err.code != SS_OK) {
        QUARANTINE(d, base, 4413, w->in.id, w->in.from, unpack_err.msg);
        return OUT_DONE;
    }
    buf[sink.buf_len] = '\0';
    *len = sink.buf_len;
    return OUT_STAGED;
}

static void key_instruction_done(ss_despooler *d, const work *w, const char *base)
{
    ledger_insert(d, w, ss_itype_name(w->in.type), "");
    remove_pair(d, base);
}

/* The trust rules' verdict on a key offered by an instruction: refused
 * (quarantined), or taken (the site's waiting data is retried now). */
static enum outcome offer_key(ss_despooler *d, work *w, const char *base, ss_offer *offer,
                              const char *detail)
{
    char origin[96], offered_id[SS_KEYID_HEX + 1];
    ss_error e = {0};
    ss_verdict v;
    snprintf(origin, sizeof origin, "%s instruction %s",
             w->in.type == SS_TYPE_KEY ? "key exchange" : "rollover", w->in.id);
    offer->origin = origin;
    offer->site = w->in.from;
    ss_keyid_hex(offer->pk->keyid, offered_id);
    if (ss_trust_judge_offer(&d->keys, offer, &v, &e) != 0) return trust_failed(d, w, &e);
    if (v.action == SS_TRUST_REJECT)
        return refuse(d, w, base, &v, offered_id, detail ? detail : e.msg);
    if (v.tx & (SS_TX_TRUST | SS_TX_UNBLOCK)) force_add(d, w->in.from);
    key_instruction_done(d, w, base);
    return OUT_DONE;
}

/* type=key: the payload is the sending site's public key with a proof of
 * possession signed by it (keyfile.h).  Signed by a key already trusted for
 * the site, it is vouched for (OpenSSH's UpdateHostKeys rule); signed only
 * by the offered key itself (or unsigned) it is an offer, which the trust
 * rules refuse (4404) while require_secure_key_exchange = yes.  Signed by
 * some other key, it waits for that key like any instruction (4405). */
static enum outcome key_exchange(ss_despooler *d, work *w, const char *base)
{
    ss_keyrec signer;
    ss_verdict v = {.action = SS_TRUST_MISSING};
    ss_error e = {0};
    bool vouched = false;
    if (!w->is_signed && d->conf->require_secure_key_exchange) {
        QUARANTINE(d, base, 4404, w->ins_name, w->in.from);
        return OUT_DONE;
    }
    if (w->is_signed) {
        enum outcome done = OUT_DONE;
        int rc = find_signer(d, w, base, false, &signer, &v, &done, &e);
        if (rc < 0) return trust_failed(d, w, &e);
        if (rc == 0) return done;
        if (v.status == 4421) return refuse(d, w, base, &v, w->keyid, NULL);
        vouched = v.action == SS_TRUST_ACCEPT;
    }
    enum outcome o = check_fields(d, w, base);
    char buf[KEY_PAYLOAD_MAX + 1];
    size_t len = 0;
    unsigned char hash[SS_HASH_BYTES];
    if (o == OUT_STAGED) o = read_key_payload(d, w, base, buf, &len, hash);
    if (o != OUT_STAGED) return o;
    if (vouched && ss_sig_verify_package(&w->sig, &signer.pk, hash, &e) != 0) {
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
        return OUT_DONE;
    }
    ss_pubkey offered;
    int64_t not_after = 0;
    if (ss_key_offer_parse(w->in.from, buf, len, &offered, &not_after, &e) != 0) {
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, e.msg);
        return OUT_DONE;
    }
    if (w->is_signed && !vouched) {
        /* Not vouched for: only the offered key itself may have signed it. */
        if (memcmp(w->sig.keyid, offered.keyid, SS_KEYID_BYTES) != 0)
            return act_on_verdict(d, w, base, &v, w->keyid);
        if (ss_sig_verify_comment(&w->sig, &offered, &e) != 0 ||
            ss_sig_verify_package(&w->sig, &offered, hash, &e) != 0) {
            QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
            return OUT_DONE;
        }
    }
    ss_offer offer = {.pk = &offered,
                      .evidence = vouched ? SS_EV_VOUCHED : SS_EV_OFFER,
                      .source = "exchange",
                      .not_after = not_after,
                      .signer = vouched ? &signer : NULL};
    return offer_key(d, w, base, &offer, NULL);
}

/* type=rollover, signed by the site's trusted key (authenticate checked
 * that): the payload names the next key and proves its possession.  A
 * rollover whose next key fails its checks is judged as presenting that
 * key (it may block the site); one whose payload is no key is refused. */
static enum outcome apply_rollover(ss_despooler *d, work *w, const char *base, const ss_keyrec *key)
{
    char buf[KEY_PAYLOAD_MAX + 1];
    size_t len = 0;
    unsigned char hash[SS_HASH_BYTES], previous[SS_KEYID_BYTES];
    ss_error e = {0};
    enum outcome o = read_key_payload(d, w, base, buf, &len, hash);
    if (o != OUT_STAGED) return o;
    if (ss_sig_verify_package(&w->sig, &key->pk, hash, &e) != 0) {
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
        return OUT_DONE;
    }
    ss_pubkey next;
    bool next_parsed = false;
    int64_t not_after = 0;
    int rc = ss_rollover_parse(w->in.from, buf, len, previous, &next, &next_parsed, &not_after, &e);
    if (rc != 0 && !next_parsed) {
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, e.msg);
        return OUT_DONE;
    }
    if (rc == 0 && memcmp(previous, w->sig.keyid, SS_KEYID_BYTES) != 0)
        rc = ss_err(&e, SS_E_KEYID, "the rollover names a previous key other than its signer %s",
                    w->keyid);
    if (rc == 0 && !memcmp(next.pk, key->pk.pk, SS_PK_BYTES))
        rc = ss_err(&e, SS_E_KEYID, "the rollover names its own signer %s as the next key",
                    w->keyid);
    ss_offer offer = {.pk = &next,
                      .evidence = rc == 0 ? SS_EV_ROLLOVER : SS_EV_BAD_ROLLOVER,
                      .source = "rollover",
                      .not_after = not_after,
                      .signer = key};
    return offer_key(d, w, base, &offer, rc == 0 ? NULL : e.msg);
}

/* ------------------------------------------------------ one instruction */

static enum outcome process_one(ss_despooler *d, work *w)
{
    char base[64];
    ss_keyrec key;
    memset(&key, 0, sizeof key);
    base_of(w->ins_name, base, sizeof base);
    /* Every key is judged by the trust rules (keystore/trust.h) once the
     * instruction verified with it: see find_signer. */
    if (w->in.type == SS_TYPE_KEY) return key_exchange(d, w, base);
    if (!w->is_signed && w->in.type == SS_TYPE_ROLLOVER) {
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, "a rollover must be signed");
        return OUT_DONE;
    }
    enum outcome o = OUT_STAGED;
    if (!w->is_signed) {
        ss_verdict v;
        ss_error e = {0};
        if (ss_trust_judge_unsigned(&d->keys, w->in.from, &v, &e) != 0)
            return trust_failed(d, w, &e);
        o = act_on_verdict(d, w, base, &v, NULL);
    } else {
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Verifying signature for instruction %s from site %s with key %s", w->ins_name,
                w->in.from, w->keyid);
        o = authenticate(d, w, base, &key);
    }
    if (o == OUT_STAGED) o = check_fields(d, w, base);
    if (o != OUT_STAGED) return o;
    if (w->in.type == SS_TYPE_ROLLOVER) return apply_rollover(d, w, base, &key);
    return stage_data(d, w, base, &key);
}

/* Loads an instruction; files that cannot be loaded are quarantined. */
static bool load_or_reject(ss_despooler *d, const char *name, work *w)
{
    ss_error e = {0};
    char base[64];
    base_of(name, base, sizeof base);
    if (load_work(d, name, w, &e) == 0) return true;
    if (e.code == SS_E_NOENT) return false; /* gone since the listing */
    struct stat st;
    if (e.code == SS_E_TRUNCATED && fstatat(d->receive_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        ss_now() - st.st_mtime < WRITER_GRACE_S) {
        /* A peer may still be writing it in place: its close wakes us again. */
        d->stats.waiting++;
        return false;
    }
    if (e.code == SS_E_NOTREG)
        QUARANTINE(d, base, 4411, name, e.msg);
    else
        QUARANTINE(d, base, 4403, name, e.msg);
    return false;
}

/* --------------------------------------------------------------- batch */

/* Picks a final name that exists neither on disk nor earlier in the batch. */
static void choose_final_name(work *batch, size_t i)
{
    work *w = &batch[i];
    bool taken = faccessat(w->dest_fd, w->in.name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    for (size_t j = 0; j < i && !taken; j++)
        taken = batch[j].dest_fd >= 0 && !strcmp(batch[j].in.dest, w->in.dest) &&
                !strcmp(batch[j].out.final, w->in.name);
    if (taken) snprintf(w->out.final, sizeof w->out.final, "%.200s.%s", w->in.name, w->in.id);
    snprintf(w->dest_rel, sizeof w->dest_rel, "inboxes/%s/incoming/%s", w->in.dest, w->out.final);
}

static void note_sequence(ss_despooler *d, const work *w)
{
    sqlite3_stmt *st = ss_db_prepare(
        d->db,
        "INSERT INTO sites(site, last_seq_in, last_key_id, last_seen) VALUES(?1,?2,?3,?4) "
        "ON CONFLICT(site) DO UPDATE SET last_seq_in=max(last_seq_in, ?2), last_key_id=?3, "
        "last_seen=?4 RETURNING (SELECT last_seq_in FROM sites WHERE site=?1)",
        NULL);
    if (!st) return;
    sqlite3_bind_text(st, 1, w->in.from, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)w->in.seq);
    sqlite3_bind_text(st, 3, w->is_signed ? w->keyid : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, ss_now());
    uint64_t last = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        last = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (last && w->in.seq > last + 1) {
        char seq[32], from[32], to[32];
        u64str(w->in.seq, seq, sizeof seq);
        u64str(last + 1, from, sizeof from);
        u64str(w->in.seq - 1, to, sizeof to);
        ss_report(d->rep, 4415, w->in.id, w->in.from, seq, from, to, NULL);
    }
}

/* True if an earlier staged item of the batch has the same destination. */
static bool dest_seen_before(const work *batch, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (batch[j].dest_fd >= 0 && !strcmp(batch[j].in.dest, batch[i].in.dest)) return true;
    return false;
}

/* Closes the staged files durably: one fsync each for a few, else one
 * syncfs per destination.  Items that fail are dropped from the batch. */
static void flush_staged(ss_despooler *d, work *batch, size_t n, size_t staged)
{
    for (size_t i = 0; i < n; i++) {
        work *w = &batch[i];
        if (w->dest_fd < 0) continue;
        ss_error e = {0};
        bool ok = ss_atomic_close(&w->out, staged <= SMALL_BATCH, &e) == 0;
        if (ok && staged > SMALL_BATCH && !dest_seen_before(batch, i))
            ok = ss_sync_fs(w->dest_fd, &e) == 0;
        if (!ok) {
            ss_report(d->rep, 4416, w->in.id, w->in.from, w->in.dest, e.msg, NULL);
            ss_atomic_abort(&w->out);
            close(w->dest_fd);
            w->dest_fd = -1;
            d->stats.waiting++;
        }
    }
}

/* Makes the staged payloads durable, commits the ledger, publishes the
 * files and removes the pairs (see the exactly-once order in despooler.h). */
static int commit_batch(ss_despooler *d, work *batch, size_t n, ss_error *e)
{
    size_t staged = 0;
    for (size_t i = 0; i < n; i++)
        staged += batch[i].dest_fd >= 0;
    if (!staged) return 0;
    flush_staged(d, batch, n, staged);
    for (size_t i = 0; i < n; i++)
        if (batch[i].dest_fd >= 0) choose_final_name(batch, i);
    if (ss_db_begin(d->db, e) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        work *w = &batch[i];
        if (w->dest_fd < 0) continue;
        ledger_insert(d, w, "delivered", w->dest_rel);
        note_sequence(d, w);
        if (w->is_signed) (void)ss_keys_touch(d->db, w->in.from, w->keyid, ss_now(), NULL);
        ss_report(d->rep, 4400, w->in.id, w->in.from, w->dest_rel, NULL);
    }
    if (ss_db_commit(d->db, e) != 0) {
        ss_db_rollback(d->db);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        work *w = &batch[i];
        if (w->dest_fd < 0) continue;
        ss_error re = {0};
        if (ss_atomic_rename(&w->out, SS_ATOMIC_NOREPLACE, &re) != 0 && re.code == SS_E_EXISTS) {
            /* Someone created the name since we chose it: take the unique one. */
            size_t len = strlen(w->out.final);
            snprintf(w->out.final + len, sizeof w->out.final - len, ".%s", w->in.id);
            (void)ss_atomic_rename(&w->out, SS_ATOMIC_NOREPLACE, &re);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (batch[i].dest_fd >= 0 && !dest_seen_before(batch, i))
            (void)ss_fsync_dirfd(batch[i].dest_fd, NULL);
    for (size_t i = 0; i < n; i++) {
        work *w = &batch[i];
        if (w->dest_fd < 0) continue;
        char base[64];
        base_of(w->ins_name, base, sizeof base);
        remove_pair(d, base);
        d->stats.delivered++;
    }
    return 0;
}

static void release_batch(work *batch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ss_atomic_abort(&batch[i].out);
        if (batch[i].dest_fd >= 0) close(batch[i].dest_fd);
        batch[i].dest_fd = -1;
    }
}

/* ---------------------------------------------------------------- scan */

static bool ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && !strcmp(name + n - k, suffix);
}

static int select_ins(const struct dirent *de)
{
    return !ss_name_is_temporary(de->d_name) && ends_with(de->d_name, ".ins");
}

/* Instruction files are named <32 hex id>.ins; anything else is refused
 * before it is opened, so later code only handles well-formed names. */
static bool ins_name_valid(ss_despooler *d, const char *name)
{
    char base[64];
    if (strlen(name) == SS_ID_HEX + 4) {
        base_of(name, base, sizeof base);
        if (ss_id_valid(base)) return true;
    }
    if (strlen(name) < sizeof base) {
        /* Like any quarantined pair: with its package, and a .why file. */
        base_of(name, base, sizeof base);
        QUARANTINE(d, base, 4403, name, "the file name is not <32 hex digit id>.ins");
        return false;
    }
    move_to_rejected(d, name, "bad name");
    ss_report(d->rep, 4403, name, "the file name is not <32 hex digit id>.ins", NULL);
    d->stats.rejected++;
    return false;
}

/* Key exchange first, then data, each in arrival (name) order. */
static int type_rank(const work *w)
{
    return w->in.type == SS_TYPE_DATA ? 1 : 0;
}

static int process_batch(ss_despooler *d, struct dirent **names, int count, work *batch,
                         ss_error *e)
{
    size_t n = 0, rejected_before = d->stats.rejected;
    for (int i = 0; i < count; i++)
        if (ins_name_valid(d, names[i]->d_name) && load_or_reject(d, names[i]->d_name, &batch[n]))
            n++;
    int rc = 0;
    bool failed = false;
    d->trust_error = (ss_error){0};
    for (int pass = 0; pass < 2; pass++) {
        d->nusable = 0; /* key instructions of pass 0 may change what is usable */
        for (size_t i = 0; i < n; i++) {
            if (type_rank(&batch[i]) != pass) continue;
            /* After a keystore failure nothing more is judged this scan. */
            enum outcome o = failed ? OUT_WAIT : process_one(d, &batch[i]);
            failed |= o == OUT_FAIL;
            if (o != OUT_STAGED) {
                ss_atomic_abort(&batch[i].out);
                if (batch[i].dest_fd >= 0) close(batch[i].dest_fd);
                batch[i].dest_fd = -1;
            }
        }
    }
    rc = commit_batch(d, batch, n, e);
    if (rc == 0 && failed) rc = ss_err(e, d->trust_error.code, "%s", d->trust_error.msg);
    release_batch(batch, n);
    forget_batch_caches(d);
    (void)ss_fsync_dirfd(d->receive_fd, NULL);
    if (d->stats.rejected != rejected_before) (void)ss_fsync_dirfd(d->rejected_fd, NULL);
    return rc;
}

/* Hold notes of instructions that left receive some other way go. */
static void drop_stale_holds(ss_despooler *d)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT id FROM holds", NULL);
    char stale[SS_FORCE_MAX][SS_ID_HEX + 1];
    int n = 0;
    while (st && n < SS_FORCE_MAX && sqlite3_step(st) == SQLITE_ROW) {
        char name[64];
        snprintf(name, sizeof name, "%s.ins", sqlite3_column_text(st, 0));
        if (faccessat(d->receive_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
            snprintf(stale[n++], sizeof stale[0], "%s", sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    for (int i = 0; i < n; i++)
        forget_notes(d, stale[i]);
}

/* Sites with instructions waiting for a key: look again in the directory
 * and hman.box, so a key published there retries them at once.  Retry rows
 * whose instruction has left receive (an administrator moved it) go. */
static void recheck_waiting_keys(ss_despooler *d)
{
    struct waiting {
        char site[SS_SITE_CODE_MAX + 1];
        char key_id[SS_KEYID_HEX + 1];
        int count;
    } waiting[SS_FORCE_MAX];
    int n = 0;
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT id, from_site, key_id FROM retries", NULL);
    if (!st) return;
    char stale[SS_FORCE_MAX][SS_ID_HEX + 1];
    int nstale = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *site = (const char *)sqlite3_column_text(st, 1);
        const char *key_id = (const char *)sqlite3_column_text(st, 2);
        char name[64];
        snprintf(name, sizeof name, "%s.ins", id);
        if (faccessat(d->receive_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
            if (nstale < SS_FORCE_MAX) snprintf(stale[nstale++], sizeof stale[0], "%s", id);
            continue;
        }
        int i = 0;
        while (i < n && (strcmp(waiting[i].site, site) || strcmp(waiting[i].key_id, key_id)))
            i++;
        if (i == n && n < SS_FORCE_MAX) {
            snprintf(waiting[n].site, sizeof waiting[n].site, "%s", site);
            snprintf(waiting[n].key_id, sizeof waiting[n].key_id, "%s", key_id);
            waiting[n++].count = 0;
        }
        if (i < n) waiting[i].count++;
    }
    sqlite3_finalize(st);
    for (int i = 0; i < nstale; i++)
        retry_forget(d, stale[i]);
    drop_stale_holds(d);
    for (int i = 0; i < n; i++) {
        unsigned char keyid[SS_KEYID_BYTES];
        ss_keyrec k;
        ss_key_found how;
        ss_error e = {0};
        /* Only a hint to retry now: the instruction's own lookup verifies
         * and judges what was found. */
        if (ss_keyid_parse(waiting[i].key_id, keyid) != 0 ||
            ss_key_find(&d->keys, waiting[i].site, keyid, &k, &how, &e) != 1)
            continue;
        char count[32];
        snprintf(count, sizeof count, "%d", waiting[i].count);
        ss_report(d->rep, 4417, waiting[i].site, count, NULL);
        force_add(d, waiting[i].site);
    }
}

/* Warns (4414) about files that have waited longer than backlog_warning_age,
 * then again at most once a day (a short age must not turn every rescan
 * into a warning); removes package leftovers of delivered instructions. */
static void check_backlog(ss_despooler *d)
{
    DIR *dir = fdopendir(dup(d->receive_fd));
    if (!dir) return;
    rewinddir(dir);
    int64_t now = ss_now(), now_ms = ss_now_ms(), age_limit = d->conf->backlog_warning_age;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        struct stat st;
        if (!strcmp(name, ".") || !strcmp(name, "..") ||
            fstatat(d->receive_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (ss_name_is_temporary(name)) {
            /* A peer's writer killed mid-copy leaves its temporary file. */
            if (S_ISREG(st.st_mode) && now - st.st_mtime > STALE_TMP_AGE &&
                unlinkat(d->receive_fd, name, 0) == 0)
                ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                        "Removed %s: a temporary file a sender left in receive %lld hours ago",
                        name, (long long)((now - st.st_mtime) / 3600));
            continue;
        }
        if (len < 5) continue;
        char base[64], other[96], path[PATH_MAX];
        int64_t t;
        base_of(name, base, sizeof base);
        bool is_pck = !strcmp(name + len - 4, ".pck");
        snprintf(other, sizeof other, "%s.ins", base);
        bool orphan = is_pck && faccessat(d->receive_fd, other, F_OK, AT_SYMLINK_NOFOLLOW) != 0;
        if (orphan && ledger_lookup(d, base, path, sizeof path, &t)) {
            ss_reaper_take(d->reaper, d->receive_fd, name); /* left over after a delivery */
            continue;
        }
        /* In milliseconds: whole seconds would call a file touched just
         * before a second boundary a second old. */
        int64_t mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        if (now_ms - mtime_ms < age_limit * 1000) continue;
        sqlite3_stmt *q = ss_db_prepare(
            d->db,
            "INSERT INTO backlog(name, warned) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE "
            "SET warned=?2 WHERE warned <= ?2 - ?3 RETURNING name",
            NULL);
        if (!q) continue;
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, now);
        sqlite3_bind_int64(q, 3, age_limit > BACKLOG_REWARN ? age_limit : BACKLOG_REWARN);
        bool warn = sqlite3_step(q) == SQLITE_ROW;
        sqlite3_finalize(q);
        if (warn) {
            char hours[32];
            snprintf(hours, sizeof hours, "%lld", (long long)((now - st.st_mtime) / 3600));
            ss_report(d->rep, 4414, name, hours,
                      orphan   ? "a package without its instruction"
                      : is_pck ? "its instruction is waiting"
                               : "waiting for its package or the sender's key",
                      NULL);
        }
    }
    closedir(dir);
}

/* Backlog warnings, expiry warnings, ledger pruning: on every scan of
 * --once, at most once a second in the daemon, so that the scan an arriving
 * package triggers stays short for the instruction right behind it. */
static void housekeeping(ss_despooler *d)
{
    int64_t now_ms = ss_now_ms();
    if (d->housekeeping_every_ms && now_ms - d->housekeeping_last_ms < d->housekeeping_every_ms)
        return;
    d->housekeeping_last_ms = now_ms;
    check_backlog(d);
    ss_warn_expiring_keys(&d->keys);
    sqlite3_stmt *st = ss_db_prepare(d->db, "DELETE FROM ledger WHERE expires < ?", NULL);
    if (st) {
        /* A day past expiry: later copies are refused as expired anyway. */
        sqlite3_bind_int64(st, 1, ss_now() - 86400);
        db_step_done(d, st, "pruning the ledger");
    }
}

int ss_despooler_scan(ss_despooler *d, bool *progress, ss_error *e)
{
    size_t before = d->stats.delivered + d->stats.rejected + d->stats.duplicates;
    d->stats.waiting = 0;
    sqlite3_stmt *q = ss_db_prepare(d->db,
                                    "SELECT EXISTS(SELECT 1 FROM retries), EXISTS(SELECT 1 FROM "
                                    "backlog) OR EXISTS(SELECT 1 FROM holds)",
                                    NULL);
    d->retries_pending = d->notes_pending = true; /* if in doubt, clean up */
    if (q && sqlite3_step(q) == SQLITE_ROW) {
        d->retries_pending = sqlite3_column_int(q, 0) != 0;
        d->notes_pending = sqlite3_column_int(q, 1) != 0;
    }
    sqlite3_finalize(q);
    if (ss_hman_scan(&d->keys, NULL, force_add, d, e) < 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "hman.box: %s", e->msg);
    recheck_waiting_keys(d);
    struct dirent **names = NULL;
    int count = scandirat(d->receive_fd, ".", &names, select_ins, alphasort);
    if (count < 0) return ss_err_sys(e, "cannot list %s", d->receive_path);
    /* A work item is ~14 KiB: size the batch to what is there, so that a
     * single arrival does not clear megabytes. */
    size_t batch_max = d->conf->batch_max;
    if ((size_t)count < batch_max) batch_max = count ? (size_t)count : 1;
    work *batch = calloc(batch_max, sizeof *batch);
    int rc = batch ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    for (int start = 0; rc == 0 && start < count; start += (int)batch_max) {
        int n = count - start < (int)batch_max ? count - start : (int)batch_max;
        rc = process_batch(d, names + start, n, batch, e);
    }
    free(batch);
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    d->nforce = 0;
    housekeeping(d);
    if (progress) *progress = d->stats.delivered + d->stats.rejected + d->stats.duplicates > before;
    return rc;
}

int ss_despooler_drain(ss_despooler *d, ss_error *e)
{
    bool progress = true;
    while (progress)
        if (ss_despooler_scan(d, &progress, e) != 0) return -1;
    return 0;
}

/* Seconds until the earliest key lookup retry is due (-1: none). */
static int64_t next_retry_in(ss_despooler *d)
{
    sqlite3_stmt *st = ss_db_prepare(d->db, "SELECT min(next_at) FROM retries", NULL);
    int64_t in = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        in = sqlite3_column_int64(st, 0) - ss_now();
        if (in < 0) in = 0;
    }
    sqlite3_finalize(st);
    return in;
}

/* A daemon never dies of a failed scan (site.db locked too long, no
 * descriptors left, a folder gone): it reports the first failure of a
 * streak (4423), logs the others, and backs off 1, 2, 4 ... seconds up to
 * rescan_interval.  Returns the back-off in ms, or -1 after a good scan. */
static int64_t drain_in_daemon(ss_despooler *d, int *failures)
{
    ss_error e = {0};
    ss_log *log = ss_reporter_log(d->rep, SS_COMP_DESPOOLER);
    if (ss_despooler_drain(d, &e) == 0) {
        if (*failures) ss_logf(log, "Scanning works again after %d failed scan(s)", *failures);
        *failures = 0;
        return -1;
    }
    int64_t backoff = (int64_t)1 << (*failures < 10 ? *failures : 10);
    if (backoff > (int64_t)d->conf->rescan_interval) backoff = d->conf->rescan_interval;
    if (backoff < 1) backoff = 1;
    char secs[32];
    u64str((uint64_t)backoff, secs, sizeof secs);
    if ((*failures)++ == 0)
        ss_report(d->rep, 4423, d->receive_path, e.msg, secs, NULL);
    else
        ss_logf(log, "Scan failed again (%d in a row): %s; next attempt in %s s", *failures, e.msg,
                secs);
    return backoff * 1000;
}

int ss_despooler_run(ss_despooler *d, volatile sig_atomic_t *stop, ss_error *e)
{
    char hman[PATH_MAX];
    const char *dirs[3] = {d->receive_path, hman, d->conf->directory};
    ss_path(hman, sizeof hman, d->root, SS_DIR_HMAN);
    ss_watch w;
    int ndirs = d->conf->directory[0] ? 3 : 2;
    if (ss_watch_open(&w, dirs, ndirs, e) != 0 &&
        (ndirs == 2 || ss_watch_open(&w, dirs, 2, e) != 0))
        return -1;
    ss_report(d->rep, 4401, d->conf->site_code, d->receive_path, NULL);
    d->housekeeping_every_ms = 1000;
    int failures = 0;
    int64_t backoff_ms = drain_in_daemon(d, &failures);
    int64_t last_scan_ms = ss_now_ms();
    while (!*stop) {
        int64_t wait_ms = (int64_t)d->conf->rescan_interval * 1000 - (ss_now_ms() - last_scan_ms);
        int64_t retry = next_retry_in(d);
        if (retry >= 0 && retry * 1000 < wait_ms) wait_ms = retry * 1000;
        if (backoff_ms >= 0) wait_ms = backoff_ms - (ss_now_ms() - last_scan_ms);
        if (wait_ms < 0) wait_ms = 0;
        int mask = ss_watch_wait(&w, (int)wait_ms);
        if (*stop) break;
        if (mask < 0)
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "inotify read failed; relying "
                                                                "on rescans");
        if (mask > 0 && (mask & SS_WATCH_OVERFLOW))
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                    "inotify queue overflowed; rescanning the inboxes");
        /* While backing off, events wait for the back-off to end. */
        if (backoff_ms >= 0 && ss_now_ms() - last_scan_ms < backoff_ms) continue;
        /* Any event, the rescan timer or a due retry: scan. */
        backoff_ms = drain_in_daemon(d, &failures);
        last_scan_ms = ss_now_ms();
    }
    ss_watch_close(&w);
    ss_report(d->rep, 4418, d->conf->site_code, NULL);
    return 0;
}

int ss_despooler_open(ss_despooler *d, const char *root, const ss_conf *conf, ss_db *db,
                      ss_reporter *rep, ss_error *e)
{
    memset(d, 0, sizeof *d);
    d->root = root;
    d->conf = conf;
    d->db = db;
    d->rep = rep;
    d->keys = (ss_keyctx){root, conf, db, rep};
    d->receive_fd = d->rejected_fd = d->lock_fd = -1;
    char path[PATH_MAX];
    ss_path(path, sizeof path, root, ".despool.lock");
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (d->lock_fd < 0) return ss_err_sys(e, "cannot open %s", path);
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(d->lock_fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(d->lock_fd);
        d->lock_fd = -1;
        return ss_err(e, SS_E_LOCKED,
                      "another despooler (pid %s) is already running for site "
                      "%s; stop it first",
                      pid[0] ? pid : "?", conf->site_code);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(d->lock_fd, 0) != 0 || pwrite(d->lock_fd, pid, (size_t)n, 0) != n)
        ss_logf(ss_reporter_log(rep, SS_COMP_DESPOOLER), "Cannot record the pid in %s", path);
    ss_path(d->receive_path, sizeof d->receive_path, root, SS_DIR_RECEIVE);
    ss_path(path, sizeof path, root, SS_DIR_REJECTED);
    if (ss_mkdirs(path, 0750, e) != 0 || (d->rejected_fd = ss_open_dir(path, e)) < 0 ||
        (d->receive_fd = ss_open_dir(d->receive_path, e)) < 0) {
        ss_despooler_close(d);
        return -1;
    }
    /* One read buffer and one inflater serve every package: no allocator
     * traffic per file. */
    if (!(d->read_buf = malloc(READ_CHUNK))) {
        ss_despooler_close(d);
        return ss_err(e, SS_E_NOMEM, "out of memory");
    }
    ss_error re = {0};
    ss_path(path, sizeof path, root, SS_DIR_CONSUMED);
    d->reaper = ss_reaper_start(d->receive_fd, path, &re);
    if (!d->reaper)
        ss_logf(ss_reporter_log(rep, SS_COMP_DESPOOLER),
                "Consumed pairs are removed in place (slower): %s", re.msg);
    return 0;
}

void ss_despooler_close(ss_despooler *d)
{
    ss_reaper_stop(d->reaper);
    d->reaper = NULL;
    ss_inflater_free(&d->inflater);
    free(d->read_buf);
    d->read_buf = NULL;
    if (d->receive_fd >= 0) close(d->receive_fd);
    if (d->rejected_fd >= 0) close(d->rejected_fd);
    if (d->lock_fd >= 0) close(d->lock_fd);
    d->receive_fd = d->rejected_fd = d->lock_fd = -1;
}
