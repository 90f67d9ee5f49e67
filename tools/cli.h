/*
 * cli.h - what every sitespool subcommand shares: the open site (root,
 * settings, database, status reporter) and small output helpers.
 *
 * Exit codes (documented in the README and --help):
 *   0 success, 1 the operation failed, 2 usage error,
 *   75 (EX_TEMPFAIL) accepted but not finished: data stays queued,
 *   77 (EX_NOPERM) the site belongs to another user (see cli_become_owner).
 */
#ifndef SS_CLI_H
#define SS_CLI_H

#include "../keystore/status.h"
#include "../keystore/store.h"

#include <stdbool.h>
#include <sys/types.h>

#define EXIT_USAGE 2
#define EXIT_TEMPFAIL 75
#define EXIT_NOPERM 77

typedef struct cli {
    const char *root; /* -C, SITESPOOL_SITE, the one installed site, or "." */
    bool root_given;  /* by -C or SITESPOOL_SITE */
    int argc;         /* the whole command line, for the advice of */
    char **argv;      /* cli_become_owner */
    ss_conf conf;
    ss_db db;
    ss_reporter rep;
    bool open;
    char invoker[64]; /* who ran the command (before cli_become_owner) */
    char owner[64];   /* the site's owner, once cli_become_owner has run */
    bool as_owner;    /* root's command runs as the site's owner */
} cli;

/* Every file a command makes in a site must be usable by the site's
 * owner (the owner of its root folder): the service user's daemons share
 * the site with root's commands.  So, before anything is opened:
 *  - run by the owner: nothing changes;
 *  - run by root on a site owned by another user: the process becomes
 *    that user for good (its groups, then its gid and uid, real, effective
 *    and saved), so logs, outbox folders, pairs and site.db's journals are
 *    the owner's, with the owner's primary group and the modes of umask
 *    027.  There is no way back to root: files named on the command line
 *    must be readable by the owner (or come on standard input: "-");
 *  - run by anyone else: refused (EXIT_NOPERM), naming the owner and the
 *    `sudo -u OWNER` / `runuser -u OWNER --` to use.
 * Returns 0, or an exit code after printing why.  A root folder that
 * cannot be examined is left to the open that follows (its error says
 * more).  cli_open and cli_open_short_lived call it (and exit with its
 * code); check and init, which touch the site before, call it themselves. */
int cli_become_owner(cli *c);
/* After a command failed on files named on its command line: when root's
 * command runs as the site's owner and the owner cannot read one of them,
 * says so and what to do instead. */
void cli_hint_unreadable(const cli *c, char **paths, int count, bool stdin_too);
/* Loads site.conf, opens site.db and the logs; prints the error and
 * returns -1 when this is not a usable site. */
int cli_open(cli *c);
void cli_close(cli *c);
/* Prints "sitespool: <message>" to stderr; returns exit code 1. */
int cli_fail(const ss_error *e);
int cli_usage(const char *usage_text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses "[--site CODE] [--help] ARGS..." for init and key import: returns
 * -1 after printing usage for --help, a usage exit code for a bad option,
 * else 0 with *site set (or left NULL) and optind at the first argument. */
int cli_site_option(int argc, char **argv, const char *usage_text, const char **site);
/* True when argv holds -h or --help at the front. */
bool cli_wants_help(int argc, char **argv);
/* "2026-11-22 10:23:45" in local time; "-" for 0. */
void cli_format_time(int64_t t, char *out, size_t len);
/* Parses "2026-11-22", "2026-11-22 10:00", "-2h", "-3d" or unix seconds. */
int cli_parse_time(const char *s, int64_t *out);
/* "name" for a uid; "uid N" when it has no entry. */
void cli_uid_name(uid_t uid, char *out, size_t len);
/* The name of the user who ran this command (its uid if it has none):
 * root's, when the command runs as the site's owner. */
void cli_user_name(const cli *c, char *out, size_t len);

/* key subcommands in cmd_keytrust.c: argv[0] is the subcommand name. */
int key_approve(cli *c, int argc, char **argv, const char *usage);
int key_trust(cli *c, int argc, char **argv, const char *usage);
int key_untrust(cli *c, int argc, char **argv, const char *usage);
int key_revoke(cli *c, int argc, char **argv, const char *usage);
int key_rotate(cli *c, int argc, char **argv, const char *usage);
int key_publish(cli *c, int argc, char **argv, const char *usage);
int key_send_to(cli *c, int argc, char **argv, const char *usage);

int cmd_init(cli *c, int argc, char **argv);
int cmd_key(cli *c, int argc, char **argv);
int cmd_peer(cli *c, int argc, char **argv);
int cmd_status(cli *c, int argc, char **argv);
int cmd_sign(cli *c, int argc, char **argv);
int cmd_verify(cli *c, int argc, char **argv);
int cmd_send(cli *c, int argc, char **argv);
int cmd_sender(cli *c, int argc, char **argv);
int cmd_despool(cli *c, int argc, char **argv);
/* Operator commands: cmd_check.c, cmd_queue.c. */
int cmd_check(cli *c, int argc, char **argv);
int cmd_queue(cli *c, int argc, char **argv);
int cmd_release(cli *c, int argc, char **argv);
int cmd_delete(cli *c, int argc, char **argv);
int cmd_settings(cli *c, int argc, char **argv);

#endif
