/*
 * fuzz_pair.c - libFuzzer target: a whole instruction + package pair
 * dropped into a site's receive inbox and one despooler scan over it
 * (ss_despooler_open / ss_despooler_scan / ss_despooler_close).  Build and
 * run: see README.md here.
 *
 * Fixture, made once per process in a temporary folder (tmpfs where there
 * is one): site SS1 (tests/unit/testutil.c's tu_site_make) that trusts
 * the fixed PS1 key of ps1_key.h.  The seeds in corpus/pair were signed
 * with that key by `sitespool send` (see make_corpus.sh), so the fuzzer
 * starts from pairs that are delivered and mutates them from there.  At
 * start-up a signed pair and an unsigned one are delivered once as a
 * self-check of the fixture.  After every input the site is put back as
 * it was: every file that appeared is removed and every table of site.db
 * is restored from an in-memory copy (ATTACH ':memory:'), so that each
 * input meets the same site and a crash reproduces from its file alone.
 * SS_FUZZ_VERBOSE=1 prints what the despooler made of each input.
 *
 * Input:
 *   byte 0     flags
 *                bit 0  require_secure_key_exchange = no (default yes)
 *                bit 1  no package file, only the instruction
 *                bit 2  the package is a symlink to a file outside the site
 *                bit 3  the instruction is a symlink to a file outside
 *                bit 4  the package is a hard link to a file outside
 *                bit 5  the instruction is a hard link to a file outside
 *                bit 6  sign: the n instruction bytes are a fields line,
 *                       which the harness signs with PS1's key over the
 *                       package (as a trusted peer would; the fuzzer then
 *                       reaches what happens after verification)
 *                bit 7  refresh: the values of created= and expires= in
 *                       the fields line become now and now + 1 hour (so
 *                       that seeds do not expire), before signing
 *   byte 1-2   instruction length n, little-endian (cut to what is there)
 *   n bytes    the instruction file (<ID>.ins), or with bits 6/7 the fields
 *   the rest   the package file (<ID>.pck)
 * <ID> is the first "id=" followed by a valid 32-digit id in the
 * instruction, else 32 zeros.
 *
 * Invariants checked after the scan (hostile input must not break them):
 *   - the scan returns, without an error (the fixture has no faults, so
 *     a failed scan means one hostile pair stops the despooler);
 *   - a file is delivered (inboxes/<box>/incoming) only if the
 *     instruction's signature verifies with PS1's key over the package -
 *     or, with require_secure_key_exchange = no, it is the unsigned form -
 *     and then only into an allowed inbox, under the instruction's name
 *     (or name.<suffix>), with the declared size (and, zip=none, the
 *     package's bytes); no staging file (.sitespool-*.tmp) is left;
 *   - no file appears or disappears anywhere else under the temporary
 *     folder than receive, rejected, consumed, incoming, hman.box, logs
 *     and site.db*; the files that links point to keep their bytes and
 *     their mode;
 *   - unless the pair verified with PS1's key, the keystore does not
 *     change (with require_secure_key_exchange = no, keys may only be
 *     added as pending) and no site becomes blocked.
 */
#include "../../despooler/despooler.h"
#include "../../inboxes/instruction.h"
#include "../../keystore/sigfile.h"
#include "../unit/testutil.h"
#include "fuzz_common.h"
#include "ps1_key.h"

#include <dirent.h>
#include <sys/stat.h>

#define ZERO_ID "00000000000000000000000000000000"

static const char *scratch; /* the temporary folder */
static tu_site ss1;         /* the site under test */
static ss_pubkey ps1_pk;    /* the fixed PS1 key it trusts */
static ss_seckey *ps1_sk;   /* signs for bit 6 and the self-check */
static char receive_dir[1100];
static char outside_pck[600], outside_ins[600];
static char *pristine_keys; /* keystore digest after setup */
static bool verbose;        /* SS_FUZZ_VERBOSE=1: one line per input */

/* ------------------------------------------------------------ the tree */

