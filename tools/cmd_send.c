/*
 * cmd_send.c - `sitespool send` (package, sign, queue, deliver; or --flush
 * the outbox) and `sitespool sender` (the retrying daemon).
 *
 * `send` prints one line per file on standard output, flushed, as soon as
 * the file is queued (its pair in the outbox and its 4504 row stored): the
 * output of a send that was killed is a true account of what it queued.  A
 * file still queued with the same name and content is not queued again
 * (a line says which instruction holds it) unless --again.  A file that
 * travels in a bundle (small files share a package, see site.conf
 * bundle_max_files) is named with the bundle's instruction and its count.
 */
#include "cli.h"
#include "../sender/kept.h"
#include "../sender/reports.h"
#include "service.h"
#include "site_open.h"
#include "suggest.h"
#include "../inboxes/instruction.h"
#include "../inboxes/text.h"
#include "../sender/sender.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char send_usage[] =
    "usage: sitespool [-C SITE_ROOT] send --to CODE [--dest INBOX] [--name NAME]\n"
    "                                    [--unsigned] [--queue-only] [--again] FILE... | -\n"
    "       sitespool [-C SITE_ROOT] send --flush [--to CODE]\n"
    "       sitespool [-C SITE_ROOT] send --resend ID [--queue-only]\n"
    "\n"
    "Compresses, hashes and signs each FILE in one streaming pass into the outbox\n"
    "(inboxes/schedule.box/outbox/CODE), then delivers the pairs into the peer's receive\n"
    "inbox: package first, instruction last, each made durable before it is renamed.\n"
    "Each FILE gets one line on standard output as soon as it is queued (its pair in\n"
    "the outbox and status 4504 stored), so the output of an interrupted send lists\n"
    "exactly what it queued:\n"
    "  Queued instruction ID for CODE: NAME\n"
    "Files smaller than bundle_below (site.conf) share one pair, a bundle of up to\n"
    "bundle_max_files files; each is still named, with the bundle's instruction:\n"
    "  Queued instruction ID (bundle of N files) for CODE: NAME\n"
    "A FILE whose delivered name and content are still queued for CODE (not yet\n"
    "delivered) is not queued twice; its line names the instruction that holds it:\n"
    "  Already queued instruction ID [(bundle of N files)] for CODE: NAME\n"
    "  --to CODE      the peer site (see 'sitespool peer list')\n"
    "  --dest INBOX   destination inbox at the peer (default replmgr.box)\n"
    "  --name NAME    delivered file name (one FILE, or '-' for standard input)\n"
    "  --unsigned     write unsigned instructions (peers requiring secure key exchange\n"
    "                 reject them with 4404)\n"
    "  --queue-only   put the pairs into the outbox and leave delivery to the sender\n"
    "  --again        queue every FILE even if the same is still queued (the peer then\n"
    "                 gets it twice: the second copy as NAME.<id>)\n"
    "  --flush        deliver what is queued (for CODE, or for every peer)\n"
    "  --resend ID    put a pair this site sent back into its peer's outbox, unchanged\n"
    "                 (the same instruction and id: the peer's ledger delivers it at\n"
    "                 most once), from the copy kept in schedule.box/sent/<PEER>/ until\n"
    "                 its receipt confirms it (resend_keep); 4518 records who asked.\n"
    "                 Receipts never resend anything by themselves.\n"
    "exit: 0 delivered (or already queued), 1 failed, 2 usage, 75 queued because a peer\n"
    "is unreachable\n";

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
    fflush(stdout);
    return 0;
}

/* The peers, read to the end before anything is delivered: no statement
 * stays open on site.db while deliveries write to it. */
struct peer_list {
    ss_peer *v;
    size_t n, cap;
};

static int collect_peer(void *ctx, const ss_peer *p)
{
    struct peer_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        ss_peer *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *p;
    return 0;
}

