/*
 * cmd_peer.c - `sitespool peer add|list|remove|trust-host|ssh-key`: where
 * this site delivers.  A peer's address is the path of its receive inbox
 * (local or mounted) or sftp://user@host[:port]/path; a peer may have
 * several, tried in order or in turn.  SFTP servers' host keys are pinned
 * in keys/known_hosts (sender/hostkeys.h).
 */
#include "cli.h"
#include "../inboxes/text.h"
#include "../keystore/links.h"
#include "site_open.h"
#include "suggest.h"
#include "../inboxes/json.h"
#include "../sender/address.h"
#include "../sender/hostkeys.h"
#include "../sender/remote.h"
#include "../sender/sender.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] peer add CODE --inbox ADDRESS [--inbox ADDRESS...]\n"
    "                                [--round-robin] [--host-key SHA256:...]\n"
    "       sitespool [-C SITE_ROOT] peer list [--json]\n"
    "       sitespool [-C SITE_ROOT] peer remove CODE\n"
    "       sitespool [-C SITE_ROOT] peer trust-host CODE SHA256:...\n"
    "       sitespool [-C SITE_ROOT] peer ssh-key\n"
    "\n"
    "add         names a peer site and its receive inbox (its inboxes/despoolr.box/receive):\n"
    "            a local path (a mounted share; symbolic links are followed) or\n"
    "            sftp://user@host[:port]/path/to/receive.  Several --inbox: tried in order,\n"
    "            the next when one is unreachable; --round-robin: each delivery starts with\n"
    "            the next address.  --host-key pins the SSH host key fingerprint of the\n"
    "            peer's SFTP servers ahead of the first connection.  Again to change it.\n"
    "list        addresses with their state and last error, queued pairs, age of the\n"
    "            oldest, last success, pinned host keys\n"
    "remove      forgets a peer (its queued pairs stay in the outbox)\n"
    "trust-host  pins an SFTP server's host key, after comparing the fingerprint that a\n"
    "            refused connection reported (status 4507/4508) with the one the peer's\n"
    "            administrator reads with ssh-keygen -lf; replaces a changed key\n"
    "ssh-key     makes this site's SSH identity (setting sftp_identity, ed25519, 0600)\n"
    "            and prints the line for the peer's authorized_keys\n"
    "\n"
    "Exit codes: 0 done, 1 failed, 2 usage error.\n";

/* ------------------------------------------------------------------ add */

struct add_args {
    const char *addresses[SS_PEER_ADDRESSES_MAX];
    size_t n;
    bool round_robin;
    const char *host_key;
};

static int parse_add(int argc, char **argv, struct add_args *a)
{
    static const struct option opts[] = {{"inbox", required_argument, NULL, 'i'},
                                         {"round-robin", no_argument, NULL, 'r'},
                                         {"host-key", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "i:rk:h", opts, NULL)) != -1) {
        if (ch == 'h') return fputs(usage, stdout), -1;
        if (ch == 'r') {
            a->round_robin = true;
        } else if (ch == 'k') {
            a->host_key = optarg;
        } else if (ch == 'i') {
            if (a->n == SS_PEER_ADDRESSES_MAX)
                return cli_usage(usage, "a peer has at most %d addresses", SS_PEER_ADDRESSES_MAX);
            a->addresses[a->n++] = optarg;
        } else {
            return cli_usage(usage, "bad option for peer add");
        }
    }
    if (optind + 1 != argc || !a->n)
        return cli_usage(usage, "peer add needs CODE and --inbox ADDRESS");
    return 0;
}

static int check_addresses(const struct add_args *a, bool *any_remote)
{
    ss_address addr;
    *any_remote = false;
    for (size_t i = 0; i < a->n; i++) {
        ss_error e = {0};
        if (ss_address_parse(a->addresses[i], &addr, &e) != 0) return cli_usage(usage, "%s", e.msg);
        *any_remote |= addr.remote;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(a->addresses[i], a->addresses[j]))
                return cli_usage(usage, "%s is given twice", a->addresses[i]);
    }
    if (a->host_key && !ss_fingerprint_valid(a->host_key))
        return cli_usage(usage,
                         "--host-key '%s' is not a fingerprint; write it as ssh-keygen -l prints "
                         "it: SHA256: followed by 43 characters",
                         a->host_key);
    return 0;
}

/* A local inbox that is not a folder here (yet) is added all the same (a
 * share may be mounted later), with a warning saying what will happen.
 * sftp:// addresses are on other hosts: not checked here. */