struct entry {
    char *rel; /* path relative to scratch */
    mode_t mode;
};
static struct entry *walk_buf;
static size_t walk_n, walk_cap;
static size_t scratch_len;

static int walk_fn(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag;
    (void)ftw;
    if (strlen(path) <= scratch_len) return 0; /* the folder itself */
    if (walk_n == walk_cap) {
        walk_cap = walk_cap ? walk_cap * 2 : 128;
        walk_buf = realloc(walk_buf, walk_cap * sizeof *walk_buf);
        if (!walk_buf) abort();
    }
    walk_buf[walk_n].rel = strdup(path + scratch_len + 1);
    walk_buf[walk_n].mode = st->st_mode;
    walk_n++;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->rel, ((const struct entry *)b)->rel);
}

/* Every path under scratch, sorted; the caller frees with walk_free. */
static void walk(struct entry **out, size_t *n)
{
    walk_buf = NULL;
    walk_n = walk_cap = 0;
    nftw(scratch, walk_fn, 32, FTW_PHYS);
    qsort(walk_buf, walk_n, sizeof *walk_buf, entry_cmp);
    *out = walk_buf;
    *n = walk_n;
}

static void walk_free(struct entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].rel);
    free(v);
}

static struct entry *pristine;
static size_t npristine;

static bool in_pristine(const char *rel)
{
    struct entry key = {.rel = (char *)rel};
    return bsearch(&key, pristine, npristine, sizeof key, entry_cmp) != NULL;
}

static bool starts(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* Paths that change by design and are neither checked nor cleaned. */
static bool volatile_path(const char *rel)
{
    return starts(rel, "SS1/logs/") || starts(rel, "SS1/site.db") ||
           !strcmp(rel, "SS1/.despool.lock") ||
           /* link targets: checked by check_outside, removed by run_pair */
           !strcmp(rel, "outside.pck") || !strcmp(rel, "outside.ins");
}

/* Where new files may appear (and are removed after each input). */
static bool scratch_area(const char *rel)
{
    return starts(rel, "SS1/" SS_DIR_RECEIVE "/") || starts(rel, "SS1/" SS_DIR_REJECTED "/") ||
           starts(rel, "SS1/" SS_DIR_CONSUMED "/") || starts(rel, "SS1/" SS_DIR_HMAN "/");
}

/* "SS1/inboxes/<box>/incoming/<name>": box and name, else false. */
static bool incoming_file(const char *rel, char *box, size_t box_len, const char **name)
{
    if (!starts(rel, "SS1/inboxes/")) return false;
    const char *b = rel + strlen("SS1/inboxes/");
    const char *slash = strchr(b, '/');
    if (!slash || strncmp(slash, "/incoming/", 10) != 0 || !slash[10]) return false;
    if (strchr(slash + 10, '/')) return false;
    snprintf(box, box_len, "%.*s", (int)(slash - b), b);
    *name = slash + 10;
    return true;
}

/* -------------------------------------------------------- the database */

static void db_exec(const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(ss1.db.h, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "fuzz_pair: %s: %s\n", sql, err ? err : "?");
        abort();
    }
}

static char *restore_sql; /* one transaction putting every table back */

static void db_snapshot(void)
{
    db_exec("ATTACH DATABASE ':memory:' AS fuzzsnap");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ss1.db.h,
                           "SELECT name FROM main.sqlite_master WHERE type='table' AND "
                           "name NOT LIKE 'sqlite_%' ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        abort();
    size_t cap = 256, used = 0;
    char *restore = malloc(cap);
    used += (size_t)snprintf(restore, cap, "BEGIN IMMEDIATE;");
    char names[64][64];
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n < 64)
        snprintf(names[n++], sizeof names[0], "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    for (int i = 0; i < n; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "CREATE TABLE fuzzsnap.\"%s\" AS SELECT * FROM main.\"%s\"",
                 names[i], names[i]);
        db_exec(sql);
        int need = snprintf(sql, sizeof sql,
                            "DELETE FROM main.\"%s\"; INSERT INTO main.\"%s\" SELECT * FROM "
                            "fuzzsnap.\"%s\";",
                            names[i], names[i], names[i]);
        if (used + (size_t)need + 16 > cap) {
            cap = (used + (size_t)need + 16) * 2;
            restore = realloc(restore, cap);
        }
        used += (size_t)snprintf(restore + used, cap - used, "%s", sql);
    }
    snprintf(restore + used, cap - used, "COMMIT;");
    restore_sql = restore;
}

