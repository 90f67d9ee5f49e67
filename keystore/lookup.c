/*
 * lookup.c - key lookup: keystore, key directory, hman.box.  See lookup.h.
 */
#include "lookup.h"
#include "../inboxes/fileio.h"
#include "dircache.h"
#include "keyfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static bool is_key_file(const char *name, char site[SS_SITE_CODE_MAX + 1])
{
    const char *dot = strrchr(name, '.');
    if (!dot || ss_name_is_temporary(name) ||
        (strcasecmp(dot, ".pub") && strcasecmp(dot, ".ct4") && strcasecmp(dot, ".ct5")))
        return false;
    size_t n = (size_t)(dot - name);
    if (n > SS_SITE_CODE_MAX) return false;
    for (size_t i = 0; i < n; i++)
        site[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
    site[n] = '\0';
    return ss_site_code_valid(site);
}

int ss_hman_scan(const ss_keyctx *k, const char *only_site, ss_site_fn on_site, void *ctx,
                 ss_error *e)
{
    char hman[PATH_MAX], archive[PATH_MAX];
    if (ss_path(hman, sizeof hman, k->root, SS_DIR_HMAN) != 0 ||
        ss_path(archive, sizeof archive, k->root, SS_DIR_HMAN_PUBKEY) != 0)
        return ss_err(e, SS_E_TOOBIG, "path too long");
    DIR *d = opendir(hman);
    if (!d) return ss_err_sys(e, "cannot read %s", hman);
    int imported = 0;
    bool renamed = false;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char site[SS_SITE_CODE_MAX + 1], path[PATH_MAX], dest[PATH_MAX];
        if (!is_key_file(de->d_name, site) || (only_site && strcmp(site, only_site))) continue;
        if (snprintf(path, sizeof path, "%s/%s", hman, de->d_name) >= (int)sizeof path) continue;
        ss_error why = {0};
        int rc = ss_trust_import_file(k, path, NULL, "hman", false, NULL, &why);
        if (rc != 0 && why.code == SS_E_DB) {
            /* Not refused: the keystore failed.  The file stays for the
             * next scan, and the scan fails (fail closed). */
            closedir(d);
            return ss_err(e, SS_E_DB, "cannot import %s now: %s", path, why.msg);
        }
        if (rc == 0) {
            if (snprintf(dest, sizeof dest, "%s/%s", archive, de->d_name) >= (int)sizeof dest ||
                rename(path, dest) != 0)
                ss_logf(ss_reporter_log(k->rep, SS_COMP_HMAN), "Cannot archive %s to %s: %s", path,
                        dest, strerror(errno));
            imported++;
            if (on_site) on_site(ctx, site);
        } else {
            if (snprintf(dest, sizeof dest, "%s.bad", path) < (int)sizeof dest)
                (void)rename(path, dest);
        }
        renamed = true;
    }
    closedir(d);
    /* Only a rename needs the folder flushed; an idle scan costs no fsync. */
    if (renamed) {
        (void)ss_fsync_dir(hman, NULL);
        (void)ss_fsync_dir(archive, NULL);
    }
    return imported;
}

/* The key directory folder: <directory>/<SITE>.pub records.  A record
 * holding the key id sought is returned as a candidate, not judged: it is
 * evidence only for an instruction that verifies with it (the caller
 * checks, then offers it to the trust rules).  1 found, 0 not. */
static int folder_lookup(const ss_keyctx *k, const char *site,
                         const unsigned char keyid[SS_KEYID_BYTES], ss_keyrec *out,
                         ss_key_found *how)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s.pub", k->conf->directory, site) >= (int)sizeof path)
        return 0;
    ss_keyfile kf;
    ss_error why = {0};
    ss_log *log = ss_reporter_log(k->rep, SS_COMP_HMAN);
    if (ss_keyfile_load(path, &kf, &why) != 0) {
        if (why.code != SS_E_NOENT)
            ss_logf(log, "Key directory record %s unusable: %s", path, why.msg);
        return 0;
    }
    if (memcmp(kf.pk.keyid, keyid, SS_KEYID_BYTES) != 0) return 0;
    if (strcmp(kf.comment_site, site) != 0) {
        ss_logf(log, "Key directory record %s is not used: its comment names site '%s', not %s",
                path, kf.comment_site, site);
        return 0;
    }
    ss_keyrec_init(out, site, &kf.pk, SS_KEY_PENDING, "directory", kf.not_after);
    how->where = SS_FOUND_DIRECTORY;
    snprintf(how->path, sizeof how->path, "%s", path);
    return 1;
}

