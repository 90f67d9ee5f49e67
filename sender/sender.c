/*
 * sender.c - packaging and delivery.  See sender.h for what and why.
 *
 * Diagnostics: packaging failures raise 4505 and fail the call; an
 * unreachable peer raises 4501 (with the reason and the retry time) and is
 * recorded in the peer table for `peer list`; deliveries raise 4500, and
 * 4502 when a peer that was failing is reached again.
 */
#include "sender.h"
#include "../inboxes/fileio.h"
#include "../keystore/sigfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)

static int outbox_path(const char *root, const char *site, char *out, size_t len)
{
    int n = snprintf(out, len, "%s/" SS_DIR_OUTBOX "/%s", root, site);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

static bool is_queued_ins(const char *name)
{
    size_t n = strlen(name);
    return !ss_name_is_temporary(name) && n > 4 && !strcmp(name + n - 4, ".ins");
}

static int select_ins(const struct dirent *d)
{
    return is_queued_ins(d->d_name);
}

int ss_outbox_info_get(const char *root, const char *site, ss_outbox_info *out, ss_error *e)
{
    char path[PATH_MAX];
    memset(out, 0, sizeof *out);
    if (outbox_path(root, site, path, sizeof path) != 0)
        return ss_err(e, SS_E_TOOBIG, "path too long");
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : ss_err_sys(e, "cannot read outbox %s", path);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (!is_queued_ins(de->d_name) || fstatat(dirfd(d), de->d_name, &st, 0) != 0) continue;
        out->queued++;
        if (!out->oldest || st.st_mtime < out->oldest) out->oldest = st.st_mtime;
    }
    closedir(d);
    return 0;
}

int ss_sender_open(ss_sender *s, const char *root, const ss_conf *conf, ss_db *db, ss_reporter *rep,
                   bool sign, ss_error *e)
{
    memset(s, 0, sizeof *s);
    s->root = root;
    s->conf = conf;
    s->db = db;
    s->rep = rep;
    if (sign && ss_own_key_load(root, conf, &s->sk, &s->pk, e) != 0) return -1;
    return 0;
}

void ss_sender_close(ss_sender *s)
{
    ss_seckey_free(s->sk);
    s->sk = NULL;
    if (s->deflater_ready) ss_deflater_free(&s->deflater);
    s->deflater_ready = false;
    free(s->buf);
    s->buf = NULL;
}

unsigned ss_sender_backoff(const ss_conf *conf, unsigned failures)
{
    uint64_t wait = conf->send_retry_interval ? conf->send_retry_interval : 1;
    for (unsigned i = 1; i < failures && wait < conf->send_retry_max_interval; i++)
        wait *= 2;
    if (wait > conf->send_retry_max_interval) wait = conf->send_retry_max_interval;
    return (unsigned)wait;
}

/* Per-peer lock: packers publish and deliverers deliver under it. */
static int lock_outbox(int outbox_fd, ss_error *e)
{
    int fd = openat(outbox_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) return ss_err_sys(e, "cannot open the outbox lock");
    if (flock(fd, LOCK_EX) != 0) {
        close(fd);
        return ss_err_sys(e, "cannot lock the outbox");
    }
    return fd;
}

/* ---------------------------------------------------------------- packing */

struct pack_sink {
    int fd;
    ss_hash hash;
};

static int pack_sink_write(void *ctx, const void *buf, size_t len, ss_error *e)
{
    struct pack_sink *ps = ctx;
    ss_hash_update(&ps->hash, buf, len);
    return ss_write_all(ps->fd, buf, len, e);
}

static int open_input(const char *path, ss_error *e)
{
    if (!strcmp(path, "-")) return dup(STDIN_FILENO);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return ss_err_sys(e, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        close(fd);
        return ss_err(e, SS_E_NOTREG, "%s is a directory; send files", path);
    }
    return fd;
}

/* Streams one input (in_fd, or data when in_fd < 0) into pck: deflate and
 * hash in one pass, with the sender's reused zlib state and buffer. */