static void warn_local_inbox(const char *code, const char *address)
{
    ss_address a;
    ss_error e = {0};
    struct stat st;
    if (ss_address_parse(address, &a, &e) != 0 || a.remote) return;
    const char *problem = NULL;
    if (stat(a.path, &st) != 0)
        problem = errno == ENOENT ? "does not exist" : strerror(errno);
    else if (!S_ISDIR(st.st_mode))
        problem = "is not a folder";
    if (!problem) return;
    fprintf(stderr,
            "sitespool: warning: the inbox %s %s on this host. Peer %s is added all the same: "
            "pairs for it stay queued (status 4501; the sender retries them) until the folder "
            "is there (a share not mounted yet?), or until 'sitespool peer add %s --inbox "
            "ADDRESS' names the right one.\n",
            a.path, problem, code, code);
}

static int peer_add(cli *c, int argc, char **argv)
{
    struct add_args a = {0};
    int rc = parse_add(argc, argv, &a);
    if (rc != 0) return rc < 0 ? 0 : rc;
    const char *code = argv[optind];
    if (!ss_site_code_valid(code)) return suggest_bad_site(usage, "peer", code);
    if (!strcmp(code, c->conf.site_code)) return cli_usage(usage, "%s is this site itself", code);
    bool any_remote;
    if ((rc = check_addresses(&a, &any_remote)) != 0) return rc;
    if (a.host_key && !any_remote)
        return cli_usage(usage, "--host-key is for sftp:// addresses; %s has none", code);
    ss_error e = {0};
    if (ss_peer_set(&c->db, code, a.addresses, a.n, a.round_robin, &e) != 0) return cli_fail(&e);
    for (size_t i = 0; i < a.n; i++)
        printf("Peer %s delivers into %s%s\n", code, a.addresses[i],
               a.n == 1        ? ""
               : i == 0        ? (a.round_robin ? " (round robin)" : " (first)")
               : a.round_robin ? ""
                               : " (if the ones before fail)");
    for (size_t i = 0; i < a.n; i++)
        warn_local_inbox(code, a.addresses[i]);
    if (a.host_key) {
        char hosts[512];
        unsigned written;
        if (ss_hostkeys_trust(c->root, &c->db, code, a.host_key, hosts, sizeof hosts, &written,
                              &e) != 0)
            return cli_fail(&e);
        printf("Host key %s is pinned for %s's SFTP servers\n", a.host_key, code);
    }
    if (any_remote) {
        char id[PATH_MAX];
        if (ss_remote_identity_path(c->root, &c->conf, id, sizeof id) == 0 && access(id, F_OK) != 0)
            printf(
                "Note: there is no SSH identity at %s yet; 'sitespool peer ssh-key' makes one.\n",
                id);
    }
    return 0;
}

/* ----------------------------------------------------------------- list */

struct list_ctx {
    cli *c;
    bool json;
    int count;
};

/* The pinned host key of an sftp:// address, "" otherwise. */
static void pinned_of(cli *c, const char *address, char fp[SS_FINGERPRINT_MAX])
{
    ss_address a;
    ss_error e;
    fp[0] = '\0';
    if (ss_address_parse(address, &a, &e) == 0 && a.remote)
        (void)ss_hostkeys_pinned(c->root, a.host_label, fp);
}

static void print_addresses_json(cli *c, const ss_peer *p, const ss_peer_address *rows, int n)
{
    printf(",\"round_robin\":%s,\"addresses\":[", p->round_robin ? "true" : "false");
    for (int i = 0; i < n; i++) {
        char fp[SS_FINGERPRINT_MAX];
        pinned_of(c, rows[i].address, fp);
        printf("%s{\"address\":", i ? "," : "");
        ss_json_string(stdout, rows[i].address);
        printf(",\"state\":\"%s\",\"last_attempt\":%lld,\"last_success\":%lld,\"last_error\":",
               rows[i].state, (long long)rows[i].last_attempt, (long long)rows[i].last_success);
        ss_json_string(stdout, rows[i].last_error);
        printf(",\"host_key\":");
        ss_json_string(stdout, fp);
        printf("}");
    }
    printf("]");
}

static void print_addresses_text(cli *c, const ss_peer_address *rows, int n)
{
    for (int i = 0; i < n; i++) {
        char fp[SS_FINGERPRINT_MAX], when[32];
        pinned_of(c, rows[i].address, fp);
        cli_format_time(rows[i].last_attempt, when, sizeof when);
        printf("  %d. %s\n     state %s, last tried %s%s%s\n", i + 1, rows[i].address,
               rows[i].state, when, fp[0] ? ", host key " : "", fp);
        if (rows[i].last_error[0]) printf("     last error: %s\n", rows[i].last_error);
    }
}