/* The keystore as text: one line per key (site, id, key, state). */
static char *keys_digest(void)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ss1.db.h,
                           "SELECT site || ' ' || key_id || ' ' || hex(public_key) || ' ' || "
                           "state FROM main.keys ORDER BY 1",
                           -1, &st, NULL) != SQLITE_OK)
        abort();
    size_t cap = 4096, used = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *row = (const char *)sqlite3_column_text(st, 0);
        size_t n = strlen(row);
        if (used + n + 2 > cap) {
            cap = (used + n + 2) * 2;
            out = realloc(out, cap);
        }
        memcpy(out + used, row, n);
        used += n;
        out[used++] = '\n';
        out[used] = '\0';
    }
    sqlite3_finalize(st);
    return out;
}

static int blocked_sites(void)
{
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(ss1.db.h, "SELECT count(*) FROM main.sites WHERE blocked != 0", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ------------------------------------------------------------ one input */

struct pair {
    unsigned flags;
    const uint8_t *ins;
    size_t ins_len;
    const uint8_t *pck;
    size_t pck_len;
    char id[SS_ID_HEX + 1];
};

/* Bit 7: created= and expires= values replaced by now and now + 3600. */
static uint8_t *refresh_times(const uint8_t *in, size_t len, size_t *out_len)
{
    uint8_t *out = malloc(len + 64);
    size_t o = 0, i = 0;
    int64_t now = ss_now();
    bool created_done = false, expires_done = false;
    while (i < len) {
        bool tok_start = i == 0 || in[i - 1] == ' ';
        const char *key = NULL;
        int64_t value = 0;
        if (tok_start && !created_done && len - i >= 8 && !memcmp(in + i, "created=", 8)) {
            key = "created=", value = now, created_done = true;
        } else if (tok_start && !expires_done && len - i >= 8 && !memcmp(in + i, "expires=", 8)) {
            key = "expires=", value = now + 3600, expires_done = true;
        }
        if (!key) {
            out[o++] = in[i++];
            continue;
        }
        o += (size_t)snprintf((char *)out + o, 32, "%s%lld", key, (long long)value);
        for (i += 8; i < len && in[i] >= '0' && in[i] <= '9'; i++)
            ;
    }
    *out_len = o;
    return out;
}

/* Bit 6: the fields line (up to a newline or NUL) signed with PS1's key
 * over the package; NULL if it cannot be a trusted comment. */
static uint8_t *sign_fields(const uint8_t *in, size_t len, const uint8_t *pck, size_t pck_len,
                            size_t *out_len)
{
    size_t n = 0;
    while (n < len && in[n] != '\n' && in[n] != '\0')
        n++;
    char *tc = fuzz_cstr(in, n);
    unsigned char hash[SS_HASH_BYTES];
    ss_hash h;
    ss_hash_init(&h);
    ss_hash_update(&h, pck, pck_len);
    ss_hash_final(&h, hash);
    static char sig[SS_SIGFILE_MAX];
    ss_error e = {0};
    int rc =
        ss_sign_hash(ps1_sk, hash, tc, "sitespool instruction PS1 -> SS1", sig, sizeof sig, &e);
    free(tc);
    if (rc != 0) return NULL;
    *out_len = strlen(sig);
    uint8_t *out = malloc(*out_len);
    memcpy(out, sig, *out_len);
    return out;
}

/* The input as the files to drop; p->ins points into *owned if the
 * harness rewrote the instruction (free it). */
static void split(struct pair *p, const uint8_t *data, size_t size, uint8_t **owned)
{
    memset(p, 0, sizeof *p);
    p->flags = size > 0 ? data[0] : 0;
    size_t n = size >= 3 ? (size_t)data[1] | (size_t)data[2] << 8 : 0;
    const uint8_t *rest = data + (size < 3 ? size : 3);
    size_t rest_len = size < 3 ? 0 : size - 3;
    if (n > rest_len) n = rest_len;
    p->ins = rest;
    p->ins_len = n;
    p->pck = rest + n;
    p->pck_len = rest_len - n;
    *owned = NULL;
    if (p->flags & 0x80) {
        *owned = refresh_times(p->ins, p->ins_len, &p->ins_len);
        p->ins = *owned;
    }
    if (p->flags & 0x40) {
        size_t len;
        uint8_t *sig = sign_fields(p->ins, p->ins_len, p->pck, p->pck_len, &len);
        if (sig) {
            free(*owned);
            *owned = sig;
            p->ins = sig;
            p->ins_len = len;
        }
    }
    snprintf(p->id, sizeof p->id, ZERO_ID);
    for (size_t i = 0; i + 3 + SS_ID_HEX <= p->ins_len; i++) {
        if (memcmp(p->ins + i, "id=", 3) != 0) continue;
        char cand[SS_ID_HEX + 1];
        memcpy(cand, p->ins + i + 3, SS_ID_HEX);
        cand[SS_ID_HEX] = '\0';
        if (ss_id_valid(cand)) {
            memcpy(p->id, cand, sizeof cand);
            break;
        }
    }
}

/* Drops one file into receive as the flags say: a regular file, or a
 * symlink / hard link to a regular file outside the site. */
static void drop(const char *name, const uint8_t *data, size_t len, bool symlinked, bool linked,
                 const char *outside)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", receive_dir, name);
    if (symlinked || linked) {
        fuzz_write(outside, data, len);
        chmod(outside, 0644);
        int rc = symlinked ? symlink(outside, path) : link(outside, path);
        if (rc != 0) {
            perror(path);
            abort();
        }
    } else {
        fuzz_write(path, data, len);
    }
}

/* What the harness itself knows about the pair, independently of the
 * despooler: the fields (if they parse) and whether it may be delivered. */
struct oracle {
    bool is_signed;
    bool verified; /* signature and global signature verify with PS1 */
    bool fields_ok;
    ss_instr in;
};

static void judge(const struct pair *p, struct oracle *o)
{
    memset(o, 0, sizeof *o);
    const char *text = (const char *)p->ins;
    o->is_signed = ss_sig_looks_signed(text, p->ins_len);
    ss_error e = {0};
    if (o->is_signed) {
        static ss_sig sig;
        if (ss_sig_parse(text, p->ins_len, &sig, &e) != 0) return;
        unsigned char hash[SS_HASH_BYTES];
        ss_hash h;
        ss_hash_init(&h);
        ss_hash_update(&h, p->pck, p->pck_len);
        ss_hash_final(&h, hash);
        o->verified = ss_sig_verify_hash(&sig, &ps1_pk, hash, &e) == 0;
        o->fields_ok = ss_instr_parse(&o->in, sig.trusted_comment, &e) == 0;
    } else {
        char *line = fuzz_cstr(p->ins, p->ins_len);
        size_t n = strlen(line);
        if (n == p->ins_len) { /* no NUL inside */
            if (n && line[n - 1] == '\n') line[n - 1] = '\0';
            o->fields_ok = !strchr(line, '\n') && ss_instr_parse(&o->in, line, &e) == 0;
        }
        free(line);
    }
}

static void check_delivered(const struct pair *p, const struct oracle *o, const char *box,
                            const char *name, const char *rel)
{
    bool secure = ss1.conf.require_secure_key_exchange;
    FUZZ_CHECK(name[0] != '.', "a staging file is left behind: %s", rel);
    FUZZ_CHECK(o->verified || (!secure && !o->is_signed),
               "%s delivered, but the pair does not verify with PS1's key (secure=%d signed=%d)",
               rel, secure, o->is_signed);
    FUZZ_CHECK(o->fields_ok, "%s delivered from fields the harness cannot parse", rel);
    FUZZ_CHECK(!strcmp(box, o->in.dest) && ss_conf_dest_allowed(&ss1.conf, box),
               "%s delivered into %s (instruction says %s)", rel, box, o->in.dest);
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", scratch, rel);
    struct stat st;
    FUZZ_CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode), "%s is not a regular file", rel);
    if (o->in.files) { /* a bundle member: a plain name, within the stream */
        FUZZ_CHECK(ss_file_name_valid(name), "bundle member %s has no plain name", rel);
        FUZZ_CHECK((uint64_t)st.st_size <= o->in.size,
                   "bundle member %s is larger than size=", rel);
        return;
    }
    size_t nl = strlen(o->in.name);
    FUZZ_CHECK(!strncmp(name, o->in.name, nl) && (name[nl] == '\0' || name[nl] == '.'),
               "%s delivered under another name than '%s'", rel, o->in.name);
    FUZZ_CHECK((uint64_t)st.st_size == o->in.size, "%s has %lld bytes, declared %llu", rel,
               (long long)st.st_size, (unsigned long long)o->in.size);
    if (o->in.zip == SS_ZIP_NONE) {
        size_t len = 0;
        char dir[1300];
        snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path);
        char *got = tu_read(dir, name, &len);
        FUZZ_CHECK(got && len == p->pck_len && !memcmp(got, p->pck, len),
                   "%s (zip=none) differs from the package", rel);
        free(got);
    }
}

