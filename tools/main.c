/*
 * main.c - the sitespool command: global options and dispatch into the
 * subcommands.  Site selection: -C DIR, else $SITESPOOL_SITE, else ".".
 */
#include "cli.h"
#include "suggest.h"

#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    "  settings                  every site.conf setting: default and meaning\n"
    "  check                     validate settings, keys, folders, site.db and peers\n"
    "  queue                     what waits: in receive, for a key, held, quarantined, outbox\n"
    "  release ID / delete ID    put a quarantined pair back into receive / remove one\n"
    "\n"
    "options:\n"
    "  -C SITE_ROOT   the site folder (default: $SITESPOOL_SITE, else the current folder\n"
    "                 if it is a site, else the one site installed under " SITESPOOL_STATE_DIR ")\n"
    "  -h, --help     this text; 'sitespool COMMAND --help' explains a command\n"
    "  -V, --version  print the version\n"
    "\n"
    "exit codes: 0 success, 1 failure, 2 usage error, 75 accepted but still queued,\n"
    "            77 the site belongs to another user (run as its owner)\n";

struct command {
    const char *name;
    int (*run)(cli *c, int argc, char **argv);
};

static const struct command commands[] = {
    {"init", cmd_init},         {"key", cmd_key},       {"peer", cmd_peer},
    {"status", cmd_status},     {"sign", cmd_sign},     {"verify", cmd_verify},
    {"send", cmd_send},         {"sender", cmd_sender}, {"despool", cmd_despool},
    {"settings", cmd_settings}, {"check", cmd_check},   {"queue", cmd_queue},
    {"release", cmd_release},   {"delete", cmd_delete},
};

/* Without -C or SITESPOOL_SITE: the current folder if it is a site, else
 * the one site of the installed layout (a single <SITE>.conf in the
 * settings folder), else the current folder (whose errors say so). */
static const char *default_root(char *buf, size_t len)
{
    if (access("site.conf", F_OK) == 0) return ".";
    DIR *dir = opendir(ss_conf_dir());
    if (!dir) return ".";
    char found[SS_SITE_CODE_MAX + 1] = "";
    int count = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t n = strlen(de->d_name);
        char code[16];
        if (n < 6 || n > 13 || strcmp(de->d_name + n - 5, ".conf") != 0) continue;
        snprintf(code, sizeof code, "%.*s", (int)(n - 5), de->d_name);
        if (!ss_site_code_valid(code)) continue;
        snprintf(found, sizeof found, "%s", code);
        count++;
    }
    closedir(dir);
    if (count != 1 || snprintf(buf, len, "%s/%s", ss_state_dir(), found) >= (int)len) return ".";
    return buf;
}

int main(int argc, char **argv)
{
    cli c = {.argc = argc, .argv = argv};
    /* Sent to one file (2>&1), block-buffered stdout and unbuffered
     * stderr would land out of order: then stdout goes a line at a time.
     * Only then: a reader that stops early (grep -q) must not turn later
     * lines into a SIGPIPE. */
    struct stat so, se;
    if (fstat(STDOUT_FILENO, &so) == 0 && fstat(STDERR_FILENO, &se) == 0 &&
        so.st_dev == se.st_dev && so.st_ino == se.st_ino)
        setvbuf(stdout, NULL, _IOLBF, 0);
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
            printf("sitespool %s\n", SITESPOOL_VERSION);
            return 0;
        } else {
            return cli_usage(usage, "unknown option '%s'", argv[i]);
        }
    }
    char installed[PATH_MAX];
    c.root_given = c.root && *c.root;
    if (!c.root_given) c.root = default_root(installed, sizeof installed);
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
    const char *names[sizeof commands / sizeof commands[0]];
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        names[k] = commands[k].name;
    return suggest_unknown(usage, "command", argv[i], names, sizeof names / sizeof names[0],
                           "sitespool --help");
}
