/*
 * quarantine.c - moving a pair out of receive: into despoolr.box/rejected
 * with a .why file holding its status message (never replacing a file
 * there), or, once delivered or found a duplicate, into consumed/ where the
 * reaper unlinks it.  For administrators (admin.h): listing rejected/,
 * releasing a pair back into receive (4428), deleting one (4429).
 *
 * Security stance: rename only (never a copy of hostile content); names
 * are the validated <id>.ins/.pck.
 * Diagnostics: the status message of the verdict; failures to move are
 * logged.
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Moves name from receive to rejected without replacing anything. */
/* A quarantined file gets this site's mode (0640), not the peer's - but
 * only a regular file with one link: through a second link a mode change
 * would reach a file outside the inbox. */
static void own_rejected_copy(ss_despooler *d, const char *name)
{
    int fd = openat(d->rejected_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
        (st.st_mode & 07777) != 0640)
        (void)fchmod(fd, 0640);
    close(fd);
}

/* Moves name from receive to rejected without replacing anything there:
 * 1 moved (as *target), 0 nothing to move, -1 failed (*e). */
int dsp_move_to_rejected(ss_despooler *d, const char *name, char *target, size_t len, ss_error *e)
{
    snprintf(target, len, "%s", name);
    for (int attempt = 0; attempt < 100; attempt++) {
        if (ss_rename_noreplace(d->receive_fd, name, d->rejected_fd, target, e) == 0) {
            own_rejected_copy(d, target);
            return 1;
        }
        if (e->code == SS_E_NOENT) return 0;
        if (e->code != SS_E_EXISTS) return -1;
        snprintf(target, len, "%s.%lld-%d", name, (long long)ss_now(), attempt + 1);
    }
    return ss_err(e, SS_E_EXISTS, "no free name for %s in rejected/", name);
}

/* Quarantines the pair named by base (either file may be missing), with a
 * .why file holding the rendered status message. */
/* The pair could not be moved (a full disk, a read-only folder): both
 * files stay in receive - never one here and one there - and 4426 says
 * so, once per instruction; the next scan tries again. */
static void quarantine_failed(ss_despooler *d, const char *base, int msg_id, const char *text,
                              const char *from, const ss_error *e)
{
    char id[16], reason[300];
    snprintf(id, sizeof id, "%d", msg_id);
    snprintf(reason, sizeof reason, HOLD_QUARANTINE_PREFIX "%s", e->msg);
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot quarantine %s (%s): %s", base, text,
            e->msg);
    if (dsp_note_once_id(d, base, from, reason))
        ss_report(d->rep, 4426, base, from, id, text, e->msg, NULL);
    d->stats.waiting++;
}

void dsp_quarantine(ss_despooler *d, const char *base, int msg_id, const char *const istr[],
                    int nistr)
{
    char pck[96], ins[96], pck_to[128], ins_to[128], name[160], why[2300], text[2048];
    const ss_msgdef *def = ss_msgdef_find(msg_id);
    ss_msg_render(def ? def->format : "", nistr, istr, text, sizeof text);
    /* Insertion string 2 is the claimed site in every quarantine message
     * that has one; it only labels the note. */
    const char *from = nistr > 1 && istr[1] ? istr[1] : "?";
    snprintf(pck, sizeof pck, "%s.pck", base);
    snprintf(ins, sizeof ins, "%s.ins", base);
    ss_error e = {0};
    /* Both files or neither: the package first, then the instruction; a
     * failure of the second puts the first back. */
    int moved_pck = dsp_move_to_rejected(d, pck, pck_to, sizeof pck_to, &e);
    if (moved_pck < 0) {
        quarantine_failed(d, base, msg_id, text, from, &e);
        return;
    }
    if (dsp_move_to_rejected(d, ins, ins_to, sizeof ins_to, &e) < 0) {
        ss_error back = {0};
        if (moved_pck &&
            ss_rename_noreplace(d->rejected_fd, pck_to, d->receive_fd, pck, &back) != 0)
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                    "Cannot move %s back into receive: %s; it is in rejected/ as %s", pck, back.msg,
                    pck_to);
        quarantine_failed(d, base, msg_id, text, from, &e);
        return;
    }
    /* Readable where it is read (UTC, offset shown), exact for tools. */
    int64_t now = ss_now();
    char when[64];
    struct tm tm;
    time_t tt = (time_t)now;
    if (!gmtime_r(&tt, &tm) || !strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tm))
        snprintf(when, sizeof when, "?");
    int n = snprintf(why, sizeof why, "status %d (%c): %s\nrejected at %s (unix %lld) by site %s\n",
                     msg_id, def ? def->severity : 'E', text, when, (long long)now,
                     d->conf->site_code);
    /* The .why belongs to the instruction as named in rejected/ (a second
     * rejection of the same id gets suffixes), and never replaces another. */
    if (!strcmp(ins_to, ins))
        snprintf(name, sizeof name, "%s.why", base);
    else
        snprintf(name, sizeof name, "%.100s.why", ins_to);
    if (ss_write_file_atomic(d->rejected_fd, name, why, (size_t)n, 0640, SS_ATOMIC_NOREPLACE, &e) !=
        0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Quarantined %s without its .why file: %s", base, e.msg);
    dsp_forget_notes(d, base);
    ss_reportv(d->rep, msg_id, nistr, istr);
    /* Its type is not known here: a quarantined receipt or heartbeat is
     * told too, and its sender ignores what it never awaited. */
    dsp_fate(d, base, from, SS_TYPE_DATA, SS_FATE_QUARANTINED, msg_id);
    d->stats.rejected++;
}

