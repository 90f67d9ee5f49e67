/*
 * test_sender.c - CUnit suite for the sender library: backoff, packing and
 * delivery between two real sites, the outbox counts, unreachable peers,
 * the "nothing of a failed call stays visible" contract of ss_sender_pack,
 * files still queued, finishing what a killed sender left (journal), and
 * bundles (grouping, the tar stream read back, a bundle recorded late),
 * and sealed pairs (what the package shows, who can open it, duplicates).
 */
#include "testutil.h"
#include "../../inboxes/fileio.h"
#include "../../inboxes/seal.h"
#include "../../keystore/links.h"
#include "../../keystore/sigfile.h"
#include "../../sender/address.h"
#include "../../sender/bundle.h"
#include "../../sender/dupes.h"
#include "../../sender/hostkeys.h"
#include "../../sender/outbox.h"
#include "../../sender/pipe.h"
#include "../../sender/sender.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>
#include <zlib.h>

/* Two sites PS1 -> SS1 in one temporary folder, PS1's sender open. */
typedef struct fixture {
    char *dir;
    tu_site ps, ss;
    ss_sender snd;
    char receive[1024], outbox[1024];
} fixture;

/* Settings are changed in f->ps.conf after opening (the sender reads them
 * through its pointer): site.conf refuses a key set twice. */
static void fx_open(fixture *f)
{
    ss_error e = {0};
    f->dir = tu_tempdir("sender");
    tu_site_make(&f->ps, f->dir, "PS1", NULL);
    tu_site_make(&f->ss, f->dir, "SS1", NULL);
    snprintf(f->receive, sizeof f->receive, "%s/" SS_DIR_RECEIVE, f->ss.root);
    snprintf(f->outbox, sizeof f->outbox, "%s/" SS_DIR_OUTBOX "/SS1", f->ps.root);
    CU_ASSERT_EQUAL_FATAL(ss_peer_add(&f->ps.db, "SS1", f->receive, &e), 0);
    /* One pair per file unless a test is about bundles (they set it back). */
    f->ps.conf.bundle_max_files = 1;
    CU_ASSERT_EQUAL_FATAL(
        ss_sender_open(&f->snd, f->ps.root, &f->ps.conf, &f->ps.db, &f->ps.rep, true, &e), 0);
}

static void fx_close(fixture *f)
{
    ss_sender_close(&f->snd);
    tu_site_close(&f->ps);
    tu_site_close(&f->ss);
    tu_rm_rf(f->dir);
    free(f->dir);
}

/* Verifies dir/<id>.pck + .ins with pk, parses the fields into *in and
 * checks that the package inflates (with zlib itself) to want/want_len. */
static void check_pair(const char *dir, const char *id, const ss_pubkey *pk, ss_instr *in,
                       const void *want, size_t want_len)
{
    char pck[1100], ins[1100];
    snprintf(pck, sizeof pck, "%s/%s.pck", dir, id);
    snprintf(ins, sizeof ins, "%s/%s.ins", dir, id);
    ss_sig sig;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_verify_file(pk, pck, ins, &sig, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_instr_parse(in, sig.trusted_comment, &e), 0);
    CU_ASSERT_STRING_EQUAL(in->id, id);
    size_t plen = 0;
    char name[64];
    snprintf(name, sizeof name, "%s.pck", id);
    unsigned char *packed = (unsigned char *)tu_read(dir, name, &plen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(packed);
    uLongf out_len = want_len + 16;
    unsigned char *out = malloc(out_len);
    CU_ASSERT_EQUAL(uncompress(out, &out_len, packed, plen), Z_OK);
    CU_ASSERT_EQUAL(out_len, want_len);
    CU_ASSERT(out_len == want_len && memcmp(out, want, want_len) == 0);
    free(out);
    free(packed);
}

static int count_plain(const char *dir, const char *suffix)
{
    /* tu_count counts dot-names too; count only the names readers pick up. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "find '%s' -maxdepth 1 -type f ! -name '.*' -name '*%s' | wc -l", dir,
             suffix);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* The one integer a query gives (-1 if it fails). */
static int db_count(ss_db *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Makes sure fd 0 is open (a previous failure may have closed it), so a
 * test can tell whether the code under test closes a descriptor it never
 * opened. */
static void ensure_fd0(void)
{
    if (fcntl(0, F_GETFD) == -1) {
        int fd = open("/dev/null", O_RDONLY);
        CU_ASSERT_EQUAL_FATAL(fd, 0);
    }
}

/* ------------------------------------------------------------------ tests */

static void test_backoff_doubles_and_caps(void)
{
    ss_conf c;
    ss_conf_defaults(&c);
    c.send_retry_interval = 60;
    c.send_retry_max_interval = 3600;
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 0), 60);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 1), 60);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 2), 120);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 3), 240);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 6), 1920);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 7), 3600); /* 3840 capped */
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 8), 3600);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 1000000), 3600);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, ~0u), 3600);
    for (unsigned f = 1; f < 64; f++) {
        unsigned a = ss_sender_backoff(&c, f), b = ss_sender_backoff(&c, f + 1);
        CU_ASSERT(b == a * 2 || b == 3600);
        CU_ASSERT(b >= a);
    }
    c.send_retry_interval = 1;
    c.send_retry_max_interval = 2;
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 1), 1);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 2), 2);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 3), 2);
    c.send_retry_interval = 0; /* treated as one second */
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 1), 1);
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 2), 2);
    c.send_retry_interval = 7200; /* first wait above the cap: capped */
    c.send_retry_max_interval = 3600;
    CU_ASSERT_EQUAL(ss_sender_backoff(&c, 1), 3600);
}

static void test_pack_deliver_verifies(void)
{
    fixture f;
    fx_open(&f);
    f.ps.conf.package_lifetime = 3600;
    ss_error e = {0};
    static const char a[] = "first payload\n";
    char *b = malloc(300000);
    for (size_t i = 0; i < 300000; i++)
        b[i] = (char)(i * 7 + i / 1000);
    tu_write(f.dir, "a.txt", a, sizeof a - 1);
    tu_write(f.dir, "b.bin", b, 300000);
    tu_write(f.dir, "empty", "", 0);
    char pa[1024], pb[1024], pe[1024];
    snprintf(pa, sizeof pa, "%s/a.txt", f.dir);
    snprintf(pb, sizeof pb, "%s/b.bin", f.dir);
    snprintf(pe, sizeof pe, "%s/empty", f.dir);
    ss_send_item items[3] = {
        {.path = pa, .name = "r\xc3\xa9sum\xc3\xa9 1.txt", .type = SS_TYPE_DATA},
        {.path = pb, .type = SS_TYPE_DATA},
        {.path = pe, .type = SS_TYPE_DATA},
    };
    int64_t before = ss_now();
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "hman.box", items, 3, &e), 0);
    int64_t after = ss_now();
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".pck"), 3);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 3);
    CU_ASSERT_EQUAL(count_plain(f.receive, ""), 0);
    CU_ASSERT_EQUAL(items[0].size, sizeof a - 1);
    CU_ASSERT_EQUAL(items[1].size, 300000);
    CU_ASSERT_EQUAL(items[2].size, 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 3);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4503), 0);

    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 3);
    CU_ASSERT_EQUAL(res.queued, 0);
    CU_ASSERT_FALSE(res.unreachable);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 0);
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 6); /* no temporary names either */
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4500), 3);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4502), 0);

    const void *want[3] = {a, b, ""};
    size_t want_len[3] = {sizeof a - 1, 300000, 0};
    const char *names[3] = {"r\xc3\xa9sum\xc3\xa9 1.txt", "b.bin", "empty"};
    for (int i = 0; i < 3; i++) {
        ss_instr in;
        CU_ASSERT_TRUE(ss_id_valid(items[i].id));
        check_pair(f.receive, items[i].id, &f.ps.pk, &in, want[i], want_len[i]);
        CU_ASSERT_STRING_EQUAL(in.from, "PS1");
        CU_ASSERT_STRING_EQUAL(in.to, "SS1");
        CU_ASSERT_EQUAL(in.type, SS_TYPE_DATA);
        CU_ASSERT_STRING_EQUAL(in.dest, "hman.box");
        CU_ASSERT_STRING_EQUAL(in.name, names[i]);
        CU_ASSERT_EQUAL(in.size, want_len[i]);
        CU_ASSERT_EQUAL(in.zip, SS_ZIP_ZLIB);
        CU_ASSERT_EQUAL(in.seq, (uint64_t)i + 1);
        CU_ASSERT(in.created >= before && in.created <= after);
        CU_ASSERT_EQUAL(in.expires - in.created, 3600);
    }
    /* A signature by another key does not verify. */
    ss_sig sig;
    char pck[1100], ins[1100];
    snprintf(pck, sizeof pck, "%s/%s.pck", f.receive, items[0].id);
    snprintf(ins, sizeof ins, "%s/%s.ins", f.receive, items[0].id);
    CU_ASSERT_NOT_EQUAL(ss_verify_file(&f.ss.pk, pck, ins, &sig, &e), 0);

    /* Sequence numbers continue across calls. */
    ss_send_item more = {.path = pa, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &more, 1, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    ss_instr in;
    check_pair(f.receive, more.id, &f.ps.pk, &in, a, sizeof a - 1);
    CU_ASSERT_EQUAL(in.seq, 4);
    CU_ASSERT_STRING_EQUAL(in.name, "a.txt");
    free(b);
    fx_close(&f);
}

