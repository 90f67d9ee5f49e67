/*
 * main.c - the sitespool command: global options and dispatch into the
 * subcommands.  Site selection: -C DIR, else $SITESPOOL_SITE, else ".".
 */
#include "cli.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] COMMAND [ARGS...]\n"
    "\n"
    "Site-to-site secure key exchange replicator: signed instruction + zlib package\n"
    "pairs dropped into a peer's receive inbox, verified and delivered exactly once.\n"
    "\n"
    "commands:\n"
    "  init --site CODE          create a site tree, its settings, database and key pair\n"
    "  key SUBCOMMAND            export, import, list this site's and peers' keys\n"
    "  peer SUBCOMMAND           add, list, remove peers (where to deliver)\n"
    "  send --to CODE FILE...    package, sign and deliver files to a peer\n"
    "  sender                    daemon: retry queued deliveries with backoff\n"
    "  despool                   daemon: verify and deliver what peers dropped here\n"
    "  status                    status messages (--follow, --json, --catalogue)\n"
    "  sign FILE / verify FILE   minisign-compatible signing helpers for administrators\n"
    "\n"
    "options:\n"
    "  -C SITE_ROOT   the site folder (default: $SITESPOOL_SITE, else the current folder)\n"
    "  -h, --help     this text; 'sitespool COMMAND --help' explains a command\n"
    "  -V, --version  print the version\n"
    "\n"
    "exit codes: 0 success, 1 failure, 2 usage error, 75 accepted but still queued\n";

struct command {
    const char *name;
    int (*run)(cli *c, int argc, char **argv);
};

static const struct command commands[] = {
    {"init", cmd_init},     {"key", cmd_key},       {"peer", cmd_peer},
    {"status", cmd_status}, {"sign", cmd_sign},     {"verify", cmd_verify},
    {"send", cmd_send},     {"sender", cmd_sender}, {"despool", cmd_despool},
};

int main(int argc, char **argv)
{
    cli c = {0};
    int i = 1;
    c.root = getenv("SITESPOOL_SITE");
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-C") && i + 1 < argc) {
            c.root = argv[++i];
        } else if (!strncmp(argv[i], "-C", 2) && argv[i][2]) {
            c.root = argv[i] + 2;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
            printf("sitespool 0.1.0\n");
            return 0;
        } else {
            return cli_usage(usage, "unknown option '%s'", argv[i]);
        }
    }
    if (!c.root || !*c.root) c.root = ".";
    if (i >= argc) return cli_usage(usage, "no command given");
    umask(027); /* site files are for the site's administrators only */
    if (sodium_init() < 0) {
        fprintf(stderr, "sitespool: cannot initialise libsodium\n");
        return 1;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
        if (!strcmp(argv[i], commands[k].name)) {
            int rc = commands[k].run(&c, argc - i, argv + i);
            cli_close(&c);
            return rc;
        }
    }
    return cli_usage(usage, "unknown command '%s'", argv[i]);
}
