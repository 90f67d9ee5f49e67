/*
 * cmd_send.c - `sitespool send` (package, sign, deliver; or --flush the
 * outbox) and `sitespool sender` (the retrying daemon).
 */
#include "cli.h"
#include "../sender/sender.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char send_usage[] =
    "usage: sitespool [-C SITE_ROOT] send --to CODE [--dest INBOX] [--name NAME]\n"
    "                                    [--unsigned] [--queue-only] FILE... | -\n"
    "       sitespool [-C SITE_ROOT] send --flush [--to CODE]\n"
    "\n"
    "Compresses, hashes and signs each FILE in one streaming pass into the outbox\n"
    "(inboxes/schedule.box/outbox/CODE), then delivers the pairs into the peer's receive\n"
    "inbox: package first, instruction last, each made durable before it is renamed.\n"
    "  --to CODE      the peer site (see 'sitespool peer list')\n"
    "  --dest INBOX   destination inbox at the peer (default replmgr.box)\n"
    "  --name NAME    delivered file name (one FILE, or '-' for standard input)\n"
    "  --unsigned     write unsigned instructions (peers requiring secure key exchange\n"
    "                 reject them with 4404)\n"
    "  --queue-only   put the pairs into the outbox and leave delivery to the sender\n"
    "  --flush        deliver what is queued (for CODE, or for every peer)\n"
    "exit: 0 delivered, 1 failed, 2 usage, 75 queued because a peer is unreachable\n";

static int deliver_peer(ss_sender *s, const char *site, int *exit_code)
{
    ss_deliver_result res;
    ss_error e = {0};
    if (ss_sender_deliver(s, site, &res, &e) != 0) {
        *exit_code = cli_fail(&e);
        return -1;
    }
    if (res.delivered) printf("Delivered %zu pair(s) to %s\n", res.delivered, site);
    if (res.unreachable) {
        fprintf(stderr,
                "sitespool: %s is unreachable; %zu pair(s) stay queued (see "
                "'sitespool status --id 4501')\n",
                site, res.queued);
        if (*exit_code == 0) *exit_code = EXIT_TEMPFAIL;
    }
    return 0;
}

struct flush_ctx {
    ss_sender *s;
    int exit_code;
};

static int flush_one(void *ctx_, const ss_peer *p)
{
    struct flush_ctx *ctx = ctx_;
    (void)deliver_peer(ctx->s, p->site, &ctx->exit_code);
    return 0;
}

int cmd_send(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"to", required_argument, NULL, 't'},   {"dest", required_argument, NULL, 'd'},
        {"name", required_argument, NULL, 'n'}, {"unsigned", no_argument, NULL, 'u'},
        {"flush", no_argument, NULL, 'f'},      {"queue-only", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    const char *to = NULL, *dest = "replmgr.box", *name = NULL;
    bool unsigned_mode = false, flush = false, queue_only = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:d:n:h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            to = optarg;
            break;
        case 'd':
            dest = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'u':
            unsigned_mode = true;
            break;
        case 'f':
            flush = true;
            break;
        case 'q':
            queue_only = true;
            break;
        case 'h':
            return fputs(send_usage, stdout), 0;
        default:
            return cli_usage(send_usage, "bad option for send");
        }
    }
    int nfiles = argc - optind;
    if (flush ? nfiles != 0 : (nfiles == 0 || !to))
        return cli_usage(send_usage, flush ? "--flush takes no files"
                                           : "send needs --to CODE and at least one FILE");
    if (to && !ss_site_code_valid(to)) return cli_usage(send_usage, "'%s' is not a site code", to);
    if (!ss_dest_name_valid(dest))
        return cli_usage(send_usage, "'%s' is not an inbox name like replmgr.box", dest);
    if (name && nfiles != 1) return cli_usage(send_usage, "--name needs exactly one FILE");
    if (cli_open(c) != 0) return 1;
    bool sign = !unsigned_mode && c->conf.sign_instructions;
    if (!sign && !flush)
        fprintf(stderr, "sitespool: warning: sending unsigned instructions; a peer that "
                        "requires secure key exchange rejects them (status 4404)\n");
    ss_sender s;
    ss_error e = {0};
    if (ss_sender_open(&s, c->root, &c->conf, &c->db, &c->rep, sign, &e) != 0) return cli_fail(&e);
    int exit_code = 0;
    if (flush) {
        struct flush_ctx ctx = {&s, 0};
        if (to)
            (void)deliver_peer(&s, to, &ctx.exit_code);
        else if (ss_peer_foreach(&c->db, flush_one, &ctx, &e) != 0)
            ctx.exit_code = cli_fail(&e);
        ss_sender_close(&s);
        return ctx.exit_code;
    }
    ss_send_item *items = calloc((size_t)nfiles, sizeof *items);
    if (!items) return ss_sender_close(&s), 1;
    for (int i = 0; i < nfiles; i++) {
        items[i].path = argv[optind + i];
        items[i].name = name;
        items[i].type = SS_TYPE_DATA;
    }
    if (ss_sender_pack(&s, to, dest, items, (size_t)nfiles, &e) != 0) {
        exit_code = cli_fail(&e);
    } else {
        printf("Queued %d file(s) for %s", nfiles, to);
        if (nfiles == 1) printf(" (instruction %s)", items[0].id);
        printf("\n");
        if (!queue_only) (void)deliver_peer(&s, to, &exit_code);
    }
    free(items);
    ss_sender_close(&s);
    return exit_code;
}

