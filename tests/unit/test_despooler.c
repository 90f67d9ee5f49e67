/*
 * test_despooler.c - CUnit suite for the despooler library: batches that
 * span several transactions, the restart paths of the exactly-once order
 * (staged but not committed; committed but not yet renamed), and inputs
 * this host cannot read (4419: kept, never quarantined).
 */
#include "testutil.h"
#include "../../despooler/despooler.h"
#include "../../despooler/pipeline.h"
#include "../../inboxes/instruction.h"
#include "../../keystore/sigfile.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RECEIVE "inboxes/despoolr.box/receive"
#define INCOMING "inboxes/replmgr.box/incoming"
#define CONSUMED "inboxes/despoolr.box/consumed"

typedef struct fixture {
    char *dir;
    tu_site ps1, ss1;
    char receive[1100], incoming[1100], consumed[1100];
} fixture;

static void fx_open(fixture *f, unsigned batch_max)
{
    f->dir = tu_tempdir("despooler");
    tu_site_make(&f->ps1, f->dir, "PS1", NULL);
    tu_site_make(&f->ss1, f->dir, "SS1", NULL);
    if (batch_max) f->ss1.conf.batch_max = batch_max;
    ss_keyrec rec;
    ss_error e = {0};
    ss_keyrec_init(&rec, "PS1", &f->ps1.pk, SS_KEY_TRUSTED, "test", 0);
    CU_ASSERT_EQUAL_FATAL(ss_keys_add(&f->ss1.db, &rec, &e), 0);
    snprintf(f->receive, sizeof f->receive, "%s/" RECEIVE, f->ss1.root);
    snprintf(f->incoming, sizeof f->incoming, "%s/" INCOMING, f->ss1.root);
    snprintf(f->consumed, sizeof f->consumed, "%s/" CONSUMED, f->ss1.root);
}

static void fx_close(fixture *f)
{
    tu_site_close(&f->ps1);
    tu_site_close(&f->ss1);
    tu_rm_rf(f->dir);
    free(f->dir);
}

/* A signed PS1 -> SS1 pair (zip=none) for payload, dropped into receive. */
static void make_pair(fixture *f, const char *name, const char *payload, uint64_t seq,
                      char id[SS_ID_HEX + 1])
{
    ss_instr in;
    memset(&in, 0, sizeof in);
    ss_instr_new_id(id);
    memcpy(in.id, id, SS_ID_HEX + 1);
    strcpy(in.from, "PS1");
    strcpy(in.to, "SS1");
    in.type = SS_TYPE_DATA;
    strcpy(in.dest, "replmgr.box");
    snprintf(in.name, sizeof in.name, "%s", name);
    in.size = strlen(payload);
    in.zip = SS_ZIP_NONE;
    in.seq = seq;
    in.created = ss_now();
    in.expires = in.created + 3600;
    char tc[1024], sig[SS_SIGFILE_MAX], file[64];
    CU_ASSERT_EQUAL_FATAL(ss_instr_format(&in, tc, sizeof tc), 0);
    unsigned char hash[SS_HASH_BYTES];
    ss_hash h;
    ss_hash_init(&h);
    ss_hash_update(&h, payload, strlen(payload));
    ss_hash_final(&h, hash);
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(
        ss_sign_hash(f->ps1.sk, hash, tc, "sitespool instruction PS1 -> SS1", sig, sizeof sig, &e),
        0);
    snprintf(file, sizeof file, "%s.pck", id);
    tu_write(f->receive, file, payload, strlen(payload));
    snprintf(file, sizeof file, "%s.ins", id);
    tu_write(f->receive, file, sig, strlen(sig));
}

/* n pairs f<i>.txt holding "payload <i>\n", seq 1..n. */
static void make_numbered_pairs(fixture *f, int n)
{
    char id[SS_ID_HEX + 1], name[32], payload[64];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "f%d.txt", i);
        snprintf(payload, sizeof payload, "payload %d\n", i);
        make_pair(f, name, payload, (uint64_t)i + 1, id);
    }
}

static int drain(fixture *f, ss_despool_stats *stats)
{
    ss_despooler d;
    ss_error e = {0};
    if (ss_despooler_open(&d, f->ss1.root, &f->ss1.conf, &f->ss1.db, &f->ss1.rep, &e) != 0)
        return -1;
    int rc = ss_despooler_drain(&d, &e);
    *stats = d.stats;
    ss_despooler_close(&d);
    return rc;
}