/* What receipts and heartbeats say of the link (keystore/links.h). */
static void print_link_json(cli *c, const ss_peer *p)
{
    ss_peer_view v;
    ss_sent_summary sum;
    ss_error e = {0};
    (void)ss_peer_view_get(&c->db, p->site, &v, &e);
    (void)ss_sent_summary_get(&c->db, p->site, &sum, &e);
    printf(",\"link\":\"%s\",\"last_heard\":%lld,\"unconfirmed\":%zu,"
           "\"oldest_unconfirmed\":%lld,\"waiting_there\":%zu,\"held_there\":%zu,"
           "\"quarantined_there\":%zu,\"confirmed\":%zu",
           ss_link_name(v.link), (long long)v.last_heard, sum.unconfirmed,
           (long long)sum.oldest_unconfirmed, sum.waiting, sum.held, sum.quarantined,
           sum.confirmed);
}

static void print_link_text(cli *c, const ss_peer *p)
{
    ss_peer_view v;
    ss_sent_summary sum;
    ss_error e = {0};
    if (ss_peer_view_get(&c->db, p->site, &v, &e) < 0 ||
        ss_sent_summary_get(&c->db, p->site, &sum, &e) != 0)
        return;
    char heard[48], age[48] = "";
    ss_time_text(v.last_heard, heard, sizeof heard);
    if (sum.unconfirmed) ss_duration_text(ss_now() - sum.oldest_unconfirmed, age, sizeof age);
    printf("%-8s link %s, last heard %s; sent, no receipt yet: %zu%s%s%s", "",
           ss_link_name(v.link), heard, sum.unconfirmed, age[0] ? " (oldest " : "", age,
           age[0] ? ")" : "");
    if (sum.waiting || sum.held || sum.quarantined)
        printf("; at the peer: %zu waiting for our key, %zu held, %zu quarantined", sum.waiting,
               sum.held, sum.quarantined);
    printf("\n");
}

static int print_peer(void *ctx_, const ss_peer *p)
{
    struct list_ctx *ctx = ctx_;
    ss_outbox_info q = {0};
    ss_error e = {0};
    ss_peer_address rows[SS_PEER_ADDRESSES_MAX];
    int n = ss_peer_addresses(&ctx->c->db, p->site, rows, SS_PEER_ADDRESSES_MAX, &e);
    if (n < 0) n = 0;
    (void)ss_outbox_info_get(ctx->c->root, p->site, &q, &e);
    long long oldest = q.oldest ? (long long)(ss_now() - q.oldest) : 0;
    if (ctx->json) {
        printf("%s{\"site\":\"%s\",\"inbox\":", ctx->count ? ",\n " : "[", p->site);
        ss_json_string(stdout, p->inbox);
        printf(",\"queued\":%zu,\"oldest_queued_age\":%lld,\"last_success\":%lld,"
               "\"failures\":%u,\"next_seq\":%llu,\"last_error\":",
               q.queued, oldest, (long long)p->last_success, p->failures,
               (unsigned long long)p->next_seq);
        ss_json_string(stdout, p->last_error);
        print_link_json(ctx->c, p);
        print_addresses_json(ctx->c, p, rows, n);
        printf("}");
    } else {
        char last[32], age[32] = "-";
        cli_format_time(p->last_success, last, sizeof last);
        if (q.queued) snprintf(age, sizeof age, "%lldm", oldest / 60);
        if (!ctx->count)
            printf("%-8s %6s %8s %-19s  %s\n", "SITE", "QUEUED", "OLDEST", "LAST SUCCESS",
                   "INBOX / LAST ERROR");
        printf("%-8s %6zu %8s %-19s  %s%s\n", p->site, q.queued, age, last, p->inbox,
               n > 1 ? (p->round_robin ? "  (+ more, round robin)" : "  (+ more, in order)") : "");
        if (p->last_error[0])
            printf("%-8s %6s %8s %-19s  last error: %s\n", "", "", "", "", p->last_error);
        print_link_text(ctx->c, p);
        if (n > 1 || (n == 1 && !strncmp(rows[0].address, "sftp://", 7)))
            print_addresses_text(ctx->c, rows, n);
    }
    ctx->count++;
    return 0;
}

