/*
 * pack.c - packing files into a peer's outbox and queuing them.  See
 * sender.h for the order and why it is so, and bundle.h for bundles.
 *
 * A call's files are first grouped into pairs (ss_bundle_plan): regular
 * files smaller than bundle_below share bundles of up to bundle_max_files,
 * the rest get a pair each.  Pairs are then packed, numbered, published
 * and recorded as before - one sequence number, one 4504 and one 4500 per
 * pair - while what the caller is told stays per file: each file of a
 * queued bundle is told with the bundle's instruction id and its count,
 * the bundle's 4504 names the count, and sender.log names each file.
 *
 * A file of a bundle that changes size (or stops being a regular file)
 * while it is packed leaves the bundle and gets a pair of its own, packed
 * as any single file is: what was read is what is sent.  A bundle some of
 * whose files turn out to be still queued (the check is made under the
 * outbox lock) is packed again without them from its own package, not
 * from the inputs: the only packing done under the lock, bounded by the
 * bundle's size (its files are small by definition).
 *
 * Sealing (seal.h, the site setting seal): a data pair for a peer whose
 * key this site trusts is sealed to the peer's newest trusted key (the
 * keys table: state trusted, latest created); key, rollover, receipt and
 * heartbeat pairs never are, and a peer without a trusted key gets its
 * data unsealed (sender.log says so once per sender).  The plaintext
 * stream is the metadata line - whose size= must come first - and then
 * the payload exactly as it would be stored unsealed, deflated, sealed,
 * written and hashed in one pass; the signature covers the sealed bytes.
 * So the payload's length is fixed before it is read: a file's size when
 * opened (exactly that many bytes are sent; one that shrinks fails), a
 * bundle's tar length from a dry run of its headers, and a pipe is first
 * copied to an unnamed temporary file in the outbox.  The instruction is
 * written from a copy of the fields: name=sealed, zip=none, size= the
 * sealed length, no files=, enc=<key id>; everything here (messages,
 * sender.log, 4504, site.db) keeps the real ones.  A sealed package cannot
 * be read back by its sender, so what the duplicate index needs of it is
 * kept in site.db (queued_files, keystore/links.h: every file of it hashed
 * while packed), written in the transaction that numbers its batch -
 * before anything of the batch is published, so that a pair published by
 * a send killed before its 4504 is still known, to the duplicate check
 * and to recovery (recover.h) - and a sealed bundle some of whose files
 * are still queued is packed again
 * from the inputs - each must still have the size and hash it was packed
 * with, or the call fails (nothing of it queued, 4505).
 *
 * Two cores: past its first 4 MiB a payload is deflated on this thread
 * while a write-behind thread (pipe.h) seals, hashes and writes what comes
 * out, and hashes the payload for the duplicate index; everything smaller
 * is packed on this thread alone (see "streams" below).
 *
 * Diagnostics: a file that cannot be packed raises 4505 and fails the call
 * with nothing queued, naming the file (and, for a full disk, "no space
 * left on device" and the outbox); a pair that site.db cannot record is
 * taken out of the outbox again, raises 4505 and fails the call, naming
 * site.db; the pairs queued before it stay queued (they were recorded and
 * told to the caller).
 */
#include "../inboxes/fileio.h"
#include "../inboxes/seal.h"
#include "../keystore/links.h"
#include "bundle.h"
#include "dupes.h"
#include "outbox.h"
#include "pipe.h"
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
#define NONE SIZE_MAX

/* One file of the call. */
typedef struct member {
    char name[SS_NAME_MAX + 1];        /* delivered name, once known to be valid */
    size_t pair;                       /* the pair that carries it */
    size_t next;                       /* the next file of that pair, or NONE */
    unsigned char hash[SS_HASH_BYTES]; /* its payload's, when hashed */
    bool hashed;                       /* (bundled files, when duplicates are checked) */
    uint64_t planned;                  /* a file that may share a package: its size */
    int64_t mtime;                     /* and mtime, when grouped */
} member;

/* One pair on its way: a file of its own, or a bundle (in.files > 0). */
typedef struct packed {
    ss_atomic pck, ins;
    ss_instr in;
    unsigned char hash[SS_HASH_BYTES]; /* of the package bytes: what is signed */
    size_t head, tail;                 /* its files, in the order given */
    unsigned count;                    /* files */
    unsigned live;                     /* files it queues: the others are still queued */
    size_t dupe_index;                 /* a pair of its own: its entry in the duplicate index */
    bool indexed;
    bool sealed;          /* its package is sealed to the peer (see the top) */
    uint64_t sealed_size; /* the sealed package's length: the instruction's size= */
    unsigned char seal_pin[SS_SEAL_PIN_BYTES]; /* its sealed header's: the instruction's seal= */
} packed;

/* A call in progress: what it packs, for whom, where. */
typedef struct packing {
    ss_sender *s;
    ss_outbox o;
    const char *to, *dest;
    ss_send_item *items;
    member *m;
    size_t n;
    packed *p;     /* at most n pairs */
    size_t np;     /* pairs so far (a file leaving a bundle adds one) */
    size_t *order; /* pairs in the order of publication (of their first files) */
    ss_dupes dupes;
    bool check_dupes;
    bool seal;                  /* data pairs are sealed to seal_pk */
    ss_pubkey seal_pk;          /* the peer's newest trusted key */
    ss_seal_key seal_key;       /* this call's one ephemeral key for it (seal.h) */
    char enc[SS_KEYID_HEX + 1]; /* its id, for enc= */
    bool repacking;             /* packing a sealed bundle again: inputs must not change */
} packing;

/* ---------------------------------------------------------------- names */

static const char *item_name(const ss_send_item *it, char *buf, size_t len)
{
    if (it->name) return it->name;
    if (!it->path || !strcmp(it->path, "-")) return "stdin";
    snprintf(buf, len, "%s", it->path);
    return basename(buf);
}