/* Removes a pair from receive (after delivery or as a duplicate). */
void dsp_remove_pair(ss_despooler *d, const char *base)
{
    char name[96];
    /* The instruction first: a package left alone is an orphan that
     * dsp_check_backlog recognises by the ledger and removes. */
    snprintf(name, sizeof name, "%s.ins", base);
    ss_reaper_take(d->reaper, d->receive_fd, name);
    snprintf(name, sizeof name, "%s.pck", base);
    ss_reaper_take(d->reaper, d->receive_fd, name);
    dsp_forget_notes(d, base);
}

/* ---------------------------------------------- for administrators (admin.h) */

enum qkind { Q_NONE, Q_INS, Q_PCK, Q_WHY };

/* The suffix of a second rejection's names: <time>-<n>. */
static bool copy_suffix_valid(const char *s)
{
    size_t d = strspn(s, "0123456789");
    if (!d || s[d] != '-') return false;
    size_t k = strspn(s + d + 1, "0123456789");
    return k && !s[d + 1 + k];
}

/* Splits a name in rejected/ as dsp_quarantine makes them - <base>.ins,
 * .pck, .why; for a second rejection <base>.ins.<copy>, .pck.<copy>,
 * .ins.<copy>.why - into base and copy. */
static enum qkind parse_rejected(const char *name, char base[256], char copy[48])
{
    char tmp[320];
    size_t n = strlen(name);
    if (ss_name_is_temporary(name) || n < 5 || n >= sizeof tmp) return Q_NONE;
    memcpy(tmp, name, n + 1);
    bool why = !strcmp(tmp + n - 4, ".why");
    if (why) tmp[n -= 4] = '\0';
    enum qkind kind = Q_WHY;
    copy[0] = '\0';
    char *dot = strrchr(tmp, '.');
    if (dot && dot - tmp > 4 && copy_suffix_valid(dot + 1) &&
        (!strncmp(dot - 4, ".ins", 4) || (!why && !strncmp(dot - 4, ".pck", 4)))) {
        snprintf(copy, 48, "%s", dot + 1);
        kind = dot[-3] == 'i' ? Q_INS : Q_PCK;
        dot[-4] = '\0';
    } else if (!why && n > 4 && (!strcmp(tmp + n - 4, ".ins") || !strcmp(tmp + n - 4, ".pck"))) {
        kind = tmp[n - 3] == 'i' ? Q_INS : Q_PCK;
        tmp[n - 4] = '\0';
    } else if (!why) {
        return Q_NONE;
    }
    if (why) kind = Q_WHY;
    if (!tmp[0] || strlen(tmp) >= 256) return Q_NONE;
    snprintf(base, 256, "%s", tmp);
    return kind;
}

/* The names of the pair (base, copy) in rejected/. */
static void quarantined_names(const char *base, const char *copy, char ins[320], char pck[320],
                              char why[320])
{
    if (copy[0]) {
        snprintf(ins, 320, "%s.ins.%s", base, copy);
        snprintf(pck, 320, "%s.pck.%s", base, copy);
        snprintf(why, 320, "%s.ins.%s.why", base, copy);
    } else {
        snprintf(ins, 320, "%s.ins", base);
        snprintf(pck, 320, "%s.pck", base);
        snprintf(why, 320, "%s.why", base);
    }
}

/* "status <id> (<sev>): <text>\nrejected at <UTC time> (unix <t>) by site
 * <S>\n" (before: "rejected at <t> by site <S>"). */