static void test_outbox_info_counts(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    ss_outbox_info q = {.queued = 99, .oldest = 99};
    /* No outbox yet: nothing queued. */
    CU_ASSERT_EQUAL(ss_outbox_info_get(f.ps.root, "SS1", &q, &e), 0);
    CU_ASSERT_EQUAL(q.queued, 0);
    CU_ASSERT_EQUAL(q.oldest, 0);

    tu_write(f.dir, "x", "xyz", 3);
    char px[1024];
    snprintf(px, sizeof px, "%s/x", f.dir);
    ss_send_item items[3] = {
        {.path = px, .name = "x1"}, {.path = px, .name = "x2"}, {.path = px, .name = "x3"}};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", items, 3, &e), 0);
    CU_ASSERT_EQUAL(ss_outbox_info_get(f.ps.root, "SS1", &q, &e), 0);
    CU_ASSERT_EQUAL(q.queued, 3);
    int64_t now = ss_now();
    CU_ASSERT(q.oldest <= now && q.oldest >= now - 5);

    /* The oldest is the smallest instruction mtime. */
    char name[1200];
    snprintf(name, sizeof name, "%s/%012d-%s.ins", f.outbox, 2, items[1].id);
    struct utimbuf ut = {.actime = 1000000000, .modtime = 1000000000};
    CU_ASSERT_EQUAL(utime(name, &ut), 0);
    CU_ASSERT_EQUAL(ss_outbox_info_get(f.ps.root, "SS1", &q, &e), 0);
    CU_ASSERT_EQUAL(q.queued, 3);
    CU_ASSERT_EQUAL(q.oldest, 1000000000);

    /* Temporary names, stray packages and the lock are not queued pairs. */
    tu_write(f.outbox, ".000000000009-0123456789abcdef0123456789abcdef.ins.1234.tmp", "t", 1);
    tu_write(f.outbox, "000000000009-0123456789abcdef0123456789abcdef.ins.tmp", "t", 1);
    tu_write(f.outbox, "000000000010-0123456789abcdef0123456789abcdee.pck", "t", 1);
    CU_ASSERT_EQUAL(ss_outbox_info_get(f.ps.root, "SS1", &q, &e), 0);
    CU_ASSERT_EQUAL(q.queued, 3);

    /* Another peer's outbox is separate. */
    CU_ASSERT_EQUAL(ss_outbox_info_get(f.ps.root, "SS2", &q, &e), 0);
    CU_ASSERT_EQUAL(q.queued, 0);
    fx_close(&f);
}

static void test_unreachable_then_back(void)
{
    fixture f;
    fx_open(&f);
    f.ps.conf.send_retry_interval = 10;
    f.ps.conf.send_retry_max_interval = 100;
    ss_error e = {0};
    char away[1100];
    snprintf(away, sizeof away, "%s.away", f.receive);
    CU_ASSERT_EQUAL_FATAL(rename(f.receive, away), 0);

    tu_write(f.dir, "x", "payload", 7);
    char px[1024];
    snprintf(px, sizeof px, "%s/x", f.dir);
    ss_send_item items[2] = {{.path = px, .name = "one"}, {.path = px, .name = "two"}};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", items, 2, &e), 0);
    ss_deliver_result res;
    for (unsigned attempt = 1; attempt <= 3; attempt++) {
        int64_t t0 = ss_now();
        CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
        CU_ASSERT_TRUE(res.unreachable);
        CU_ASSERT_EQUAL(res.delivered, 0);
        CU_ASSERT_EQUAL(res.queued, 2);
        ss_peer p;
        CU_ASSERT_EQUAL(ss_peer_get(&f.ps.db, "SS1", &p, &e), 1);
        CU_ASSERT_EQUAL(p.failures, attempt);
        CU_ASSERT_PTR_NOT_NULL(strstr(p.last_error, "No such file"));
        int64_t wait = p.next_attempt - t0;
        unsigned want = ss_sender_backoff(&f.ps.conf, attempt);
        CU_ASSERT(wait >= (int64_t)want && wait <= (int64_t)want + 2);
    }
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4501), 3);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 2);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".pck"), 2);

    CU_ASSERT_EQUAL_FATAL(rename(away, f.receive), 0);
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_FALSE(res.unreachable);
    CU_ASSERT_EQUAL(res.delivered, 2);
    CU_ASSERT_EQUAL(res.queued, 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4502), 1);
    ss_peer p;
    CU_ASSERT_EQUAL(ss_peer_get(&f.ps.db, "SS1", &p, &e), 1);
    CU_ASSERT_EQUAL(p.failures, 0);
    CU_ASSERT_STRING_EQUAL(p.last_error, "");
    CU_ASSERT(p.last_success > 0);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 0);
    for (int i = 0; i < 2; i++) {
        ss_instr in;
        check_pair(f.receive, items[i].id, &f.ps.pk, &in, "payload", 7);
        CU_ASSERT_EQUAL(in.seq, (uint64_t)i + 1);
    }
    /* Nothing queued: delivering again is a no-op. */
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 0);
    CU_ASSERT_FALSE(res.unreachable);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4502), 1);
    fx_close(&f);
}

static void test_unknown_peer_is_an_error(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    ss_deliver_result res;
    CU_ASSERT_NOT_EQUAL(ss_sender_deliver(&f.snd, "XX9", &res, &e), 0);
    CU_ASSERT_EQUAL(e.code, SS_E_NOENT);
    fx_close(&f);
}

static void test_unsigned_one_line(void)
{
    fixture f;
    fx_open(&f);
    ss_sender_close(&f.snd);
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(
        ss_sender_open(&f.snd, f.ps.root, &f.ps.conf, &f.ps.db, &f.ps.rep, false, &e), 0);
    tu_write(f.dir, "u.txt", "unsigned\n", 9);
    char pu[1024];
    snprintf(pu, sizeof pu, "%s/u.txt", f.dir);
    ss_send_item it = {.path = pu};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &it, 1, &e), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4503), 1);
    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    char name[64];
    snprintf(name, sizeof name, "%s.ins", it.id);
    size_t len = 0;
    char *text = tu_read(f.receive, name, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(strncmp(text, "sitespool/1 id=", 15), 0);
    CU_ASSERT(len > 0 && text[len - 1] == '\n');
    CU_ASSERT_PTR_EQUAL(strchr(text, '\n'), text + len - 1); /* exactly one line */
    CU_ASSERT_FALSE(ss_sig_looks_signed(text, len));
    text[len - 1] = '\0';
    ss_instr in;
    CU_ASSERT_EQUAL(ss_instr_parse(&in, text, &e), 0);
    CU_ASSERT_STRING_EQUAL(in.id, it.id);
    CU_ASSERT_STRING_EQUAL(in.name, "u.txt");
    CU_ASSERT_EQUAL(in.size, 9);
    free(text);
    fx_close(&f);
}

/* ss_sender_pack: "On failure nothing of the failed call stays visible in
 * the outbox", whichever item fails and however the items are batched. */
static void pack_failure_case(unsigned batch_max, size_t n_before_bad)
{
    fixture f;
    fx_open(&f);
    f.ps.conf.batch_max = batch_max;
    ss_error e = {0};
    tu_write(f.dir, "good", "good", 4);
    char good[1024], bad[1024];
    snprintf(good, sizeof good, "%s/good", f.dir);
    snprintf(bad, sizeof bad, "%s/missing", f.dir);
    ss_send_item items[8];
    memset(items, 0, sizeof items);
    for (size_t i = 0; i < n_before_bad; i++)
        items[i].path = good;
    items[n_before_bad].path = bad;
    items[n_before_bad + 1].path = good;
    /* fd 0 belongs to the caller: a failed pack must not close it. */
    ensure_fd0();
    CU_ASSERT_NOT_EQUAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", items, n_before_bad + 2, &e),
                        0);
    CU_ASSERT_NOT_EQUAL(fcntl(0, F_GETFD), -1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4505), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 0);
    CU_ASSERT_EQUAL(tu_count(f.outbox, ".pck"), 0);
    CU_ASSERT_EQUAL(tu_count(f.outbox, ".ins"), 0);
    CU_ASSERT_EQUAL(tu_count(f.outbox, ".tmp"), 0);
    ss_outbox_info q;
    CU_ASSERT_EQUAL(ss_outbox_info_get(f.ps.root, "SS1", &q, &e), 0);
    CU_ASSERT_EQUAL(q.queued, 0);
    /* A later call still works.  Numbers are taken when pairs are queued,
     * so the failed call (nothing queued) used none. */
    ss_send_item ok = {.path = good};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &ok, 1, &e), 0);
    ss_deliver_result res;
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 1);
    ss_instr in;
    check_pair(f.receive, ok.id, &f.ps.pk, &in, "good", 4);
    CU_ASSERT_EQUAL(in.seq, 1);
    fx_close(&f);
}

static void test_pack_failure_first_item(void)
{
    pack_failure_case(256, 0);
}

static void test_pack_failure_same_batch(void)
{
    pack_failure_case(256, 2);
}

static void test_pack_failure_later_batch(void)
{
    pack_failure_case(2, 3);
}

/* A queued instruction whose package is gone cannot be delivered: it is
 * set aside (4506) so it cannot block the queue, without touching
 * descriptors that were never opened. */
static void test_deliver_missing_package(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    tu_write(f.dir, "x", "x", 1);
    char px[1024], pck[1200];
    snprintf(px, sizeof px, "%s/x", f.dir);
    ss_send_item it = {.path = px};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &it, 1, &e), 0);
    snprintf(pck, sizeof pck, "%s/%012d-%s.pck", f.outbox, 1, it.id);
    CU_ASSERT_EQUAL_FATAL(unlink(pck), 0);
    ensure_fd0();
    ss_deliver_result res;
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_NOT_EQUAL(fcntl(0, F_GETFD), -1);
    CU_ASSERT_FALSE(res.unreachable);
    CU_ASSERT_EQUAL(res.delivered, 0);
    CU_ASSERT_EQUAL(res.queued, 0);
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 0); /* no temporary file left either */
    CU_ASSERT_EQUAL(tu_count(f.outbox, ".ins"), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4506), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4501), 0);
    fx_close(&f);
}

static void test_pack_refuses_bad_names(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    tu_write(f.dir, "g", "g", 1);
    char g[1024];
    snprintf(g, sizeof g, "%s/g", f.dir);
    const char *bad[] = {".hidden", "a/b", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ss_send_item it = {.path = g, .name = bad[i]};
        CU_ASSERT_NOT_EQUAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &it, 1, &e), 0);
    }
    /* A directory is not a file to send. */
    ss_send_item d = {.path = f.dir};
    CU_ASSERT_NOT_EQUAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &d, 1, &e), 0);
    CU_ASSERT_EQUAL(tu_count(f.outbox, ".ins"), 0);
    CU_ASSERT_EQUAL(tu_count(f.outbox, ".pck"), 0);
    fx_close(&f);
}