static int list_peers(ss_db *db, struct peer_list *l, ss_error *e)
{
    memset(l, 0, sizeof *l);
    int rc = ss_peer_foreach(db, collect_peer, l, e);
    if (rc != 0 && !e->msg[0]) ss_err(e, SS_E_NOMEM, "out of memory listing peers");
    return rc;
}

static int flush_all(cli *c, ss_sender *s)
{
    struct peer_list peers;
    ss_error e = {0};
    int exit_code = 0;
    if (list_peers(&c->db, &peers, &e) != 0) exit_code = cli_fail(&e);
    for (size_t i = 0; i < peers.n; i++)
        (void)deliver_peer(s, peers.v[i].site, &exit_code);
    free(peers.v);
    return exit_code;
}

/* The account of a send, one line per file as it is queued. */
struct account {
    size_t queued, already;
    size_t pairs;             /* queued by this send */
    char last[SS_ID_HEX + 1]; /* the pair of the last file queued */
};

static void print_queued(void *ctx, const char *to, const ss_send_item *it, const char *name)
{
    struct account *a = ctx;
    char shown[SS_NAME_MAX * 4 + 1], bundle[48] = "";
    ss_text_safe(name, shown, sizeof shown); /* one line per file, whatever the name */
    if (it->bundled) snprintf(bundle, sizeof bundle, " (bundle of %u files)", it->bundled);
    if (it->already_queued) {
        a->already++;
        printf("Already queued instruction %s%s for %s: %s\n", it->id, bundle, to, shown);
    } else {
        a->queued++;
        if (strcmp(a->last, it->id)) a->pairs++; /* a bundle's files come one after another */
        snprintf(a->last, sizeof a->last, "%s", it->id);
        printf("Queued instruction %s%s for %s: %s\n", it->id, bundle, to, shown);
    }
    fflush(stdout);
}

static void print_summary(const struct account *a, const char *to)
{
    printf("Queued %zu file(s) for %s", a->queued, to);
    if (a->pairs != a->queued) printf(" in %zu pair(s)", a->pairs);
    if (a->already) printf(" (%zu already queued)", a->already);
    printf("\n");
    fflush(stdout);
    if (a->already)
        fprintf(stderr,
                "sitespool: warning: %zu file(s) were not queued again: the same name and "
                "content is still queued for %s (instruction listed above); use --again to "
                "send them anyway\n",
                a->already, to);
}

/* What is wrong with a --name, in words; NULL when it is a valid
 * delivered file name (ss_file_name_valid). */
static const char *name_problem(const char *name)
{
    if (ss_file_name_valid(name)) return NULL;
    if (!name[0]) return "is empty";
    if (strchr(name, '/'))
        return "holds a '/': a delivered name is a file name without folders (the receiving site "
               "chooses the folder; --dest names its inbox)";
    if (name[0] == '.') return "starts with '.' (names of hidden and temporary files are refused)";
    if (strlen(name) > SS_NAME_MAX) return "is longer than 255 bytes";
    return "holds control characters";
}

struct send_opts {
    const char *to, *dest, *name, *resend;
    bool unsigned_mode, flush, queue_only, again;
};

