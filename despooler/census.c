/*
 * census.c - how much the despooler's tables and folders hold, for the
 * metrics file: per sending site the pairs in the ledger (delivered within
 * the replay window), waiting for a key (retries) and held (holds); and
 * the pairs in receive and quarantined in rejected/.
 *
 * Read-only and cheap enough for every metrics interval: one grouped query
 * and two directory listings (no file is opened).
 */
#include "despooler.h"
#include "../inboxes/fileio.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ss_despooler_site_census(ss_db *db, ss_site_census *out, size_t max, size_t *n, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "SELECT site, sum(delivered), sum(waiting), sum(held) FROM ("
        " SELECT from_site AS site, count(*) AS delivered, 0 AS waiting, 0 AS held FROM ledger"
        "  GROUP BY from_site"
        " UNION ALL SELECT from_site, 0, count(*), 0 FROM retries GROUP BY from_site"
        " UNION ALL SELECT from_site, 0, 0, count(*) FROM holds GROUP BY from_site)"
        " GROUP BY site ORDER BY site",
        e);
    if (!st) return -1;
    *n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
        ss_site_census *c = &out[(*n)++];
        snprintf(c->site, sizeof c->site, "%s", (const char *)sqlite3_column_text(st, 0));
        c->delivered = (uint64_t)sqlite3_column_int64(st, 1);
        c->waiting = (uint64_t)sqlite3_column_int64(st, 2);
        c->held = (uint64_t)sqlite3_column_int64(st, 3);
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : ss_db_fail(db, "counting per site", e);
    sqlite3_finalize(st);
    return rc;
}

/* Files in dirfd whose names end in suffix (not dot-names), and the
 * oldest one's mtime. */
static void count_suffix(int dirfd, const char *suffix, uint64_t *count, int64_t *oldest)
{
    *count = 0;
    *oldest = 0;
    int fd = dup(dirfd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0) close(fd);
        return;
    }
    rewinddir(dir); /* the duplicate shares the folder's read position */
    size_t slen = strlen(suffix);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        struct stat st;
        if (de->d_name[0] == '.' || len <= slen || strcmp(de->d_name + len - slen, suffix) != 0)
            continue;
        (*count)++;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            (!*oldest || st.st_mtime < *oldest))
            *oldest = st.st_mtime;
    }
    closedir(dir);
}

void ss_despooler_folder_census(const ss_despooler *d, ss_folder_census *out)
{
    count_suffix(d->receive_fd, ".ins", &out->receive, &out->receive_oldest);
    count_suffix(d->rejected_fd, ".why", &out->quarantined, &out->quarantined_oldest);
}