static int ledger_rows(fixture *f)
{
    sqlite3_stmt *st = ss_db_prepare(&f->ss1.db, "SELECT count(*) FROM ledger", NULL);
    int n = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void check_file(const char *dir, const char *name, const char *want)
{
    size_t len = 0;
    char *got = tu_read(dir, name, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(len, strlen(want));
    CU_ASSERT_STRING_EQUAL(got, want);
    free(got);
}

/* 10 pairs with batch_max = 4: three transactions, every pair once. */
static void test_batches(void)
{
    fixture f;
    fx_open(&f, 4);
    make_numbered_pairs(&f, 10);
    ss_despool_stats st = {0};
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    CU_ASSERT_EQUAL(st.delivered, 10);
    CU_ASSERT_EQUAL(st.rejected + st.duplicates + st.waiting, 0);
    CU_ASSERT_EQUAL(ledger_rows(&f), 10);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4400), 10);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4415), 0); /* seq 1..10: no gap */
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 0);
    CU_ASSERT_EQUAL(tu_count(f.incoming, ""), 10);
    char name[32], payload[64];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "f%d.txt", i);
        snprintf(payload, sizeof payload, "payload %d\n", i);
        check_file(f.incoming, name, payload);
    }
    fx_close(&f);
}

static void tmp_name(const char *id, char *out, size_t len)
{
    snprintf(out, len, ".sitespool-%s.tmp", id);
}

static void ledger_add(fixture *f, const char *id, const char *path)
{
    sqlite3_stmt *st = ss_db_prepare(
        &f->ss1.db,
        "INSERT INTO ledger(id, from_site, seq, type, outcome, path, size, time, expires) "
        "VALUES(?, 'PS1', 1, 'data', 'delivered', ?, 3, ?, ?)",
        NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, ss_now());
    sqlite3_bind_int64(st, 4, ss_now() + 3600);
    CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* Crash after the ledger commit, before the rename: the restart publishes
 * the staged file under the recorded name, reports no second 4400 and no
 * duplicate, and removes the pair. */
static void test_restart_after_commit(void)
{
    fixture f;
    fx_open(&f, 0);
    char id[SS_ID_HEX + 1], tmp[96];
    make_pair(&f, "r.txt", "staged data\n", 1, id);
    tmp_name(id, tmp, sizeof tmp);
    tu_write(f.incoming, tmp, "staged data\n", 12);
    ledger_add(&f, id, INCOMING "/r.txt");
    ss_despool_stats st = {0};
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    check_file(f.incoming, "r.txt", "staged data\n");
    CU_ASSERT_FALSE(tu_exists(f.incoming, tmp));
    CU_ASSERT_EQUAL(tu_count(f.incoming, ""), 1);
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4400), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4402), 0);
    CU_ASSERT_EQUAL(ledger_rows(&f), 1);
    fx_close(&f);
}

/* The same, but the recorded name was taken meanwhile: never overwritten,
 * the staged data goes to name.<id>. */
/* Numbers out of order across batches are no gap; a number that never
 * came is reported once (4415, naming the run), then skipped. */
static void test_sequence_gaps(void)
{
    fixture f;
    fx_open(&f, 2);
    char id[SS_ID_HEX + 1];
    static const uint64_t seqs[] = {4, 1, 3, 2, 7, 8};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%llu.txt", (unsigned long long)seqs[i]);
        make_pair(&f, name, "x", seqs[i], id);
    }
    ss_despool_stats st = {0};
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    CU_ASSERT_EQUAL(st.delivered, 6);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4415), 1);
    sqlite3_stmt *q = ss_db_prepare(&f.ss1.db, "SELECT istr FROM status WHERE msg_id=4415", NULL);
    CU_ASSERT_EQUAL_FATAL(sqlite3_step(q), SQLITE_ROW);
    CU_ASSERT_PTR_NOT_NULL(strstr((const char *)sqlite3_column_text(q, 0), "\"7\",\"5\",\"6\"]"));
    sqlite3_finalize(q);
    /* Reported once: later numbers and another drain say nothing more. */
    make_pair(&f, "s9.txt", "x", 9, id);
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4415), 1);
    fx_close(&f);
}

static void test_restart_after_commit_name_taken(void)
{
    fixture f;
    fx_open(&f, 0);
    char id[SS_ID_HEX + 1], tmp[96], unique[64];
    make_pair(&f, "r.txt", "staged data\n", 1, id);
    tmp_name(id, tmp, sizeof tmp);
    tu_write(f.incoming, tmp, "staged data\n", 12);
    tu_write(f.incoming, "r.txt", "someone else\n", 13);
    ledger_add(&f, id, INCOMING "/r.txt");
    ss_despool_stats st = {0};
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    check_file(f.incoming, "r.txt", "someone else\n");
    snprintf(unique, sizeof unique, "r.txt.%s", id);
    check_file(f.incoming, unique, "staged data\n");
    CU_ASSERT_EQUAL(tu_count(f.incoming, ""), 2);
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 0);
    fx_close(&f);
}