static void read_why(int fd, ss_quarantined *q)
{
    char *text = NULL;
    size_t len;
    ss_error e = {0};
    if (ss_read_small_file(fd, q->why, 16384, &text, &len, &e) != 0) return;
    int id = 0, n = 0;
    char sev = '?';
    if (sscanf(text, "status %d (%c): %n", &id, &sev, &n) == 2 && n > 0) {
        const char *t = text + n;
        size_t tl = strcspn(t, "\n");
        q->status_id = id;
        q->severity = sev;
        snprintf(q->text, sizeof q->text, "%.*s",
                 (int)(tl < sizeof q->text ? tl : sizeof q->text - 1), t);
        const char *at = strstr(t + tl, "\nrejected at ");
        if (at) {
            const char *unix_t = strstr(at, "(unix ");
            const char *line_end = strchr(at + 1, '\n');
            if (unix_t && (!line_end || unix_t < line_end))
                q->since = strtoll(unix_t + strlen("(unix "), NULL, 10);
            else
                q->since = strtoll(at + strlen("\nrejected at "), NULL, 10);
        }
    }
    free(text);
}

/* Fills q for the pair (base, copy) of rejected/: false if none of its
 * files is there. */
static bool describe_quarantined(int fd, const char *base, const char *copy, ss_quarantined *q)
{
    memset(q, 0, sizeof *q);
    snprintf(q->base, sizeof q->base, "%s", base);
    snprintf(q->copy, sizeof q->copy, "%s", copy);
    if (ss_id_valid(base)) snprintf(q->id, sizeof q->id, "%s", base);
    quarantined_names(base, copy, q->ins, q->pck, q->why);
    q->severity = '?';
    struct stat st;
    int64_t mtime = 0;
    if (fstatat(fd, q->pck, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        q->pck_size = (uint64_t)st.st_size;
        mtime = st.st_mtime;
    } else {
        q->pck[0] = '\0';
    }
    if (fstatat(fd, q->ins, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        mtime = st.st_mtime;
        dsp_read_claim(fd, q->ins, &q->claim);
    } else {
        q->ins[0] = '\0';
    }
    if (fstatat(fd, q->why, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        mtime = st.st_mtime;
        read_why(fd, q);
    } else {
        q->why[0] = '\0';
    }
    if (!q->since) q->since = mtime;
    return q->ins[0] || q->pck[0] || q->why[0];
}

/* Whether name is the file that stands for its pair in a listing: the
 * .why, else the instruction, else the package. */
static bool stands_for_pair(int fd, enum qkind kind, const char *base, const char *copy)
{
    char ins[320], pck[320], why[320];
    quarantined_names(base, copy, ins, pck, why);
    if (kind == Q_WHY) return true;
    if (dsp_exists_at(fd, why)) return false;
    return kind == Q_INS || !dsp_exists_at(fd, ins);
}

/* Calls fn for every pair in rejected/ (id NULL) or every copy of id. */
static int foreach_quarantined(int fd, const char *id, ss_quarantined_fn fn, void *ctx, ss_error *e)
{
    int dup_fd = dup(fd);
    DIR *dir = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!dir) {
        if (dup_fd >= 0) close(dup_fd);
        return ss_err_sys(e, "cannot list despoolr.box/rejected");
    }
    rewinddir(dir);
    ss_quarantined *q = malloc(sizeof *q);
    int rc = q ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    struct dirent *de;
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        char base[256], copy[48];
        enum qkind kind = parse_rejected(de->d_name, base, copy);
        if (kind == Q_NONE || (id && strcmp(base, id) != 0) ||
            !stands_for_pair(fd, kind, base, copy) || !describe_quarantined(fd, base, copy, q))
            continue;
        if (fn(ctx, q) != 0) break;
    }
    free(q);
    closedir(dir);
    return rc;
}

int ss_quarantine_foreach(const char *root, ss_quarantined_fn fn, void *ctx, ss_error *e)
{
    int fd = dsp_open_site_dir(root, SS_DIR_REJECTED, e);
    if (fd < 0) return -1;
    int rc = foreach_quarantined(fd, NULL, fn, ctx, e);
    close(fd);
    return rc;
}

static int sync_both(int a, int b, ss_error *e)
{
    return ss_fsync_dirfd(a, e) == 0 && ss_fsync_dirfd(b, e) == 0 ? 0 : -1;
}

/* A file release would hand the despooler: regular, one link. */
static int releasable_file(int fd, const char *name, const char *id, ss_error *e)
{
    struct stat st;
    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return ss_err_sys(e, "cannot read despoolr.box/rejected/%s", name);
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
        return ss_err(e, SS_E_NOTREG,
                      "despoolr.box/rejected/%s is not a regular file with one link (4411): the "
                      "despooler would only quarantine it again. 'sitespool delete %s' removes it",
                      name, id);
    return 0;
}

static int find_copy(void *ctx, const ss_quarantined *q)
{
    ss_quarantined *out = ctx;
    if (q->copy[0] && !out->copy[0]) *out = *q;
    return 0;
}

/* Nothing to release under the pair's own names: why not. */
static int not_quarantined(int rej, int rec, const char *id, ss_error *e)
{
    ss_quarantined *copy = calloc(1, sizeof *copy);
    if (!copy) return ss_err(e, SS_E_NOMEM, "out of memory");
    ss_error le = {0};
    (void)foreach_quarantined(rej, id, find_copy, copy, &le);
    char ins[SS_ID_HEX + 8];
    snprintf(ins, sizeof ins, "%s.ins", id);
    if (copy->copy[0])
        ss_err(e, SS_E_NOENT,
               "%s is quarantined only under the names of a second rejection (%s): release "
               "takes a pair under its own names; in despoolr.box/rejected rename %s.pck.%s to "
               "%s.pck and %s to %s.ins first, or delete it with 'sitespool delete %s'",
               id, copy->ins, id, copy->copy, id, copy->ins, id, id);
    else if (dsp_exists_at(rec, ins))
        ss_err(e, SS_E_NOENT,
               "%s is not quarantined: it is in the receive inbox ('sitespool queue' shows its "
               "state)",
               id);
    else
        ss_err(e, SS_E_NOENT,
               "%s is not quarantined: despoolr.box/rejected holds no %s.ins or %s.pck "
               "('sitespool queue' lists the quarantined pairs)",
               id, id, id);
    free(copy);
    return -1;
}

/* Whether q can go back into receive; *resume when an earlier release
 * already moved its package. */
static int check_release(int rej, int rec, ss_db *db, const ss_quarantined *q, bool *resume,
                         ss_error *e)
{
    const char *id = q->id;
    char ins[SS_ID_HEX + 8], pck[SS_ID_HEX + 8], path[PATH_MAX], when[32];
    snprintf(ins, sizeof ins, "%s.ins", id);
    snprintf(pck, sizeof pck, "%s.pck", id);
    bool rec_ins = dsp_exists_at(rec, ins), rec_pck = dsp_exists_at(rec, pck);
    *resume = false;
    if (!q->ins[0] && !q->pck[0]) return not_quarantined(rej, rec, id, e);
    if (!q->pck[0] && (!rec_pck || rec_ins))
        return ss_err(e, SS_E_NOTREG,
                      "the quarantined pair %s is incomplete: despoolr.box/rejected holds its "
                      "instruction but not its package, so the despooler could only wait for "
                      "the package. 'sitespool delete %s' removes it",
                      id, id);
    if (!q->ins[0])
        return ss_err(e, SS_E_NOTREG,
                      "the quarantined pair %s is incomplete: despoolr.box/rejected holds its "
                      "package but not its instruction. 'sitespool delete %s' removes it",
                      id, id);
    *resume = !q->pck[0]; /* an earlier release moved the package, then stopped */
    if (releasable_file(rej, ins, id, e) != 0 || (!*resume && releasable_file(rej, pck, id, e)))
        return -1;
    if (rec_ins || (rec_pck && !*resume))
        return ss_err(e, SS_E_EXISTS,
                      "the receive inbox already holds %s (the same pair sent again?); nothing "
                      "was moved. 'sitespool queue' shows it",
                      rec_ins ? ins : pck);
    int64_t t = 0;
    int done = ss_ledger_get(db, id, path, sizeof path, &t, e);
    if (done < 0) return -1;
    if (done) {
        time_t tt = (time_t)t;
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&tt, &tm));
        return ss_err(e, SS_E_EXISTS,
                      "%s was already delivered (%s, %s): released, it would only be removed "
                      "again as a duplicate (4402). 'sitespool delete %s' removes the "
                      "quarantined copy",
                      id, path[0] ? path : "a key instruction", when, id);
    }
    return 0;
}

