/*
 * lookup.c - key lookup: keystore, key directory, hman.box.  See lookup.h.
 */
#include "lookup.h"
#include "../inboxes/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

bool ss_keyrec_usable(const ss_keyrec *k, int64_t now)
{
    if (k->not_after && now > k->not_after)
        return false;
    return !strcmp(k->state, "trusted") || !strcmp(k->state, "own");
}

int ss_key_import_file(const ss_keyctx *k, const char *path, const char *site,
                       const char *source, ss_keyrec *out, ss_error *e)
{
    ss_pubkey pk;
    char code[SS_SITE_CODE_MAX + 1];
    ss_keyrec rec;
    int rc = ss_pubkey_file_site(path, site, &pk, code, e);
    if (rc == 0 && !strcmp(code, k->conf->site_code))
        rc = ss_err(e, SS_E_USAGE, "it is a key for this site (%s) itself; import keys of peers "
                    "only", code);
    if (rc == 0) {
        ss_keyrec_init(&rec, code, &pk, "trusted", source, 0);
        rc = ss_keys_add(k->db, &rec, e);
    }
    if (rc != 0) {
        ss_report(k->rep, 3301, path, e->msg, NULL);
        return -1;
    }
    ss_report(k->rep, 3300, rec.key_id, code, path, NULL);
    if (out)
        *out = rec;
    return 0;
}

static bool is_key_file(const char *name, char site[SS_SITE_CODE_MAX + 1])
{
    const char *dot = strrchr(name, '.');
    if (!dot || ss_name_is_temporary(name) ||
        (strcasecmp(dot, ".pub") && strcasecmp(dot, ".ct4") && strcasecmp(dot, ".ct5")))
        return false;
    size_t n = (size_t)(dot - name);
    if (n > SS_SITE_CODE_MAX)
        return false;
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
    if (!d)
        return ss_err_sys(e, "cannot read %s", hman);
    int imported = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char site[SS_SITE_CODE_MAX + 1], path[PATH_MAX], dest[PATH_MAX];
        if (!is_key_file(de->d_name, site) || (only_site && strcmp(site, only_site)))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", hman, de->d_name) >= (int)sizeof path)
            continue;
        ss_error why = {0};
        if (ss_key_import_file(k, path, site, "hman", NULL, &why) == 0) {
            if (snprintf(dest, sizeof dest, "%s/%s", archive, de->d_name) >= (int)sizeof dest ||
                rename(path, dest) != 0)
                ss_logf(ss_reporter_log(k->rep, SS_COMP_HMAN), "Cannot archive %s to %s: %s",
                        path, dest, strerror(errno));
            imported++;
            if (on_site)
                on_site(ctx, site);
        } else {
            if (snprintf(dest, sizeof dest, "%s.bad", path) < (int)sizeof dest)
                (void)rename(path, dest);
        }
    }
    closedir(d);
    (void)ss_fsync_dir(hman, NULL);
    return imported;
}

/* The key directory folder: <directory>/<SITE>.pub records. */
static int directory_lookup(const ss_keyctx *k, const char *site,
                            const unsigned char keyid[SS_KEYID_BYTES], ss_error *e)
{
    char path[PATH_MAX];
    if (!k->conf->directory[0])
        return 0;
    if (snprintf(path, sizeof path, "%s/%s.pub", k->conf->directory, site) >= (int)sizeof path)
        return 0;
    ss_pubkey pk;
    ss_error why = {0};
    if (ss_pubkey_load(path, &pk, NULL, 0, &why) != 0) {
        if (why.code != SS_E_NOENT)
            ss_logf(ss_reporter_log(k->rep, SS_COMP_HMAN), "Key directory record %s unusable: %s",
                    path, why.msg);
        return 0;
    }
    if (memcmp(pk.keyid, keyid, SS_KEYID_BYTES) != 0)
        return 0;
    return ss_key_import_file(k, path, site, "directory", NULL, e) == 0 ? 1 : 0;
}

int ss_key_find(const ss_keyctx *k, const char *site, const unsigned char keyid[SS_KEYID_BYTES],
                ss_keyrec *out, ss_error *e)
{
    char hex[SS_KEYID_HEX + 1];
    ss_keyid_hex(keyid, hex);
    int found = ss_keys_get(k->db, site, hex, out, e);
    if (found != 0)
        return found;
    if (directory_lookup(k, site, keyid, e) > 0 || ss_hman_scan(k, site, NULL, NULL, e) > 0)
        return ss_keys_get(k->db, site, hex, out, e);
    return 0;
}
