/*
 * cmd_peer.c - `sitespool peer add|list|remove`: where this site delivers.
 * A peer's address is the path of its receive inbox (local or mounted).
 */
#include "cli.h"
#include "site_open.h"
#include "../inboxes/json.h"
#include "../sender/sender.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] peer add CODE --inbox PATH\n"
    "       sitespool [-C SITE_ROOT] peer list [--json]\n"
    "       sitespool [-C SITE_ROOT] peer remove CODE\n"
    "\n"
    "add     names a peer site and the path of its receive inbox (its\n"
    "        inboxes/despoolr.box/receive, local or on a mounted share); again to change it\n"
    "list    address, queued pairs, age of the oldest, last success and last error\n"
    "remove  forgets a peer (its queued pairs stay in the outbox)\n";

static int peer_add(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"inbox", required_argument, NULL, 'i'},
                                         {NULL, 0, NULL, 0}};
    const char *inbox = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "i:", opts, NULL)) != -1) {
        if (ch == 'i')
            inbox = optarg;
        else
            return cli_usage(usage, "bad option for peer add");
    }
    if (optind + 1 != argc || !inbox)
        return cli_usage(usage, "peer add needs CODE and --inbox PATH");
    const char *code = argv[optind];
    if (!ss_site_code_valid(code)) return cli_usage(usage, "'%s' is not a site code", code);
    if (!strcmp(code, c->conf.site_code)) return cli_usage(usage, "%s is this site itself", code);
    if (inbox[0] != '/') return cli_usage(usage, "the inbox must be an absolute path");
    ss_error e = {0};
    if (ss_peer_add(&c->db, code, inbox, &e) != 0) return cli_fail(&e);
    printf("Peer %s delivers into %s\n", code, inbox);
    return 0;
}

struct list_ctx {
    cli *c;
    bool json;
    int count;
};

static int print_peer(void *ctx_, const ss_peer *p)
{
    struct list_ctx *ctx = ctx_;
    ss_outbox_info q = {0};
    ss_error e = {0};
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
        printf("}");
    } else {
        char last[32], age[32] = "-";
        cli_format_time(p->last_success, last, sizeof last);
        if (q.queued) snprintf(age, sizeof age, "%lldm", oldest / 60);
        if (!ctx->count)
            printf("%-8s %6s %8s %-19s  %s\n", "SITE", "QUEUED", "OLDEST", "LAST SUCCESS",
                   "INBOX / LAST ERROR");
        printf("%-8s %6zu %8s %-19s  %s\n", p->site, q.queued, age, last, p->inbox);
        if (p->last_error[0])
            printf("%-8s %6s %8s %-19s  last error: %s\n", "", "", "", "", p->last_error);
    }
    ctx->count++;
    return 0;
}

int cmd_peer(cli *c, int argc, char **argv)
{
    if (argc < 2 || cli_wants_help(argc, argv))
        return argc < 2 ? cli_usage(usage, "peer needs a subcommand") : (fputs(usage, stdout), 0);
    if (cli_open_short_lived(c) != 0) return 1; /* peer list works on a full disk */
    ss_error e = {0};
    if (!strcmp(argv[1], "add")) return peer_add(c, argc - 1, argv + 1);
    if (!strcmp(argv[1], "remove")) {
        if (argc != 3) return cli_usage(usage, "peer remove needs CODE");
        if (ss_peer_remove(&c->db, argv[2], &e) != 0) return cli_fail(&e);
        printf("Removed peer %s\n", argv[2]);
        return 0;
    }
    if (!strcmp(argv[1], "list")) {
        struct list_ctx ctx = {c, argc > 2 && !strcmp(argv[2], "--json"), 0};
        if (ss_peer_foreach(&c->db, print_peer, &ctx, &e) != 0) return cli_fail(&e);
        if (ctx.json)
            printf("%s]\n", ctx.count ? "" : "[");
        else if (!ctx.count)
            printf("No peers. Add one with 'sitespool peer add CODE --inbox PATH'.\n");
        return 0;
    }
    return cli_usage(usage, "unknown peer subcommand '%s'", argv[1]);
}