static int pack_payload(ss_sender *s, int in_fd, const ss_send_item *it, ss_atomic *pck,
                        enum ss_zip zip, unsigned char hash[SS_HASH_BYTES], uint64_t *size,
                        ss_error *e)
{
    struct pack_sink ps = {.fd = pck->fd};
    ss_hash_init(&ps.hash);
    ss_deflater *d = &s->deflater;
    int rc = 0;
    if (!s->buf && !(s->buf = malloc(READ_CHUNK))) return ss_err(e, SS_E_NOMEM, "out of memory");
    if (!s->deflater_ready) {
        rc = ss_deflater_init(d, zip, s->conf->compression_level, e);
        s->deflater_ready = rc == 0;
    } else {
        rc = ss_deflater_reset(d, e);
    }
    ssize_t n = 0;
    if (in_fd < 0 && rc == 0)
        rc = ss_deflater_feed(d, it->data, it->data_len, pack_sink_write, &ps, e);
    while (in_fd >= 0 && rc == 0 && (n = ss_read_full(in_fd, s->buf, READ_CHUNK, e)) > 0)
        rc = ss_deflater_feed(d, s->buf, (size_t)n, pack_sink_write, &ps, e);
    if (rc == 0 && n < 0) rc = -1;
    if (rc == 0) rc = ss_deflater_finish(d, pack_sink_write, &ps, e);
    *size = d->in_bytes;
    if (rc != 0 && s->deflater_ready) {
        /* A failed stream leaves zlib mid-way: start clean next time. */
        ss_deflater_free(d);
        s->deflater_ready = false;
    }
    if (rc == 0) ss_hash_final(&ps.hash, hash);
    return rc;
}

static int write_instruction(ss_sender *s, ss_atomic *ins, const ss_instr *in,
                             const unsigned char hash[SS_HASH_BYTES], ss_error *e)
{
    char fields[SS_TRUSTED_COMMENT_MAX + 1];
    if (ss_instr_format(in, fields, sizeof fields) != 0)
        return ss_err(e, SS_E_TOOBIG, "instruction fields too long");
    if (!s->sk) {
        strcat(fields, "\n");
        return ss_write_all(ins->fd, fields, strlen(fields), e);
    }
    char *text = malloc(SS_SIGFILE_MAX);
    if (!text) return ss_err(e, SS_E_NOMEM, "out of memory");
    char comment[64];
    snprintf(comment, sizeof comment, "sitespool instruction %s -> %s", in->from, in->to);
    int rc = ss_sign_hash(s->sk, hash, fields, comment, text, SS_SIGFILE_MAX, e);
    if (rc == 0) rc = ss_write_all(ins->fd, text, strlen(text), e);
    free(text);
    return rc;
}

static const char *item_name(const ss_send_item *it, char *buf, size_t len)
{
    if (it->name) return it->name;
    if (!it->path || !strcmp(it->path, "-")) return "stdin";
    snprintf(buf, len, "%s", it->path);
    return basename(buf);
}