static const char sender_usage[] =
    "usage: sitespool [-C SITE_ROOT] sender [--once]\n"
    "\n"
    "Runs until SIGTERM or SIGINT, delivering queued pairs to every peer whose retry\n"
    "time has come (send_retry_interval, doubling up to send_retry_max_interval, in\n"
    "site.conf). --once makes one round over all peers and exits.\n";

static volatile sig_atomic_t sender_stop;
static void on_stop(int sig)
{
    (void)sig;
    sender_stop = 1;
}

struct round_ctx {
    ss_sender *s;
    int64_t next_wakeup;
    bool ignore_backoff;
};

static int sender_round_peer(void *ctx_, const ss_peer *p)
{
    struct round_ctx *ctx = ctx_;
    ss_outbox_info q;
    ss_error e = {0};
    if (ss_outbox_info_get(ctx->s->root, p->site, &q, &e) != 0 || q.queued == 0) return 0;
    int64_t now = ss_now();
    if (!ctx->ignore_backoff && p->next_attempt > now) {
        if (!ctx->next_wakeup || p->next_attempt < ctx->next_wakeup)
            ctx->next_wakeup = p->next_attempt;
        return 0;
    }
    ss_deliver_result res;
    if (ss_sender_deliver(ctx->s, p->site, &res, &e) != 0)
        ss_logf(ss_reporter_log(ctx->s->rep, SS_COMP_SENDER), "Delivery to %s failed: %s", p->site,
                e.msg);
    return 0;
}

int cmd_sender(cli *c, int argc, char **argv)
{
    bool once = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--once"))
            once = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return fputs(sender_usage, stdout), 0;
        else
            return cli_usage(sender_usage, "unknown argument '%s'", argv[i]);
    }
    if (cli_open(c) != 0) return 1;
    ss_sender s;
    ss_error e = {0};
    if (ss_sender_open(&s, c->root, &c->conf, &c->db, &c->rep, c->conf.sign_instructions, &e) != 0)
        return cli_fail(&e);
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    ss_log *log = ss_reporter_log(&c->rep, SS_COMP_SENDER);
    ss_logf(log, "Sender started for site %s", c->conf.site_code);
    while (!sender_stop) {
        struct round_ctx ctx = {&s, 0, once};
        if (ss_peer_foreach(&c->db, sender_round_peer, &ctx, &e) != 0)
            ss_logf(log, "Cannot list peers: %s", e.msg);
        if (once) break;
        /* New pairs are delivered by `send` itself; this loop only retries. */
        for (int i = 0; i < 10 && !sender_stop; i++)
            usleep(100 * 1000);
    }
    ss_logf(log, "Sender stopped for site %s", c->conf.site_code);
    ss_sender_close(&s);
    return 0;
}