/* Crash after staging, before the commit: no ledger row, so the leftover
 * temporary file (here with stale content) is replaced and the pair is
 * delivered once from the package. */
static void test_restart_before_commit(void)
{
    fixture f;
    fx_open(&f, 0);
    char id[SS_ID_HEX + 1], tmp[96];
    make_pair(&f, "s.txt", "from the package\n", 1, id);
    tmp_name(id, tmp, sizeof tmp);
    tu_write(f.incoming, tmp, "half writ", 9);
    ss_despool_stats st = {0};
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    CU_ASSERT_EQUAL(st.delivered, 1);
    check_file(f.incoming, "s.txt", "from the package\n");
    CU_ASSERT_EQUAL(tu_count(f.incoming, ""), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4400), 1);
    CU_ASSERT_EQUAL(ledger_rows(&f), 1);
    fx_close(&f);
}

/* Crash after the rename, before the pair was removed: a duplicate (4402),
 * nothing delivered again. */
static void test_restart_after_rename(void)
{
    fixture f;
    fx_open(&f, 0);
    char id[SS_ID_HEX + 1];
    make_pair(&f, "t.txt", "done\n", 1, id);
    tu_write(f.incoming, "t.txt", "done\n", 5);
    ledger_add(&f, id, INCOMING "/t.txt");
    ss_despool_stats st = {0};
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    CU_ASSERT_EQUAL(st.delivered, 0);
    CU_ASSERT_EQUAL(st.duplicates, 1);
    CU_ASSERT_EQUAL(tu_count(f.incoming, ""), 1);
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4402), 1);
    fx_close(&f);
}

/* Consumed pairs leave receive through consumed/, which is empty once the
 * despooler closed; what a killed run left there goes at the next start. */
static void test_consumed_pairs_are_reaped(void)
{
    fixture f;
    fx_open(&f, 0);
    make_numbered_pairs(&f, 300);
    tu_write(f.consumed, "0123456789abcdef0123456789abcdef.ins", "left by a kill", 14);
    ss_despool_stats st = {0};
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    CU_ASSERT_EQUAL(st.delivered, 300);
    CU_ASSERT_EQUAL(tu_count(f.incoming, ""), 300);
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 0);
    CU_ASSERT_EQUAL(tu_count(f.consumed, ""), 0);
    check_file(f.incoming, "f299.txt", "payload 299\n");
    fx_close(&f);
}

/* A consumed/ that others can write is not used: pairs are removed in
 * place, and the reason is logged. */
static void test_unsafe_consumed_folder_falls_back(void)
{
    fixture f;
    fx_open(&f, 0);
    tu_write(f.consumed, "keep-out", "x", 1);
    CU_ASSERT_EQUAL_FATAL(chmod(f.consumed, 0777), 0);
    char id[SS_ID_HEX + 1];
    make_pair(&f, "u.txt", "in place\n", 1, id);
    ss_despool_stats st = {0};
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    CU_ASSERT_EQUAL(st.delivered, 1);
    check_file(f.incoming, "u.txt", "in place\n");
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 0);
    CU_ASSERT_EQUAL(tu_count(f.consumed, ""), 1); /* not ours to empty */
    char logdir[1200];
    snprintf(logdir, sizeof logdir, "%s/logs", f.ss1.root);
    size_t len = 0;
    char *log = tu_read(logdir, "despool.log", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "removed in place"));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "not a private folder"));
    free(log);
    fx_close(&f);
}

/* Errors that are this host's fault keep the pair; those that describe
 * the file itself are the content's. */
static void test_input_fault_classes(void)
{
    static const int local[] = {EACCES, EPERM,   EIO,    EMFILE,    ENFILE,
                                ENOMEM, ENOBUFS, ESTALE, ETIMEDOUT, ENOTCONN};
    static const int content[] = {0, ENXIO, ENODEV, EISDIR, ELOOP, EOVERFLOW};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        CU_ASSERT_TRUE(dsp_input_fault_is_local(local[i]));
    for (size_t i = 0; i < sizeof content / sizeof content[0]; i++)
        CU_ASSERT_FALSE(dsp_input_fault_is_local(content[i]));
}