/* What a message calls file i. */
static const char *shown_name(const packing *k, size_t i, char *buf, size_t len)
{
    return k->m[i].name[0] ? k->m[i].name : item_name(&k->items[i], buf, len);
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

/* ------------------------------------------------------------- grouping */

/* May file i share a package?  A regular data file below bundle_below,
 * with a valid name (an invalid one fails later, on its own, as today). */
static bool may_share(packing *k, size_t i)
{
    const ss_send_item *it = &k->items[i];
    struct stat st;
    bool small = k->s->conf->bundle_max_files > 1 && it->type == SS_TYPE_DATA && it->path &&
                 strcmp(it->path, "-") && k->m[i].name[0] && stat(it->path, &st) == 0 &&
                 S_ISREG(st.st_mode) && (uint64_t)st.st_size < k->s->conf->bundle_below;
    if (small) {
        k->m[i].planned = (uint64_t)st.st_size;
        k->m[i].mtime = st.st_mtim.tv_sec;
    }
    return small;
}

static void pair_init(packed *p)
{
    memset(p, 0, sizeof *p);
    p->pck.fd = p->ins.fd = -1; /* not begun: aborting them closes nothing */
    p->head = p->tail = NONE;
}

/* Appends file i to pair u (files stay in the order given). */
static void pair_append(packing *k, size_t u, size_t i)
{
    packed *p = &k->p[u];
    k->m[i].pair = u;
    k->m[i].next = NONE;
    if (p->tail == NONE)
        p->head = i;
    else
        k->m[p->tail].next = i;
    p->tail = i;
    p->count++;
}

/* Takes file i out of its bundle into a new pair of its own. */
static void pair_split(packing *k, size_t i)
{
    packed *p = &k->p[k->m[i].pair];
    size_t prev = NONE;
    for (size_t j = p->head; j != i; j = k->m[j].next)
        prev = j;
    if (prev == NONE)
        p->head = k->m[i].next;
    else
        k->m[prev].next = k->m[i].next;
    if (p->tail == i) p->tail = prev;
    p->count--;
    pair_init(&k->p[k->np]);
    pair_append(k, k->np++, i);
}

/* Every file's name, then its pair. */
static int plan_pairs(packing *k, ss_error *e)
{
    const char **names = calloc(k->n, sizeof *names);
    bool *small = calloc(k->n, sizeof *small);
    size_t *pair = calloc(k->n, sizeof *pair);
    long np = names && small && pair ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    for (size_t i = 0; np == 0 && i < k->n; i++) {
        char buf[PATH_MAX];
        const char *name = item_name(&k->items[i], buf, sizeof buf);
        if (ss_file_name_valid(name)) snprintf(k->m[i].name, sizeof k->m[i].name, "%s", name);
        names[i] = k->m[i].name;
        small[i] = may_share(k, i);
    }
    if (np == 0) np = ss_bundle_plan(names, small, k->n, k->s->conf->bundle_max_files, pair, e);
    for (long u = 0; u < np; u++)
        pair_init(&k->p[u]);
    for (size_t i = 0; np > 0 && i < k->n; i++)
        pair_append(k, pair[i], i);
    k->np = np > 0 ? (size_t)np : 0;
    free(names);
    free(small);
    free(pair);
    return np < 0 ? -1 : 0;
}

/* Publication follows the first file of each pair. */
static void order_pairs(packing *k)
{
    size_t *first = k->order, np = 0; /* reused: pair whose first file is i, or NONE */
    for (size_t i = 0; i < k->n; i++)
        first[i] = NONE;
    for (size_t u = 0; u < k->np; u++)
        first[k->p[u].head] = u;
    for (size_t i = 0; i < k->n; i++)
        if (first[i] != NONE) k->order[np++] = first[i];
}

/* ---------------------------------------------------------------- streams */

/* A package being written: deflated, sealed when sealing, hashed and
 * written in one pass, with the sender's reused zlib state.
 *
 * A large payload is packed on two threads: once PIPE_AFTER bytes of it
 * went into the deflater, a write-behind thread (pipe.h) takes over what
 * comes after deflating - sealing, the package hash, the writes, and the
 * payload hash for the duplicate index (the payload's bytes are handed
 * over too) - while this thread goes on reading and deflating.  The
 * threshold is on bytes seen rather than on a size known in advance, so
 * that bundles, pipes and packing again engage it alike.  Below it a
 * package costs no thread and no ring: small files, and bundles of them,
 * are packed exactly as before.  Above it, starting the thread and its
 * 1 MiB ring costs well under a millisecond, and what the first 4 MiB
 * miss of the second thread is the tenth of their time spent after
 * deflating (deflating them takes ~80 ms when they do not compress), a
 * few milliseconds against the seconds such a payload takes.  From the
 * handover until stream_end joins the thread, sealer, hash, plain,
 * written and fd are the writer thread's: this thread touches only the
 * deflater and the pipe.  A pipe that cannot start (no memory, no
 * thread) is no failure: the stream goes on here, as for a small
 * payload. */
#define PIPE_AFTER (4 * 1024 * 1024)

enum { PIPE_PACKAGE, PIPE_PLAIN }; /* the kinds of the pipe's records */

typedef struct stream {
    ss_sender *s;
    int fd;
    ss_hash hash;     /* of the package bytes: what is signed */
    uint64_t written; /* package bytes */
    bool sealing;
    ss_sealer sealer;
    bool hash_plain; /* a sealed single file: its payload hashed for the duplicate index */
    ss_hash plain;
    unsigned char pin[SS_SEAL_PIN_BYTES]; /* the sealed header's (seal.h) */
    ss_pipe *pipe;                        /* the write-behind thread, once engaged */
    bool pipe_tried;
} stream;

/* Package bytes to the file, hashed on the way. */
static int stream_write(void *ctx, const void *buf, size_t len, ss_error *e)
{
    stream *st = ctx;
    ss_hash_update(&st->hash, buf, len);
    st->written += len;
    return ss_write_all(st->fd, buf, len, e);
}

static int sealed_write(void *ctx, const unsigned char *data, size_t len, ss_error *e)
{
    return stream_write(ctx, data, len, e);
}

/* Deflated bytes to the package: sealed first when sealing. */
static int stream_deliver(stream *st, const void *buf, size_t len, ss_error *e)
{
    return st->sealing ? ss_seal_update(&st->sealer, buf, len, e) : stream_write(st, buf, len, e);
}

/* The write-behind thread's side: one record of the pipe, in order. */
static int stream_drain(void *ctx, int kind, const void *buf, size_t len, ss_error *e)
{
    stream *st = ctx;
    if (kind == PIPE_PACKAGE) return stream_deliver(st, buf, len, e);
    ss_hash_update(&st->plain, buf, len);
    return 0;
}

/* What the deflater gives: to the package, or to the pipe once engaged. */
static int stream_out(void *ctx, const void *buf, size_t len, ss_error *e)
{
    stream *st = ctx;
    return st->pipe ? ss_pipe_put(st->pipe, PIPE_PACKAGE, buf, len, e)
                    : stream_deliver(st, buf, len, e);
}

/* Hands the rest of the stream to a write-behind thread (see above); its
 * buffers hold plaintext when sealing, so they are wiped then. */
static void stream_engage(stream *st)
{
    ss_error ignored;
    st->pipe_tried = true;
    st->pipe = ss_pipe_start(stream_drain, st, st->sealing, &ignored);
}

/* meta: the sealed metadata when the package is sealed with key, else
 * NULL. */
static int stream_begin(stream *st, ss_sender *s, int fd, enum ss_zip zip,
                        const ss_sealed_meta *meta, ss_seal_key *key, ss_error *e)
{
    *st = (stream){.s = s, .fd = fd};
    ss_hash_init(&st->hash);
    if (!s->buf && !(s->buf = malloc(READ_CHUNK))) return ss_err(e, SS_E_NOMEM, "out of memory");
    if (meta) {
        char line[SS_SEALED_META_MAX + 1];
        if (ss_sealed_meta_format(meta, line, sizeof line, e) != 0 ||
            ss_seal_begin_key(&st->sealer, key, sealed_write, st, e) != 0)
            return -1;
        st->sealing = true;
        memcpy(st->pin, st->sealer.pin, sizeof st->pin);
        st->hash_plain = meta->files == 0;
        ss_hash_init(&st->plain);
        if (ss_seal_update(&st->sealer, line, strlen(line), e) != 0) return -1;
    }
    if (s->deflater_ready) return ss_deflater_reset(&s->deflater, e);
    int rc = ss_deflater_init(&s->deflater, zip, s->conf->compression_level, e);
    s->deflater_ready = rc == 0;
    return rc;
}

/* The payload's next bytes (a sink, for the bundle writer too). */
static int stream_feed(void *ctx, const void *buf, size_t len, ss_error *e)
{
    stream *st = ctx;
    if (!st->pipe_tried && st->s->deflater.in_bytes >= PIPE_AFTER) stream_engage(st);
    if (st->hash_plain && st->pipe && ss_pipe_put(st->pipe, PIPE_PLAIN, buf, len, e) != 0)
        return -1;
    if (st->hash_plain && !st->pipe) ss_hash_update(&st->plain, buf, len);
    return ss_deflater_feed(&st->s->deflater, buf, len, stream_out, st, e);
}

/* Finishes the stream if rc is 0: *size receives the payload's length.
 * A stream that failed before it began (rc != 0) is cleaned up too.  The
 * write-behind thread, if any, is joined in either case (its failure is
 * the stream's); the sealer and hashes are this thread's again after. */
static int stream_end(stream *st, int rc, unsigned char hash[SS_HASH_BYTES], uint64_t *size,
                      ss_error *e)
{
    ss_sender *s = st->s;
    if (rc == 0) rc = ss_deflater_finish(&s->deflater, stream_out, st, e);
    if (st->pipe) rc = ss_pipe_end(st->pipe, rc, e);
    st->pipe = NULL;
    if (st->sealing) {
        if (rc == 0) rc = ss_seal_end(&st->sealer, e);
        ss_seal_abort(&st->sealer); /* (safe after end) */
        st->sealing = false;
    }
    *size = s->deflater_ready ? s->deflater.in_bytes : 0;
    if (rc != 0 && s->deflater_ready) {
        /* A failed stream leaves zlib mid-way: start clean next time. */
        ss_deflater_free(&s->deflater);
        s->deflater_ready = false;
    }
    if (rc == 0) ss_hash_final(&st->hash, hash);
    return rc;
}

/* ---------------------------------------------------------------- sealing */

/* Is pair p sealed?  Data only, and only when the peer has a trusted key. */
static bool pair_sealed(const packing *k, const packed *p)
{
    return k->seal && p->in.type == SS_TYPE_DATA;
}

/* The newest of a site's trusted keys. */
typedef struct newest_key {
    ss_keyrec best;
    bool found;
} newest_key;

static int newest_trusted(void *ctx, const ss_keyrec *k)
{
    newest_key *n = ctx;
    if (k->state == SS_KEY_TRUSTED && (!n->found || k->created >= n->best.created)) {
        n->best = *k;
        n->found = true;
    }
    return 0;
}

/* sender.log says once per sender and peer that its data goes unsealed. */
static void tell_unsealed(packing *k)
{
    ss_sender *s = k->s;
    for (unsigned i = 0; i < s->unsealed_told_n; i++)
        if (!strcmp(s->unsealed_told[i], k->to)) return;
    if (s->unsealed_told_n < SS_SENDER_TOLD_MAX)
        snprintf(s->unsealed_told[s->unsealed_told_n++], sizeof s->unsealed_told[0], "%s", k->to);
    ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
            "Data for %s is sent unsealed: this site trusts no key of %s to seal it to (seal = "
            "yes; add and trust the peer's key to seal)",
            k->to, k->to);
}