/* What on_queued was told, in order. */
struct told {
    int n;
    char lines[8][128];
};

static void tell_fn(void *ctx, const char *to, const ss_send_item *it, const char *name)
{
    struct told *t = ctx;
    if (t->n < 8)
        snprintf(t->lines[t->n++], sizeof t->lines[0], "%s %s %s %s",
                 it->already_queued ? "already" : "queued", it->id, to, name);
}

/* A file still queued with the same name and content is not queued again
 * (the caller is told which instruction holds it), unless `again`; another
 * content under the same name is a new file. */
static void test_pack_recognises_queued_files(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    struct told t = {0};
    f.snd.on_queued = tell_fn;
    f.snd.on_queued_ctx = &t;
    tu_write(f.dir, "r.csv", "one,two\n", 8);
    char pr[1024];
    snprintf(pr, sizeof pr, "%s/r.csv", f.dir);
    ss_send_item first = {.path = pr, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &first, 1, &e), 0);
    CU_ASSERT_TRUE(first.queued);
    ss_send_item twice[2] = {{.path = pr, .type = SS_TYPE_DATA},
                             {.path = pr, .type = SS_TYPE_DATA}};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", twice, 2, &e), 0);
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_TRUE(twice[i].already_queued);
        CU_ASSERT_FALSE(twice[i].queued);
        CU_ASSERT_STRING_EQUAL(twice[i].id, first.id);
    }
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 1);
    CU_ASSERT_EQUAL(t.n, 3);
    char want[128];
    snprintf(want, sizeof want, "queued %s SS1 r.csv", first.id);
    CU_ASSERT_STRING_EQUAL(t.lines[0], want);
    snprintf(want, sizeof want, "already %s SS1 r.csv", first.id);
    CU_ASSERT_STRING_EQUAL(t.lines[1], want);

    /* Another destination, or other content under the name: new files. */
    ss_send_item other = {.path = pr, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "hman.box", &other, 1, &e), 0);
    CU_ASSERT_TRUE(other.queued);
    tu_write(f.dir, "r.csv", "one,TWO\n", 8);
    ss_send_item changed = {.path = pr, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &changed, 1, &e), 0);
    CU_ASSERT_TRUE(changed.queued);
    /* The first content again, unpacked from another compression level. */
    tu_write(f.dir, "r.csv", "one,two\n", 8);
    f.ps.conf.compression_level = 9;
    ss_sender_close(&f.snd);
    CU_ASSERT_EQUAL_FATAL(
        ss_sender_open(&f.snd, f.ps.root, &f.ps.conf, &f.ps.db, &f.ps.rep, true, &e), 0);
    ss_send_item same = {.path = pr, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &same, 1, &e), 0);
    CU_ASSERT_TRUE(same.already_queued);
    CU_ASSERT_STRING_EQUAL(same.id, first.id);
    f.snd.again = true;
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &same, 1, &e), 0);
    CU_ASSERT_TRUE(same.queued);
    CU_ASSERT_STRING_NOT_EQUAL(same.id, first.id);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 4);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 4);
    fx_close(&f);
}

/* Writes the lock file's journal record as a killed sender leaves it. */
static void write_journal(const fixture *f, const char *record)
{
    char rec[81];
    snprintf(rec, sizeof rec, "%-79s\n", record);
    tu_write(f->outbox, ".lock", rec, 80);
}

/* A publisher killed between queuing a pair and storing its 4504: the
 * next holder of the lock stores it (once), and removes a package whose
 * instruction was never queued. */
static void test_recover_interrupted_publication(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    tu_write(f.dir, "x", "payload", 7);
    char px[1024];
    snprintf(px, sizeof px, "%s/x", f.dir);
    ss_send_item it = {.path = px, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &it, 1, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_db_exec(&f.ps.db, "DELETE FROM status WHERE msg_id=4504", &e), 0);
    tu_write(f.outbox, "000000000002-0123456789abcdef0123456789abcdef.pck", "p", 1);
    char rec[80];
    snprintf(rec, sizeof rec, "publishing 1 2 %lld", (long long)ss_now_ms());
    write_journal(&f, rec);
    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4500), 1);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 0);
    size_t len = 0;
    char *lock = tu_read(f.outbox, ".lock", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lock);
    CU_ASSERT_EQUAL(strncmp(lock, "idle", 4), 0);
    free(lock);
    /* A record whose rows exist is finished without a second row. */
    write_journal(&f, rec);
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 1);
    fx_close(&f);
}

/* A deliverer killed between moving a pair to the peer and storing its
 * 4500: the next holder stores it, once. */
static void test_recover_interrupted_delivery(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    tu_write(f.dir, "x", "payload", 7);
    char px[1024], from[1200], to[1200], queued[64];
    snprintf(px, sizeof px, "%s/x", f.dir);
    ss_send_item it = {.path = px, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &it, 1, &e), 0);
    snprintf(queued, sizeof queued, "%012d-%s", 1, it.id);
    static const char *const exts[] = {"pck", "ins"};
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/%s.%s", f.outbox, queued, exts[i]);
        snprintf(to, sizeof to, "%s/%s.%s", f.receive, it.id, exts[i]);
        CU_ASSERT_EQUAL_FATAL(rename(from, to), 0);
    }
    char rec[80];
    snprintf(rec, sizeof rec, "delivering %s %lld", queued, (long long)ss_now_ms());
    write_journal(&f, rec);
    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4500), 1);
    write_journal(&f, rec);
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4500), 1);
    fx_close(&f);
}

/* ---------------------------------------------------------------- bundles */

/* Grouping: small files fill bundles in the order given; a name already in
 * a bundle goes into the next open one; large files travel alone. */
static void test_bundle_plan(void)
{
    const char *names[] = {"a", "b", "a", "c", "big", "b", "d", "a"};
    const bool small[] = {true, true, true, true, false, true, true, true};
    size_t pair[8];
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_bundle_plan(names, small, 8, 3, pair, &e), 4);
    const size_t want[] = {0, 0, 1, 0, 2, 1, 1, 3};
    for (int i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(pair[i], want[i]);
    CU_ASSERT_EQUAL(ss_bundle_plan(names, small, 8, 1, pair, &e), 8);
    for (size_t i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(pair[i], i);
    /* Same names only: each in a bundle of its own (a pair of one). */
    const char *same[] = {"x", "x", "x"};
    CU_ASSERT_EQUAL(ss_bundle_plan(same, small, 3, 256, pair, &e), 3);
    CU_ASSERT_EQUAL(ss_bundle_plan(names, small, 0, 3, pair, &e), 0);
    char name[64];
    ss_bundle_name(42, name, sizeof name);
    CU_ASSERT_STRING_EQUAL(name, "bundle-42-files.tar");
}

/* What ss_bundle_read saw. */
struct seen {
    int n;
    char names[4][32];
    uint64_t sizes[4];
    char data[4][512];
    size_t len[4];
};

static int seen_entry(void *ctx, const ss_bundle_entry *m, ss_error *e)
{
    (void)e;
    struct seen *s = ctx;
    if (s->n >= 4) return -1;
    snprintf(s->names[s->n], sizeof s->names[0], "%s", m->name);
    s->sizes[s->n] = m->size;
    return 1;
}

static int seen_data(void *ctx, const void *buf, size_t len, ss_error *e)
{
    (void)e;
    struct seen *s = ctx;
    size_t *have = &s->len[s->n];
    if (*have + len > sizeof s->data[0]) return -1;
    memcpy(s->data[s->n] + *have, buf, len);
    *have += len;
    return 0;
}

static int seen_end(void *ctx, ss_error *e)
{
    (void)e;
    ((struct seen *)ctx)->n++;
    return 0;
}

/* Small files share a bundle (one pair, one 4504 naming the count); a large
 * one travels alone; the tar stream reads back with the files in order. */
static void test_bundle_pack_and_read(void)
{
    fixture f;
    fx_open(&f);
    f.ps.conf.bundle_max_files = 256;
    ss_error e = {0};
    static const char *const names[] = {"one.txt", "two.txt", "big.bin", "three.txt"};
    static const char *const text[] = {"first\n", "", NULL, "third, and a bit longer\n"};
    char *big = calloc(1, 70000), paths[4][1024];
    ss_send_item items[4];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 4; i++) {
        tu_write(f.dir, names[i], text[i] ? text[i] : big, text[i] ? strlen(text[i]) : 70000);
        snprintf(paths[i], sizeof paths[i], "%s/%s", f.dir, names[i]);
        items[i] = (ss_send_item){.path = paths[i], .type = SS_TYPE_DATA};
    }
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", items, 4, &e), 0);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 2);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 2);
    CU_ASSERT_STRING_EQUAL(items[0].id, items[1].id);
    CU_ASSERT_STRING_EQUAL(items[0].id, items[3].id);
    CU_ASSERT_STRING_NOT_EQUAL(items[0].id, items[2].id);
    CU_ASSERT_EQUAL(items[0].bundled, 3);
    CU_ASSERT_EQUAL(items[2].bundled, 0);
    CU_ASSERT_EQUAL(items[3].size, strlen(text[3]));
    for (int i = 0; i < 4; i++)
        CU_ASSERT_TRUE(items[i].queued);

    char ins[64], pck[64];
    snprintf(ins, sizeof ins, "%012d-%s.ins", 1, items[0].id);
    snprintf(pck, sizeof pck, "%012d-%s.pck", 1, items[0].id);
    int dfd = ss_open_dir(f.outbox, &e);
    CU_ASSERT_FATAL(dfd >= 0);
    ss_instr in;
    bool is_signed;
    CU_ASSERT_EQUAL_FATAL(ss_outbox_read_instr(dfd, ins, &in, &is_signed, &e), 0);
    CU_ASSERT_EQUAL(in.files, 3);
    CU_ASSERT_STRING_EQUAL(in.name, "bundle-3-files.tar");
    CU_ASSERT_EQUAL(in.seq, 1);
    struct seen seen = {0};
    static const ss_bundle_visitor v = {seen_entry, seen_data, seen_end};
    CU_ASSERT_EQUAL(ss_bundle_read(dfd, pck, in.zip, in.size, &v, &seen, &e), 3);
    const int order[] = {0, 1, 3};
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_STRING_EQUAL(seen.names[k], names[order[k]]);
        CU_ASSERT_EQUAL(seen.len[k], strlen(text[order[k]]));
        CU_ASSERT(memcmp(seen.data[k], text[order[k]], seen.len[k]) == 0);
    }
    /* A wrong size is refused (the stream must end exactly there). */
    CU_ASSERT_EQUAL(ss_bundle_read(dfd, pck, in.zip, in.size - 1, &v, &seen, &e), -1);
    CU_ASSERT_EQUAL(ss_bundle_read(dfd, pck, in.zip, in.size + 1, &v, &seen, &e), -1);
    close(dfd);
    char logs[1100];
    snprintf(logs, sizeof logs, "%s/logs", f.ps.root);
    char *log = tu_read(logs, "sender.log", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "(3 files in bundle-3-files.tar, "));
    char line[200];
    snprintf(line, sizeof line,
             "Queued three.txt (%zu bytes) for SS1 in instruction %s, a bundle of 3 files",
             strlen(text[3]), items[0].id);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, line));
    free(log);
    free(big);
    fx_close(&f);
}