/* Packs one item into two closed (not yet flushed) temporary files. */
static int pack_one(ss_sender *s, int outbox_fd, const char *to, const char *dest, ss_send_item *it,
                    uint64_t seq, ss_atomic *pck, ss_atomic *ins, ss_error *e)
{
    char namebuf[PATH_MAX], final[128];
    ss_instr in = {0};
    ss_instr_new_id(in.id);
    snprintf(in.from, sizeof in.from, "%s", s->conf->site_code);
    snprintf(in.to, sizeof in.to, "%s", to);
    in.type = it->type;
    snprintf(in.dest, sizeof in.dest, "%s", dest);
    const char *name = item_name(it, namebuf, sizeof namebuf);
    if (!ss_file_name_valid(name))
        return ss_err(e, SS_E_USAGE, "'%s' cannot be a delivered file name (use --name)", name);
    snprintf(in.name, sizeof in.name, "%s", name);
    in.zip = s->conf->compression_level > 0 ? SS_ZIP_ZLIB : SS_ZIP_NONE;
    in.seq = seq;
    in.created = ss_now();
    in.expires = in.created + s->conf->package_lifetime;

    int in_fd = it->path ? open_input(it->path, e) : -1;
    if (it->path && in_fd < 0) return -1;
    snprintf(final, sizeof final, "%012" PRIu64 "-%s.pck", seq, in.id);
    unsigned char hash[SS_HASH_BYTES];
    int rc = ss_atomic_begin(pck, outbox_fd, final, 0640, e);
    if (rc == 0) rc = pack_payload(s, in_fd, it, pck, in.zip, hash, &in.size, e);
    if (in_fd >= 0) close(in_fd);
    if (rc == 0) rc = ss_atomic_close(pck, false, e);
    snprintf(final, sizeof final, "%012" PRIu64 "-%s.ins", seq, in.id);
    if (rc == 0 && (rc = ss_atomic_begin(ins, outbox_fd, final, 0640, e)) == 0) {
        rc = write_instruction(s, ins, &in, hash, e);
        if (rc == 0)
            rc = ss_atomic_close(ins, false, e);
        else
            ss_atomic_abort(ins);
    }
    if (rc != 0) {
        ss_atomic_abort(pck);
        return -1;
    }
    memcpy(it->id, in.id, sizeof in.id);
    it->size = in.size;
    return 0;
}

static int publish_batch(int outbox_fd, ss_atomic *pcks, ss_atomic *inss, size_t n, ss_error *e)
{
    if (ss_sync_fs(outbox_fd, e) != 0) return -1;
    int lock = lock_outbox(outbox_fd, e);
    if (lock < 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = ss_atomic_rename(&pcks[i], 0, e);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = ss_atomic_rename(&inss[i], 0, e);
    if (rc == 0) rc = ss_fsync_dirfd(outbox_fd, e);
    close(lock);
    return rc;
}

int ss_sender_pack(ss_sender *s, const char *to, const char *dest, ss_send_item *items, size_t n,
                   ss_error *e)
{
    char path[PATH_MAX];
    if (outbox_path(s->root, to, path, sizeof path) != 0 || ss_mkdirs(path, 0750, e) != 0)
        return ss_err(e, SS_E_IO, "cannot create the outbox for %s", to);
    uint64_t first_seq;
    /* Reserve the numbers first: a crash can leave a gap, never a duplicate. */
    if (ss_peer_take_seqs(s->db, to, n, &first_seq, e) != 0) return -1;
    int outbox_fd = ss_open_dir(path, e);
    if (outbox_fd < 0) return -1;
    /* Every item is packed under a temporary name before any is published,
     * so a failure anywhere leaves nothing of this call in the outbox. */
    ss_atomic *pcks = calloc(n ? n : 1, sizeof *pcks), *inss = calloc(n ? n : 1, sizeof *inss);
    int rc = (pcks && inss) ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++)
        pcks[i].fd = inss[i].fd = -1; /* not begun: aborting them closes nothing */
    if (rc == 0) rc = ss_db_begin(s->db, e);
    size_t done = 0;
    for (; done < n && rc == 0; done++) {
        ss_send_item *it = &items[done];
        rc = pack_one(s, outbox_fd, to, dest, it, first_seq + done, &pcks[done], &inss[done], e);
        if (rc != 0) {
            char name[PATH_MAX];
            ss_report(s->rep, 4505, item_name(it, name, sizeof name), to, e->msg, NULL);
        }
    }
    if (rc == 0) rc = publish_batch(outbox_fd, pcks, inss, n, e);
    for (size_t i = 0; i < done; i++) {
        ss_atomic_abort(&pcks[i]);
        ss_atomic_abort(&inss[i]);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        ss_send_item *it = &items[i];
        char name[PATH_MAX], size[32];
        snprintf(size, sizeof size, "%" PRIu64, it->size);
        ss_report(s->rep, 4504, it->id, item_name(it, name, sizeof name), size, to, NULL);
        if (!s->sk) ss_report(s->rep, 4503, it->id, to, NULL);
    }
    if (rc == 0)
        rc = ss_db_commit(s->db, e);
    else
        ss_db_commit(s->db, NULL); /* keep the 4505 status rows */
    free(pcks);
    free(inss);
    close(outbox_fd);
    return rc;
}

