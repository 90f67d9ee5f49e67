/*
 * pack.c - packing files into a peer's outbox and queuing them.  See
 * sender.h for the order and why it is so.
 *
 * Diagnostics: a file that cannot be packed raises 4505 and fails the call
 * with nothing queued, naming the file (and, for a full disk, "no space
 * left on device" and the outbox); a pair that site.db cannot record is
 * taken out of the outbox again, raises 4505 and fails the call, naming
 * site.db; the pairs queued before it stay queued (they were recorded and
 * told to the caller).
 */
#include "../inboxes/fileio.h"
#include "dupes.h"
#include "outbox.h"
#include "recover.h"
#include "sender.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)

/* One item on its way: its files and fields. */
typedef struct packed {
    ss_atomic pck, ins;
    ss_instr in;
    unsigned char hash[SS_HASH_BYTES]; /* of the package bytes: what is signed */
    size_t dupe_index;                 /* its entry in the duplicate index */
    bool indexed;
} packed;

/* A call in progress: what it packs, for whom, where. */
typedef struct packing {
    ss_sender *s;
    ss_outbox o;
    const char *to;
    ss_send_item *items;
    packed *p;
    size_t n;
    ss_dupes dupes;
    bool check_dupes;
} packing;

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

static const char *item_name(const ss_send_item *it, char *buf, size_t len)
{
    if (it->name) return it->name;
    if (!it->path || !strcmp(it->path, "-")) return "stdin";
    snprintf(buf, len, "%s", it->path);
    return basename(buf);
}

/* A full disk is said as such, with the folder that is full. */
static void explain_failure(ss_error *e, const char *where, const char *what, const char *name,
                            const char *to)
{
    char why[sizeof e->msg];
    snprintf(why, sizeof why, "%s", e->msg);
    if (ss_error_no_space(e))
        ss_err(e, SS_E_IO, "no space left on device in %s: cannot %s %s for %s (%s)", where, what,
               name, to, why);
}

/* The fields known before publication (seq and times come then). */
static int item_fields(ss_sender *s, const char *to, const char *dest, const ss_send_item *it,
                       ss_instr *in, ss_error *e)
{
    char namebuf[PATH_MAX];
    memset(in, 0, sizeof *in);
    ss_instr_new_id(in->id);
    snprintf(in->from, sizeof in->from, "%s", s->conf->site_code);
    snprintf(in->to, sizeof in->to, "%s", to);
    in->type = it->type;
    snprintf(in->dest, sizeof in->dest, "%s", dest);
    const char *name = item_name(it, namebuf, sizeof namebuf);
    if (!ss_file_name_valid(name))
        return ss_err(e, SS_E_USAGE, "'%s' cannot be a delivered file name (use --name)", name);
    snprintf(in->name, sizeof in->name, "%s", name);
    in->zip = s->conf->compression_level > 0 ? SS_ZIP_ZLIB : SS_ZIP_NONE;
    return 0;
}

/* Packs one item into a closed (not yet flushed) temporary package. */
static int pack_one(packing *k, const char *dest, size_t i, ss_error *e)
{
    ss_send_item *it = &k->items[i];
    packed *p = &k->p[i];
    if (item_fields(k->s, k->to, dest, it, &p->in, e) != 0) return -1;
    int in_fd = it->path ? open_input(it->path, e) : -1;
    if (it->path && in_fd < 0) return -1;
    char final[64];
    snprintf(final, sizeof final, "%s.pck", p->in.id);
    int rc = ss_atomic_begin(&p->pck, k->o.fd, final, 0640, e);
    if (rc == 0) rc = pack_payload(k->s, in_fd, it, &p->pck, p->in.zip, p->hash, &p->in.size, e);
    if (in_fd >= 0) close(in_fd);
    if (rc == 0) rc = ss_atomic_close(&p->pck, false, e);
    if (rc != 0) {
        explain_failure(e, k->o.path, "pack", p->in.name, k->to);
        ss_atomic_abort(&p->pck);
        return -1;
    }
    memcpy(it->id, p->in.id, sizeof p->in.id);
    it->size = p->in.size;
    return 0;
}

static void abort_items(packing *k, size_t from)
{
    for (size_t i = from; i < k->n; i++) {
        ss_atomic_abort(&k->p[i].pck);
        ss_atomic_abort(&k->p[i].ins);
    }
}

/* 4505 for an item that was not queued (stored later if site.db cannot). */
static void report_not_queued(packing *k, size_t i, const ss_error *why)
{
    char name[PATH_MAX];
    const char *shown =
        k->p[i].in.name[0] ? k->p[i].in.name : item_name(&k->items[i], name, sizeof name);
    ss_error ignored;
    if (ss_notices_add(&k->s->notices, &ignored, 4505, shown, k->to, why->msg, NULL) == 0)
        (void)ss_notices_store(&k->s->notices, k->s->db, k->s->rep, NULL, NULL, &ignored);
}

/* Every item into a temporary package, then one flush for all of them.
 * On failure nothing of the call is left in the outbox. */