/* A bundle queued by a publisher that died before its 4504: the next
 * holder of the lock records it once, naming the count, and sender.log
 * names each of its files. */
static void test_bundle_recorded_late(void)
{
    fixture f;
    fx_open(&f);
    f.ps.conf.bundle_max_files = 256;
    ss_error e = {0};
    char pa[1024], pb[1024];
    tu_write(f.dir, "a", "aaa", 3);
    tu_write(f.dir, "b", "bb", 2);
    snprintf(pa, sizeof pa, "%s/a", f.dir);
    snprintf(pb, sizeof pb, "%s/b", f.dir);
    ss_send_item items[2] = {{.path = pa, .type = SS_TYPE_DATA},
                             {.path = pb, .type = SS_TYPE_DATA}};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", items, 2, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_db_exec(&f.ps.db, "DELETE FROM status WHERE msg_id=4504", &e), 0);
    char logs[1100];
    snprintf(logs, sizeof logs, "%s/logs", f.ps.root);
    tu_write(logs, "sender.log", "", 0);
    char rec[80];
    snprintf(rec, sizeof rec, "publishing 1 1 %lld", (long long)ss_now_ms());
    write_journal(&f, rec);
    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 1);
    char *log = tu_read(logs, "sender.log", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    char want[200];
    snprintf(want, sizeof want, "Recorded 2 files in bundle-2-files.tar (instruction %s) for SS1",
             items[0].id);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, want));
    snprintf(want, sizeof want, "Queued a (3 bytes) for SS1 in instruction %s, a bundle of 2 files",
             items[0].id);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, want));
    snprintf(want, sizeof want, "Queued b (2 bytes) for SS1 in instruction %s, a bundle of 2 files",
             items[0].id);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, want));
    free(log);
    write_journal(&f, rec); /* its row exists now: nothing twice */
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 1);
    fx_close(&f);
}

/* ------------------------------------------------------- addresses (10) */

static void test_address_parse(void)
{
    static const struct {
        const char *text;
        bool ok, remote;
        const char *user, *host, *path, *label;
        unsigned port;
    } cases[] = {
        {"/srv/ss1/receive", true, false, "", "", "/srv/ss1/receive", "", 0},
        {"relative/receive", false, false, "", "", "", "", 0},
        {"/srv/with\nnewline", false, false, "", "", "", "", 0},
        {"sftp://ss@h1.example.org/srv/receive", true, true, "ss", "h1.example.org", "/srv/receive",
         "h1.example.org", 22},
        {"sftp://ss@10.0.0.2:2222/srv/receive/", true, true, "ss", "10.0.0.2", "/srv/receive",
         "[10.0.0.2]:2222", 2222},
        {"sftp://h//srv/r", true, true, "", "h", "/srv/r", "h", 22},
        {"sftp://ss@[fd00::2]:2200/r", true, true, "ss", "fd00::2", "/r", "[fd00::2]:2200", 2200},
        {"sftp://ss@[fd00::2]/r", true, true, "ss", "fd00::2", "/r", "fd00::2", 22},
        {"sftp://ss:secret@h/r", false, false, "", "", "", "", 0}, /* a password */
        {"sftp://ss@h:0/r", false, false, "", "", "", "", 0},      /* port 0 */
        {"sftp://ss@h:65536/r", false, false, "", "", "", "", 0},  /* port too large */
        {"sftp://ss@h:22x/r", false, false, "", "", "", "", 0},    /* not a number */
        {"sftp://ss@h/", false, false, "", "", "", "", 0},         /* no folder */
        {"sftp://ss@h", false, false, "", "", "", "", 0},          /* no path */
        {"sftp:///r", false, false, "", "", "", "", 0},            /* no host */
        {"sftp://ss@h/r?x=1", false, false, "", "", "", "", 0},    /* a query */
        {"sftp://ss@h/r%20s", false, false, "", "", "", "", 0},    /* an escape */
        {"sftp://ss@h/r s", false, false, "", "", "", "", 0},      /* a space */
        {"sftp://s s@h/r", false, false, "", "", "", "", 0},       /* not a login name */
        {"sftp://ss@h;rm/r", false, false, "", "", "", "", 0},     /* not a host name */
        {"sftp://ss@[fd00::2/r", false, false, "", "", "", "", 0}, /* no ']' */
        {"http://h/r", false, false, "", "", "", "", 0},           /* another scheme */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ss_address a;
        ss_error e = {0};
        int rc = ss_address_parse(cases[i].text, &a, &e);
        if ((rc == 0) != cases[i].ok)
            fprintf(stderr, "address %s: rc %d (%s)\n", cases[i].text, rc, e.msg);
        CU_ASSERT_EQUAL(rc == 0, cases[i].ok);
        if (rc != 0) {
            CU_ASSERT(e.msg[0] != '\0');
            continue;
        }
        CU_ASSERT_EQUAL(a.remote, cases[i].remote);
        CU_ASSERT_STRING_EQUAL(a.path, cases[i].path);
        if (!a.remote) continue;
        CU_ASSERT_STRING_EQUAL(a.user, cases[i].user);
        CU_ASSERT_STRING_EQUAL(a.host, cases[i].host);
        CU_ASSERT_STRING_EQUAL(a.host_label, cases[i].label);
        CU_ASSERT_EQUAL(a.port, cases[i].port);
    }
}

/* Queues one file under name for SS1. */
static void queue_one(fixture *f, const char *name)
{
    ss_error e = {0};
    char px[1024];
    tu_write(f->dir, "x", "payload", 7);
    snprintf(px, sizeof px, "%s/x", f->dir);
    ss_send_item item = {.path = px, .name = name};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f->snd, "SS1", "replmgr.box", &item, 1, &e), 0);
}

static void test_failover_and_round_robin(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    char second[1100], missing[1100];
    snprintf(missing, sizeof missing, "%s/nowhere/receive", f.dir);
    snprintf(second, sizeof second, "%s/second", f.dir);
    CU_ASSERT_EQUAL_FATAL(mkdir(second, 0750), 0);
    const char *failover[] = {missing, second};
    CU_ASSERT_EQUAL_FATAL(ss_peer_set(&f.ps.db, "SS1", failover, 2, false, &e), 0);
    queue_one(&f, "one");
    ss_deliver_result res;
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_FALSE(res.unreachable);
    CU_ASSERT_EQUAL(res.delivered, 1);
    CU_ASSERT_EQUAL(count_plain(second, ".ins"), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4510), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4501), 0);
    ss_peer_address rows[SS_PEER_ADDRESSES_MAX];
    CU_ASSERT_EQUAL(ss_peer_addresses(&f.ps.db, "SS1", rows, SS_PEER_ADDRESSES_MAX, &e), 2);
    CU_ASSERT_STRING_EQUAL(rows[0].state, "unreachable");
    CU_ASSERT_PTR_NOT_NULL(strstr(rows[0].last_error, "No such file"));
    CU_ASSERT_STRING_EQUAL(rows[1].state, "ok");
    CU_ASSERT(rows[1].last_success > 0);

    /* Round robin over two live folders: deliveries alternate. */
    const char *turns[] = {f.receive, second};
    CU_ASSERT_EQUAL_FATAL(ss_peer_set(&f.ps.db, "SS1", turns, 2, true, &e), 0);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "rr%d", i);
        queue_one(&f, name);
        CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
        CU_ASSERT_EQUAL(res.delivered, 1);
    }
    CU_ASSERT_EQUAL(count_plain(f.receive, ".ins"), 2);
    CU_ASSERT_EQUAL(count_plain(second, ".ins"), 3); /* one from the failover above */
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4510), 1);
    fx_close(&f);
}

static void test_symlinked_inbox_is_followed(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    char link[1100];
    snprintf(link, sizeof link, "%s/mnt-ss1", f.dir);
    CU_ASSERT_EQUAL_FATAL(symlink(f.receive, link), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_add(&f.ps.db, "SS1", link, &e), 0);
    queue_one(&f, "via-link");
    ss_deliver_result res;
    CU_ASSERT_EQUAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_FALSE(res.unreachable);
    CU_ASSERT_EQUAL(count_plain(f.receive, ".ins"), 1);
    CU_ASSERT_EQUAL(count_plain(f.receive, ".pck"), 1);
    fx_close(&f);
}

