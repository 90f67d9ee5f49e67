/*
 * testutil.h - helpers shared by the CUnit suites: temporary folders, small
 * file helpers, a site made in a temporary folder, and the suite runner.
 */
#ifndef SS_TESTUTIL_H
#define SS_TESTUTIL_H

#include "../../keystore/status.h"
#include "../../keystore/store.h"

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <stddef.h>

/* A fresh folder under $TMPDIR (removed by tu_rm_rf). */
char *tu_tempdir(const char *tag);
void tu_rm_rf(const char *path);
/* Writes len bytes to dir/name (mode 0644). */
void tu_write(const char *dir, const char *name, const void *data, size_t len);
/* Reads dir/name into a malloc'ed NUL-terminated buffer; NULL if missing. */
char *tu_read(const char *dir, const char *name, size_t *len);
bool tu_exists(const char *dir, const char *name);
/* Counts entries of dir whose names end with suffix ("" counts all but . and ..). */
int tu_count(const char *dir, const char *suffix);

/* A complete site in a temporary folder, opened like the CLI opens it. */
typedef struct tu_site {
    char root[512];
    ss_conf conf;
    ss_db db;
    ss_reporter rep;
    ss_pubkey pk;
    ss_seckey *sk;
} tu_site;

/* Creates site `code` under parent (tree, conf, db, key pair); extra_conf
 * lines (may be NULL) are appended to site.conf before it is loaded. */
void tu_site_make(tu_site *s, const char *parent, const char *code, const char *extra_conf);
void tu_site_close(tu_site *s);
/* Number of status rows with msg_id. */
int tu_status_count(tu_site *s, int msg_id);

typedef struct tu_test {
    const char *name;
    void (*fn)(void);
} tu_test;

/* Runs one suite; returns the process exit code. */
int tu_run(const char *suite, const tu_test *tests, size_t n);

#endif