/* --------------------------------------------------------------- delivery */

struct wire_pair {
    char queued[128]; /* outbox name without extension: <seq>-<id> */
    ss_atomic pck, ins;
};

static const char *pair_id(const char *queued)
{
    const char *dash = strchr(queued, '-');
    return dash ? dash + 1 : queued;
}

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
    snprintf(wire, sizeof wire, "%s.pck", pair_id(p->queued));
    return faccessat(outbox_fd, src, F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
           faccessat(peer_fd, wire, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Same filesystem: the queued files, already durable, are renamed into the
 * peer's inbox - no copy, no unlink, and a pair is never in both places. */
static int deliver_batch_by_rename(int outbox_fd, int peer_fd, struct wire_pair *pairs, size_t n,
                                   ss_error *e)
{
    static const char *const exts[] = {"pck", "ins"}; /* packages first */
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < n; i++) {
            char src[160], wire[64];
            if (k == 0 && package_at_peer(outbox_fd, peer_fd, &pairs[i])) continue;
            snprintf(src, sizeof src, "%s.%s", pairs[i].queued, exts[k]);
            snprintf(wire, sizeof wire, "%s.%s", pair_id(pairs[i].queued), exts[k]);
            if (renameat(outbox_fd, src, peer_fd, wire) != 0)
                return ss_err_sys(e, "cannot move %s into the peer's inbox", src);
        }
    }
    if (ss_fsync_dirfd(peer_fd, e) != 0) return -1;
    return ss_fsync_dirfd(outbox_fd, e);
}

/* Another filesystem (a mounted share): copy under temporary names, one
 * flush for the batch, rename packages then instructions, then remove the
 * queued files. */
static int deliver_batch_by_copy(int outbox_fd, int peer_fd, struct wire_pair *pairs, size_t n,
                                 ss_error *e)
{
    int rc = 0;
    size_t copied = 0;
    for (; copied < n && rc == 0; copied++) {
        struct wire_pair *p = &pairs[copied];
        char src[160], wire[64];
        const char *id = pair_id(p->queued);
        snprintf(src, sizeof src, "%s.pck", p->queued);
        snprintf(wire, sizeof wire, "%s.pck", id);
        if (!package_at_peer(outbox_fd, peer_fd, p))
            rc = copy_to_peer(outbox_fd, src, peer_fd, wire, &p->pck, e);
        if (rc == 0) {
            snprintf(src, sizeof src, "%s.ins", p->queued);
            snprintf(wire, sizeof wire, "%s.ins", id);
            rc = copy_to_peer(outbox_fd, src, peer_fd, wire, &p->ins, e);
        }
    }
    if (rc == 0) rc = ss_sync_fs(peer_fd, e);
    /* Packages become visible before any instruction that names them. */
    for (size_t i = 0; i < n && rc == 0; i++)
        if (pairs[i].pck.tmp[0]) rc = ss_atomic_rename(&pairs[i].pck, 0, e);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = ss_atomic_rename(&pairs[i].ins, 0, e);
    if (rc == 0) rc = ss_fsync_dirfd(peer_fd, e);
    for (size_t i = 0; i < copied; i++) {
        ss_atomic_abort(&pairs[i].pck);
        ss_atomic_abort(&pairs[i].ins);
    }
    if (rc != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s.ins", pairs[i].queued);
        (void)unlinkat(outbox_fd, name, 0);
        snprintf(name, sizeof name, "%s.pck", pairs[i].queued);
        (void)unlinkat(outbox_fd, name, 0);
    }
    return ss_fsync_dirfd(outbox_fd, e);
}