static void check_outside(const char *path, const uint8_t *data, size_t len)
{
    struct stat st;
    FUZZ_CHECK(lstat(path, &st) == 0, "%s (a link target) is gone", path);
    FUZZ_CHECK(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0644,
               "%s (a link target) changed mode to %o", path, (unsigned)(st.st_mode & 07777));
    size_t got_len = 0;
    char dir[600];
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path);
    char *got = tu_read(dir, strrchr(path, '/') + 1, &got_len);
    FUZZ_CHECK(got && got_len == len && !memcmp(got, data, len), "%s (a link target) changed",
               path);
    free(got);
}

/* Runs one input; returns the number of files delivered. */
static size_t run_pair(const uint8_t *data, size_t size)
{
    struct pair p;
    uint8_t *owned;
    split(&p, data, size, &owned);
    ss1.conf.require_secure_key_exchange = !(p.flags & 1);
    struct oracle o;
    judge(&p, &o);

    char name[64];
    if (!(p.flags & 2)) {
        snprintf(name, sizeof name, "%s.pck", p.id);
        drop(name, p.pck, p.pck_len, p.flags & 4, p.flags & 16, outside_pck);
    }
    snprintf(name, sizeof name, "%s.ins", p.id);
    drop(name, p.ins, p.ins_len, p.flags & 8, p.flags & 32, outside_ins);

    ss_despooler d;
    ss_error e = {0};
    FUZZ_CHECK(ss_despooler_open(&d, ss1.root, &ss1.conf, &ss1.db, &ss1.rep, &e) == 0, "open: %s",
               e.msg);
    bool progress = false;
    int rc = ss_despooler_scan(&d, &progress, &e);
    ss_despooler_close(&d);
    FUZZ_CHECK(rc == 0, "the scan failed: %s", e.msg);
    if (verbose)
        fprintf(stderr,
                "fuzz_pair: id %s flags 0x%02x signed %d verified %d fields %d: delivered %zu "
                "rejected %zu duplicates %zu waiting %zu\n",
                p.id, p.flags, o.is_signed, o.verified, o.fields_ok, d.stats.delivered,
                d.stats.rejected, d.stats.duplicates, d.stats.waiting);

    /* The files. */
    struct entry *now;
    size_t nnow, delivered = 0;
    walk(&now, &nnow);
    for (size_t i = 0; i < nnow; i++) {
        const char *rel = now[i].rel, *fname;
        char box[64];
        if (volatile_path(rel) || in_pristine(rel)) continue;
        if (incoming_file(rel, box, sizeof box, &fname)) {
            check_delivered(&p, &o, box, fname, rel);
            if (verbose) fprintf(stderr, "fuzz_pair:   delivered %s\n", rel);
            delivered++;
            continue;
        }
        FUZZ_CHECK(scratch_area(rel), "a file appeared outside the site's inboxes: %s", rel);
        size_t rl = strlen(rel);
        if (verbose && rl > 4 && !strcmp(rel + rl - 4, ".why")) {
            char dir[1300];
            snprintf(dir, sizeof dir, "%s/%.*s", scratch, (int)(strrchr(rel, '/') - rel), rel);
            char *why = tu_read(dir, strrchr(rel, '/') + 1, NULL);
            fprintf(stderr, "fuzz_pair:   %s: %s", rel, why ? why : "?\n");
            free(why);
        }
    }
    for (size_t i = 0; i < npristine; i++) {
        if (volatile_path(pristine[i].rel)) continue;
        struct entry key = {.rel = pristine[i].rel};
        FUZZ_CHECK(bsearch(&key, now, nnow, sizeof key, entry_cmp), "%s disappeared",
                   pristine[i].rel);
    }
    FUZZ_CHECK(delivered <= (o.in.files ? o.in.files : 1),
               "%zu files delivered from one instruction (files=%u)", delivered, o.in.files);
    if ((p.flags & 2) == 0 && (p.flags & (4 | 16))) check_outside(outside_pck, p.pck, p.pck_len);
    if (p.flags & (8 | 32)) check_outside(outside_ins, p.ins, p.ins_len);

    /* The keystore. */
    if (!o.verified) {
        char *keys = keys_digest();
        if (ss1.conf.require_secure_key_exchange) {
            FUZZ_CHECK(!strcmp(keys, pristine_keys),
                       "the keystore changed without a verified pair:\nbefore:\n%safter:\n%s",
                       pristine_keys, keys);
        } else {
            /* Every key it had stays as it was; new ones are only pending. */
            for (const char *l = pristine_keys; *l; l = strchr(l, '\n') + 1) {
                size_t n = (size_t)(strchr(l, '\n') - l);
                bool found = false;
                for (const char *m = keys; *m && !found; m = strchr(m, '\n') + 1)
                    found = !strncmp(m, l, n + 1);
                FUZZ_CHECK(found, "key '%.*s' changed without a verified pair", (int)n, l);
            }
            for (const char *m = keys; *m; m = strchr(m, '\n') + 1) {
                size_t n = (size_t)(strchr(m, '\n') - m);
                bool old = false;
                for (const char *l = pristine_keys; *l && !old; l = strchr(l, '\n') + 1)
                    old = !strncmp(m, l, n + 1);
                FUZZ_CHECK(old || (n > 8 && !strncmp(m + n - 8, " pending", 8)),
                           "key '%.*s' added without a verified pair", (int)n, m);
            }
        }
        free(keys);
        FUZZ_CHECK(blocked_sites() == 0, "a site became blocked without a verified pair");
    }

    /* Back to the pristine site: files (deepest first), then site.db. */
    for (size_t i = nnow; i-- > 0;) {
        const char *rel = now[i].rel;
        if (volatile_path(rel) || in_pristine(rel)) continue;
        char path[1300];
        snprintf(path, sizeof path, "%s/%s", scratch, rel);
        if (remove(path) != 0) {
            perror(path);
            abort();
        }
    }
    walk_free(now, nnow);
    unlink(outside_pck);
    unlink(outside_ins);
    db_exec(restore_sql);
    free(owned);
    return delivered;
}

