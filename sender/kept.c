/*
 * kept.c - copies of delivered pairs for `send --resend`.  See kept.h.
 */
#include "kept.h"

#include "../inboxes/fileio.h"
#include "../keystore/links.h"
#include "outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int kept_path(const ss_sender *s, const char *site, char *out, size_t len)
{
    int n = snprintf(out, len, "%s/inboxes/schedule.box/sent/%s", s->root, site);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Copies are a convenience: on a nearly full disk the space a delivery
 * frees must really be freed (the sender relies on it to store its
 * status messages), so nothing is kept below 64 MiB or 1% free. */
static bool space_to_keep(const char *path)
{
    struct statvfs fs;
    if (statvfs(path, &fs) != 0) return false;
    uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize;
    uint64_t total = (uint64_t)fs.f_blocks * fs.f_frsize;
    return avail >= (64ULL << 20) && avail >= total / 100;
}

int ss_kept_open(ss_sender *s, const char *site)
{
    if (!s->conf->resend_keep) return -1;
    char path[PATH_MAX];
    ss_error e = {0};
    int fd = -1;
    if (kept_path(s, site, path, sizeof path) != 0)
        ss_err(&e, SS_E_TOOBIG, "path too long");
    else if (!space_to_keep(s->root))
        return -1; /* nearly full: the outbox's space goes back to the disk */
    else if (ss_mkdirs(path, 0750, &e) == 0)
        fd = ss_open_dir(path, &e);
    if (fd < 0)
        ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
                "Cannot keep copies of the pairs delivered to %s (send --resend needs them): %s",
                site, e.msg);
    return fd;
}

/* One file into the kept folder: renamed, or copied under a temporary
 * name and then renamed (a half copy is never taken for a pair). */
static int keep_file(int kept_fd, int outbox_fd, const char *name, bool move, ss_error *e)
{
    if (move) return ss_rename_noreplace(outbox_fd, name, kept_fd, name, e);
    int in = openat(outbox_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) return ss_err_sys(e, "cannot read %s", name);
    char tmp[NAME_MAX + 1];
    snprintf(tmp, sizeof tmp, ".%.200s.tmp", name);
    (void)unlinkat(kept_fd, tmp, 0);
    int out = openat(kept_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    int rc = out < 0 ? ss_err_sys(e, "cannot create %s", tmp) : 0;
    if (rc == 0 && ss_copy_fd(in, out, e) < 0) rc = -1;
    close(in);
    if (out >= 0) close(out);
    if (rc == 0) rc = ss_rename_noreplace(kept_fd, tmp, kept_fd, name, e);
    if (rc != 0) (void)unlinkat(kept_fd, tmp, 0);
    return rc;
}

void ss_kept_take(ss_sender *s, int kept_fd, int outbox_fd, const char *queued, bool move)
{
    if (kept_fd < 0) return;
    char pck[160], ins[160];
    snprintf(pck, sizeof pck, "%s.pck", queued);
    snprintf(ins, sizeof ins, "%s.ins", queued);
    ss_error e = {0};
    /* The package first, like everywhere: an instruction kept is a pair kept. */
    if (keep_file(kept_fd, outbox_fd, pck, move, &e) == 0 &&
        keep_file(kept_fd, outbox_fd, ins, move, &e) == 0)
        return;
    ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
            "Cannot keep a copy of %s for send --resend: %s", queued, e.msg);
    if (move) { /* what could not be kept must still leave the outbox */
        (void)unlinkat(outbox_fd, ins, 0);
        (void)unlinkat(outbox_fd, pck, 0);
    }
    (void)unlinkat(kept_fd, ins, 0);
    (void)unlinkat(kept_fd, pck, 0);
}

/* ---------------------------------------------------------------- prune */

/* Whether the kept pair of id may go: confirmed, no longer awaited (no
 * row: a receipt or heartbeat, or history pruned), or too old. */
static int may_go(ss_sender *s, const char *id, const struct stat *st, int64_t now, ss_error *e)
{
    ss_sent row;
    int found = ss_sent_get(s->db, id, &row, e);
    if (found < 0) return -1;
    if (!found) return 1;
    if (row.has_fate && ss_fate_final(row.fate)) return 1;
    return now - st->st_mtime > (int64_t)s->conf->resend_keep;
}