/* Decides whether this call's data pairs are sealed, and to which key.  A
 * keystore that cannot be read fails the call: nothing goes out unsealed
 * by accident. */
static int choose_seal(packing *k, ss_error *e)
{
    bool data = false;
    for (size_t i = 0; i < k->n; i++)
        data |= k->items[i].type == SS_TYPE_DATA;
    if (!k->s->conf->seal || !data) return 0;
    newest_key n = {.found = false};
    if (ss_keys_foreach(k->s->db, k->to, newest_trusted, &n, e) != 0) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        return ss_err(e, e->code,
                      "cannot read the keys of %s in %s/site.db to seal its data to (seal = "
                      "yes), so nothing was queued: %s",
                      k->to, k->s->root, why);
    }
    if (!n.found) {
        tell_unsealed(k);
        return 0;
    }
    k->seal = true;
    k->seal_pk = n.best.pk;
    ss_seal_key_init(&k->seal_key, k->seal_pk.pk, k->seal_pk.keyid);
    snprintf(k->enc, sizeof k->enc, "%s", n.best.key_id);
    return 0;
}

/* The sealed metadata of pair p with a payload of size bytes. */
static void pair_meta(const packed *p, uint64_t size, ss_sealed_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    snprintf(meta->name, sizeof meta->name, "%s", p->in.name);
    meta->size = size;
    meta->zip = p->in.zip;
    meta->files = p->in.files;
}

/* A payload must come out exactly as long as the metadata said. */
static int check_length(const packed *p, uint64_t planned, ss_error *e)
{
    if (p->in.size == planned) return 0;
    return ss_err(e, SS_E_SIZE,
                  "%s gave %" PRIu64 " bytes where %" PRIu64 " were expected while it was "
                  "sealed (it changed while read); send it again",
                  p->in.name, p->in.size, planned);
}

/* ------------------------------------------------------------- packing */

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

/* The fields known before publication (seq and times come then). */
static int pair_fields(packing *k, packed *p, ss_error *e)
{
    ss_instr *in = &p->in;
    const ss_send_item *it = &k->items[p->head];
    memset(in, 0, sizeof *in);
    ss_instr_new_id(in->id);
    snprintf(in->from, sizeof in->from, "%s", k->s->conf->site_code);
    snprintf(in->to, sizeof in->to, "%s", k->to);
    in->type = it->type;
    snprintf(in->dest, sizeof in->dest, "%s", k->dest);
    in->zip = k->s->conf->compression_level > 0 ? SS_ZIP_ZLIB : SS_ZIP_NONE;
    if (p->count > 1) {
        in->files = p->count;
        ss_bundle_name(p->count, in->name, sizeof in->name);
        return 0;
    }
    char namebuf[PATH_MAX];
    const char *name = item_name(it, namebuf, sizeof namebuf);
    if (!ss_file_name_valid(name))
        return ss_err(e, SS_E_USAGE, "'%s' cannot be a delivered file name (use --name)", name);
    snprintf(in->name, sizeof in->name, "%s", name);
    return 0;
}