static void test_host_key_pins(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    const char *fp_a = "SHA256:oAfHRzxbx8mY8U4qKh8mKFMj3YyHqQ3EaYdm/9ju8Tg";
    const char *fp_b = "SHA256:AAAAzxbx8mY8U4qKh8mKFMj3YyHqQ3EaYdm/9ju8Tg0";
    CU_ASSERT_TRUE(ss_fingerprint_valid(fp_a));
    CU_ASSERT_FALSE(ss_fingerprint_valid("SHA256:short"));
    CU_ASSERT_FALSE(ss_fingerprint_valid("MD5:oAfHRzxbx8mY8U4qKh8mKFMj3YyHqQ3EaYdm/9ju8Tg"));
    CU_ASSERT_FALSE(ss_fingerprint_valid("SHA256:oAfHRzxbx8mY8U4qKh8mKFMj3YyHqQ3EaYdm/9ju8T!"));
    /* Another host's line and a comment are kept; the host's old line goes. */
    const char *old_line = "[10.0.0.2]:2222 ssh-ed25519 "
                           "AAAAC3NzaC1lZDI1NTE5AAAAIGxO0Ko56dEMiFsMJgDTpKzwMQe/VrUocQx4ii1KsTjK";
    const char *new_line = "[10.0.0.2]:2222 ssh-ed25519 "
                           "AAAAC3NzaC1lZDI1NTE5AAAAIB6oHd0r2zA0JbO0uIMmg1uM5c4hZ9KcxZ7y1VnZl4v2";
    const char *other = "other.example.org ssh-ed25519 "
                        "AAAAC3NzaC1lZDI1NTE5AAAAIGxO0Ko56dEMiFsMJgDTpKzwMQe/VrUocQx4ii1KsTjK";
    char keys[1100], text[2000];
    snprintf(keys, sizeof keys, "%s/keys", f.ps.root);
    snprintf(text, sizeof text, "# pinned by hand\n%s\n%s\n", other, old_line);
    tu_write(keys, "known_hosts", text, strlen(text));
    char sql[3000];
    snprintf(sql, sizeof sql,
             "INSERT INTO host_keys VALUES('SS1','[10.0.0.2]:2222','%s','%s','offered',1)", fp_b,
             new_line);
    CU_ASSERT_EQUAL_FATAL(ss_db_exec(&f.ps.db, sql, &e), 0);
    char hosts[256];
    unsigned written = 9;
    CU_ASSERT_EQUAL(ss_hostkeys_trust(f.ps.root, &f.ps.db, "SS1", "SHA256:bad", hosts, sizeof hosts,
                                      &written, &e),
                    -1);
    CU_ASSERT_EQUAL(
        ss_hostkeys_trust(f.ps.root, &f.ps.db, "SS1", fp_b, hosts, sizeof hosts, &written, &e), 0);
    CU_ASSERT_EQUAL(written, 1);
    CU_ASSERT_STRING_EQUAL(hosts, "[10.0.0.2]:2222");
    size_t len = 0;
    char *after = tu_read(keys, "known_hosts", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(after);
    snprintf(text, sizeof text, "# pinned by hand\n%s\n%s\n", other, new_line);
    CU_ASSERT_STRING_EQUAL(after, text);
    free(after);
    /* A fingerprint nobody offered yet is kept for the first connection. */
    CU_ASSERT_EQUAL(
        ss_hostkeys_trust(f.ps.root, &f.ps.db, "SS1", fp_a, hosts, sizeof hosts, &written, &e), 0);
    CU_ASSERT_EQUAL(written, 0);
    sqlite3_stmt *st = ss_db_prepare(
        &f.ps.db, "SELECT count(*) FROM host_keys WHERE site='SS1' AND state='pinned'", &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_ROW);
    CU_ASSERT_EQUAL(sqlite3_column_int(st, 0), 2); /* fp_b's host; fp_a for all (*) */
    sqlite3_finalize(st);
    fx_close(&f);
}

/* ---------------------------------------------------------------- sealing */

/* PS1 trusts SS1's key: its data for SS1 is sealed to it. */
static void fx_trust_peer(fixture *f)
{
    ss_keyrec k;
    ss_error e = {0};
    ss_keyrec_init(&k, "SS1", &f->ss.pk, SS_KEY_TRUSTED, "test", 0);
    CU_ASSERT_EQUAL_FATAL(ss_keys_add(&f->ps.db, &k, &e), 0);
}

static int grow_write(void *ctx, const unsigned char *data, size_t len, ss_error *e)
{
    (void)e;
    struct {
        unsigned char *p;
        size_t len;
    } *m = ctx;
    m->p = realloc(m->p, m->len + len + 1);
    memcpy(m->p + m->len, data, len);
    m->len += len;
    return 0;
}

/* Opens dir/<id>.pck with the receiver's secret key: the plaintext
 * stream (metadata line, payload), malloc'd; NULL if it does not open. */
static unsigned char *open_sealed(const char *dir, const char *id, const ss_seckey *sk, size_t *len)
{
    char name[64];
    size_t plen;
    snprintf(name, sizeof name, "%s.pck", id);
    unsigned char *sealed = (unsigned char *)tu_read(dir, name, &plen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sealed);
    struct {
        unsigned char *p;
        size_t len;
    } out = {NULL, 0};
    ss_opener o;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_open_begin(&o, sk->sk, sk->keyid, grow_write, &out, &e), 0);
    int rc = ss_open_update(&o, sealed, plen, &e);
    if (rc == 0)
        rc = ss_open_end(&o, &e);
    else
        ss_open_abort(&o);
    free(sealed);
    if (rc != 0) {
        free(out.p);
        return NULL;
    }
    *len = out.len;
    return out.p;
}

/* The metadata line at the start of plain, parsed; returns its length. */
static size_t sealed_meta(const unsigned char *plain, size_t len, ss_sealed_meta *m)
{
    const unsigned char *nl =
        memchr(plain, '\n', len < SS_SEALED_META_MAX ? len : SS_SEALED_META_MAX);
    CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
    ss_error e = {0};
    size_t n = (size_t)(nl - plain) + 1;
    CU_ASSERT_EQUAL_FATAL(ss_sealed_meta_parse((const char *)plain, n, m, &e), 0);
    return n;
}

static bool file_contains(const char *dir, const char *name, const void *needle, size_t n)
{
    size_t len;
    char *data = tu_read(dir, name, &len);
    bool found = data && memmem(data, len, needle, n) != NULL;
    free(data);
    return found;
}

/* A sealed single file: the package shows neither the content nor the
 * name, verifies with the sender's key as stored, opens with the
 * receiver's key into the metadata and the payload as it would have been
 * stored unsealed; the instruction shows name=sealed, zip=none, the
 * sealed length and the key id. */
static void test_sealed_pack(void)
{
    fixture f;
    fx_open(&f);
    fx_trust_peer(&f);
    ss_error e = {0};
    struct told t = {0};
    f.snd.on_queued = tell_fn;
    f.snd.on_queued_ctx = &t;
    size_t blen = 300000;
    char *b = malloc(blen);
    for (size_t i = 0; i < blen; i++)
        b[i] = "quarterly figures for the board, confidential "[i % 46];
    tu_write(f.dir, "secret-plan.txt", b, blen);
    char pb[1024];
    snprintf(pb, sizeof pb, "%s/secret-plan.txt", f.dir);
    ss_send_item item = {.path = pb, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &item, 1, &e), 0);
    CU_ASSERT_TRUE(item.queued);
    CU_ASSERT_EQUAL(item.size, blen);
    char want[128];
    snprintf(want, sizeof want, "queued %s SS1 secret-plan.txt", item.id);
    CU_ASSERT_STRING_EQUAL(t.lines[0], want);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 1);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 2); /* the pair only: no file beside it */
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM queued_files"), 1);

    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 1);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 0);
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM queued_files"), 0);
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 2);

    char pck[64], ins[64], pckp[1100], insp[1100];
    snprintf(pck, sizeof pck, "%s.pck", item.id);
    snprintf(ins, sizeof ins, "%s.ins", item.id);
    CU_ASSERT_FALSE(file_contains(f.receive, pck, "quarterly", 9));
    CU_ASSERT_FALSE(file_contains(f.receive, pck, "secret-plan", 11));
    CU_ASSERT_FALSE(file_contains(f.receive, ins, "secret-plan", 11));
    CU_ASSERT_FALSE(file_contains(f.receive, ins, "zlib", 4));

    /* Verifies with the sender's key over the sealed bytes as stored. */
    snprintf(pckp, sizeof pckp, "%s/%s", f.receive, pck);
    snprintf(insp, sizeof insp, "%s/%s", f.receive, ins);
    ss_sig sig;
    CU_ASSERT_EQUAL_FATAL(ss_verify_file(&f.ps.pk, pckp, insp, &sig, &e), 0);
    ss_instr in;
    CU_ASSERT_EQUAL_FATAL(ss_instr_parse(&in, sig.trusted_comment, &e), 0);
    char keyid[SS_KEYID_HEX + 1];
    ss_keyid_hex(f.ss.pk.keyid, keyid);
    CU_ASSERT_STRING_EQUAL(in.enc, keyid);
    CU_ASSERT_STRING_EQUAL(in.name, SS_SEALED_NAME);
    CU_ASSERT_EQUAL(in.zip, SS_ZIP_NONE);
    CU_ASSERT_EQUAL(in.files, 0);
    struct stat st;
    CU_ASSERT_EQUAL(stat(pckp, &st), 0);
    CU_ASSERT_EQUAL(in.size, (uint64_t)st.st_size);

    /* Opens with the receiver's key: metadata, then the zlib payload. */
    size_t plen = 0;
    unsigned char *plain = open_sealed(f.receive, item.id, f.ss.sk, &plen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    ss_sealed_meta m;
    size_t off = sealed_meta(plain, plen, &m);
    CU_ASSERT_STRING_EQUAL(m.name, "secret-plan.txt");
    CU_ASSERT_EQUAL(m.size, blen);
    CU_ASSERT_EQUAL(m.zip, SS_ZIP_ZLIB);
    CU_ASSERT_EQUAL(m.files, 0);
    uLongf out_len = blen + 16;
    unsigned char *out = malloc(out_len);
    CU_ASSERT_EQUAL(uncompress(out, &out_len, plain + off, plen - off), Z_OK);
    CU_ASSERT(out_len == blen && memcmp(out, b, blen) == 0);
    free(out);
    free(plain);
    /* The sender (or a third site) cannot open it. */
    size_t none;
    CU_ASSERT_PTR_NULL(open_sealed(f.receive, item.id, f.ps.sk, &none));
    free(b);
    fx_close(&f);
}

