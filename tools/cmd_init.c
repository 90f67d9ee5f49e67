/*
 * cmd_init.c - `sitespool init --site CODE`: the site tree, site.conf with
 * every setting written out, site.db, and the site's key pair.
 *
 * Security stance: never overwrites an existing site; keys/ is 0700 and the
 * secret key 0600.
 */
#include "cli.h"
#include "../inboxes/fileio.h"
#include "../keystore/keyfile.h"
#include "../keystore/trust.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] init --site CODE\n"
    "\n"
    "Creates the site folder SITE_ROOT: site.conf (every setting, commented), site.db,\n"
    "keys/CODE.key (secret, mode 0600) and keys/CODE.pub, the inboxes and logs.\n"
    "CODE is 3 to 8 characters of A-Z and 0-9. An existing site is never overwritten.\n";

int cmd_init(cli *c, int argc, char **argv)
{
    const char *site = NULL;
    int rc0 = cli_site_option(argc, argv, usage, &site);
    if (rc0 != 0) return rc0 < 0 ? 0 : rc0;
    if (!site || optind != argc) return cli_usage(usage, "init needs --site CODE and nothing else");
    if (!ss_site_code_valid(site))
        return cli_usage(usage, "'%s' is not a site code (3-8 characters of A-Z and 0-9)", site);

    ss_error e = {0};
    ss_conf conf;
    ss_conf_defaults(&conf);
    snprintf(conf.site_code, sizeof conf.site_code, "%s", site);
    char db_path[PATH_MAX], sk_path[PATH_MAX], pk_path[PATH_MAX], keys_dir[PATH_MAX];
    if (ss_path(db_path, sizeof db_path, c->root, SS_FILE_DB) != 0 ||
        ss_path(keys_dir, sizeof keys_dir, c->root, SS_DIR_KEYS) != 0 ||
        ss_own_key_paths(c->root, site, sk_path, pk_path, sizeof sk_path) != 0)
        return ss_err(&e, SS_E_TOOBIG, "site path too long"), cli_fail(&e);
    if (ss_site_make_tree(c->root, &e) != 0) return cli_fail(&e);
    if (access(sk_path, F_OK) == 0)
        return ss_err(&e, SS_E_EXISTS, "%s already exists; refusing to replace a key pair",
                      sk_path),
               cli_fail(&e);

    ss_db db;
    if (ss_db_open(&db, db_path, true, &e) != 0) return cli_fail(&e);
    ss_pubkey pk;
    ss_seckey *sk = NULL;
    char text[512], comment[64], pub_name[32];
    int64_t not_after = ss_now() + (int64_t)conf.key_lifetime_days * 86400;
    ss_pubkey_comment(site, not_after, comment, sizeof comment);
    snprintf(pub_name, sizeof pub_name, "%s.pub", site);
    int rc = ss_keypair_generate(&pk, &sk, &e);
    if (rc == 0) rc = ss_seckey_save(sk_path, sk, &e);
    ss_seckey_free(sk);
    if (rc == 0) {
        ss_pubkey_format(&pk, comment, text, sizeof text);
        int dirfd = ss_open_dir(keys_dir, &e);
        rc = dirfd < 0 ? -1
                       : ss_write_file_atomic(dirfd, pub_name, text, strlen(text), 0644,
                                              SS_ATOMIC_NOREPLACE | SS_ATOMIC_SYNC_DIR, &e);
        if (dirfd >= 0) close(dirfd);
    }
    ss_keyctx keys = {c->root, &conf, &db, NULL};
    if (rc == 0) rc = ss_trust_own_add(&keys, &pk, not_after, "init", &e);
    ss_db_close(&db);
    if (rc == 0) rc = ss_site_write_conf(c->root, &conf, &e);
    if (rc != 0) return cli_fail(&e);

    if (cli_open(c) != 0) return 1;
    char until[32], key_id[SS_KEYID_HEX + 1];
    cli_format_time(not_after, until, sizeof until);
    ss_keyid_hex(pk.keyid, key_id);
    ss_report(&c->rep, 3302, key_id, site, until, NULL);
    printf("Created site %s in %s\n"
           "  public key: %s (key id %s)\n"
           "  next: give %s to each peer's administrator (their inboxes/hman.box),\n"
           "        and add peers with 'sitespool -C %s peer add CODE --inbox PATH'\n",
           site, c->root, pk_path, key_id, pk_path, c->root);
    return 0;
}
