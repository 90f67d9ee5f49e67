/*
 * testutil.c - shared CUnit helpers.  See testutil.h.
 */
#include "testutil.h"
#include "../../inboxes/fileio.h"

#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

char *tu_tempdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(512);
    snprintf(path, 512, "%s/sitespool-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void tu_write(const char *dir, const char *name, const void *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

char *tu_read(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    if (len) *len = got;
    return buf;
}

bool tu_exists(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int tu_count(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    size_t sl = strlen(suffix);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (len >= sl && !strcmp(de->d_name + len - sl, suffix)) n++;
    }
    closedir(d);
    return n;
}

void tu_site_make(tu_site *s, const char *parent, const char *code, const char *extra_conf)
{
    ss_error e = {0};
    memset(s, 0, sizeof *s);
    snprintf(s->root, sizeof s->root, "%s/%s", parent, code);
    ss_conf_defaults(&s->conf);
    snprintf(s->conf.site_code, sizeof s->conf.site_code, "%s", code);
    char path[1024], sk_path[1024], pk_path[1024];
    if (ss_site_make_tree(s->root, false, &e) != 0 ||
        ss_site_write_conf(s->root, &s->conf, false, &e) != 0) {
        fprintf(stderr, "site: %s\n", e.msg);
        abort();
    }
    if (extra_conf) {
        snprintf(path, sizeof path, "%s/site.conf", s->root);
        FILE *f = fopen(path, "a");
        fputs(extra_conf, f);
        fclose(f);
    }
    if (ss_conf_load(&s->conf, s->root, &e) != 0) {
        fprintf(stderr, "conf: %s\n", e.msg);
        abort();
    }
    snprintf(path, sizeof path, "%s/site.db", s->root);
    ss_own_key_paths(s->root, code, sk_path, pk_path, sizeof sk_path);
    if (ss_db_open(&s->db, path, true, &e) != 0 || ss_keypair_generate(&s->pk, &s->sk, &e) != 0 ||
        ss_seckey_save(sk_path, s->sk, &e) != 0) {
        fprintf(stderr, "keys: %s\n", e.msg);
        abort();
    }
    char text[512];
    ss_pubkey_format(&s->pk, "sitespool public key for site test", text, sizeof text);
    snprintf(path, sizeof path, "%s/keys", s->root);
    tu_write(path, strrchr(pk_path, '/') + 1, text, strlen(text));
    ss_keyrec rec;
    ss_keyrec_init(&rec, code, &s->pk, SS_KEY_OWN, "init", 0);
    if (ss_keys_add(&s->db, &rec, &e) != 0 ||
        ss_reporter_open(&s->rep, s->root, &s->conf, &s->db, &e) != 0) {
        fprintf(stderr, "db: %s\n", e.msg);
        abort();
    }
}

void tu_site_close(tu_site *s)
{
    ss_reporter_close(&s->rep);
    ss_db_close(&s->db);
    ss_seckey_free(s->sk);
    s->sk = NULL;
}

int tu_status_count(tu_site *s, int msg_id)
{
    sqlite3_stmt *st = ss_db_prepare(&s->db, "SELECT count(*) FROM status WHERE msg_id=?", NULL);
    int n = -1;
    sqlite3_bind_int(st, 1, msg_id);
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

int tu_run(const char *suite_name, const tu_test *tests, size_t n)
{
    if (sodium_init() < 0 || CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        CU_add_test(suite, tests[i].name, tests[i].fn);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