static int pack_all(packing *k, const char *dest, ss_error *e)
{
    for (size_t i = 0; i < k->n; i++) {
        if (pack_one(k, dest, i, e) != 0) {
            report_not_queued(k, i, e);
            abort_items(k, 0);
            return -1;
        }
    }
    if (ss_sync_fs(k->o.fd, e) == 0) return 0;
    explain_failure(e, k->o.path, "flush the packages of", "this send", k->to);
    abort_items(k, 0);
    return -1;
}

/* ------------------------------------------------------------- duplicates */

static bool is_skipped(const packing *k, size_t i)
{
    return k->items[i].already_queued;
}

static void tell(packing *k, size_t i)
{
    if (k->s->on_queued) k->s->on_queued(k->s->on_queued_ctx, k->to, &k->items[i], k->p[i].in.name);
}

/* Drops the item if the same file is still queued, else indexes it so that
 * a later item of this call can be found to repeat it. */
static int check_dupe(packing *k, size_t i, ss_error *e)
{
    packed *p = &k->p[i];
    ss_send_item *it = &k->items[i];
    if (!k->check_dupes || p->in.type != SS_TYPE_DATA) return 0;
    const ss_dupe *d = ss_dupes_find(&k->dupes, k->o.fd, &p->in, p->pck.tmp);
    if (!d) {
        p->indexed = ss_dupes_add(&k->dupes, &p->in, p->pck.tmp, &p->dupe_index, e) == 0;
        return p->indexed ? 0 : -1;
    }
    it->already_queued = true; /* told in its turn, with the others */
    memcpy(it->id, d->id, sizeof it->id);
    ss_atomic_abort(&p->pck);
    return 0;
}

/* ------------------------------------------------------------- publishing */

static int take_seqs(packing *k, uint64_t count, uint64_t *first, ss_error *e)
{
    int rc = -1;
    for (int attempt = 0; attempt < 3 && rc != 0; attempt++) {
        rc = ss_peer_take_seqs(k->s->db, k->to, count, first, e);
        if (rc != 0 && !ss_db_was_busy(k->s->db)) break;
    }
    return rc;
}

/* Numbers the batch's items in order; *pub receives the journal record. */
static int number_batch(packing *k, size_t b0, size_t b1, ss_journal *pub, ss_error *e)
{
    uint64_t count = 0, seq;
    for (size_t i = b0; i < b1; i++)
        count += !is_skipped(k, i);
    if (count == 0) return 0;
    if (take_seqs(k, count, &seq, e) != 0) return -1;
    *pub = (ss_journal){.kind = SS_JOURNAL_PUBLISHING,
                        .first_seq = seq,
                        .last_seq = seq + count - 1,
                        .since_ms = ss_now_ms()};
    int64_t now = ss_now();
    for (size_t i = b0; i < b1; i++) {
        if (is_skipped(k, i)) continue;
        packed *p = &k->p[i];
        p->in.seq = seq++;
        p->in.created = now;
        p->in.expires = now + k->s->conf->package_lifetime;
    }
    return 1;
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

/* Signed instructions for the batch under temporary names, then one flush. */
static int write_instructions(packing *k, size_t b0, size_t b1, ss_error *e)
{
    for (size_t i = b0; i < b1; i++) {
        if (is_skipped(k, i)) continue;
        packed *p = &k->p[i];
        char final[64];
        snprintf(final, sizeof final, "%012" PRIu64 "-%s.ins", p->in.seq, p->in.id);
        int rc = ss_atomic_begin(&p->ins, k->o.fd, final, 0640, e);
        if (rc == 0) rc = write_instruction(k->s, &p->ins, &p->in, p->hash, e);
        if (rc == 0) rc = ss_atomic_close(&p->ins, false, e);
        if (rc != 0) {
            explain_failure(e, k->o.path, "write the instruction of", p->in.name, k->to);
            return -1;
        }
    }
    if (ss_sync_fs(k->o.fd, e) == 0) return 0;
    explain_failure(e, k->o.path, "flush the instructions of", "this send", k->to);
    return -1;
}

/* The 4504 row (and 4503 when unsigned) of a queued pair, stored now. */
static int record_queued(packing *k, const packed *p, ss_error *e)
{
    ss_notices *q = &k->s->notices;
    size_t before = q->n;
    char size[32];
    snprintf(size, sizeof size, "%" PRIu64, p->in.size);
    if (ss_notices_add(q, e, 4504, p->in.id, p->in.name, size, k->to, NULL) != 0 ||
        (!k->s->sk && ss_notices_add(q, e, 4503, p->in.id, k->to, NULL) != 0) ||
        ss_notices_store(q, k->s->db, k->s->rep, NULL, NULL, e) != 0) {
        ss_notices_truncate(q, before);
        return -1;
    }
    return 0;
}

/* Takes a pair that could not be recorded out of the outbox again. */
static int unqueue(packing *k, packed *p)
{
    int rc = unlinkat(k->o.fd, p->ins.final, 0);
    (void)unlinkat(k->o.fd, p->pck.final, 0);
    (void)ss_fsync_dirfd(k->o.fd, NULL);
    return rc;
}

/* Package, then instruction (now queued), then its row, then the caller. */
static int queue_one(packing *k, size_t i, bool *journal_done, ss_error *e)
{
    packed *p = &k->p[i];
    snprintf(p->pck.final, sizeof p->pck.final, "%012" PRIu64 "-%s.pck", p->in.seq, p->in.id);
    if (ss_atomic_rename(&p->pck, 0, e) != 0 || ss_atomic_rename(&p->ins, 0, e) != 0) return -1;
    if (record_queued(k, p, e) != 0) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        ss_err(e, SS_E_DB,
               "%scannot record %s (instruction %s) in %s/site.db, so it was not queued: %s",
               ss_error_no_space(e) ? "no space left on device: " : "", p->in.name, p->in.id,
               k->s->root, why);
        /* A pair left queued without its row is recorded by the next
         * holder of the lock: the journal must then stay. */
        *journal_done = unqueue(k, p) == 0;
        return -1;
    }
    if (p->indexed) ss_dupes_rename(&k->dupes, p->dupe_index, p->pck.final);
    k->items[i].queued = true;
    tell(k, i);
    return 0;
}