static int deliver_batch(int outbox_fd, int peer_fd, bool same_fs, struct wire_pair *pairs,
                         size_t n, ss_error *e)
{
    for (size_t i = 0; i < n; i++) {
        pairs[i].pck.fd = pairs[i].ins.fd = -1;
        pairs[i].pck.tmp[0] = pairs[i].ins.tmp[0] = '\0';
    }
    return same_fs ? deliver_batch_by_rename(outbox_fd, peer_fd, pairs, n, e)
                   : deliver_batch_by_copy(outbox_fd, peer_fd, pairs, n, e);
}

static void report_unreachable(ss_sender *s, const ss_peer *peer, const char *reason, size_t queued)
{
    unsigned wait = ss_sender_backoff(s->conf, peer->failures + 1);
    char count[32], minutes[32];
    snprintf(count, sizeof count, "%zu", queued);
    snprintf(minutes, sizeof minutes, "%u", (wait + 59) / 60);
    ss_error ignored;
    ss_db_begin(s->db, &ignored);
    ss_peer_record_attempt(s->db, peer->site, false, reason, ss_now() + wait, &ignored);
    ss_report(s->rep, 4501, peer->site, peer->inbox, reason, count, minutes, NULL);
    ss_db_commit(s->db, &ignored);
}

static void report_delivered(ss_sender *s, const ss_peer *peer, struct wire_pair *pairs, size_t n)
{
    ss_error ignored;
    ss_db_begin(s->db, &ignored);
    for (size_t i = 0; i < n; i++) {
        char where[PATH_MAX + 80];
        snprintf(where, sizeof where, "%s/%s.ins", peer->inbox, pair_id(pairs[i].queued));
        ss_report(s->rep, 4500, pair_id(pairs[i].queued), where, peer->site, NULL);
    }
    ss_db_commit(s->db, &ignored);
}

/* Under the outbox lock, before listing: a queued instruction whose package
 * is gone (neither queued nor already at the peer) can never be delivered,
 * so it must not block the peer's queue; it is moved to
 * schedule.box/broken/<SITE>/ with status 4506.  A package without its
 * instruction, and temporary files older than a day, are leftovers of
 * killed senders and are removed. */
