/*
 * cmd_key.c - `sitespool key export|import|list`.
 *
 * Security stance: importing a key is an administrator's act of trust,
 * judged like every other by keystore/trust.h; the command prints the key
 * id so it can be compared with the one the other site announced out of
 * band.  A key file whose name and comment name different sites, a revoked
 * key, a key already trusted for another site (without --shared-key) and a
 * key id already bound to a different key are refused.
 * `key list` shows when each key was ADDED to this keystore: a minisign
 * key file carries no creation time, so for peers' keys the only time
 * known is the import (issue 16: the column said CREATED).  Every trust
 * change wakes a running despooler (keystore/trust.h).
 */
#include "cli.h"
#include "keydir.h"
#include "links.h"
#include "suggest.h"
#include "../keystore/lookup.h"
#include "../keystore/trust.h"
#include "../inboxes/fileio.h"
#include "../inboxes/json.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] key export [-o FILE|-] [--force]\n"
    "       sitespool [-C SITE_ROOT] key import FILE [--site CODE] [--shared-key]\n"
    "       sitespool [-C SITE_ROOT] key list [--directory] [--json]\n"
    "       sitespool [-C SITE_ROOT] key approve CODE [KEYID]\n"
    "       sitespool [-C SITE_ROOT] key trust CODE KEYID | key untrust CODE\n"
    "       sitespool [-C SITE_ROOT] key revoke KEYID [--site CODE] [--force]\n"
    "       sitespool [-C SITE_ROOT] key propagation [--json]\n"
    "       sitespool [-C SITE_ROOT] key rotate | key publish | key send-to CODE [--unsigned]\n"
    "\n"
    "export  writes this site's public key (minisign format) to FILE, default ./CODE.pub,\n"
    "        and prints its key id (on standard error with -o -); give the file to the\n"
    "        other site's administrator for their inboxes/hman.box. An existing FILE that\n"
    "        holds anything else is not replaced unless --force.\n"
    "import  trusts a peer's public key file. Its site is named twice, by the file name\n"
    "        CODE.pub (.ct4, .ct5) and by the key's comment ('... for site CODE'); both\n"
    "        must agree, unless --site says which site it is for. A key already trusted\n"
    "        for another site is refused unless --shared-key says both sites really share\n"
    "        one key pair. Compare the printed key id with the one the other site announced.\n"
    "list    every key: site, key id, state, source, ADDED (when this keystore recorded\n"
    "        it: the import, hman.box drop or offer; init or rotate for this site's own;\n"
    "        a key file carries no creation time), validity end (days left), last use;\n"
    "        and per peer site: blocked or not, the key it was last seen using.\n"
    "        --directory: per site, what the key directory holds (key id, validity,\n"
    "        next key during a rollover) beside what the keystore trusts, and whether\n"
    "        they agree; exit 1 if the directory cannot be read.\n"
    "approve trusts a key a site offered on first use (pending); KEYID if several.\n"
    "trust   trusts KEYID for CODE (a changed key that blocked the site); held data flows.\n"
    "untrust forgets every key of CODE; its data then waits as for an unknown site.\n"
    "revoke  KEYID is never accepted again, for any site; waiting data signed by it is\n"
    "        quarantined and a block it caused is lifted. --site CODE when sites share the id.\n"
    "        This site's own old key is not revoked while a peer heard from within\n"
    "        rollover_grace_days does not hold the current key yet (its heartbeats tell;\n"
    "        the peers are named), unless --force.\n"
    "propagation  which peer holds which of this site's keys (current, and old ones in\n"
    "        their grace), by the peers' heartbeats: the link, when each was last heard,\n"
    "        the newest of our keys it relies on. --json: {keys: [...], peers: [...]}.\n"
    "rotate  makes a new key pair, sends every peer a rollover signed by the current key\n"
    "        with proof of the new one, and signs with the new key from then on; on a\n"
    "        directory server it publishes the new key as next, vouched by the old one.\n"
    "publish writes this site's public key into the key directory (directory): the\n"
    "        file <SITE>.pub in a folder, or the entry sitespoolSiteCode=<SITE> on a\n"
    "        directory server (added, or its values replaced); during a rollover the\n"
    "        old key stays current there and the new one is its vouched next key.\n"
    "send-to sends this site's public key to a peer as a key exchange instruction.\n";

/* Writes the key file `out`: a new file, or (--force) over an old one.
 * An existing file that already holds exactly this key is left as it is.
 * Returns 0 written, 2 already there, 1 when it exists and differs (said),
 * -1 with e set. */