static int parse_send(int argc, char **argv, struct send_opts *o)
{
    static const struct option opts[] = {{"to", required_argument, NULL, 't'},
                                         {"dest", required_argument, NULL, 'd'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"unsigned", no_argument, NULL, 'u'},
                                         {"flush", no_argument, NULL, 'f'},
                                         {"queue-only", no_argument, NULL, 'q'},
                                         {"again", no_argument, NULL, 'a'},
                                         {"resend", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (struct send_opts){.dest = "replmgr.box"};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:d:n:h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            o->to = optarg;
            break;
        case 'd':
            o->dest = optarg;
            break;
        case 'n':
            o->name = optarg;
            break;
        case 'u':
            o->unsigned_mode = true;
            break;
        case 'f':
            o->flush = true;
            break;
        case 'q':
            o->queue_only = true;
            break;
        case 'a':
            o->again = true;
            break;
        case 'r':
            o->resend = optarg;
            break;
        case 'h':
            return fputs(send_usage, stdout), -1;
        default:
            return cli_usage(send_usage, "bad option for send");
        }
    }
    int nfiles = argc - optind;
    if (o->resend) {
        if (nfiles || o->flush || o->to || o->name || o->again)
            return cli_usage(send_usage, "--resend ID takes no files and no other options "
                                         "but --queue-only");
        if (!ss_id_valid(o->resend))
            return cli_usage(send_usage, "'%s' is not an instruction id (32 lower-case hex "
                                         "digits, as 'sitespool queue --sent' shows them)",
                             o->resend);
        return 0;
    }
    if (o->flush ? nfiles != 0 : (nfiles == 0 || !o->to))
        return cli_usage(send_usage, o->flush ? "--flush takes no files"
                                              : "send needs --to CODE and at least one FILE");
    if (o->to && !ss_site_code_valid(o->to)) return suggest_bad_site(send_usage, "--to", o->to);
    if (!ss_dest_name_valid(o->dest))
        return cli_usage(send_usage, "'%s' is not an inbox name like replmgr.box", o->dest);
    if (o->name && nfiles != 1) return cli_usage(send_usage, "--name needs exactly one FILE");
    const char *problem = o->name ? name_problem(o->name) : NULL;
    if (problem) {
        char shown[SS_NAME_MAX * 4 + 1];
        ss_text_safe(o->name, shown, sizeof shown);
        return cli_usage(send_usage, "--name '%s' cannot be a delivered file name: it %s", shown,
                         problem);
    }
    return 0;
}

/* Packs and queues the files, printing the account; delivers unless
 * --queue-only. */
static int send_files(cli *c, ss_sender *s, const struct send_opts *o, char **files, int nfiles)
{
    ss_send_item *items = calloc((size_t)nfiles, sizeof *items);
    if (!items) return fputs("sitespool: out of memory\n", stderr), 1;
    for (int i = 0; i < nfiles; i++)
        items[i] = (ss_send_item){.path = files[i], .name = o->name, .type = SS_TYPE_DATA};
    struct account a = {0};
    s->again = o->again;
    s->on_queued = print_queued;
    s->on_queued_ctx = &a;
    ss_error e = {0};
    int exit_code = 0;
    if (ss_sender_pack(s, o->to, o->dest, items, (size_t)nfiles, &e) != 0) {
        exit_code = cli_fail(&e);
        cli_hint_unreadable(c, files, nfiles, true);
        size_t told = a.queued + a.already;
        if (told)
            fprintf(stderr,
                    "sitespool: %zu file(s) of this send are queued (listed on standard output); "
                    "the other %zu were not queued\n",
                    told, (size_t)nfiles - told);
        else
            fprintf(stderr, "sitespool: nothing of this send was queued\n");
    } else {
        print_summary(&a, o->to);
    }
    if (!o->queue_only && (exit_code == 0 || a.queued)) (void)deliver_peer(s, o->to, &exit_code);
    free(items);
    return exit_code;
}

/* "SS1, SS2, ..." for the error about a site that is not a peer. */
static int collect_name(void *ctx, const ss_peer *p)
{
    char *text = ctx;
    size_t used = strlen(text);
    if (used < 400) snprintf(text + used, 512 - used, "%s%s", used ? ", " : "", p->site);
    return 0;
}

/* Before anything is made for it (an outbox folder, a status message):
 * `to` must be a peer.  Otherwise the error names the known peers and the
 * command that adds one. */
static int require_peer(cli *c, const char *to)
{
    ss_error e = {0};
    int found = ss_peer_get(&c->db, to, NULL, &e);
    if (found < 0) return cli_fail(&e);
    if (found) return 0;
    char names[512] = "";
    if (ss_peer_foreach(&c->db, collect_name, names, &e) != 0) return cli_fail(&e);
    fprintf(stderr,
            "sitespool: %s is not a peer of site %s (%s%s); nothing was sent or queued. "
            "To deliver to %s, add it first: sitespool -C %s peer add %s --inbox ADDRESS\n",
            to, c->conf.site_code, names[0] ? "its peers: " : "it has no peers yet", names, to,
            c->root, to);
    return 1;
}