/* ------------------------------------------------------------- set-up */

/* A signed PS1 -> SS1 pair (zip=none), in the input format above. */
static uint8_t *self_check_input(bool sign, size_t *len)
{
    static const char payload[] = "self-check\n";
    ss_instr in;
    memset(&in, 0, sizeof in);
    ss_instr_new_id(in.id);
    strcpy(in.from, "PS1");
    strcpy(in.to, "SS1");
    in.type = SS_TYPE_DATA;
    strcpy(in.dest, "replmgr.box");
    strcpy(in.name, "self-check.txt");
    in.size = strlen(payload);
    in.zip = SS_ZIP_NONE;
    in.seq = 1;
    in.created = ss_now();
    in.expires = in.created + 3600;
    char tc[1024], sig[SS_SIGFILE_MAX];
    ss_error e = {0};
    if (ss_instr_format(&in, tc, sizeof tc) != 0) abort();
    if (sign) {
        unsigned char hash[SS_HASH_BYTES];
        ss_hash h;
        ss_hash_init(&h);
        ss_hash_update(&h, payload, strlen(payload));
        ss_hash_final(&h, hash);
        if (ss_sign_hash(ps1_sk, hash, tc, "fuzz self-check", sig, sizeof sig, &e) != 0) abort();
    } else {
        snprintf(sig, sizeof sig, "%s\n", tc);
    }
    size_t n = strlen(sig);
    uint8_t *buf = malloc(3 + n + strlen(payload));
    buf[0] = sign ? 0 : 1;
    buf[1] = (uint8_t)(n & 0xff);
    buf[2] = (uint8_t)(n >> 8);
    memcpy(buf + 3, sig, n);
    memcpy(buf + 3 + n, payload, strlen(payload));
    *len = 3 + n + strlen(payload);
    return buf;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ss_error e = {0};
    if (sodium_init() < 0) abort();
    verbose = getenv("SS_FUZZ_VERBOSE") && *getenv("SS_FUZZ_VERBOSE") == '1';
    scratch = fuzz_scratch("pair");
    scratch_len = strlen(scratch);
    tu_site_make(&ss1, scratch, "SS1", NULL);
    snprintf(receive_dir, sizeof receive_dir, "%s/" SS_DIR_RECEIVE, ss1.root);
    snprintf(outside_pck, sizeof outside_pck, "%s/outside.pck", scratch);
    snprintf(outside_ins, sizeof outside_ins, "%s/outside.ins", scratch);

    char key_path[600];
    snprintf(key_path, sizeof key_path, "%s/ps1.key", scratch);
    int fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, fuzz_ps1_key, strlen(fuzz_ps1_key)) != (ssize_t)strlen(fuzz_ps1_key))
        abort();
    close(fd);
    ss_keyrec rec;
    if (ss_pubkey_parse(fuzz_ps1_pub, strlen(fuzz_ps1_pub), &ps1_pk, NULL, 0, &e) != 0 ||
        ss_seckey_load(key_path, &ps1_sk, &e) != 0) {
        fprintf(stderr, "fuzz_pair: the fixed PS1 key: %s\n", e.msg);
        abort();
    }
    unlink(key_path);
    ss_keyrec_init(&rec, "PS1", &ps1_pk, SS_KEY_TRUSTED, "fuzz", 0);
    if (ss_keys_add(&ss1.db, &rec, &e) != 0) {
        fprintf(stderr, "fuzz_pair: trust PS1: %s\n", e.msg);
        abort();
    }

    /* A first scan creates what the despooler makes on its own (lock
     * file, consumed/, logs); then the pristine state is recorded. */
    ss_despooler d;
    bool progress;
    if (ss_despooler_open(&d, ss1.root, &ss1.conf, &ss1.db, &ss1.rep, &e) != 0 ||
        ss_despooler_scan(&d, &progress, &e) != 0) {
        fprintf(stderr, "fuzz_pair: first scan: %s\n", e.msg);
        abort();
    }
    ss_despooler_close(&d);
    walk(&pristine, &npristine);
    db_snapshot();
    pristine_keys = keys_digest();

    /* Self-check: the fixture delivers a good pair, signed and unsigned
     * (require_secure_key_exchange = no), and is clean again after it. */
    for (int signed_pair = 1; signed_pair >= 0; signed_pair--) {
        size_t len;
        uint8_t *in = self_check_input(signed_pair, &len);
        size_t n = run_pair(in, len);
        free(in);
        if (n != 1) {
            fprintf(stderr, "fuzz_pair: self-check failed: %s pair delivered %zu files\n",
                    signed_pair ? "a signed" : "an unsigned", n);
            abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_pair(data, size);
    return 0;
}