/* Streams one input (in_fd, or data when in_fd < 0) into the stream. */
static int pack_payload(ss_sender *s, int in_fd, const ss_send_item *it, stream *st, ss_error *e)
{
    if (in_fd < 0) return stream_feed(st, it->data, it->data_len, e);
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = ss_read_full(in_fd, s->buf, READ_CHUNK, e)) > 0)
        rc = stream_feed(st, s->buf, (size_t)n, e);
    return rc == 0 && n < 0 ? -1 : rc;
}

/* Exactly size bytes of in_fd into the stream (sealed: the size was
 * announced); a file that ends before is an error. */
static int pack_exact(ss_sender *s, int in_fd, const char *shown, uint64_t size, stream *st,
                      ss_error *e)
{
    uint64_t got = 0;
    while (got < size) {
        size_t want = size - got < READ_CHUNK ? (size_t)(size - got) : READ_CHUNK;
        ssize_t n = ss_read_full(in_fd, s->buf, want, e);
        if (n < 0) return -1;
        if (n == 0)
            return ss_err(e, SS_E_SIZE,
                          "%s shrank from %" PRIu64 " to %" PRIu64 " bytes while it was sealed; "
                          "send it again",
                          shown, size, got);
        if (stream_feed(st, s->buf, (size_t)n, e) != 0) return -1;
        got += (uint64_t)n;
    }
    return 0;
}

/* An unnamed temporary file in the outbox (removed when closed). */
static int spool_file(packing *k, ss_error *e)
{
    int fd = openat(k->o.fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) {
        if (fd < 0) ss_err_sys(e, "cannot make a temporary file in %s", k->o.path);
        return fd;
    }
    char name[64];
    unsigned char r[8];
    randombytes_buf(r, sizeof r);
    snprintf(name, sizeof name, ".spool-%02x%02x%02x%02x%02x%02x%02x%02x.tmp", r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7]);
    fd = openat(k->o.fd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return ss_err_sys(e, "cannot make a temporary file in %s", k->o.path);
    (void)unlinkat(k->o.fd, name, 0);
    return fd;
}

/* The length of what *in_fd holds from where it is.  An input that is not
 * a regular file (a pipe) is copied to an unnamed temporary file first,
 * which replaces it: a sealed payload's length comes before it. */
static int input_length(packing *k, int *in_fd, uint64_t *size, ss_error *e)
{
    struct stat st;
    off_t pos = lseek(*in_fd, 0, SEEK_CUR);
    if (fstat(*in_fd, &st) != 0) return ss_err_sys(e, "cannot read the input");
    if (S_ISREG(st.st_mode) && pos >= 0) {
        *size = st.st_size > pos ? (uint64_t)(st.st_size - pos) : 0;
        return 0;
    }
    int tmp = spool_file(k, e);
    if (tmp < 0) return -1;
    int64_t n = ss_copy_fd(*in_fd, tmp, e);
    if (n < 0 || lseek(tmp, 0, SEEK_SET) != 0) {
        if (n >= 0) ss_err_sys(e, "cannot read back the temporary copy in %s", k->o.path);
        close(tmp);
        return -1;
    }
    close(*in_fd);
    *in_fd = tmp;
    *size = (uint64_t)n;
    return 0;
}

/* A sealed single file: its length first, then exactly that payload.  Its
 * payload hash goes to the duplicate index (and, packing again, must be
 * the one it was packed with). */
static int pack_single_sealed(packing *k, packed *p, size_t i, int *in_fd, ss_error *e)
{
    ss_send_item *it = &k->items[i];
    char buf[PATH_MAX];
    const char *shown = shown_name(k, i, buf, sizeof buf);
    uint64_t size = it->data_len;
    if (*in_fd >= 0 && input_length(k, in_fd, &size, e) != 0) return -1;
    ss_sealed_meta meta;
    pair_meta(p, size, &meta);
    stream st;
    int rc = stream_begin(&st, k->s, p->pck.fd, p->in.zip, &meta, &k->seal_key, e);
    if (rc == 0)
        rc = *in_fd >= 0 ? pack_exact(k->s, *in_fd, shown, size, &st, e)
                         : stream_feed(&st, it->data, it->data_len, e);
    rc = stream_end(&st, rc, p->hash, &p->in.size, e);
    if (rc == 0) rc = check_length(p, size, e);
    if (rc != 0) return -1;
    p->sealed_size = st.written;
    memcpy(p->seal_pin, st.pin, sizeof p->seal_pin);
    unsigned char h[SS_HASH_BYTES];
    ss_hash_final(&st.plain, h);
    if (k->repacking && k->m[i].hashed && memcmp(h, k->m[i].hash, sizeof h))
        return ss_err(e, SS_E_SIZE,
                      "%s changed while it was queued (its content is not what was packed); "
                      "send it again",
                      shown);
    memcpy(k->m[i].hash, h, sizeof h);
    k->m[i].hashed = true;
    return 0;
}

/* A pair of its own (file i), packed into a closed (not yet flushed)
 * temporary package: whatever the input gives is the payload (sealed: as
 * much as it held when opened). */
static int pack_single(packing *k, packed *p, size_t i, ss_error *e)
{
    ss_send_item *it = &k->items[i];
    int in_fd = it->path ? open_input(it->path, e) : -1;
    if (it->path && in_fd < 0) return -1;
    char final[64];
    stream st;
    snprintf(final, sizeof final, "%s.pck", p->in.id);
    p->sealed = pair_sealed(k, p);
    int rc = ss_atomic_begin(&p->pck, k->o.fd, final, 0640, e);
    if (rc == 0 && p->sealed)
        rc = pack_single_sealed(k, p, i, &in_fd, e);
    else if (rc == 0 && (rc = stream_begin(&st, k->s, p->pck.fd, p->in.zip, NULL, NULL, e)) == 0)
        rc = stream_end(&st, pack_payload(k->s, in_fd, it, &st, e), p->hash, &p->in.size, e);
    if (in_fd >= 0) close(in_fd);
    if (rc == 0) rc = ss_atomic_close(&p->pck, false, e);
    if (rc != 0) return -1;
    it->size = p->in.size;
    return 0;
}

/* One file into the bundle: its header, then exactly the size it had when
 * opened.  1: it is no longer a small regular file, or it changed size
 * while read; it was not added. */