/* send --resend ID: the kept copy back into the outbox, then delivered. */
static int resend(cli *c, ss_sender *s, const struct send_opts *o)
{
    char user[100], by[128], peer[16];
    ss_error e = {0};
    cli_user_name(c, user, sizeof user);
    snprintf(by, sizeof by, "user %s", user);
    if (ss_kept_resend(s, o->resend, by, peer, &e) != 0) return cli_fail(&e);
    printf("Queued instruction %s for %s again\n", o->resend, peer);
    int exit_code = 0;
    if (!o->queue_only) (void)deliver_peer(s, peer, &exit_code);
    return exit_code;
}

int cmd_send(cli *c, int argc, char **argv)
{
    struct send_opts o;
    int rc = parse_send(argc, argv, &o);
    if (rc != 0) return rc < 0 ? 0 : rc;
    if (cli_open_short_lived(c) != 0) return 1;
    if (o.to && (rc = require_peer(c, o.to)) != 0) return rc;
    /* Lines that cannot be shown (a reader that went away) must not stop
     * the work half done. */
    signal(SIGPIPE, SIG_IGN);
    bool sign = !o.unsigned_mode && c->conf.sign_instructions;
    if (!sign && !o.flush)
        fprintf(stderr, "sitespool: warning: sending unsigned instructions; a peer that "
                        "requires secure key exchange rejects them (status 4404)\n");
    ss_sender s;
    ss_error e = {0};
    if (ss_sender_open(&s, c->root, &c->conf, &c->db, &c->rep, sign, &e) != 0) return cli_fail(&e);
    int exit_code = 0;
    if (o.resend)
        exit_code = resend(c, &s, &o);
    else if (o.flush && o.to)
        (void)deliver_peer(&s, o.to, &exit_code);
    else if (o.flush)
        exit_code = flush_all(c, &s);
    else
        exit_code = send_files(c, &s, &o, argv + optind, argc - optind);
    ss_sender_close(&s);
    return exit_code;
}

static const char sender_usage[] =
    "usage: sitespool [-C SITE_ROOT] sender [--once]\n"
    "\n"
    "Runs until SIGTERM or SIGINT, delivering queued pairs to every peer whose retry\n"
    "time has come (send_retry_interval, doubling up to send_retry_max_interval, in\n"
    "site.conf). --once makes one round over all peers and exits: 75 when pairs stay\n"
    "queued (each peer's count and next retry on stderr), 0 when none do. SIGHUP reads\n"
    "site.conf again and reopens the logs; under systemd (Type=notify) it reports\n"
    "readiness and watchdog pings.\n";

struct round_ctx {
    ss_sender *s;
    int64_t next_wakeup;
    bool ignore_backoff;
};

static void sender_round_peer(struct round_ctx *ctx, const ss_peer *p)
{
    ss_outbox_info q;
    ss_error e = {0};
    if (ss_outbox_info_get(ctx->s->root, p->site, &q, &e) != 0 || q.queued == 0) return;
    int64_t now = ss_now();
    if (!ctx->ignore_backoff && p->next_attempt > now) {
        if (!ctx->next_wakeup || p->next_attempt < ctx->next_wakeup)
            ctx->next_wakeup = p->next_attempt;
        return;
    }
    ss_deliver_result res;
    if (ss_sender_deliver(ctx->s, p->site, &res, &e) != 0)
        ss_logf(ss_reporter_log(ctx->s->rep, SS_COMP_SENDER), "Delivery to %s failed: %s", p->site,
                e.msg);
}