/* Sealed bundles and stored (zip=none) payloads; duplicates of sealed
 * pairs are still recognised (from site.db), inside bundles too, and
 * a bundle some of whose files are still queued is packed again from its
 * inputs without them. */
static void test_sealed_bundle_and_dupes(void)
{
    fixture f;
    fx_open(&f);
    fx_trust_peer(&f);
    f.ps.conf.bundle_max_files = 8;
    ss_error e = {0};
    char paths[4][1024];
    const char *names[4] = {"alpha.csv", "beta.csv", "gamma.csv", "delta.csv"};
    for (int i = 0; i < 4; i++) {
        char data[64];
        int n = snprintf(data, sizeof data, "contents of %s, row %d\n", names[i], i);
        tu_write(f.dir, names[i], data, (size_t)n);
        snprintf(paths[i], sizeof paths[i], "%s/%s", f.dir, names[i]);
    }
    ss_send_item three[3];
    for (int i = 0; i < 3; i++)
        three[i] = (ss_send_item){.path = paths[i], .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", three, 3, &e), 0);
    CU_ASSERT_EQUAL(three[0].bundled, 3);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 1);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 2);
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM queued_files WHERE files=3"), 3);

    /* Again, with a new file: the three are still queued (found in the
     * sealed bundle's rows in site.db); the bundle of four is packed again from
     * the inputs as the new file alone. */
    ss_send_item four[4];
    for (int i = 0; i < 4; i++)
        four[i] = (ss_send_item){.path = paths[i], .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", four, 4, &e), 0);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_TRUE(four[i].already_queued);
        CU_ASSERT_STRING_EQUAL(four[i].id, three[0].id);
    }
    CU_ASSERT_TRUE(four[3].queued);
    CU_ASSERT_EQUAL(four[3].bundled, 0);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 2);

    /* A sealed single file stored without compression, then found queued. */
    f.ps.conf.compression_level = 0;
    ss_sender_close(&f.snd);
    CU_ASSERT_EQUAL_FATAL(
        ss_sender_open(&f.snd, f.ps.root, &f.ps.conf, &f.ps.db, &f.ps.rep, true, &e), 0);
    f.ps.conf.bundle_max_files = 1;
    ss_send_item again = {.path = paths[3], .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &again, 1, &e), 0);
    CU_ASSERT_TRUE(again.already_queued);
    CU_ASSERT_STRING_EQUAL(again.id, four[3].id);
    tu_write(f.dir, "delta.csv", "changed\n", 8);
    ss_send_item changed = {.path = paths[3], .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &changed, 1, &e), 0);
    CU_ASSERT_TRUE(changed.queued);

    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 3);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 0);
    CU_ASSERT_EQUAL(count_plain(f.receive, ".sum"), 0);
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM queued_files"), 0);

    /* The bundle: metadata names it and its count; the tar inside. */
    size_t plen = 0;
    unsigned char *plain = open_sealed(f.receive, three[0].id, f.ss.sk, &plen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    ss_sealed_meta m;
    size_t off = sealed_meta(plain, plen, &m);
    CU_ASSERT_STRING_EQUAL(m.name, "bundle-3-files.tar");
    CU_ASSERT_EQUAL(m.files, 3);
    CU_ASSERT_EQUAL(m.zip, SS_ZIP_ZLIB);
    unsigned char *tar = malloc(m.size + 16);
    uLongf tlen = m.size + 16;
    CU_ASSERT_EQUAL(uncompress(tar, &tlen, plain + off, plen - off), Z_OK);
    CU_ASSERT_EQUAL(tlen, m.size);
    CU_ASSERT_PTR_NOT_NULL(memmem(tar, tlen, "contents of beta.csv", 20));
    free(tar);
    free(plain);
    /* The stored one: the payload follows the line as is. */
    plain = open_sealed(f.receive, changed.id, f.ss.sk, &plen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    off = sealed_meta(plain, plen, &m);
    CU_ASSERT_STRING_EQUAL(m.name, "delta.csv");
    CU_ASSERT_EQUAL(m.zip, SS_ZIP_NONE);
    CU_ASSERT_EQUAL(m.size, 8);
    CU_ASSERT(plen - off == 8 && memcmp(plain + off, "changed\n", 8) == 0);
    free(plain);
    fx_close(&f);
}

/* A sealed file still queued is not queued again, from its rows in
 * site.db (no file beside the pair in the outbox), and a file with the
 * same name but other content is; rows whose pair left the outbox are
 * forgotten when the index is loaded. */
static void test_sealed_still_queued(void)
{
    fixture f;
    fx_open(&f);
    fx_trust_peer(&f);
    ss_error e = {0};
    char px[1024];
    tu_write(f.dir, "ledger.csv", "id,amount\n1,250\n", 16);
    snprintf(px, sizeof px, "%s/ledger.csv", f.dir);
    ss_send_item first = {.path = px, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &first, 1, &e), 0);
    CU_ASSERT_TRUE(first.queued);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 2);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".sum"), 0);
    CU_ASSERT_EQUAL(tu_count(f.outbox, ".sum"), 0); /* dot-names too */

    /* A row of a pair that is not in the outbox (a send stopped before
     * publishing it). */
    ss_queued_file stale = {.id = "0123456789abcdef0123456789abcdef",
                            .dest = "replmgr.box",
                            .name = "ledger.csv",
                            .size = 16};
    CU_ASSERT_EQUAL_FATAL(ss_queued_file_add(&f.ps.db, "SS1", &stale, &e), 0);

    ss_send_item again = {.path = px, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &again, 1, &e), 0);
    CU_ASSERT_TRUE(again.already_queued);
    CU_ASSERT_FALSE(again.queued);
    CU_ASSERT_STRING_EQUAL(again.id, first.id);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 1);
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM queued_files"), 1);
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM queued_files WHERE id='0123456789"
                                       "abcdef0123456789abcdef'"),
                    0);

    /* Same name and size, other content: queued. */
    tu_write(f.dir, "ledger.csv", "id,amount\n1,999\n", 16);
    ss_send_item other = {.path = px, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &other, 1, &e), 0);
    CU_ASSERT_TRUE(other.queued);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ""), 4);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".sum"), 0);
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM queued_files"), 2);

    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 2);
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM queued_files"), 0);
    fx_close(&f);
}

/* A sealed pair published by a send killed before its 4504: its rows were
 * committed with its number, so the next holder of the lock records it
 * by its real name, and it is still found queued. */
static void test_sealed_recorded_late(void)
{
    fixture f;
    fx_open(&f);
    fx_trust_peer(&f);
    ss_error e = {0};
    char px[1024];
    tu_write(f.dir, "orders.csv", "1,2,3\n", 6);
    snprintf(px, sizeof px, "%s/orders.csv", f.dir);
    ss_send_item first = {.path = px, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &first, 1, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_db_exec(&f.ps.db, "DELETE FROM status WHERE msg_id=4504", &e), 0);
    char rec[80];
    snprintf(rec, sizeof rec, "publishing 1 1 %lld", (long long)ss_now_ms());
    write_journal(&f, rec);
    ss_send_item again = {.path = px, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &again, 1, &e), 0);
    CU_ASSERT_TRUE(again.already_queued);
    CU_ASSERT_STRING_EQUAL(again.id, first.id);
    CU_ASSERT_EQUAL(count_plain(f.outbox, ".ins"), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 1);
    CU_ASSERT_EQUAL(db_count(&f.ps.db, "SELECT count(*) FROM status WHERE msg_id=4504 AND "
                                       "text LIKE '%orders.csv%'"),
                    1);
    fx_close(&f);
}

/* seal = no, and key instructions: never sealed. */
static void test_sealed_only_data(void)
{
    fixture f;
    fx_open(&f);
    fx_trust_peer(&f);
    ss_error e = {0};
    ss_send_item key = {
        .data = "key text\n", .data_len = 9, .name = "PS1.pub", .type = SS_TYPE_KEY};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &key, 1, &e), 0);
    f.ps.conf.seal = false;
    ss_send_item data = {
        .data = "plain\n", .data_len = 6, .name = "open.txt", .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &data, 1, &e), 0);
    f.ps.conf.seal = true;
    ss_send_item mem = {
        .data = "from memory\n", .data_len = 12, .name = "m.txt", .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &mem, 1, &e), 0);
    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    ss_instr in;
    check_pair(f.receive, key.id, &f.ps.pk, &in, "key text\n", 9);
    CU_ASSERT_STRING_EQUAL(in.enc, "");
    check_pair(f.receive, data.id, &f.ps.pk, &in, "plain\n", 6);
    CU_ASSERT_STRING_EQUAL(in.enc, "");
    CU_ASSERT_STRING_EQUAL(in.name, "open.txt");
    size_t plen;
    unsigned char *plain = open_sealed(f.receive, mem.id, f.ss.sk, &plen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    ss_sealed_meta m;
    sealed_meta(plain, plen, &m);
    CU_ASSERT_STRING_EQUAL(m.name, "m.txt");
    CU_ASSERT_EQUAL(m.size, 12);
    free(plain);
    fx_close(&f);
}

/* -------------------------------------------------------- large payloads */

/* Past pack.c's PIPE_AFTER (4 MiB) a package is finished on a second
 * thread (sender/pipe.h): these sizes engage it, one just past it. */
#define BIG_ODD ((size_t)9 * 1024 * 1024 + 12345)
#define BIG_EDGE ((size_t)4 * 1024 * 1024 + 1)