/* As root, file modes bind only without CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH: takes them out of (or puts them back into) this
 * thread's effective set; threads it starts meanwhile inherit the set. */
static int dac_caps(bool on)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct c[2];
    if (syscall(SYS_capget, &h, c) != 0) return -1;
    uint32_t bits = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
    c[0].effective = on ? c[0].effective | (bits & c[0].permitted) : c[0].effective & ~bits;
    return (int)syscall(SYS_capset, &h, c);
}

/* Whether dir/name cannot be opened for reading (EACCES) now. */
static bool unreadable(const char *dir, const char *name)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    return fd < 0 && errno == EACCES;
}

/* A pair whose instruction, and one whose package, the despooler may not
 * read: both stay in receive with one 4419 each however often it scans,
 * nothing is quarantined (a garbage instruction beside them still is,
 * 4403), and both are delivered once they can be read. */
static void test_unreadable_inputs_stay(void)
{
    fixture f;
    fx_open(&f, 0);
    char ins_id[SS_ID_HEX + 1], pck_id[SS_ID_HEX + 1], name[64], rejected[1200];
    make_pair(&f, "i.txt", "instruction unreadable\n", 1, ins_id);
    make_pair(&f, "p.txt", "package unreadable\n", 2, pck_id);
    tu_write(f.receive, "0123456789abcdef0123456789abcdef.ins", "garbage", 7);
    snprintf(rejected, sizeof rejected, "%s/inboxes/despoolr.box/rejected", f.ss1.root);
    char ins_path[1400], pck_path[1400];
    snprintf(ins_path, sizeof ins_path, "%s/%s.ins", f.receive, ins_id);
    snprintf(pck_path, sizeof pck_path, "%s/%s.pck", f.receive, pck_id);
    CU_ASSERT_EQUAL_FATAL(chmod(ins_path, 0), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(pck_path, 0), 0);
    bool root = geteuid() == 0;
    if (root && dac_caps(false) != 0) CU_FAIL("cannot drop CAP_DAC_OVERRIDE");
    snprintf(name, sizeof name, "%s.ins", ins_id);
    if (!unreadable(f.receive, name)) { /* a sandbox that lets us read anyway */
        if (root) dac_caps(true);
        fprintf(stderr, "SKIP: a mode 0000 file stays readable here\n");
        fx_close(&f);
        return;
    }
    ss_despool_stats st = {0};
    for (int scan = 0; scan < 3; scan++) {
        CU_ASSERT_EQUAL(drain(&f, &st), 0);
        CU_ASSERT_EQUAL(st.waiting, 2);
        CU_ASSERT_EQUAL(st.delivered, 0);
    }
    if (root) CU_ASSERT_EQUAL(dac_caps(true), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4419), 2);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4403), 1); /* the garbage only */
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4416), 0);
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 4);
    CU_ASSERT_EQUAL(tu_count(rejected, ".ins"), 1);
    CU_ASSERT_EQUAL(chmod(ins_path, 0640), 0);
    CU_ASSERT_EQUAL(chmod(pck_path, 0640), 0);
    CU_ASSERT_EQUAL(drain(&f, &st), 0);
    CU_ASSERT_EQUAL(st.delivered, 2);
    check_file(f.incoming, "i.txt", "instruction unreadable\n");
    check_file(f.incoming, "p.txt", "package unreadable\n");
    CU_ASSERT_EQUAL(tu_count(f.receive, ""), 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4419), 2);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 4400), 2);
    CU_ASSERT_EQUAL(ledger_rows(&f), 2);
    fx_close(&f);
}

int main(void)
{
    static const tu_test tests[] = {
        {"10 pairs in batches of 4 are delivered once each", test_batches},
        {"sequence numbers out of order are no gap; a real gap is reported once",
         test_sequence_gaps},
        {"restart after the ledger commit finishes the rename", test_restart_after_commit},
        {"restart after the commit never overwrites a taken name",
         test_restart_after_commit_name_taken},
        {"restart before the commit redoes the delivery", test_restart_before_commit},
        {"restart after the rename drops the pair as a duplicate", test_restart_after_rename},
        {"consumed pairs are reaped, leftovers of a kill too", test_consumed_pairs_are_reaped},
        {"an unsafe consumed/ folder falls back to removal in place",
         test_unsafe_consumed_folder_falls_back},
        {"read errors of this host are local faults, file types the content's",
         test_input_fault_classes},
        {"unreadable inputs stay in receive (4419 once), delivered when readable",
         test_unreadable_inputs_stay},
    };
    return tu_run("despooler", tests, sizeof tests / sizeof tests[0]);
}