/* Package, then (its .why out of the way) instruction, each move durable
 * before the next; on failure the package goes back. */
static int move_back(int rej, int rec, const ss_quarantined *q, bool resume, ss_error *e)
{
    char ins[SS_ID_HEX + 8], pck[SS_ID_HEX + 8], hidden[SS_ID_HEX + 32];
    snprintf(ins, sizeof ins, "%s.ins", q->id);
    snprintf(pck, sizeof pck, "%s.pck", q->id);
    snprintf(hidden, sizeof hidden, ".%s.why.released", q->id);
    if (!resume && (ss_rename_noreplace(rej, pck, rec, pck, e) != 0 || sync_both(rec, rej, e) != 0))
        return -1;
    /* A running despooler may quarantine the pair again at once: its new
     * .why must not meet the old one. */
    bool hid = q->why[0] && renameat(rej, q->why, rej, hidden) == 0;
    if (ss_rename_noreplace(rej, ins, rec, ins, e) != 0) {
        ss_error back = {0};
        if (hid) (void)renameat(rej, hidden, rej, q->why);
        if (!resume) (void)ss_rename_noreplace(rec, pck, rej, pck, &back);
        (void)sync_both(rec, rej, NULL);
        return -1;
    }
    if (sync_both(rec, rej, e) != 0) return -1;
    if (q->why[0] && !hid) (void)unlinkat(rej, q->why, 0);
    (void)unlinkat(rej, hidden, 0);
    return ss_fsync_dirfd(rej, e);
}