/* One round over every peer whose retry time has come. */
static void sender_round(cli *c, struct round_ctx *ctx, ss_log *log)
{
    struct peer_list peers;
    ss_error e = {0};
    if (list_peers(&c->db, &peers, &e) != 0) ss_logf(log, "Cannot list peers: %s", e.msg);
    for (size_t i = 0; i < peers.n; i++)
        sender_round_peer(ctx, &peers.v[i]);
    free(peers.v);
}

/* After `sender --once`: what stays queued, per peer, and when it is
 * tried next; EXIT_TEMPFAIL when anything does (the data is not lost, but
 * not delivered either). */
static int report_left(cli *c)
{
    struct peer_list peers;
    ss_error e = {0};
    if (list_peers(&c->db, &peers, &e) != 0) return cli_fail(&e);
    size_t total = 0;
    for (size_t i = 0; i < peers.n; i++) {
        ss_outbox_info q = {0};
        ss_peer p;
        memset(&p, 0, sizeof p);
        if (ss_outbox_info_get(c->root, peers.v[i].site, &q, &e) != 0 || !q.queued) continue;
        total += q.queued;
        char when[32] = "-";
        if (ss_peer_get(&c->db, peers.v[i].site, &p, &e) == 1 && p.next_attempt)
            cli_format_time(p.next_attempt, when, sizeof when);
        fprintf(stderr, "sitespool: %zu pair(s) for %s stay queued (next retry %s)%s%s\n", q.queued,
                peers.v[i].site, when, p.last_error[0] ? ": " : "", p.last_error);
    }
    free(peers.v);
    return total ? EXIT_TEMPFAIL : 0;
}

/* Heartbeats that are due, then the link watch (sender/reports.h); a
 * failure is logged and tried again next round. */
static void reports_round(ss_sender *s, ss_log *log, int64_t *last_watch)
{
    ss_error e = {0};
    size_t n = 0;
    int64_t now = ss_now();
    if (ss_sender_queue_heartbeats(s, now, &n, &e) != 0)
        ss_logf(log, "Cannot queue heartbeats: %s", e.msg);
    /* Link states change on the scale of heartbeat intervals: judged
     * every few seconds, not every round. */
    if (*last_watch && now - *last_watch < 5 && now >= *last_watch) return;
    *last_watch = now;
    if (ss_sender_watch_links(s, now, &e) != 0) ss_logf(log, "Cannot judge the links: %s", e.msg);
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
    /* An SFTP peer that drops the connection must fail a write, not end
     * the daemon. */
    signal(SIGPIPE, SIG_IGN);
    ss_sender s;
    ss_error e = {0};
    if (ss_sender_open(&s, c->root, &c->conf, &c->db, &c->rep, c->conf.sign_instructions, &e) != 0)
        return cli_fail(&e);
    s.skip_busy = true; /* a peer a `send` is working on waits for the next round */
    svc service;
    svc_start(&service, c, SS_COMP_SENDER);
    ss_log *log = ss_reporter_log(&c->rep, SS_COMP_SENDER);
    ss_logf(log, "Sender started for site %s", c->conf.site_code);
    if (!once) svc_ready(&service, "Delivering queued pairs");
    int64_t last_watch = 0;
    while (!*service.stop) {
        struct round_ctx ctx = {&s, 0, once};
        if (s.notices.n && ss_sender_store_notices(&s, &e) != 0)
            ss_logf(log, "%zu status message(s) wait to be stored: %s", s.notices.n, e.msg);
        reports_round(&s, log, &last_watch);
        sender_round(c, &ctx, log);
        if (once) break;
        /* New pairs are delivered by `send` itself; this loop only retries. */
        for (int i = 0; i < 10 && !*service.stop; i++) {
            if (*service.reload) svc_reload(&service);
            svc_tick(&service);
            usleep(100 * 1000);
        }
    }
    if (!once) svc_stopping(&service);
    ss_logf(log, "Sender stopped for site %s", c->conf.site_code);
    ss_sender_close(&s);
    return once ? report_left(c) : 0;
}