/* A site's entry on a directory server (through the despooler's cache):
 * its current key, or its next key.  The next key counts only with its
 * proof and the current key's vouch verified (ldapdir.c); it is a key
 * vouched for by the current key when the keystore holds that key for the
 * site (trust.h decides whether it still may vouch), otherwise a plain
 * directory record.  A directory that cannot be asked finds nothing (dircache.c
 * reports it).  1 found, 0 not, -1 the keystore failed. */
static int server_lookup(const ss_keyctx *k, const char *site,
                         const unsigned char keyid[SS_KEYID_BYTES], ss_keyrec *out,
                         ss_key_found *how, ss_error *e)
{
    const ss_dirrec *r;
    if (ss_dircache_get(k->dir, site, &r) != 1) return 0;
    bool current = r->has_current && !memcmp(r->current.keyid, keyid, SS_KEYID_BYTES);
    bool next = !current && r->next_ok && !memcmp(r->next.keyid, keyid, SS_KEYID_BYTES);
    if (!current && !next) return 0;
    how->where = SS_FOUND_DIRECTORY;
    snprintf(how->path, sizeof how->path, "%s", r->where);
    if (current) {
        ss_keyrec_init(out, site, &r->current, SS_KEY_PENDING, "directory", r->current_not_after);
        return 1;
    }
    ss_keyrec_init(out, site, &r->next, SS_KEY_PENDING, "directory", r->next_not_after);
    int held = ss_keys_get_pk(k->db, site, &r->current, &how->signer, e);
    if (held < 0) return -1;
    how->has_signer = held == 1;
    if (held) how->evidence = SS_EV_VOUCHED;
    return 1;
}

static int directory_lookup(const ss_keyctx *k, const char *site,
                            const unsigned char keyid[SS_KEYID_BYTES], ss_keyrec *out,
                            ss_key_found *how, ss_error *e)
{
    if (!k->conf->directory[0]) return 0;
    if (ss_dirurl_is_ldap(k->conf->directory)) return server_lookup(k, site, keyid, out, how, e);
    return folder_lookup(k, site, keyid, out, how);
}

int ss_key_find(const ss_keyctx *k, const char *site, const unsigned char keyid[SS_KEYID_BYTES],
                ss_keyrec *out, ss_key_found *how, ss_error *e)
{
    char hex[SS_KEYID_HEX + 1];
    ss_keyid_hex(keyid, hex);
    how->where = SS_FOUND_KEYSTORE;
    how->path[0] = '\0';
    how->evidence = SS_EV_DIRECTORY;
    how->has_signer = false;
    int found = ss_keys_get(k->db, site, hex, out, e);
    if (found != 0) return found;
    found = directory_lookup(k, site, keyid, out, how, e);
    if (found != 0) return found;
    int imported = ss_hman_scan(k, site, NULL, NULL, e);
    if (imported <= 0) return imported;
    how->where = SS_FOUND_HMAN;
    return ss_keys_get(k->db, site, hex, out, e);
}

int ss_warn_expiring_keys(const ss_keyctx *k, ss_error *e)
{
    int64_t now = ss_now();
    sqlite3_stmt *st = ss_db_prepare(
        k->db,
        "UPDATE keys SET warned_at=?1 WHERE not_after IS NOT NULL AND not_after - ?2 <= ?1 "
        "AND state IN ('own','trusted') AND (warned_at IS NULL OR warned_at <= ?1 - 86400) "
        "RETURNING site, key_id, not_after",
        e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, (int64_t)k->conf->expiry_warning_days * 86400);
    struct expiring {
        char site[SS_SITE_CODE_MAX + 1], key_id[SS_KEYID_HEX + 1];
        int64_t not_after;
    } found[32];
    int n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n >= 32) continue; /* the rest are warned tomorrow */
        snprintf(found[n].site, sizeof found[n].site, "%s", sqlite3_column_text(st, 0));
        snprintf(found[n].key_id, sizeof found[n].key_id, "%s", sqlite3_column_text(st, 1));
        found[n++].not_after = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return ss_db_fail(k->db, "marking expiry warnings", e);
    for (int i = 0; i < n; i++) {
        char date[32], days[32];
        time_t tt = (time_t)found[i].not_after;
        struct tm tm;
        localtime_r(&tt, &tm);
        strftime(date, sizeof date, "%Y-%m-%d", &tm);
        snprintf(days, sizeof days, "%lld", ss_days_left(found[i].not_after, now));
        ss_report(k->rep, 3304, found[i].key_id, found[i].site, date, days, NULL);
    }
    return 0;
}
