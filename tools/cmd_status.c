/*
 * cmd_status.c - `sitespool status`: the stored status messages, filtered,
 * as text or JSON, optionally followed; and the message catalogue.
 */
#include "cli.h"
#include "site_open.h"
#include "docfmt.h"
#include "../inboxes/json.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] status [--since TIME] [--id N] [--component NAME]\n"
    "                                      [--limit N] [--json] [--follow]\n"
    "       sitespool status --catalogue [--markdown | --json | --roff]\n"
    "\n"
    "Shows the status messages stored in site.db, oldest first.\n"
    "  --since TIME      '2026-11-22', '2026-11-22 10:00', '-2h', '-3d' or unix seconds\n"
    "  --id N            only message id N (e.g. 4405)\n"
    "  --component NAME  despooler, sender or hman (or SITESPOOL_DESPOOLER, ...)\n"
    "  --limit N         only the newest N messages\n"
    "  --json            one JSON object per line\n"
    "  --follow          keep printing new messages until interrupted\n"
    "  --catalogue       every message sitespool can raise, with explanation and remedy\n"
    "                    (--markdown: the README's table; --roff: sitespool(8)'s list)\n";

/* A decimal number within [min, max], digits only. */
static int parse_count(const char *s, long min, long max, long *out)
{
    if (!*s || strlen(s) > 10 || strspn(s, "0123456789") != strlen(s)) return -1;
    long v = strtol(s, NULL, 10);
    if (v < min || v > max) return -1;
    *out = v;
    return 0;
}

struct filter {
    int64_t since_ms;
    int id;
    const char *component;
    long limit;
    bool json;
};

static void print_row(void *ctx, const ss_status_row *r)
{
    bool json = *(const bool *)ctx;
    if (json) {
        printf("{\"seq\":%lld,\"time_ms\":%lld,\"id\":%d,\"severity\":", (long long)r->seq,
               (long long)r->time_ms, r->id);
        ss_json_string(stdout, r->severity);
        printf(",\"component\":");
        ss_json_string(stdout, r->component);
        printf(",\"site\":");
        ss_json_string(stdout, r->site);
        printf(",\"istr\":%s,\"text\":", r->istr_json);
        ss_json_string(stdout, r->text);
        printf("}\n");
    } else {
        char when[32];
        cli_format_time(r->time_ms / 1000, when, sizeof when);
        printf("%s %s %d %s %s\n", when, r->severity, r->id, r->component + strlen("SITESPOOL_"),
               r->text);
    }
}

static int query(cli *c, const struct filter *f, int64_t *after_seq)
{
    ss_error e = {0};
    bool json = f->json;
    int rc = ss_status_query(&c->db, after_seq, f->since_ms, f->id, f->component, f->limit,
                             print_row, &json, &e);
    fflush(stdout);
    return rc == 0 ? 0 : cli_fail(&e);
}

static int print_catalogue(bool markdown, bool json)
{
    size_t n;
    const ss_msgdef *cat = ss_catalogue(&n);
    if (markdown)
        printf("| id | sev | component | message | explanation | remedy |\n"
               "|---|---|---|---|---|---|\n");
    if (json) printf("[");
    for (size_t i = 0; i < n; i++) {
        const ss_msgdef *m = &cat[i];
        const char *comp = ss_component_name(m->component);
        if (markdown) {
            printf("| %d | %c | %s | %s | %s | %s |\n", m->id, m->severity, comp, m->format,
                   m->explanation, m->remedy);
        } else if (json) {
            printf("%s{\"id\":%d,\"severity\":\"%c\",\"component\":\"%s\",\"format\":",
                   i ? ",\n " : "", m->id, m->severity, comp);
            ss_json_string(stdout, m->format);
            printf(",\"explanation\":");
            ss_json_string(stdout, m->explanation);
            printf(",\"remedy\":");
            ss_json_string(stdout, m->remedy);
            printf("}");
        } else {
            printf("%d %c %s\n    %s\n    Explanation: %s\n    Remedy: %s\n\n", m->id, m->severity,
                   comp, m->format, m->explanation, m->remedy);
        }
    }
    if (json) printf("]\n");
    return 0;
}