int ss_quarantine_release(const char *root, ss_db *db, ss_reporter *rep, const char *id,
                          const char *by, ss_quarantined *out, ss_error *e)
{
    if (!ss_id_valid(id))
        return ss_err(e, SS_E_USAGE,
                      "'%s' is not an instruction id (32 hex digits, as 'sitespool queue' shows "
                      "them)",
                      id);
    int rej = dsp_open_site_dir(root, SS_DIR_REJECTED, e);
    if (rej < 0) return -1;
    int rec = dsp_open_site_dir(root, SS_DIR_RECEIVE, e);
    ss_quarantined *q = malloc(sizeof *q);
    bool resume = false;
    int rc = rec < 0 ? -1 : !q ? ss_err(e, SS_E_NOMEM, "out of memory") : 0;
    if (rc == 0) {
        (void)describe_quarantined(rej, id, "", q);
        rc = check_release(rej, rec, db, q, &resume, e);
    }
    if (rc == 0) rc = move_back(rej, rec, q, resume, e);
    if (rc == 0) {
        char status[16];
        snprintf(status, sizeof status, q->status_id ? "%d" : "unknown", q->status_id);
        ss_report(rep, 4428, id, q->claim.parsed ? q->claim.in.from : "?", status, by, NULL);
        if (out) *out = *q;
    }
    free(q);
    if (rec >= 0) close(rec);
    close(rej);
    return rc;
}

struct copies {
    char copy[64][48];
    int n;
};

static int collect_copy(void *ctx, const ss_quarantined *q)
{
    struct copies *c = ctx;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->copy[i], q->copy)) return 0;
    if (c->n < (int)(sizeof c->copy / sizeof c->copy[0]))
        snprintf(c->copy[c->n++], sizeof c->copy[0], "%s", q->copy);
    return 0;
}

/* Removes one copy: instruction, package, then the .why that explains it. */
static int delete_copy(int fd, const ss_quarantined *q, ss_error *e)
{
    const char *names[] = {q->ins, q->pck, q->why};
    for (size_t i = 0; i < 3; i++)
        if (names[i][0] && unlinkat(fd, names[i], 0) != 0 && errno != ENOENT)
            return ss_err_sys(e, "cannot remove despoolr.box/rejected/%s", names[i]);
    return 0;
}

int ss_quarantine_delete(const char *root, ss_reporter *rep, const char *id, const char *by,
                         ss_quarantined *out, ss_error *e)
{
    if (!ss_id_valid(id)) return ss_err(e, SS_E_USAGE, "'%s' is not an instruction id", id);
    int fd = dsp_open_site_dir(root, SS_DIR_REJECTED, e);
    if (fd < 0) return -1;
    struct copies *c = calloc(1, sizeof *c);
    ss_quarantined *q = malloc(sizeof *q);
    int rc = c && q ? foreach_quarantined(fd, id, collect_copy, c, e)
                    : ss_err(e, SS_E_NOMEM, "out of memory");
    int deleted = 0;
    for (int i = 0; rc == 0 && i < c->n; i++) {
        if (!describe_quarantined(fd, id, c->copy[i], q)) continue;
        if ((rc = delete_copy(fd, q, e)) != 0 || (rc = ss_fsync_dirfd(fd, e)) != 0) break;
        char what[64];
        if (q->status_id)
            snprintf(what, sizeof what, "quarantined with status %d", q->status_id);
        else
            snprintf(what, sizeof what, "quarantined (without its .why file)");
        ss_report(rep, 4429, id, q->claim.parsed ? q->claim.in.name : "name unknown",
                  q->claim.parsed ? q->claim.in.from : "?", what, by, NULL);
        if (out) *out = *q;
        deleted++;
    }
    free(q);
    free(c);
    close(fd);
    return rc == 0 ? deleted : -1;
}