static void tidy_outbox(ss_sender *s, int outbox_fd, int peer_fd, const char *site)
{
    DIR *dir = fdopendir(dup(outbox_fd));
    if (!dir) return;
    int64_t now = ss_now();
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        const char *name = de->d_name;
        struct stat st;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, ".lock") ||
            fstatat(outbox_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (ss_name_is_temporary(name)) {
            if (now - st.st_mtime > 86400 && unlinkat(outbox_fd, name, 0) == 0)
                ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
                        "Removed %s, left in the outbox of %s by an interrupted packer", name,
                        site);
            continue;
        }
        size_t len = strlen(name);
        if (len > 4 && !strcmp(name + len - 4, ".pck")) {
            /* Packers publish under this lock, so a package without its
             * instruction here was left by a send killed mid-publish. */
            char ins[NAME_MAX + 1];
            snprintf(ins, sizeof ins, "%.*s.ins", (int)(len - 4), name);
            if (faccessat(outbox_fd, ins, F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
                unlinkat(outbox_fd, name, 0) == 0)
                ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
                        "Removed %s from the outbox of %s: its send was interrupted before the "
                        "instruction was queued",
                        name, site);
            continue;
        }
        if (!is_queued_ins(name)) continue;
        char pck[NAME_MAX + 1], broken[PATH_MAX], target[PATH_MAX], wire[64];
        snprintf(pck, sizeof pck, "%.*s.pck", (int)(strlen(name) - 4), name);
        snprintf(wire, sizeof wire, "%.*s.pck", (int)(strlen(pair_id(name)) - 4), pair_id(name));
        /* Without the peer we cannot tell a lost package from a delivered one. */
        if (faccessat(outbox_fd, pck, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || peer_fd < 0 ||
            faccessat(peer_fd, wire, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        snprintf(broken, sizeof broken, "%s/inboxes/schedule.box/broken/%s", s->root, site);
        snprintf(target, sizeof target, "%s/%s", broken, name);
        int bfd = ss_mkdirs(broken, 0750, NULL) == 0 ? ss_open_dir(broken, NULL) : -1;
        if (bfd >= 0 && ss_rename_noreplace(outbox_fd, name, bfd, name, NULL) == 0) {
            (void)ss_fsync_dirfd(bfd, NULL);
            ss_report(s->rep, 4506, pair_id(name), site, target, NULL);
        }
        if (bfd >= 0) close(bfd);
    }
    closedir(dir);
}

int ss_sender_deliver(ss_sender *s, const char *site, ss_deliver_result *res, ss_error *e)
{
    memset(res, 0, sizeof *res);
    ss_peer peer;
    int found = ss_peer_get(s->db, site, &peer, e);
    if (found <= 0)
        return found < 0 ? -1
                         : ss_err(e, SS_E_NOENT,
                                  "site %s is not a peer ('sitespool peer add "
                                  "%s --inbox PATH')",
                                  site, site);
    char path[PATH_MAX];
    if (outbox_path(s->root, site, path, sizeof path) != 0 || ss_mkdirs(path, 0750, e) != 0)
        return -1;
    int outbox_fd = ss_open_dir(path, e);
    if (outbox_fd < 0) return -1;
    int lock = lock_outbox(outbox_fd, e);
    if (lock < 0) {
        close(outbox_fd);
        return -1;
    }
    ss_error why = {0};
    int peer_fd = ss_open_dir(peer.inbox, &why);
    struct stat outbox_st, peer_st;
    bool same_fs = peer_fd >= 0 && fstat(outbox_fd, &outbox_st) == 0 &&
                   fstat(peer_fd, &peer_st) == 0 && outbox_st.st_dev == peer_st.st_dev;
    tidy_outbox(s, outbox_fd, peer_fd, site);
    struct dirent **names = NULL;
    int count = scandirat(outbox_fd, ".", &names, select_ins, alphasort);
    int rc = count < 0 ? ss_err_sys(e, "cannot list the outbox %s", path) : 0;
    size_t batch = s->conf->batch_max;
    struct wire_pair *pairs = calloc(batch, sizeof *pairs);
    if (!pairs && rc == 0) rc = ss_err(e, SS_E_NOMEM, "out of memory");
    if (rc == 0 && count > 0) {
        for (int start = 0; peer_fd >= 0 && start < count; start += (int)batch) {
            size_t n = (size_t)(count - start) < batch ? (size_t)(count - start) : batch;
            for (size_t i = 0; i < n; i++) {
                const char *nm = names[start + (int)i]->d_name;
                snprintf(pairs[i].queued, sizeof pairs[i].queued, "%.*s", (int)(strlen(nm) - 4),
                         nm);
            }
            if (deliver_batch(outbox_fd, peer_fd, same_fs, pairs, n, &why) != 0) break;
            report_delivered(s, &peer, pairs, n);
            res->delivered += n;
        }
        res->queued = (size_t)count - res->delivered;
        if (res->queued) {
            res->unreachable = true;
            report_unreachable(s, &peer, why.msg[0] ? why.msg : "unknown error", res->queued);
        } else {
            ss_error ignored;
            ss_peer_record_attempt(s->db, site, true, NULL, 0, &ignored);
            if (peer.failures > 0) {
                char n[32];
                snprintf(n, sizeof n, "%zu", res->delivered);
                ss_report(s->rep, 4502, site, n, NULL);
            }
        }
    }
    if (peer_fd >= 0) close(peer_fd);
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    free(pairs);
    close(lock);
    close(outbox_fd);
    return rc;
}