static int add_member(packing *k, ss_bundle_writer *w, size_t i, ss_error *e)
{
    ss_send_item *it = &k->items[i];
    member *m = &k->m[i];
    int fd = open_input(it->path, e);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return ss_err_sys(e, "cannot read %s", it->path);
    }
    /* Still a small regular file (it may have changed since it was grouped)?
     * Sealed: still as long as the dry run counted, with the mtime it used. */
    bool small = S_ISREG(st.st_mode) && (uint64_t)st.st_size < k->s->conf->bundle_below;
    bool sealed = pair_sealed(k, &k->p[m->pair]);
    if (sealed && (uint64_t)st.st_size != m->planned) small = false;
    uint64_t size = small ? (uint64_t)st.st_size : 0, got = 0;
    int64_t mtime = sealed ? m->mtime : st.st_mtim.tv_sec;
    bool hashing = k->check_dupes || sealed;
    unsigned char was[SS_HASH_BYTES];
    memcpy(was, m->hash, sizeof was);
    int rc = small ? ss_bundle_writer_add(w, m->name, size, mtime, e) : 1;
    ss_hash h;
    ss_hash_init(&h);
    ssize_t n = READ_CHUNK;
    /* Until the end of the file (a short read), or past the size it had. */
    while (rc == 0 && got <= size && n == READ_CHUNK &&
           (n = ss_read_full(fd, k->s->buf, READ_CHUNK, e)) > 0) {
        size_t use = (uint64_t)n < size - got ? (size_t)n : (size_t)(size - got);
        rc = ss_bundle_writer_data(w, k->s->buf, use, e);
        if (hashing) ss_hash_update(&h, k->s->buf, use);
        got += (uint64_t)n;
    }
    close(fd);
    if (rc == 0 && n < 0) rc = -1;
    if (rc == 0 && got != size) rc = 1; /* grew or shrank while read */
    if (rc != 0) return rc;
    it->size = size;
    ss_hash_final(&h, m->hash);
    if (k->repacking && m->hashed && memcmp(was, m->hash, sizeof was)) return 1;
    m->hashed = hashing;
    return 0;
}

/* ------------------------------------------------------- sealed bundles */

static int count_sink(void *ctx, const void *buf, size_t len, ss_error *e)
{
    (void)buf;
    (void)e;
    *(uint64_t *)ctx += len;
    return 0;
}

/* The length of the tar stream of pair p's files (those not still queued)
 * with the sizes and mtimes they were grouped with: a dry run of the
 * bundle writer, headers as they will be, data as zeros. */
static int bundle_length(packing *k, const packed *p, uint64_t *len, ss_error *e)
{
    static const unsigned char zeros[4096];
    ss_bundle_writer w;
    *len = 0;
    int rc = ss_bundle_writer_open(&w, count_sink, len, e);
    for (size_t i = p->head; rc == 0 && i != NONE; i = k->m[i].next) {
        if (k->items[i].already_queued) continue;
        rc = ss_bundle_writer_add(&w, k->m[i].name, k->m[i].planned, k->m[i].mtime, e);
        for (uint64_t left = k->m[i].planned; rc == 0 && left > 0;) {
            size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
            rc = ss_bundle_writer_data(&w, zeros, n, e);
            left -= n;
        }
    }
    if (rc == 0) rc = ss_bundle_writer_close(&w, e);
    ss_bundle_writer_abort(&w);
    return rc;
}

/* A bundle, packed like a single file's payload: the tar stream is the
 * payload.  *bad receives the file being added when a failure came
 * (NONE: the bundle's own), *changed the file that changed while read. */
static int pack_bundle(packing *k, packed *p, size_t *bad, size_t *changed, ss_error *e)
{
    char final[64];
    stream st;
    ss_bundle_writer w;
    ss_sealed_meta meta;
    uint64_t planned = 0;
    p->sealed = pair_sealed(k, p);
    if (p->sealed && bundle_length(k, p, &planned, e) != 0) return -1;
    pair_meta(p, planned, &meta);
    snprintf(final, sizeof final, "%s.pck", p->in.id);
    if (ss_atomic_begin(&p->pck, k->o.fd, final, 0640, e) != 0) return -1;
    if (stream_begin(&st, k->s, p->pck.fd, p->in.zip, p->sealed ? &meta : NULL, &k->seal_key, e) !=
        0)
        return stream_end(&st, -1, p->hash, &p->in.size, e);
    int rc = ss_bundle_writer_open(&w, stream_feed, &st, e);
    if (rc == 0) {
        for (size_t i = p->head; i != NONE; i = k->m[i].next) {
            *bad = i;
            if (k->items[i].already_queued) continue; /* packing again without it */
            if ((rc = add_member(k, &w, i, e)) != 0) break;
        }
        if (rc == 0) *bad = NONE;
        if (rc == 1) *changed = *bad;
        if (rc == 0) rc = ss_bundle_writer_close(&w, e);
        ss_bundle_writer_abort(&w);
    }
    if (stream_end(&st, rc, p->hash, &p->in.size, e) != 0) return -1;
    if (p->sealed && check_length(p, planned, e) != 0) return -1;
    p->sealed_size = st.written;
    memcpy(p->seal_pin, st.pin, sizeof p->seal_pin);
    return ss_atomic_close(&p->pck, false, e);
}

/* Packs pair u.  A file that changed while its bundle was packed leaves it
 * for a pair of its own (packed in its turn), and the bundle is packed
 * again without it.  *bad: the file a failure concerns (NONE: the pair). */
static int pack_pair(packing *k, size_t u, size_t *bad, ss_error *e)
{
    for (;;) {
        packed *p = &k->p[u];
        *bad = p->head;
        if (pair_fields(k, p, e) != 0) return -1;
        if (p->count == 1) return pack_single(k, p, p->head, e);
        size_t changed = NONE;
        if (pack_bundle(k, p, bad, &changed, e) == 0) return 0;
        if (changed == NONE) return -1;
        ss_atomic_abort(&p->pck);
        pair_split(k, changed);
    }
}

static void abort_pairs(packing *k)
{
    for (size_t u = 0; u < k->np; u++) {
        ss_atomic_abort(&k->p[u].pck);
        ss_atomic_abort(&k->p[u].ins);
    }
}

/* 4505 for what was not queued (stored later if site.db cannot). */
static void report_not_queued(packing *k, const char *shown, const ss_error *why)
{
    ss_error ignored;
    if (ss_notices_add(&k->s->notices, &ignored, 4505, shown, k->to, why->msg, NULL) == 0)
        (void)ss_notices_store(&k->s->notices, k->s->db, k->s->rep, NULL, NULL, &ignored);
}

/* What a message calls pair u: its file, or its files. */
static const char *pair_shown(const packing *k, const packed *p, char *buf, size_t len)
{
    if (p->count == 1) return shown_name(k, p->head, buf, len);
    ss_bundle_describe(&p->in, buf, len);
    return buf;
}

/* Every pair into a temporary package, then one flush for all of them.
 * On failure nothing of the call is left in the outbox. */
static int pack_all(packing *k, ss_error *e)
{
    for (size_t u = 0, bad; u < k->np; u++) { /* np grows as files leave bundles */
        if (pack_pair(k, u, &bad, e) == 0) continue;
        char buf[PATH_MAX];
        const char *shown = bad == NONE ? pair_shown(k, &k->p[u], buf, sizeof buf)
                                        : shown_name(k, bad, buf, sizeof buf);
        explain_failure(e, k->o.path, "pack", shown, k->to);
        report_not_queued(k, shown, e);
        abort_pairs(k);
        return -1;
    }
    if (ss_sync_fs(k->o.fd, e) == 0) {
        order_pairs(k);
        return 0;
    }
    explain_failure(e, k->o.path, "flush the packages of", "this send", k->to);
    abort_pairs(k);
    return -1;
}