int ss_kept_prune(ss_sender *s, const char *site, int64_t now, ss_error *e)
{
    char path[PATH_MAX];
    if (kept_path(s, site, path, sizeof path) != 0) return 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : ss_err_sys(e, "cannot open %s", path);
    DIR *dir = fdopendir(fd);
    if (!dir) return close(fd), ss_err_sys(e, "cannot list %s", path);
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        struct stat st;
        if (!ss_outbox_is_queued_ins(de->d_name) ||
            fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        char id[SS_ID_HEX + 1], pck[NAME_MAX + 1];
        snprintf(id, sizeof id, "%.*s", SS_ID_HEX, ss_queued_id(de->d_name));
        int go = may_go(s, id, &st, now, e);
        if (go < 0) rc = -1;
        if (go <= 0) continue;
        snprintf(pck, sizeof pck, "%.*s.pck", (int)(strlen(de->d_name) - 4), de->d_name);
        (void)unlinkat(fd, de->d_name, 0);
        (void)unlinkat(fd, pck, 0);
    }
    closedir(dir);
    return rc;
}

/* ---------------------------------------------------------------- resend */

/* The kept instruction of id in kept_fd: its queued name (without .ins). */
static int find_kept(int kept_fd, const char *id, char *queued, size_t len)
{
    int fd = dup(kept_fd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0) close(fd);
        return -1;
    }
    rewinddir(dir);
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(dir)) != NULL)
        if (ss_outbox_is_queued_ins(de->d_name) &&
            !strncmp(ss_queued_id(de->d_name), id, SS_ID_HEX)) {
            snprintf(queued, len, "%.*s", (int)(strlen(de->d_name) - 4), de->d_name);
            found = 1;
        }
    closedir(dir);
    return found;
}

/* Back into the outbox: package, then instruction, never replacing. */
static int put_back(int kept_fd, ss_outbox *o, const char *queued, ss_error *e)
{
    char pck[160], ins[160];
    snprintf(pck, sizeof pck, "%s.pck", queued);
    snprintf(ins, sizeof ins, "%s.ins", queued);
    if (ss_rename_noreplace(kept_fd, pck, o->fd, pck, e) != 0) return -1;
    if (ss_rename_noreplace(kept_fd, ins, o->fd, ins, e) != 0) {
        ss_error back = {0};
        (void)ss_rename_noreplace(o->fd, pck, kept_fd, pck, &back);
        return -1;
    }
    return ss_fsync_dirfd(o->fd, e);
}

static int refuse_resend(const ss_sent *row, const char *id, ss_error *e)
{
    if (row->has_fate && ss_fate_final(row->fate))
        return ss_err(e, SS_E_EXISTS,
                      "instruction %s (%s) was confirmed %s by %s: it is there, and a resend "
                      "would only be dropped as a duplicate (4402)",
                      id, row->name, ss_fate_name(row->fate), row->peer);
    if (!row->sent_at)
        return ss_err(e, SS_E_EXISTS,
                      "instruction %s (%s) is still queued for %s: 'sitespool send --flush "
                      "--to %s' delivers it",
                      id, row->name, row->peer, row->peer);
    return 0;
}

int ss_kept_resend(ss_sender *s, const char *id, const char *by, char peer_out[16], ss_error *e)
{
    ss_sent row;
    int found = ss_sent_get(s->db, id, &row, e);
    if (found < 0) return -1;
    if (!found)
        return ss_err(e, SS_E_NOENT,
                      "this site has no record of sending instruction %s ('sitespool queue "
                      "--sent --all' lists what it sent)",
                      id);
    if (refuse_resend(&row, id, e) != 0) return -1;
    snprintf(peer_out, 16, "%s", row.peer);
    int kept_fd = ss_kept_open(s, row.peer);
    ss_outbox o;
    if (kept_fd < 0)
        return ss_err(e, SS_E_NOENT,
                      "no copy of instruction %s is kept (resend_keep = 0): ask %s's "
                      "administrator to release it there ('sitespool release %s'), or send the "
                      "file again",
                      id, row.peer, id);
    if (ss_outbox_open(&o, s->root, row.peer, e) != 0) return close(kept_fd), -1;
    int rc = ss_outbox_lock(&o, e);
    char queued[128];
    int kept = rc == 0 ? find_kept(kept_fd, id, queued, sizeof queued) : -1;
    if (rc == 0 && kept <= 0)
        rc = ss_err(e, SS_E_NOENT,
                    "no copy of instruction %s (%s) is kept: copies are kept for pairs "
                    "delivered by copy or SFTP, until a receipt confirms them or resend_keep "
                    "(%us) passes, not for pairs renamed into a local inbox on this "
                    "filesystem. Ask %s's administrator to release it there ('sitespool "
                    "release %s'), or send the file again",
                    id, row.name, s->conf->resend_keep, row.peer, id);
    if (rc == 0) rc = put_back(kept_fd, &o, queued, e);
    if (rc == 0) rc = ss_sent_resent(s->db, id, e);
    ss_outbox_close(&o);
    close(kept_fd);
    if (rc == 0) ss_report(s->rep, 4518, id, row.name, row.peer, by, NULL);
    return rc;
}
