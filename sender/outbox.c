/*
 * outbox.c - a peer's outbox folder, lock, journal and queued files.  See
 * outbox.h.
 */
#include "outbox.h"
#include "../inboxes/fileio.h"
#include "../inboxes/site.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define JOURNAL_BYTES 80 /* one fixed-size record at the start of .lock */
#define READ_CHUNK (256 * 1024)

int ss_outbox_open(ss_outbox *o, const char *root, const char *site, ss_error *e)
{
    o->fd = o->lock_fd = -1;
    int n = snprintf(o->path, sizeof o->path, "%s/" SS_DIR_OUTBOX "/%s", root, site);
    if (n < 0 || (size_t)n >= sizeof o->path)
        return ss_err(e, SS_E_TOOBIG, "site path too long: %s", root);
    if (ss_mkdirs(o->path, 0750, e) != 0) return -1;
    o->fd = ss_open_dir(o->path, e);
    return o->fd < 0 ? -1 : 0;
}

void ss_outbox_close(ss_outbox *o)
{
    ss_outbox_unlock(o);
    if (o->fd >= 0) close(o->fd);
    o->fd = -1;
}

static int take_lock(ss_outbox *o, bool wait, ss_error *e)
{
    int fd = openat(o->fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) return ss_err_sys(e, "cannot open the lock of the outbox %s", o->path);
    while (flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) {
            close(fd);
            return 0;
        }
        ss_err_sys(e, "cannot lock the outbox %s", o->path);
        close(fd);
        return -1;
    }
    o->lock_fd = fd;
    return 1;
}

int ss_outbox_lock(ss_outbox *o, ss_error *e)
{
    return take_lock(o, true, e) == 1 ? 0 : -1;
}

int ss_outbox_trylock(ss_outbox *o, ss_error *e)
{
    return take_lock(o, false, e);
}

void ss_outbox_unlock(ss_outbox *o)
{
    if (o->lock_fd >= 0) close(o->lock_fd); /* closing releases the flock */
    o->lock_fd = -1;
}

int ss_outbox_journal_set(ss_outbox *o, const ss_journal *j, ss_error *e)
{
    char rec[JOURNAL_BYTES + 1];
    int n;
    if (j && j->kind == SS_JOURNAL_PUBLISHING)
        n = snprintf(rec, sizeof rec, "publishing %" PRIu64 " %" PRIu64 " %" PRId64, j->first_seq,
                     j->last_seq, j->since_ms);
    else if (j && j->kind == SS_JOURNAL_DELIVERING)
        n = snprintf(rec, sizeof rec, "delivering %.*s %" PRId64, 60, j->queued, j->since_ms);
    else
        n = snprintf(rec, sizeof rec, "idle");
    if (n < 0 || n >= JOURNAL_BYTES) return ss_err(e, SS_E_TOOBIG, "journal record too long");
    memset(rec + n, ' ', JOURNAL_BYTES - (size_t)n);
    rec[JOURNAL_BYTES - 1] = '\n';
    ssize_t w = pwrite(o->lock_fd, rec, JOURNAL_BYTES, 0);
    if (w == JOURNAL_BYTES) return 0;
    if (w >= 0) errno = EIO;
    return ss_err_sys(e, "cannot write the journal %s/.lock", o->path);
}

void ss_outbox_journal_get(const ss_outbox *o, ss_journal *j)
{
    char rec[JOURNAL_BYTES + 1];
    memset(j, 0, sizeof *j);
    ssize_t n = pread(o->lock_fd, rec, JOURNAL_BYTES, 0);
    if (n <= 0) return;
    rec[n] = '\0';
    if (sscanf(rec, "publishing %" SCNu64 " %" SCNu64 " %" SCNd64, &j->first_seq, &j->last_seq,
               &j->since_ms) == 3)
        j->kind = SS_JOURNAL_PUBLISHING;
    else if (sscanf(rec, "delivering %63s %" SCNd64, j->queued, &j->since_ms) == 2)
        j->kind = SS_JOURNAL_DELIVERING;
}

bool ss_outbox_is_queued_ins(const char *name)
{
    size_t n = strlen(name);
    return !ss_name_is_temporary(name) && n > 4 && !strcmp(name + n - 4, ".ins");
}

uint64_t ss_queued_seq(const char *name)
{
    return strtoull(name, NULL, 10);
}

const char *ss_queued_id(const char *name)
{
    const char *dash = strchr(name, '-');
    return dash ? dash + 1 : name;
}

static int select_ins(const struct dirent *d)
{
    return ss_outbox_is_queued_ins(d->d_name);
}

int ss_outbox_list(const ss_outbox *o, struct dirent ***names, ss_error *e)
{
    *names = NULL;
    int count = scandirat(o->fd, ".", names, select_ins, alphasort);
    if (count < 0) return ss_err_sys(e, "cannot list the outbox %s", o->path);
    return count;
}

void ss_outbox_list_free(struct dirent **names, int count)
{
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

int ss_outbox_read_instr(int dirfd, const char *name, ss_instr *in, bool *is_signed, ss_error *e)
{
    char *text = NULL;
    size_t len = 0;
    if (ss_read_small_file(dirfd, name, SS_SIGFILE_MAX, &text, &len, e) != 0) return -1;
    *is_signed = ss_sig_looks_signed(text, len);
    int rc;
    if (*is_signed) {
        ss_sig *sig = malloc(sizeof *sig);
        rc = sig ? ss_sig_parse(text, len, sig, e) : ss_err(e, SS_E_NOMEM, "out of memory");
        if (rc == 0) rc = ss_instr_parse(in, sig->trusted_comment, e);
        free(sig);
    } else {
        text[strcspn(text, "\n")] = '\0';
        rc = ss_instr_parse(in, text, e);
    }
    free(text);
    return rc;
}

static int hash_sink(void *ctx, const void *buf, size_t len, ss_error *e)
{
    (void)e;
    ss_hash_update(ctx, buf, len);
    return 0;
}

/* Streams fd through the inflater f into the hash. */
static int inflate_into_hash(int fd, ss_inflater *f, ss_hash *h, ss_error *e)
{
    unsigned char *buf = malloc(READ_CHUNK);
    if (!buf) return ss_err(e, SS_E_NOMEM, "out of memory");
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = ss_read_full(fd, buf, READ_CHUNK, e)) > 0)
        rc = ss_inflater_feed(f, buf, (size_t)n, hash_sink, h, e);
    if (rc == 0 && n < 0) rc = -1;
    free(buf);
    return rc;
}

int ss_package_payload_hash(int dirfd, const char *name, enum ss_zip zip, uint64_t size,
                            unsigned char out[SS_HASH_BYTES], ss_error *e)
{
    int fd = ss_open_regular(dirfd, name, 0, NULL, e);
    if (fd < 0) return -1;
    ss_inflater f;
    ss_hash h;
    ss_hash_init(&h);
    int rc = ss_inflater_init(&f, zip, size, e);
    if (rc == 0) rc = inflate_into_hash(fd, &f, &h, e);
    if (rc == 0) rc = ss_inflater_finish(&f, e);
    if (rc == 0 && f.out_bytes != size)
        rc = ss_err(e, SS_E_SIZE, "%s unpacks to %" PRIu64 " bytes, not %" PRIu64, name,
                    f.out_bytes, size);
    ss_inflater_free(&f);
    close(fd);
    if (rc == 0) ss_hash_final(&h, out);
    return rc;
}