static int peer_list(cli *c, int argc, char **argv)
{
    struct list_ctx ctx = {c, argc > 2 && !strcmp(argv[2], "--json"), 0};
    ss_error e = {0};
    if (ss_peer_foreach(&c->db, print_peer, &ctx, &e) != 0) return cli_fail(&e);
    if (ctx.json)
        printf("%s]\n", ctx.count ? "" : "[");
    else if (!ctx.count)
        printf("No peers. Add one with 'sitespool peer add CODE --inbox ADDRESS'.\n");
    return 0;
}

/* ------------------------------------------------------------ host keys */

static int peer_trust_host(cli *c, int argc, char **argv)
{
    if (argc != 4) return cli_usage(usage, "peer trust-host needs CODE and SHA256:...");
    const char *code = argv[2], *fp = argv[3];
    if (!ss_site_code_valid(code)) return suggest_bad_site(usage, "peer", code);
    ss_error e = {0};
    ss_peer peer;
    if (ss_peer_require(&c->db, code, &peer, &e) != 0) return cli_fail(&e);
    if (!ss_fingerprint_valid(fp))
        return cli_usage(usage,
                         "'%s' is not a fingerprint; write it as ssh-keygen -l prints it: "
                         "SHA256: followed by 43 characters",
                         fp);
    char hosts[512];
    unsigned written;
    if (ss_hostkeys_trust(c->root, &c->db, code, fp, hosts, sizeof hosts, &written, &e) != 0)
        return cli_fail(&e);
    if (written) {
        ss_report(&c->rep, 4511, fp, hosts, code, "by 'sitespool peer trust-host'", NULL);
        printf("Pinned host key %s for %s (site %s) in keys/known_hosts; the next delivery "
               "uses it.\n",
               fp, hosts, code);
    } else {
        printf("No server of %s has offered %s yet; it is pinned for %s's SFTP servers and "
               "accepted at their first connection.\n",
               code, fp, code);
    }
    return 0;
}

static int peer_ssh_key(cli *c)
{
    char path[PATH_MAX], line[600], comment[64];
    ss_error e = {0};
    if (ss_remote_identity_path(c->root, &c->conf, path, sizeof path) != 0)
        return cli_usage(usage, "the sftp_identity path is too long");
    snprintf(comment, sizeof comment, "sitespool-%s", c->conf.site_code);
    if (ss_remote_make_identity(path, comment, line, sizeof line, &e) != 0) return cli_fail(&e);
    printf("Made the SSH identity %s (and %s.pub).\n"
           "Add this line to ~/.ssh/authorized_keys of the login user at each SFTP peer:\n\n%s\n",
           path, path, line);
    return 0;
}

/* A known subcommand, or the usage error that names the nearest one. */
static int check_subcommand(const char *name)
{
    static const char *const subs[] = {"add", "list", "remove", "trust-host", "ssh-key"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(name, subs[i])) return 0;
    return suggest_unknown(usage, "peer subcommand", name, subs, sizeof subs / sizeof subs[0],
                           "sitespool peer --help");
}

int cmd_peer(cli *c, int argc, char **argv)
{
    if (argc < 2 || cli_wants_help(argc, argv))
        return argc < 2 ? cli_usage(usage, "peer needs a subcommand") : (fputs(usage, stdout), 0);
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return fputs(usage, stdout), 0;
    int rc = check_subcommand(argv[1]);
    if (rc != 0) return rc;
    if (cli_open_short_lived(c) != 0) return 1; /* peer list works on a full disk */
    ss_error e = {0};
    if (!strcmp(argv[1], "add")) return peer_add(c, argc - 1, argv + 1);
    if (!strcmp(argv[1], "remove")) {
        if (argc != 3) return cli_usage(usage, "peer remove needs CODE");
        if (!ss_site_code_valid(argv[2])) return suggest_bad_site(usage, "peer", argv[2]);
        if (ss_peer_remove(&c->db, argv[2], &e) != 0) return cli_fail(&e);
        printf("Removed peer %s\n", argv[2]);
        return 0;
    }
    if (!strcmp(argv[1], "list")) return peer_list(c, argc, argv);
    if (!strcmp(argv[1], "trust-host")) return peer_trust_host(c, argc, argv);
    if (!strcmp(argv[1], "ssh-key")) {
        if (argc != 2) return cli_usage(usage, "peer ssh-key takes no arguments");
        return peer_ssh_key(c);
    }
    return cli_usage(usage, "unknown peer subcommand '%s'", argv[1]);
}