/* len bytes: the first half no compressor shrinks (xorshift from seed),
 * the rest text that deflates well, so both full and part-filled buffers
 * go through the ring. */
static unsigned char *big_payload(size_t len, uint64_t seed)
{
    unsigned char *b = malloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    uint64_t x = seed | 1;
    for (size_t i = 0; i < len / 2; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)(x >> 24);
    }
    for (size_t i = len / 2; i < len; i++)
        b[i] = (unsigned char)"large payloads go through the write-behind thread\n"[i % 51];
    return b;
}

/* Writes f->dir/large.bin; path receives its path (1024 bytes). */
static void write_large(const fixture *f, const void *data, size_t len, char *path)
{
    tu_write(f->dir, "large.bin", data, len);
    snprintf(path, 1024, "%s/large.bin", f->dir);
}

/* The signature in dir/<id>.ins is over the hash of dir/<id>.pck as it is
 * now: the hash the stream computed is the file's. */
static void check_signed_hash(const char *dir, const char *id, const ss_pubkey *pk)
{
    char name[64], path[1100];
    size_t len;
    snprintf(name, sizeof name, "%s.ins", id);
    char *text = tu_read(dir, name, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    ss_sig sig;
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_sig_parse(text, len, &sig, &e), 0);
    free(text);
    snprintf(path, sizeof path, "%s/%s.pck", dir, id);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CU_ASSERT_FATAL(fd >= 0);
    unsigned char h[SS_HASH_BYTES];
    uint64_t bytes;
    CU_ASSERT_EQUAL(ss_hash_fd(fd, h, &bytes, &e), 0);
    close(fd);
    CU_ASSERT_EQUAL(ss_sig_verify_hash(&sig, pk, h, &e), 0);
}

/* Large unsealed files - deflated, and stored (compression_level 0) - are
 * packed whole, in order, and signed over exactly what was written. */
static void test_large_unsealed(void)
{
    fixture f;
    fx_open(&f);
    ss_error e = {0};
    const size_t sizes[] = {BIG_ODD, BIG_EDGE};
    for (int level = 6; level >= 0; level -= 6) {
        f.ps.conf.compression_level = level;
        ss_sender_close(&f.snd);
        CU_ASSERT_EQUAL_FATAL(
            ss_sender_open(&f.snd, f.ps.root, &f.ps.conf, &f.ps.db, &f.ps.rep, true, &e), 0);
        for (int k = 0; k < 2; k++) {
            unsigned char *b = big_payload(sizes[k], 7 + (uint64_t)k);
            char path[1024];
            write_large(&f, b, sizes[k], path);
            ss_send_item item = {.path = path, .type = SS_TYPE_DATA};
            CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &item, 1, &e), 0);
            CU_ASSERT_TRUE(item.queued);
            CU_ASSERT_EQUAL(item.size, sizes[k]);
            ss_deliver_result res;
            CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
            CU_ASSERT_EQUAL(res.delivered, 1);
            check_signed_hash(f.receive, item.id, &f.ps.pk);
            ss_instr in;
            if (level > 0) {
                check_pair(f.receive, item.id, &f.ps.pk, &in, b, sizes[k]);
                CU_ASSERT_EQUAL(in.zip, SS_ZIP_ZLIB);
            } else {
                char name[64], pck[1100], ins[1100];
                size_t len = 0;
                ss_sig sig;
                snprintf(pck, sizeof pck, "%s/%s.pck", f.receive, item.id);
                snprintf(ins, sizeof ins, "%s/%s.ins", f.receive, item.id);
                CU_ASSERT_EQUAL_FATAL(ss_verify_file(&f.ps.pk, pck, ins, &sig, &e), 0);
                CU_ASSERT_EQUAL_FATAL(ss_instr_parse(&in, sig.trusted_comment, &e), 0);
                CU_ASSERT_EQUAL(in.zip, SS_ZIP_NONE);
                snprintf(name, sizeof name, "%s.pck", item.id);
                char *stored = tu_read(f.receive, name, &len);
                CU_ASSERT_PTR_NOT_NULL_FATAL(stored);
                CU_ASSERT(len == sizes[k] && memcmp(stored, b, len) == 0);
                free(stored);
            }
            CU_ASSERT_EQUAL(in.size, sizes[k]);
            free(b);
        }
    }
    fx_close(&f);
}

/* Opens the sealed pair <id> in dir, checks its metadata and returns the
 * payload inflated (*len bytes expected; 0: as long as the metadata says,
 * which *len receives). */
static unsigned char *open_large(fixture *f, const char *id, const char *name, unsigned files,
                                 size_t *len)
{
    size_t plen = 0;
    unsigned char *plain = open_sealed(f->receive, id, f->ss.sk, &plen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    ss_sealed_meta m;
    size_t off = sealed_meta(plain, plen, &m);
    CU_ASSERT_STRING_EQUAL(m.name, name);
    CU_ASSERT_EQUAL(m.files, files);
    CU_ASSERT_EQUAL(m.zip, SS_ZIP_ZLIB);
    if (*len == 0) *len = m.size;
    CU_ASSERT_EQUAL_FATAL(m.size, *len);
    size_t want_len = *len;
    uLongf out_len = want_len + 16;
    unsigned char *out = malloc(out_len);
    CU_ASSERT_EQUAL(uncompress(out, &out_len, plain + off, plen - off), Z_OK);
    CU_ASSERT_EQUAL(out_len, want_len);
    free(plain);
    return out;
}

static int first_file_hash(void *ctx, const ss_queued_file *f)
{
    memcpy(ctx, f->hash, SS_HASH_BYTES);
    return 1;
}

/* The payload hash site.db keeps for sealed pair id equals BLAKE2b-512 of
 * want. */
static void check_kept_hash(fixture *f, const char *id, const void *want, size_t len)
{
    unsigned char kept[SS_HASH_BYTES] = {0}, h[SS_HASH_BYTES];
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_queued_files_each(&f->ps.db, "SS1", id, first_file_hash, kept, &e), 1);
    crypto_generichash(h, sizeof h, want, len, NULL, 0);
    CU_ASSERT(memcmp(kept, h, sizeof h) == 0);
}

/* A large sealed file opens into what was sent; its payload hash (for the
 * duplicate index, computed on the second thread) is the file's, in
 * site.db: the same file is found still queued, one byte changed past
 * the threshold is not.  A sealed bundle past the threshold opens into
 * all its files. */
static void test_large_sealed(void)
{
    fixture f;
    fx_open(&f);
    fx_trust_peer(&f);
    ss_error e = {0};
    unsigned char *b = big_payload(BIG_ODD, 11);
    char path[1024];
    write_large(&f, b, BIG_ODD, path);
    ss_send_item first = {.path = path, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &first, 1, &e), 0);
    CU_ASSERT_TRUE(first.queued);
    check_kept_hash(&f, first.id, b, BIG_ODD);
    ss_send_item same = {.path = path, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &same, 1, &e), 0);
    CU_ASSERT_TRUE(same.already_queued);
    CU_ASSERT_STRING_EQUAL(same.id, first.id);
    b[BIG_ODD - 100] ^= 1;
    tu_write(f.dir, "large.bin", b, BIG_ODD);
    ss_send_item changed = {.path = path, .type = SS_TYPE_DATA};
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &changed, 1, &e), 0);
    CU_ASSERT_TRUE(changed.queued);
    check_kept_hash(&f, changed.id, b, BIG_ODD);

    /* 100 files of 60,000 bytes: one bundle of 6 MB. */
    f.ps.conf.bundle_max_files = 256;
    enum { NB = 100, MEMBER = 60000 };
    static char paths[NB][1024];
    ss_send_item items[NB];
    for (int i = 0; i < NB; i++) {
        char name[32];
        snprintf(name, sizeof name, "part%03d.bin", i);
        tu_write(f.dir, name, b + (size_t)i * MEMBER, MEMBER);
        snprintf(paths[i], sizeof paths[i], "%s/%s", f.dir, name);
        items[i] = (ss_send_item){.path = paths[i], .type = SS_TYPE_DATA};
    }
    CU_ASSERT_EQUAL_FATAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", items, NB, &e), 0);
    CU_ASSERT_EQUAL(items[0].bundled, NB);

    ss_deliver_result res;
    CU_ASSERT_EQUAL_FATAL(ss_sender_deliver(&f.snd, "SS1", &res, &e), 0);
    CU_ASSERT_EQUAL(res.delivered, 3);
    check_signed_hash(f.receive, first.id, &f.ps.pk);
    check_signed_hash(f.receive, changed.id, &f.ps.pk);
    check_signed_hash(f.receive, items[0].id, &f.ps.pk);
    size_t len = BIG_ODD;
    unsigned char *out = open_large(&f, changed.id, "large.bin", 0, &len);
    CU_ASSERT(memcmp(out, b, BIG_ODD) == 0);
    free(out);
    b[BIG_ODD - 100] ^= 1;
    out = open_large(&f, first.id, "large.bin", 0, &len);
    CU_ASSERT(memcmp(out, b, BIG_ODD) == 0);
    free(out);
    /* The tar stream holds each file's bytes, in order, after its header. */
    char bname[64];
    ss_bundle_name(NB, bname, sizeof bname);
    len = 0;
    out = open_large(&f, items[0].id, bname, NB, &len);
    CU_ASSERT(len > (size_t)NB * MEMBER);
    const unsigned char *at = out;
    for (int i = 0; i < NB && at; i++) {
        size_t left = len - (size_t)(at - out);
        at = memmem(at, left, b + (size_t)i * MEMBER, MEMBER);
        CU_ASSERT_PTR_NOT_NULL(at);
        if (at) at += MEMBER;
    }
    free(out);
    free(b);
    fx_close(&f);
}

/* A write that fails on the second thread (the file size limit, SIGXFSZ
 * ignored) fails the call with the write's error and leaves nothing, for
 * an unsealed and a sealed file. */