/* ------------------------------------------------------------- duplicates */

static bool is_skipped(const packed *p)
{
    return p->live == 0;
}

static void tell(packing *k, size_t i)
{
    if (k->s->on_queued) k->s->on_queued(k->s->on_queued_ctx, k->to, &k->items[i], k->m[i].name);
}

/* The files of pair p that were found still queued (true whatever else
 * happens); all of its files once it is queued. */
static void tell_pair(packing *k, const packed *p, bool queued)
{
    for (size_t i = p->head; i != NONE; i = k->m[i].next)
        if (queued || k->items[i].already_queued) tell(k, i);
}

/* How the index knows file i of pair p. */
static void entry_of(const packing *k, const packed *p, size_t i, ss_dupe *x)
{
    memset(x, 0, sizeof *x);
    memcpy(x->id, p->in.id, sizeof x->id);
    snprintf(x->pck, sizeof x->pck, "%s", p->pck.tmp);
    snprintf(x->name, sizeof x->name, "%s", k->m[i].name);
    snprintf(x->dest, sizeof x->dest, "%s", p->in.dest);
    x->size = k->items[i].size;
    x->zip = p->in.zip;
    x->files = p->in.files;
    x->hashed = k->m[i].hashed;
    memcpy(x->hash, k->m[i].hash, sizeof x->hash);
}

/* Marks the files of pair p that are still queued; returns how many. */
static unsigned find_queued(packing *k, packed *p)
{
    unsigned found = 0;
    for (size_t i = p->head; i != NONE; i = k->m[i].next) {
        ss_dupe probe;
        entry_of(k, p, i, &probe);
        const ss_dupe *d = ss_dupes_find(&k->dupes, k->o.fd, &probe);
        if (probe.hashed == 1 && !k->m[i].hashed) { /* keep what was computed */
            memcpy(k->m[i].hash, probe.hash, sizeof probe.hash);
            k->m[i].hashed = true;
        }
        if (!d) continue;
        ss_send_item *it = &k->items[i];
        it->already_queued = true; /* told in its turn, with the others */
        memcpy(it->id, d->id, sizeof it->id);
        it->bundled = d->files;
        found++;
    }
    return found;
}

/* Packing a bundle again from its own package, without the files that
 * are still queued: the files left, in their order, as a smaller bundle
 * or (one file left) as that file's own payload. */
typedef struct shrink {
    packing *k;
    size_t next;         /* the file the next member must be */
    ss_bundle_writer *w; /* NULL: the one file left is the payload */
    stream *st;
} shrink;

static int shrink_entry(void *ctx, const ss_bundle_entry *m, ss_error *e)
{
    shrink *sh = ctx;
    size_t i = sh->next;
    if (i == NONE || strcmp(sh->k->m[i].name, m->name) || m->size != sh->k->items[i].size)
        return ss_err(e, SS_E_FORMAT, "member %u is not the file packed there", m->index + 1);
    sh->next = sh->k->m[i].next;
    if (sh->k->items[i].already_queued) return 0;
    if (sh->w && ss_bundle_writer_add(sh->w, m->name, m->size, m->mtime, e) != 0) return -1;
    return 1;
}

static int shrink_data(void *ctx, const void *buf, size_t len, ss_error *e)
{
    shrink *sh = ctx;
    return sh->w ? ss_bundle_writer_data(sh->w, buf, len, e) : stream_feed(sh->st, buf, len, e);
}

/* The new package's fields: a bundle of the files left, or the one. */
static void shrunk_fields(const packing *k, packed *p)
{
    p->in.files = p->live > 1 ? p->live : 0;
    if (p->live > 1) {
        ss_bundle_name(p->live, p->in.name, sizeof p->in.name);
        return;
    }
    for (size_t i = p->head; i != NONE; i = k->m[i].next)
        if (!k->items[i].already_queued)
            snprintf(p->in.name, sizeof p->in.name, "%s", k->m[i].name);
}

/* Copies the files left from the package old into p->pck (begun). */
static int shrink_copy(packing *k, packed *p, const ss_atomic *old, const ss_instr *was,
                       ss_error *e)
{
    static const ss_bundle_visitor v = {shrink_entry, shrink_data, NULL};
    stream st;
    ss_bundle_writer w = {0};
    shrink sh = {.k = k, .next = p->head, .w = p->live > 1 ? &w : NULL, .st = &st};
    if (stream_begin(&st, k->s, p->pck.fd, p->in.zip, NULL, NULL, e) != 0) return -1;
    int rc = sh.w ? ss_bundle_writer_open(&w, stream_feed, &st, e) : 0;
    if (rc == 0 && ss_bundle_read(k->o.fd, old->tmp, was->zip, was->size, &v, &sh, e) < 0) rc = -1;
    if (rc == 0 && sh.w) rc = ss_bundle_writer_close(&w, e);
    ss_bundle_writer_abort(&w);
    return stream_end(&st, rc, p->hash, &p->in.size, e);
}

/* A sealed bundle cannot be read back: the files left are packed again
 * from their inputs, which must still be what was packed (size, hash). */
static int reseal(packing *k, packed *p, ss_error *e)
{
    size_t bad = NONE, changed = NONE, left = NONE;
    for (size_t i = p->head; i != NONE; i = k->m[i].next)
        if (!k->items[i].already_queued && left == NONE) left = i;
    k->repacking = true;
    int rc = p->live > 1 ? pack_bundle(k, p, &bad, &changed, e) : pack_single(k, p, left, e);
    k->repacking = false;
    if (rc != 0 && changed != NONE) {
        char buf[PATH_MAX];
        ss_err(e, SS_E_SIZE,
               "%s changed while it was queued (not the size or content that was packed); "
               "send it again",
               shown_name(k, changed, buf, sizeof buf));
    }
    return rc;
}

static int shrink_bundle(packing *k, packed *p, ss_error *e)
{
    ss_atomic old = p->pck;
    ss_instr was = p->in;
    char final[64];
    shrunk_fields(k, p);
    snprintf(final, sizeof final, "%s.pck", p->in.id);
    int rc = p->sealed ? reseal(k, p, e) : ss_atomic_begin(&p->pck, k->o.fd, final, 0640, e);
    if (rc == 0 && !p->sealed) rc = shrink_copy(k, p, &old, &was, e);
    if (rc == 0 && !p->sealed) rc = ss_atomic_close(&p->pck, false, e);
    if (rc != 0) {
        explain_failure(e, k->o.path, "pack again", was.name, k->to);
        ss_atomic_abort(&p->pck);
        p->pck = old; /* aborted with the others */
        p->in = was;
        return -1;
    }
    ss_atomic_abort(&old);
    return 0;
}

/* Indexes the files pair p queues, so that a later pair of this call can
 * be found to repeat them. */
