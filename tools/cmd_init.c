/*
 * cmd_init.c - `sitespool init --site CODE`: the site tree, site.conf with
 * every setting written out, site.db, and the site's key pair.
 *
 * Security stance: never overwrites an existing site; keys/ is 0700 and the
 * secret key 0600.  A folder that holds anything else (lost+found aside)
 * is refused too, unless --force: a mistyped -C must not scatter a site
 * tree among someone's files.
 */
#include "cli.h"
#include "suggest.h"
#include "../inboxes/fileio.h"
#include "../keystore/keyfile.h"
#include "../keystore/trust.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] init --site CODE [--system] [--force]\n"
    "\n"
    "Creates the site folder SITE_ROOT: site.conf (every setting, commented), site.db,\n"
    "keys/CODE.key (secret, mode 0600) and keys/CODE.pub, the inboxes and logs.\n"
    "CODE is 3 to 8 characters of A-Z and 0-9. An existing site is never overwritten.\n"
    "SITE_ROOT must be new or empty (lost+found aside).\n"
    "\n"
    "--force   make the site in a folder that holds other files (they are left alone;\n"
    "          an existing site is still refused)\n"
    "--system  the installed layout (run as root): the site in " SITESPOOL_STATE_DIR "/CODE\n"
    "          (unless -C), owned by the sitespool user; its settings in\n"
    "          " SITESPOOL_CONF_DIR "/CODE.conf, owned by root, readable by group\n"
    "          sitespool. The units sitespool-despool@CODE and sitespool-sender@CODE\n"
    "          run it.\n"
    "\n"
    "Exit codes: 0 created, 1 failed (nothing is overwritten), 2 usage error.\n";

struct init_opts {
    const char *site;
    bool system, force;
};

static int parse_init(int argc, char **argv, struct init_opts *o)
{
    static const struct option opts[] = {{"site", required_argument, NULL, 's'},
                                         {"system", no_argument, NULL, 'S'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        if (ch == 's')
            o->site = optarg;
        else if (ch == 'S')
            o->system = true;
        else if (ch == 'f')
            o->force = true;
        else if (ch == 'h')
            return fputs(usage, stdout), -1;
        else
            return cli_usage(usage, "bad option for init");
    }
    if (!o->site || optind != argc)
        return cli_usage(usage, "init needs --site CODE and nothing else");
    if (!ss_site_code_valid(o->site)) return suggest_bad_site(usage, "--site", o->site);
    return 0;
}

/* Refuses a SITE_ROOT that holds anything but lost+found (unless
 * --force) - except a site, which ss_site_make_tree refuses in its own
 * words.  A root that is not there yet is fine. */
static int check_root_empty(const char *root, bool system, bool force)
{
    char conf[PATH_MAX];
    if (force || (ss_conf_locate(root, system, conf, sizeof conf) == 0 && access(conf, F_OK) == 0))
        return 0;
    DIR *d = opendir(root);
    if (!d) {
        if (errno == ENOENT) return 0;
        fprintf(stderr, "sitespool: cannot read %s: %s\n", root, strerror(errno));
        return 1;
    }
    size_t count = 0;
    char first[256] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            !strcmp(de->d_name, "lost+found"))
            continue;
        if (!count++) snprintf(first, sizeof first, "%s", de->d_name);
    }
    closedir(d);
    if (!count) return 0;
    char more[48] = "";
    if (count > 1) snprintf(more, sizeof more, " and %zu more", count - 1);
    fprintf(stderr,
            "sitespool: %s is not empty (it holds %s%s): a site is made in a new or empty "
            "folder. Name another with -C, or add --force to make the site among these files "
            "(they are left alone)\n",
            root, first, more);
    return 1;
}

/* nftw() passes no context: the owner for chown_entry, set just before. */
static uid_t hand_uid;
static gid_t hand_gid;

static int chown_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return lchown(path, hand_uid, hand_gid);
}

/* --system, as root: the tree belongs to the sitespool user, the settings
 * to root with group sitespool (the daemons read them, only root edits). */
static int hand_over(const char *root, const char *site, ss_error *e)
{
    struct passwd *pw = getpwnam("sitespool");
    if (!pw)
        return ss_err(e, SS_E_NOENT,
                      "there is no sitespool user (the package's postinst makes it: "
                      "adduser --system --group sitespool)");
    char conf[PATH_MAX];
    if (ss_conf_locate(root, true, conf, sizeof conf) != 0)
        return ss_err(e, SS_E_TOOBIG, "path too long");
    if (chown(conf, 0, pw->pw_gid) != 0 || chmod(conf, 0640) != 0)
        return ss_err_sys(e, "cannot hand %s to group sitespool", conf);
    /* The tree is new and ours: every entry, links not followed. */
    hand_uid = pw->pw_uid;
    hand_gid = pw->pw_gid;
    if (nftw(root, chown_entry, 16, FTW_PHYS) != 0)
        return ss_err_sys(e, "cannot hand %s to the sitespool user", root);
    (void)site;
    return 0;
}

int cmd_init(cli *c, int argc, char **argv)
{
    struct init_opts o = {0};
    int rc0 = parse_init(argc, argv, &o);
    if (rc0 != 0) return rc0 < 0 ? 0 : rc0;
    const char *site = o.site;
    bool system_layout = o.system;
    char system_root[PATH_MAX];
    if (system_layout) {
        if (geteuid() != 0)
            return cli_usage(usage, "init --system writes %s and hands the site to the "
                                    "sitespool user: run it as root",
                             ss_conf_dir());
        if (!getpwnam("sitespool"))
            return cli_usage(usage, "init --system hands the site to the sitespool user, and "
                                    "there is none (the package's postinst makes it: adduser "
                                    "--system --group sitespool)");
        if (!c->root_given) {
            snprintf(system_root, sizeof system_root, "%s/%s", ss_state_dir(), site);
            c->root = system_root;
        }
    } else {
        /* Root making a site in a folder its service user already owns:
         * the site is that user's, from the first file. */
        int owner_rc = cli_become_owner(c);
        if (owner_rc != 0) return owner_rc;
    }

    ss_error e = {0};
    ss_conf conf;
    ss_conf_defaults(&conf);
    snprintf(conf.site_code, sizeof conf.site_code, "%s", site);
    char db_path[PATH_MAX], sk_path[PATH_MAX], pk_path[PATH_MAX], keys_dir[PATH_MAX];
    if (ss_path(db_path, sizeof db_path, c->root, SS_FILE_DB) != 0 ||
        ss_path(keys_dir, sizeof keys_dir, c->root, SS_DIR_KEYS) != 0 ||
        ss_own_key_paths(c->root, site, sk_path, pk_path, sizeof sk_path) != 0)
        return ss_err(&e, SS_E_TOOBIG, "site path too long"), cli_fail(&e);
    if ((rc0 = check_root_empty(c->root, system_layout, o.force)) != 0) return rc0;
    if (ss_site_make_tree(c->root, system_layout, &e) != 0) return cli_fail(&e);
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
    ss_keyctx keys = {c->root, &conf, &db, NULL, false, NULL};
    if (rc == 0) rc = ss_trust_own_add(&keys, &pk, not_after, "init", &e);
    ss_db_close(&db);
    if (rc == 0) rc = ss_site_write_conf(c->root, &conf, system_layout, &e);
    if (rc == 0 && system_layout) rc = hand_over(c->root, site, &e);
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