static void test_large_write_fails(void)
{
    for (int sealed = 0; sealed < 2; sealed++) {
        fixture f;
        fx_open(&f);
        if (sealed) fx_trust_peer(&f);
        ss_error e = {0};
        unsigned char *b = big_payload(BIG_ODD, 13);
        for (size_t i = BIG_ODD / 2; i < BIG_ODD; i++) /* all of it incompressible */
            b[i] = b[i - BIG_ODD / 2];
        char path[1024];
        write_large(&f, b, BIG_ODD, path);
        free(b);
        ss_send_item item = {.path = path, .type = SS_TYPE_DATA};
        struct rlimit was, lim;
        CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &was), 0);
        lim = (struct rlimit){.rlim_cur = 6 * 1024 * 1024, .rlim_max = was.rlim_max};
        void (*handler)(int) = signal(SIGXFSZ, SIG_IGN);
        CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
        int rc = ss_sender_pack(&f.snd, "SS1", "replmgr.box", &item, 1, &e);
        setrlimit(RLIMIT_FSIZE, &was);
        signal(SIGXFSZ, handler);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, strerror(EFBIG)));
        CU_ASSERT_FALSE(item.queued);
        CU_ASSERT_EQUAL(tu_count(f.outbox, ""), 0);
        CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4505), 1);
        CU_ASSERT_EQUAL(tu_status_count(&f.ps, 4504), 0);
        /* The sender packs the next file as usual. */
        ss_send_item ok = {.path = path, .type = SS_TYPE_DATA};
        CU_ASSERT_EQUAL(ss_sender_pack(&f.snd, "SS1", "replmgr.box", &ok, 1, &e), 0);
        CU_ASSERT_TRUE(ok.queued);
        fx_close(&f);
    }
}

/* ------------------------------------------------------------- the pipe */

typedef struct collected {
    unsigned char *got[2];
    size_t len[2], max_piece;
    unsigned pieces;
    useconds_t nap; /* per record: a slow writer */
} collected;

static int collect(void *ctx, int kind, const void *buf, size_t len, ss_error *e)
{
    (void)e;
    collected *c = ctx;
    memcpy(c->got[kind] + c->len[kind], buf, len);
    c->len[kind] += len;
    if (len > c->max_piece) c->max_piece = len;
    c->pieces++;
    if (c->nap) usleep(c->nap);
    return 0;
}

/* Records of two kinds and all sizes come out in order, each kind whole,
 * in pieces of at most one buffer; with and without wiping. */
static void test_pipe_order(void)
{
    enum { TOTAL = 6 * 1024 * 1024 };
    unsigned char *src = big_payload(TOTAL, 3);
    for (int wipe = 0; wipe < 2; wipe++) {
        collected c = {.got = {malloc(TOTAL), malloc(TOTAL)}};
        unsigned char *want[2] = {malloc(TOTAL), malloc(TOTAL)};
        size_t want_len[2] = {0, 0};
        ss_error e = {0};
        ss_pipe *p = ss_pipe_start(collect, &c, wipe, &e);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        uint64_t x = 99;
        for (size_t off = 0; off < TOTAL;) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t n = 1 + (size_t)(x % 300000);
            if (n > TOTAL - off) n = TOTAL - off;
            int kind = (int)(x >> 40) & 1;
            CU_ASSERT_EQUAL_FATAL(ss_pipe_put(p, kind, src + off, n, &e), 0);
            memcpy(want[kind] + want_len[kind], src + off, n);
            want_len[kind] += n;
            off += n;
        }
        CU_ASSERT_EQUAL(ss_pipe_put(p, 0, src, 0, &e), 0); /* nothing: nothing changes */
        CU_ASSERT_EQUAL(ss_pipe_end(p, 0, &e), 0);
        for (int k = 0; k < 2; k++) {
            CU_ASSERT_EQUAL(c.len[k], want_len[k]);
            CU_ASSERT(c.len[k] == want_len[k] && memcmp(c.got[k], want[k], c.len[k]) == 0);
            free(c.got[k]);
            free(want[k]);
        }
        CU_ASSERT(c.max_piece <= SS_PIPE_SLOT_BYTES);
    }
    /* Nothing put: nothing consumed. */
    collected none = {.got = {NULL, NULL}};
    ss_error e = {0};
    ss_pipe *p = ss_pipe_start(collect, &none, true, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(ss_pipe_end(p, 0, &e), 0);
    CU_ASSERT_EQUAL(none.pieces, 0);
    free(src);
}

static int write_to(void *ctx, int kind, const void *buf, size_t len, ss_error *e)
{
    (void)kind;
    return ss_write_all(*(int *)ctx, buf, len, e);
}

/* Puts up to 16 MiB into a pipe whose writer fails at once: the producer
 * is told within a few buffers, and end reports the writer's error. */
static void pipe_fails_case(int fd, int err)
{
    enum { PIECE = 128 * 1024 };
    static unsigned char piece[PIECE];
    ss_error e = {0};
    ss_pipe *p = ss_pipe_start(write_to, &fd, true, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    int rc = 0, n = 0;
    for (; rc == 0 && n < 128; n++)
        rc = ss_pipe_put(p, 0, piece, PIECE, &e);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(n <= (SS_PIPE_SLOTS + 2) * (SS_PIPE_SLOT_BYTES / PIECE));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "write failed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, strerror(err)));
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_pipe_end(p, 0, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, strerror(err)));
}

/* The writer's failure reaches the producer and end, without a hang: a
 * descriptor open for reading only (EBADF), and a pipe whose reader is
 * gone (EPIPE; SIGPIPE, left at its default action here, is blocked in
 * the writer thread, so it kills nothing). */
static void test_pipe_write_fails(void)
{
    char *dir = tu_tempdir("pipe");
    tu_write(dir, "ro", "", 0);
    char path[1100];
    snprintf(path, sizeof path, "%s/ro", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CU_ASSERT_FATAL(fd >= 0);
    pipe_fails_case(fd, EBADF);
    close(fd);
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    close(fds[0]);
    void (*handler)(int) = signal(SIGPIPE, SIG_DFL);
    pipe_fails_case(fds[1], EPIPE);
    signal(SIGPIPE, handler);
    close(fds[1]);
    tu_rm_rf(dir);
    free(dir);
}

/* A producer that fails ends the pipe at once: its own error stands, its
 * rc is returned, the writer stops. */
static void test_pipe_producer_fails(void)
{
    enum { TOTAL = 4 * SS_PIPE_SLOT_BYTES };
    unsigned char *src = calloc(1, TOTAL);
    for (int rc = -1; rc <= 1; rc += 2) {
        collected c = {.got = {malloc(TOTAL), malloc(TOTAL)}, .nap = 20000};
        ss_error e = {0};
        ss_pipe *p = ss_pipe_start(collect, &c, true, &e);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        for (size_t off = 0; off < TOTAL; off += SS_PIPE_SLOT_BYTES / 2)
            CU_ASSERT_EQUAL(ss_pipe_put(p, 0, src + off, SS_PIPE_SLOT_BYTES / 2, &e), 0);
        ss_err(&e, SS_E_SIZE, "the producer's own");
        CU_ASSERT_EQUAL(ss_pipe_end(p, rc, &e), rc);
        CU_ASSERT_STRING_EQUAL(e.msg, "the producer's own");
        CU_ASSERT(c.len[0] < TOTAL);
        free(c.got[0]);
        free(c.got[1]);
    }
    free(src);
}

int main(void)
{
    static const tu_test tests[] = {
        {"backoff doubles and caps", test_backoff_doubles_and_caps},
        {"pack + deliver produce verifiable pairs", test_pack_deliver_verifies},
        {"sealed pair: opaque, verifies as stored, opens with the receiver's key",
         test_sealed_pack},
        {"sealed bundles and stored payloads; duplicates still found",
         test_sealed_bundle_and_dupes},
        {"only data is sealed, and only with seal = yes", test_sealed_only_data},
        {"a sealed file still queued is not queued again", test_sealed_still_queued},
        {"a sealed pair queued unrecorded is recorded late by name", test_sealed_recorded_late},
        {"large files (second thread): unsealed, deflated and stored", test_large_unsealed},
        {"large files (second thread): sealed, its payload hash, a bundle", test_large_sealed},
        {"large files (second thread): a failed write fails the call", test_large_write_fails},
        {"pipe: records in order, kinds apart, one buffer at most", test_pipe_order},
        {"pipe: the writer's failure, no hang, no SIGPIPE", test_pipe_write_fails},
        {"pipe: the producer's failure stops the writer", test_pipe_producer_fails},
        {"outbox info counts queued pairs", test_outbox_info_counts},
        {"unreachable peer keeps pairs, then delivers", test_unreachable_then_back},
        {"unknown peer is an error", test_unknown_peer_is_an_error},
        {"unsigned instruction is one line", test_unsigned_one_line},
        {"failed pack (first item) leaves nothing", test_pack_failure_first_item},
        {"failed pack (same batch) leaves nothing", test_pack_failure_same_batch},
        {"failed pack (later batch) leaves nothing", test_pack_failure_later_batch},
        {"pack refuses bad names and directories", test_pack_refuses_bad_names},
        {"deliver with a missing package closes nothing", test_deliver_missing_package},
        {"a file still queued is not queued again", test_pack_recognises_queued_files},
        {"an interrupted publication is recorded", test_recover_interrupted_publication},
        {"an interrupted delivery is recorded", test_recover_interrupted_delivery},
        {"bundles: grouping", test_bundle_plan},
        {"bundles: packed, recorded and read back", test_bundle_pack_and_read},
        {"bundles: a bundle queued unrecorded is recorded late", test_bundle_recorded_late},
        {"addresses: local paths and sftp:// URLs, strictly", test_address_parse},
        {"addresses: failover and round robin", test_failover_and_round_robin},
        {"addresses: a local inbox behind a symbolic link", test_symlinked_inbox_is_followed},
        {"host keys: pinning rewrites known_hosts", test_host_key_pins},
    };
    return tu_run("sender", tests, sizeof tests / sizeof tests[0]);
}