/* man(7) entries for sitespool(8): "id severity component", the message,
 * then its explanation and remedy as paragraphs of the entry. */
static int print_catalogue_roff(void)
{
    size_t n;
    const ss_msgdef *cat = ss_catalogue(&n);
    for (size_t i = 0; i < n; i++) {
        const ss_msgdef *m = &cat[i];
        printf(".TP\n\\fB%d\\fR %c ", m->id, m->severity);
        doc_roff_text(stdout, ss_component_name(m->component), false);
        printf("\n");
        doc_roff_text(stdout, m->format, true);
        printf("\n.IP\n\\fIExplanation:\\fR ");
        doc_roff_text(stdout, m->explanation, false);
        printf("\n.IP\n\\fIRemedy:\\fR ");
        doc_roff_text(stdout, m->remedy, false);
        printf("\n");
    }
    return 0;
}

/* site.db opened exclusively (a full disk, see ss_db_open_short_lived) is
 * given back between polls, so that following never keeps the daemons out. */
static int reopen(cli *c)
{
    cli_close(c);
    return cli_open_short_lived(c);
}

static volatile sig_atomic_t follow_stop;
static void on_signal(int sig)
{
    (void)sig;
    follow_stop = 1;
}

int cmd_status(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"since", required_argument, NULL, 's'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"component", required_argument, NULL, 'c'},
                                         {"limit", required_argument, NULL, 'n'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"follow", no_argument, NULL, 'f'},
                                         {"catalogue", no_argument, NULL, 'C'},
                                         {"catalog", no_argument, NULL, 'C'},
                                         {"markdown", no_argument, NULL, 'm'},
                                         {"roff", no_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct filter f = {0};
    bool follow = false, catalogue = false, markdown = false, roff = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int64_t t;
        long number;
        enum ss_component comp;
        switch (ch) {
        case 's':
            if (cli_parse_time(optarg, &t) != 0)
                return cli_usage(usage, "cannot read time '%s'", optarg);
            f.since_ms = t * 1000;
            break;
        case 'i':
            if (parse_count(optarg, 1000, 9999, &number) != 0)
                return cli_usage(usage, "--id takes a status message id (1000-9999), not '%s'",
                                 optarg);
            f.id = (int)number;
            break;
        case 'n':
            if (parse_count(optarg, 1, 1000000000L, &number) != 0)
                return cli_usage(usage, "--limit takes a number of messages (1 or more), not '%s'",
                                 optarg);
            f.limit = number;
            break;
        case 'c':
            if (ss_component_parse(optarg, &comp) != 0)
                return cli_usage(usage, "unknown component '%s'", optarg);
            f.component = ss_component_name(comp);
            break;
        case 'j':
            f.json = true;
            break;
        case 'f':
            follow = true;
            break;
        case 'C':
            catalogue = true;
            break;
        case 'm':
            markdown = true;
            break;
        case 'r':
            roff = true;
            break;
        case 'h':
            return fputs(usage, stdout), 0;
        default:
            return cli_usage(usage, "bad option for status");
        }
    }
    if (optind != argc) return cli_usage(usage, "unexpected argument '%s'", argv[optind]);
    if ((markdown || roff) && !catalogue)
        return cli_usage(usage, "--markdown and --roff go with --catalogue");
    if (catalogue) return roff ? print_catalogue_roff() : print_catalogue(markdown, f.json);
    if (cli_open_short_lived(c) != 0) return 1; /* status works on a full disk */
    int64_t after = 0;
    if (query(c, &f, &after) != 0) return 1;
    if (!follow) return 0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    f.limit = 0;
    while (!follow_stop) {
        usleep(250 * 1000);
        if (c->db.exclusive && reopen(c) != 0) return 1;
        if (query(c, &f, &after) != 0) return 1;
    }
    return 0;
}
