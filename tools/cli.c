/*
 * cli.c - shared subcommand plumbing.  See cli.h.
 */
#include "cli.h"

#include <getopt.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_open(cli *c)
{
    ss_error e = {0};
    char db_path[PATH_MAX];
    if (ss_conf_load(&c->conf, c->root, &e) != 0) return cli_fail(&e), -1;
    if (ss_path(db_path, sizeof db_path, c->root, SS_FILE_DB) != 0 ||
        ss_db_open(&c->db, db_path, false, &e) != 0)
        return cli_fail(&e), -1;
    if (ss_reporter_open(&c->rep, c->root, &c->conf, &c->db, &e) != 0) {
        ss_db_close(&c->db);
        return cli_fail(&e), -1;
    }
    c->open = true;
    return 0;
}

void cli_close(cli *c)
{
    if (!c->open) return;
    ss_reporter_close(&c->rep);
    ss_db_close(&c->db);
    c->open = false;
}

int cli_fail(const ss_error *e)
{
    fprintf(stderr, "sitespool: %s\n", e->msg[0] ? e->msg : "failed");
    return 1;
}

int cli_usage(const char *usage_text, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sitespool: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

int cli_site_option(int argc, char **argv, const char *usage_text, const char **site)
{
    static const struct option opts[] = {{"site", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        if (ch == 's')
            *site = optarg;
        else if (ch == 'h')
            return fputs(usage_text, stdout), -1;
        else
            return cli_usage(usage_text, "bad option");
    }
    return 0;
}

bool cli_wants_help(int argc, char **argv)
{
    return argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
}

void cli_format_time(int64_t t, char *out, size_t len)
{
    if (t <= 0) {
        snprintf(out, len, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
}

int cli_parse_time(const char *s, int64_t *out)
{
    if (s[0] == '-') {
        unsigned secs;
        if (ss_parse_duration(s + 1, &secs) != 0) return -1;
        *out = ss_now() - secs;
        return 0;
    }
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%d %H:%M", &tm);
    }
    if (!end || *end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (end && !*end) {
        tm.tm_isdst = -1;
        *out = (int64_t)mktime(&tm);
        return 0;
    }
    char *num_end;
    long long v = strtoll(s, &num_end, 10);
    if (num_end == s || *num_end) return -1;
    *out = v;
    return 0;
}

void cli_user_name(char *out, size_t len)
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    uid_t uid = geteuid();
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found)
        snprintf(out, len, "%s", found->pw_name);
    else
        snprintf(out, len, "uid %u", (unsigned)uid);
}