static int write_export(const char *out, const char *text, size_t len, bool force, ss_error *e)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL);
    int fd = open(out, flags, 0644);
    if (fd < 0 && errno == EEXIST) {
        char *old = NULL;
        size_t old_len = 0;
        ss_error ignored = {0};
        bool same = ss_read_small_file(AT_FDCWD, out, 4096, &old, &old_len, &ignored) == 0 &&
                    old_len == len && memcmp(old, text, len) == 0;
        free(old);
        if (same) return 2;
        fprintf(stderr,
                "sitespool: %s exists and holds something else; not replacing it (another "
                "site's key? an older key of this site?). Name another file with -o, or add "
                "--force to replace it\n",
                out);
        return 1;
    }
    int rc = fd < 0 || ss_write_all(fd, text, len, e) != 0 || fsync(fd) != 0 ? -1 : 0;
    if (rc != 0) ss_err_sys(e, "cannot write %s", out);
    if (fd >= 0) close(fd);
    return rc;
}

static int key_export(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *out = NULL;
    bool force = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (ch == 'o')
            out = optarg;
        else if (ch == 'f')
            force = true;
        else
            return ch == 'h' ? (fputs(usage, stdout), 0) : cli_usage(usage, "bad option");
    }
    if (optind != argc)
        return cli_usage(usage, "export takes no arguments besides -o FILE and --force");
    char pk_path[PATH_MAX], def[64], *text = NULL;
    ss_error e = {0};
    ss_own_key_paths(c->root, c->conf.site_code, NULL, pk_path, sizeof pk_path);
    size_t len;
    if (ss_read_small_file(AT_FDCWD, pk_path, 4096, &text, &len, &e) != 0) return cli_fail(&e);
    ss_pubkey pk;
    if (ss_pubkey_parse(text, len, &pk, NULL, 0, &e) != 0) {
        free(text);
        return ss_err(&e, e.code, "%s: %s", pk_path, e.msg), cli_fail(&e);
    }
    int rc = 0;
    char id[SS_KEYID_HEX + 1];
    ss_keyid_hex(pk.keyid, id);
    if (out && !strcmp(out, "-")) {
        /* Standard output is the key itself: the id goes to stderr. */
        fputs(text, stdout);
        fprintf(stderr, "Wrote public key %s of site %s to standard output\n", id,
                c->conf.site_code);
    } else {
        if (!out) {
            snprintf(def, sizeof def, "%s.pub", c->conf.site_code);
            out = def;
        }
        rc = write_export(out, text, len, force, &e);
        if (rc < 0) rc = cli_fail(&e);
        if (rc == 0) printf("Wrote public key %s of site %s to %s\n", id, c->conf.site_code, out);
        if (rc == 2) {
            printf("%s already holds public key %s of site %s\n", out, id, c->conf.site_code);
            rc = 0;
        }
    }
    free(text);
    return rc;
}

static int key_import(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"site", required_argument, NULL, 's'},
                                         {"shared-key", no_argument, NULL, 'S'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *site = NULL;
    bool shared = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        if (ch == 's')
            site = optarg;
        else if (ch == 'S')
            shared = true;
        else
            return ch == 'h' ? (fputs(usage, stdout), 0) : cli_usage(usage, "bad option");
    }
    if (optind + 1 != argc) return cli_usage(usage, "import takes exactly one key file");
    if (site && !ss_site_code_valid(site)) return suggest_bad_site(usage, "--site", site);
    const char *path = argv[optind];
    ss_error e = {0};
    ss_keyrec rec;
    ss_keyctx k = {c->root, &c->conf, &c->db, &c->rep, false, NULL};
    if (ss_trust_import_file(&k, path, site, "import", shared, &rec, &e) != 0) {
        int rc = cli_fail(&e);
        cli_hint_unreadable(c, argv + optind, 1, false);
        return rc;
    }
    printf("Trusted key %s for site %s\n", rec.key_id, rec.site);
    return 0;
}

struct list_ctx {
    bool json;
    int count;
    ss_db *db;
};