static int index_pair(packing *k, packed *p, ss_error *e)
{
    for (size_t i = p->head; i != NONE; i = k->m[i].next) {
        ss_dupe x;
        if (k->items[i].already_queued) continue;
        entry_of(k, p, i, &x);
        if (ss_dupes_add(&k->dupes, &x, &p->dupe_index, e) != 0) return -1;
    }
    p->indexed = p->in.files == 0; /* its package is renamed when it is queued */
    return 0;
}

/* Drops what is still queued from pair p: the whole pair, or some files of
 * a bundle (packed again without them). */
static int check_pair(packing *k, packed *p, ss_error *e)
{
    p->live = p->count;
    if (!k->check_dupes || p->in.type != SS_TYPE_DATA) return 0;
    p->live -= find_queued(k, p);
    if (is_skipped(p)) {
        ss_atomic_abort(&p->pck);
        return 0;
    }
    if (p->live < p->count && shrink_bundle(k, p, e) != 0) return -1;
    return index_pair(k, p, e);
}

/* ------------------------------------------------------------- publishing */

static packed *at(packing *k, size_t pos)
{
    return &k->p[k->order[pos]];
}

static void entry_of(const packing *k, const packed *p, size_t i, ss_dupe *x);

/* The rows of the batch's sealed pairs in queued_files (keystore/links.h):
 * each file it queues, as the duplicate index knows it. */
static int record_sealed_files(packing *k, size_t b0, size_t b1, ss_error *e)
{
    for (size_t pos = b0; pos < b1; pos++) {
        packed *p = at(k, pos);
        if (is_skipped(p) || !p->sealed) continue;
        ss_queued_file f = {.files = p->in.files};
        memcpy(f.id, p->in.id, sizeof f.id);
        snprintf(f.dest, sizeof f.dest, "%s", p->in.dest);
        for (size_t i = p->head; i != NONE; i = k->m[i].next) {
            if (k->items[i].already_queued) continue;
            ss_dupe x;
            entry_of(k, p, i, &x);
            if (x.hashed != 1)
                return ss_err(e, SS_E_USAGE, "no payload hash of %s to record", x.name);
            snprintf(f.name, sizeof f.name, "%s", x.name);
            f.size = x.size;
            memcpy(f.hash, x.hash, sizeof f.hash);
            if (ss_queued_file_add(k->s->db, k->to, &f, e) != 0) return -1;
            f.member++;
        }
    }
    return 0;
}

/* The batch's numbers and its sealed pairs' rows, in one transaction. */
static int take_seqs(packing *k, size_t b0, size_t b1, uint64_t count, uint64_t *first, ss_error *e)
{
    ss_db *db = k->s->db;
    int rc = -1;
    for (int attempt = 0; attempt < 3 && rc != 0; attempt++) {
        rc = ss_db_begin(db, e);
        if (rc == 0) rc = ss_peer_take_seqs(db, k->to, count, first, e);
        if (rc == 0) rc = record_sealed_files(k, b0, b1, e);
        if (rc == 0) rc = ss_db_commit(db, e);
        if (rc == 0) break;
        bool busy = ss_db_was_busy(db);
        ss_db_rollback(db);
        if (!busy) break;
    }
    return rc;
}