/* The per-item steps, then one flush of the folder and of site.db. */
static int queue_batch(packing *k, size_t b0, size_t b1, size_t *failed, ss_error *e)
{
    bool journal_done = true;
    int rc = ss_db_sync_defer(k->s->db, e);
    for (size_t i = b0; i < b1; i++) {
        if (is_skipped(k, i))
            tell(k, i); /* still true after a failure: it was queued before */
        else if (rc == 0 && (rc = queue_one(k, i, &journal_done, e)) != 0)
            *failed = i;
    }
    ss_error late = {0};
    int flushed = ss_fsync_dirfd(k->o.fd, &late) == 0 && ss_db_sync_now(k->s->db, &late) == 0;
    if (rc == 0 && !flushed) {
        *e = late;
        rc = -1;
    }
    if (journal_done) (void)ss_outbox_journal_set(&k->o, NULL, NULL);
    return rc;
}

static int publish_batch(packing *k, size_t b0, size_t b1, size_t *failed, ss_error *e)
{
    *failed = b0;
    for (size_t i = b0; i < b1; i++)
        if (check_dupe(k, i, e) != 0) return -1;
    while (*failed + 1 < b1 && is_skipped(k, *failed)) /* what a failure names */
        ++*failed;
    ss_journal pub;
    int numbered = number_batch(k, b0, b1, &pub, e), rc = numbered < 0 ? -1 : 0;
    if (numbered > 0 && (rc = ss_outbox_journal_set(&k->o, &pub, e)) == 0 &&
        (rc = write_instructions(k, b0, b1, e)) == 0)
        return queue_batch(k, b0, b1, failed, e); /* tells each item in its turn */
    if (numbered > 0) (void)ss_outbox_journal_set(&k->o, NULL, NULL);
    for (size_t i = b0; i < b1; i++)
        if (is_skipped(k, i)) tell(k, i); /* queued before, whatever failed now */
    return rc;
}

/* Under the outbox lock: finish an interrupted publication, then publish
 * batch by batch. */
static int publish_all(packing *k, ss_error *e)
{
    if (ss_outbox_lock(&k->o, e) != 0) return -1;
    int rc = ss_sender_recover(k->s, &k->o, k->to, e);
    if (rc == 0 && k->check_dupes) rc = ss_dupes_load(&k->dupes, k->o.fd, e);
    size_t batch = k->s->conf->batch_max ? k->s->conf->batch_max : 1, failed = 0;
    for (size_t b0 = 0; rc == 0 && b0 < k->n; b0 += batch) {
        size_t b1 = k->n - b0 < batch ? k->n : b0 + batch;
        if ((rc = publish_batch(k, b0, b1, &failed, e)) != 0) report_not_queued(k, failed, e);
    }
    abort_items(k, 0); /* what was not published */
    ss_outbox_unlock(&k->o);
    return rc;
}

static bool wants_dupe_check(const ss_sender *s, const ss_send_item *items, size_t n)
{
    for (size_t i = 0; !s->again && i < n; i++)
        if (items[i].type == SS_TYPE_DATA) return true;
    return false;
}

int ss_sender_pack(ss_sender *s, const char *to, const char *dest, ss_send_item *items, size_t n,
                   ss_error *e)
{
    if (ss_peer_require(s->db, to, NULL, e) != 0) return -1;
    if (n == 0) return 0;
    packing k = {.s = s, .to = to, .items = items, .n = n};
    k.check_dupes = wants_dupe_check(s, items, n);
    if (ss_outbox_open(&k.o, s->root, to, e) != 0) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        return ss_err(e, e->code, "cannot open the outbox for %s: %s", to, why);
    }
    k.p = calloc(n, sizeof *k.p);
    int rc = k.p ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        k.p[i].pck.fd = k.p[i].ins.fd = -1; /* not begun: aborting them closes nothing */
        items[i].queued = items[i].already_queued = false;
    }
    if (rc == 0) rc = pack_all(&k, dest, e);
    if (rc == 0) rc = publish_all(&k, e);
    ss_dupes_free(&k.dupes);
    free(k.p);
    ss_outbox_close(&k.o);
    return rc;
}