static int print_key(void *ctx_, const ss_keyrec *k)
{
    struct list_ctx *ctx = ctx_;
    char added[32], seen[32], until[32], left[32] = "-";
    cli_format_time(k->created, added, sizeof added);
    cli_format_time(k->last_seen, seen, sizeof seen);
    cli_format_time(k->not_after, until, sizeof until);
    if (k->not_after) {
        snprintf(left, sizeof left, "%lld", ss_days_left(k->not_after, ss_now()));
    }
    if (ctx->json) {
        printf("%s{\"site\":", ctx->count ? ",\n " : "[");
        ss_json_string(stdout, k->site);
        printf(",\"key_id\":\"%s\",\"state\":", k->key_id);
        ss_json_string(stdout, ss_key_state_name(k->state));
        printf(",\"source\":");
        ss_json_string(stdout, k->source);
        /* "created" is the same time, kept for scripts written before "added". */
        printf(",\"added\":%lld,\"created\":%lld,\"not_after\":%lld,\"last_seen\":%lld",
               (long long)k->created, (long long)k->created, (long long)k->not_after,
               (long long)k->last_seen);
        char blocked_by[SS_KEYID_HEX + 1];
        int blocked = ss_site_block_get(ctx->db, k->site, blocked_by, NULL);
        printf(",\"site_blocked_by\":");
        if (blocked == 1)
            printf("\"%s\"}", blocked_by);
        else
            printf("null}");
    } else {
        if (!ctx->count)
            printf("%-8s %-16s %-8s %-9s %-19s %-19s %9s  %s\n", "SITE", "KEY ID", "STATE",
                   "SOURCE", "ADDED", "VALID UNTIL", "DAYS LEFT", "LAST SEEN");
        printf("%-8s %-16s %-8s %-9s %-19s %-19s %9s  %s\n", k->site, k->key_id,
               ss_key_state_name(k->state), k->source, added, until, left, seen);
    }
    ctx->count++;
    return 0;
}

/* The propagation view: per peer site, its trust and the key it was last
 * seen using. */
static void print_site(void *ctx, const ss_site_view *v)
{
    bool *header = ctx;
    char seen[32], trust[40];
    cli_format_time(v->last_seen, seen, sizeof seen);
    if (!*header) printf("\n%-8s %-28s %-16s  %s\n", "SITE", "TRUST", "LAST KEY USED", "LAST SEEN");
    *header = true;
    if (v->blocked)
        snprintf(trust, sizeof trust, "BLOCKED by %s", v->blocked_key_id ? v->blocked_key_id : "?");
    else
        snprintf(trust, sizeof trust, "ok");
    printf("%-8s %-28s %-16s  %s\n", v->site, trust,
           v->last_key_id && *v->last_key_id ? v->last_key_id : "-", seen);
}

static int print_sites(cli *c)
{
    bool header = false;
    ss_error e = {0};
    return ss_sites_foreach(&c->db, print_site, &header, &e) == 0 ? 0 : cli_fail(&e);
}

static int key_list(cli *c, int argc, char **argv)
{
    struct list_ctx ctx = {.db = &c->db};
    bool directory = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            ctx.json = true;
        else if (!strcmp(argv[i], "--directory"))
            directory = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return fputs(usage, stdout), 0;
        else
            return cli_usage(usage, "unknown argument '%s'", argv[i]);
    }
    if (directory) return keydir_list(c, ctx.json);
    ss_error e = {0};
    if (ss_keys_foreach(&c->db, NULL, print_key, &ctx, &e) != 0) return cli_fail(&e);
    if (ctx.json)
        printf("%s]\n", ctx.count ? "" : "[");
    else
        return print_sites(c);
    return 0;
}

int cmd_key(cli *c, int argc, char **argv)
{
    if (argc < 2 || cli_wants_help(argc, argv))
        return argc < 2 ? cli_usage(usage, "key needs a subcommand") : (fputs(usage, stdout), 0);
    /* Help works anywhere, in or out of a site folder. */
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return fputs(usage, stdout), 0;
    static const char *const subs[] = {"export", "import",  "list",    "approve",
                                       "trust",  "untrust", "revoke",  "rotate",
                                       "publish", "send-to", "propagation"};
    size_t known = 0;
    while (known < sizeof subs / sizeof subs[0] && strcmp(argv[1], subs[known]))
        known++;
    if (known == sizeof subs / sizeof subs[0])
        return suggest_unknown(usage, "key subcommand", argv[1], subs, known,
                               "sitespool key --help");
    if (cli_open(c) != 0) return 1;
    if (!strcmp(argv[1], "export")) return key_export(c, argc - 1, argv + 1);
    if (!strcmp(argv[1], "import")) return key_import(c, argc - 1, argv + 1);
    if (!strcmp(argv[1], "list")) return key_list(c, argc - 1, argv + 1);
    static const struct {
        const char *name;
        int (*run)(cli *, int, char **, const char *);
    } actions[] = {{"approve", key_approve}, {"trust", key_trust},   {"untrust", key_untrust},
                   {"revoke", key_revoke},   {"rotate", key_rotate}, {"publish", key_publish},
                   {"send-to", key_send_to}, {"propagation", key_propagation}};
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (!strcmp(argv[1], actions[i].name)) return actions[i].run(c, argc - 1, argv + 1, usage);
    return cli_usage(usage, "unknown key subcommand '%s'", argv[1]);
}