/* Numbers the batch's pairs in order; *pub receives the journal record. */
static int number_batch(packing *k, size_t b0, size_t b1, ss_journal *pub, ss_error *e)
{
    uint64_t count = 0, seq;
    for (size_t pos = b0; pos < b1; pos++)
        count += !is_skipped(at(k, pos));
    if (count == 0) return 0;
    if (take_seqs(k, b0, b1, count, &seq, e) != 0) return -1;
    *pub = (ss_journal){.kind = SS_JOURNAL_PUBLISHING,
                        .first_seq = seq,
                        .last_seq = seq + count - 1,
                        .since_ms = ss_now_ms()};
    int64_t now = ss_now();
    for (size_t pos = b0; pos < b1; pos++) {
        packed *p = at(k, pos);
        if (is_skipped(p)) continue;
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

/* The fields the peer sees: a sealed pair's name, compression and files
 * travel inside its package (seal.h). */
static void wire_fields(const packing *k, const packed *p, ss_instr *wire)
{
    *wire = p->in;
    if (!p->sealed) return;
    snprintf(wire->name, sizeof wire->name, "%s", SS_SEALED_NAME);
    wire->zip = SS_ZIP_NONE;
    wire->size = p->sealed_size;
    wire->files = 0;
    snprintf(wire->enc, sizeof wire->enc, "%s", k->enc);
    sodium_bin2hex(wire->seal, sizeof wire->seal, p->seal_pin, sizeof p->seal_pin);
}

/* Signed instructions for the batch under temporary names, then one flush
 * (which also makes any package packed again durable). */
static int write_instructions(packing *k, size_t b0, size_t b1, ss_error *e)
{
    for (size_t pos = b0; pos < b1; pos++) {
        packed *p = at(k, pos);
        if (is_skipped(p)) continue;
        char final[64], shown[PATH_MAX];
        ss_instr wire;
        wire_fields(k, p, &wire);
        snprintf(final, sizeof final, "%012" PRIu64 "-%s.ins", p->in.seq, p->in.id);
        int rc = ss_atomic_begin(&p->ins, k->o.fd, final, 0640, e);
        if (rc == 0) rc = write_instruction(k->s, &p->ins, &wire, p->hash, e);
        if (rc == 0) rc = ss_atomic_close(&p->ins, false, e);
        if (rc != 0) {
            explain_failure(e, k->o.path, "write the instruction of",
                            pair_shown(k, p, shown, sizeof shown), k->to);
            return -1;
        }
    }
    if (ss_sync_fs(k->o.fd, e) == 0) return 0;
    explain_failure(e, k->o.path, "flush the instructions of", "this send", k->to);
    return -1;
}

/* Receipts and heartbeats (reports.h) are told in sender.log only, and
 * are not followed by receipts. */
static bool is_report(const ss_instr *in)
{
    return in->type == SS_TYPE_RECEIPT || in->type == SS_TYPE_HEARTBEAT;
}

/* The 4504 row (and 4503 when unsigned) of a queued pair, stored now, and
 * its row in the pairs whose receipts are awaited (keystore/links.h). */
static int record_queued(packing *k, const packed *p, ss_error *e)
{
    if (is_report(&p->in))
        return ss_sent_queued(k->s->db, k->to, p->in.id, ss_itype_name(p->in.type), p->in.name,
                              p->in.size, ss_now(), e);
    ss_notices *q = &k->s->notices;
    size_t before = q->n;
    char size[32], shown[SS_NAME_MAX + 32];
    snprintf(size, sizeof size, "%" PRIu64, p->in.size);
    ss_bundle_describe(&p->in, shown, sizeof shown);
    if (ss_sent_queued(k->s->db, k->to, p->in.id, ss_itype_name(p->in.type), shown, p->in.size,
                       ss_now(), e) != 0 ||
        ss_notices_add(q, e, 4504, p->in.id, shown, size, k->to, NULL) != 0 ||
        (!k->s->sk && ss_notices_add(q, e, 4503, p->in.id, k->to, NULL) != 0) ||
        ss_notices_store(q, k->s->db, k->s->rep, NULL, NULL, e) != 0) {
        ss_notices_truncate(q, before);
        return -1;
    }
    return 0;
}

/* sender.log names each file of a queued bundle (its 4504 names the count). */
static void log_files(packing *k, const packed *p)
{
    if (!p->in.files) return;
    ss_log *log = ss_reporter_log(k->s->rep, SS_COMP_SENDER);
    for (size_t i = p->head; i != NONE; i = k->m[i].next)
        if (!k->items[i].already_queued)
            ss_logf(log,
                    "Queued %s (%" PRIu64 " bytes) for %s in instruction %s, a bundle of %u files",
                    k->m[i].name, k->items[i].size, k->to, p->in.id, p->in.files);
}

/* Takes a pair that could not be recorded out of the outbox again (the
 * rows of its files go too if site.db takes it now: else the next
 * listing of the outbox forgets them). */
static int unqueue(packing *k, packed *p)
{
    int rc = unlinkat(k->o.fd, p->ins.final, 0);
    (void)unlinkat(k->o.fd, p->pck.final, 0);
    (void)ss_fsync_dirfd(k->o.fd, NULL);
    if (rc == 0 && p->sealed) (void)ss_queued_files_forget(k->s->db, p->in.id, NULL);
    return rc;
}

/* Its files know their pair, and the caller is told of each. */
static void mark_queued(packing *k, packed *p)
{
    for (size_t i = p->head; i != NONE; i = k->m[i].next) {
        ss_send_item *it = &k->items[i];
        if (it->already_queued) continue;
        it->queued = true;
        memcpy(it->id, p->in.id, sizeof it->id);
        it->bundled = p->in.files;
    }
    tell_pair(k, p, true);
}

/* Package, then instruction (now queued), then its row, then the caller. */
static int queue_one(packing *k, packed *p, bool *journal_done, ss_error *e)
{
    snprintf(p->pck.final, sizeof p->pck.final, "%012" PRIu64 "-%s.pck", p->in.seq, p->in.id);
    if (ss_atomic_rename(&p->pck, 0, e) != 0 || ss_atomic_rename(&p->ins, 0, e) != 0) return -1;
    if (record_queued(k, p, e) != 0) {
        char why[sizeof e->msg], shown[PATH_MAX];
        snprintf(why, sizeof why, "%s", e->msg);
        ss_err(e, SS_E_DB,
               "%scannot record %s (instruction %s) in %s/site.db, so it was not queued: %s",
               ss_error_no_space(e) ? "no space left on device: " : "",
               pair_shown(k, p, shown, sizeof shown), p->in.id, k->s->root, why);
        /* A pair left queued without its row is recorded by the next
         * holder of the lock: the journal must then stay. */
        *journal_done = unqueue(k, p) == 0;
        return -1;
    }
    log_files(k, p);
    if (p->indexed) ss_dupes_rename(&k->dupes, p->dupe_index, p->pck.final);
    mark_queued(k, p);
    return 0;
}

/* The per-pair steps, then one flush of the folder and of site.db. */
static int queue_batch(packing *k, size_t b0, size_t b1, size_t *failed, ss_error *e)
{
    bool journal_done = true;
    int rc = ss_db_sync_defer(k->s->db, e);
    for (size_t pos = b0; pos < b1; pos++) {
        packed *p = at(k, pos);
        if (is_skipped(p) || rc != 0)
            tell_pair(k, p, false); /* still true after a failure: queued before */
        else if ((rc = queue_one(k, p, &journal_done, e)) != 0) {
            *failed = pos;
            tell_pair(k, p, false);
        }
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

/* The files of the batch found still queued, when it failed before any
 * was queued: they are queued, whatever failed now. */
static void tell_batch(packing *k, size_t b0, size_t b1)
{
    for (size_t pos = b0; pos < b1; pos++)
        tell_pair(k, at(k, pos), false);
}

static int publish_batch(packing *k, size_t b0, size_t b1, size_t *failed, ss_error *e)
{
    for (*failed = b0; *failed < b1; ++*failed) {
        if (check_pair(k, at(k, *failed), e) != 0) {
            tell_batch(k, b0, b1);
            return -1;
        }
    }
    *failed = b0;
    while (*failed + 1 < b1 && is_skipped(at(k, *failed))) /* what a failure names */
        ++*failed;
    ss_journal pub;
    int numbered = number_batch(k, b0, b1, &pub, e), rc = numbered < 0 ? -1 : 0;
    if (numbered > 0 && (rc = ss_outbox_journal_set(&k->o, &pub, e)) == 0 &&
        (rc = write_instructions(k, b0, b1, e)) == 0)
        return queue_batch(k, b0, b1, failed, e); /* tells each file in its turn */
    if (numbered > 0) (void)ss_outbox_journal_set(&k->o, NULL, NULL);
    tell_batch(k, b0, b1);
    return rc;
}

/* Under the outbox lock: finish an interrupted publication, then publish
 * batch by batch (batch_max pairs). */
static int publish_all(packing *k, ss_error *e)
{
    if (ss_outbox_lock(&k->o, e) != 0) return -1;
    int rc = ss_sender_recover(k->s, &k->o, k->to, e);
    if (rc == 0 && k->check_dupes) rc = ss_dupes_load(&k->dupes, k->o.fd, k->s->db, k->to, e);
    size_t batch = k->s->conf->batch_max ? k->s->conf->batch_max : 1, failed = 0;
    for (size_t b0 = 0; rc == 0 && b0 < k->np; b0 += batch) {
        size_t b1 = k->np - b0 < batch ? k->np : b0 + batch;
        if ((rc = publish_batch(k, b0, b1, &failed, e)) != 0) {
            char shown[PATH_MAX];
            report_not_queued(k, pair_shown(k, at(k, failed), shown, sizeof shown), e);
        }
    }
    abort_pairs(k); /* what was not published */
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
    packing k = {.s = s, .to = to, .dest = dest, .items = items, .n = n};
    k.check_dupes = wants_dupe_check(s, items, n);
    if (choose_seal(&k, e) != 0) return -1;
    if (ss_outbox_open(&k.o, s->root, to, e) != 0) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        return ss_err(e, e->code, "cannot open the outbox for %s: %s", to, why);
    }
    k.m = calloc(n, sizeof *k.m);
    k.p = calloc(n, sizeof *k.p);
    k.order = calloc(n, sizeof *k.order);
    int rc = k.m && k.p && k.order ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        items[i].queued = items[i].already_queued = false;
        items[i].bundled = 0;
    }
    if (rc == 0) rc = plan_pairs(&k, e);
    if (rc == 0) rc = pack_all(&k, e);
    if (rc == 0) rc = publish_all(&k, e);
    ss_dupes_free(&k.dupes);
    free(k.m);
    free(k.p);
    free(k.order);
    ss_seal_key_free(&k.seal_key);
    ss_outbox_close(&k.o);
    return rc;
}
