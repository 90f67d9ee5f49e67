/*
 * cli.h - what every sitespool subcommand shares: the open site (root,
 * settings, database, status reporter) and small output helpers.
 *
 * Exit codes (documented in the README and --help):
 *   0 success, 1 the operation failed, 2 usage error,
 *   75 (EX_TEMPFAIL) accepted but not finished: data stays queued.
 */
#ifndef SS_CLI_H
#define SS_CLI_H

#include "../keystore/status.h"
#include "../keystore/store.h"

#include <stdbool.h>

#define EXIT_USAGE 2
#define EXIT_TEMPFAIL 75

typedef struct cli {
    const char *root; /* -C, SITESPOOL_SITE, the one installed site, or "." */
    bool root_given;  /* by -C or SITESPOOL_SITE */
    ss_conf conf;
    ss_db db;
    ss_reporter rep;
    bool open;
} cli;

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
/* The name of the user running this command (its uid if it has none). */
void cli_user_name(char *out, size_t len);

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
