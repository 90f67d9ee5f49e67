/*
 * cmd_settings.c - `sitespool settings`: every site.conf setting with its
 * type, default and meaning, as text, a markdown table (README), man(7)
 * entries (doc/sitespool.conf.5) or JSON.
 *
 * The settings table in inboxes/site.c, which parses site.conf and writes
 * the commented one at init, is the one source; doc/regenerate.sh puts
 * this output into the man page and tests/e2e/t_manpages.sh keeps it so.
 * No site is needed: these are the defaults, not a site's values.
 */
#include "cli.h"
#include "docfmt.h"
#include "../inboxes/json.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: sitespool settings [--markdown | --roff | --json]\n"
    "\n"
    "Prints every site.conf setting: name, type, default and meaning, in the order\n"
    "'sitespool init' writes them. Durations take s, m, h or d; sizes k, M or G.\n"
    "  --markdown  a table (setting, default, meaning) as in the README\n"
    "  --roff      man(7) entries, as in sitespool.conf(5)\n"
    "  --json      an array of {name, type, default, help}\n";

enum format { F_TEXT, F_MARKDOWN, F_ROFF, F_JSON };

struct print_ctx {
    enum format format;
    int count;
};

/* The one setting without a default: init sets it. */
static bool set_by_init(const ss_setting_doc *s)
{
    return strcmp(s->type, "site code") == 0;
}

/* Plain text: the meaning wrapped at 76 columns, indented by 4. */
static void print_wrapped(const char *text)
{
    const char *p = text;
    while (*p) {
        size_t len = strlen(p);
        if (len > 72) {
            len = 72;
            while (len > 0 && p[len] != ' ')
                len--;
            if (len == 0) len = strcspn(p, " ");
        }
        printf("    %.*s\n", (int)len, p);
        p += len;
        while (*p == ' ')
            p++;
    }
}

static void print_text(const ss_setting_doc *s)
{
    if (*s->default_value)
        printf("%s (%s, default %s)\n", s->name, s->type, s->default_value);
    else
        printf("%s (%s, %s)\n", s->name, s->type, set_by_init(s) ? "set by init" : "default none");
    print_wrapped(s->help);
    printf("\n");
}

static void print_markdown(const ss_setting_doc *s)
{
    printf("| `%s` | ", s->name);
    if (*s->default_value)
        printf("`%s`", s->default_value);
    else
        printf("%s", set_by_init(s) ? "(set by init)" : "(none)");
    printf(" | ");
    doc_markdown_cell(stdout, s->help);
    printf(" |\n");
}

/* .TP entries: "name = type (default: value)", then the meaning. */
static void print_roff(const ss_setting_doc *s)
{
    printf(".TP\n\\fB");
    doc_roff_text(stdout, s->name, false);
    printf("\\fR = \\fI");
    doc_roff_text(stdout, s->type, false);
    if (*s->default_value) {
        printf("\\fR (default: \\fB");
        doc_roff_text(stdout, s->default_value, false);
        printf("\\fR)\n");
    } else {
        printf("\\fR (%s)\n", set_by_init(s) ? "set by init" : "default: none");
    }
    doc_roff_text(stdout, s->help, true);
    printf("\n");
}

static void print_json(const ss_setting_doc *s, int index)
{
    printf("%s{\"name\":", index ? ",\n " : "[");
    ss_json_string(stdout, s->name);
    printf(",\"type\":");
    ss_json_string(stdout, s->type);
    printf(",\"default\":");
    ss_json_string(stdout, s->default_value);
    printf(",\"help\":");
    ss_json_string(stdout, s->help);
    printf("}");
}

static void print_setting(void *ctx_, const ss_setting_doc *s)
{
    struct print_ctx *ctx = ctx_;
    switch (ctx->format) {
    case F_TEXT:
        print_text(s);
        break;
    case F_MARKDOWN:
        print_markdown(s);
        break;
    case F_ROFF:
        print_roff(s);
        break;
    case F_JSON:
        print_json(s, ctx->count);
        break;
    }
    ctx->count++;
}

static int parse_format(int argc, char **argv, enum format *format)
{
    static const struct option opts[] = {{"markdown", no_argument, NULL, 'm'},
                                         {"roff", no_argument, NULL, 'r'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch, chosen = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'h') return fputs(usage, stdout), -1;
        if (ch != 'm' && ch != 'r' && ch != 'j') return cli_usage(usage, "bad option for settings");
        *format = ch == 'm' ? F_MARKDOWN : ch == 'r' ? F_ROFF : F_JSON;
        chosen++;
    }
    if (chosen > 1) return cli_usage(usage, "choose one of --markdown, --roff, --json");
    if (optind != argc) return cli_usage(usage, "unexpected argument '%s'", argv[optind]);
    return 0;
}

int cmd_settings(cli *c, int argc, char **argv)
{
    (void)c;
    struct print_ctx ctx = {F_TEXT, 0};
    int rc = parse_format(argc, argv, &ctx.format);
    if (rc != 0) return rc < 0 ? 0 : rc;
    if (ctx.format == F_MARKDOWN) printf("| setting | default | meaning |\n|---|---|---|\n");
    ss_conf_describe(print_setting, &ctx);
    if (ctx.format == F_JSON) printf("%s]\n", ctx.count ? "" : "[");
    return 0;
}
