/*
 * cli.c - shared subcommand plumbing.  See cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void cli_uid_name(uid_t uid, char *out, size_t len)
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found)
        snprintf(out, len, "%s", found->pw_name);
    else
        snprintf(out, len, "uid %u", (unsigned)uid);
}

/* The command as it was typed, for the advice to run it as the owner. */
static void command_line(const cli *c, char *out, size_t len)
{
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < c->argc && at < len; i++) {
        const char *a = c->argv[i];
        bool plain = a[0] && strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789-_=./,:@+") == strlen(a);
        int n = snprintf(out + at, len - at, plain ? "%s%s" : "%s'%s'", i ? " " : "",
                         i ? a : "sitespool");
        if (n < 0) break;
        at += (size_t)n;
    }
}

/* Root on a site of another user: that user's groups, gid and uid, for
 * good; then checks that root cannot come back. */
static int drop_to(uid_t uid, gid_t gid, const char *name)
{
    int groups_ok = strncmp(name, "uid ", 4) ? initgroups(name, gid) : setgroups(0, NULL);
    if (groups_ok != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) return -1;
    if (setuid(0) == 0 || seteuid(0) == 0) return errno = EPERM, -1;
    return 0;
}

int cli_become_owner(cli *c)
{
    struct stat st;
    uid_t me = geteuid();
    if (!c->invoker[0]) cli_uid_name(me, c->invoker, sizeof c->invoker);
    if (!c->root || stat(c->root, &st) != 0 || st.st_uid == me) return 0;
    cli_uid_name(st.st_uid, c->owner, sizeof c->owner);
    if (me == 0) {
        struct passwd pw, *found = NULL;
        char buf[1024];
        gid_t gid = st.st_gid;
        if (getpwuid_r(st.st_uid, &pw, buf, sizeof buf, &found) == 0 && found) gid = pw.pw_gid;
        if (drop_to(st.st_uid, gid, c->owner) != 0) {
            fprintf(stderr,
                    "sitespool: the site %s belongs to %s; cannot become that user to work "
                    "on it (%s): nothing was done\n",
                    c->root, c->owner, strerror(errno));
            return 1;
        }
        c->as_owner = true;
        return 0;
    }
    char typed[1024];
    command_line(c, typed, sizeof typed);
    fprintf(stderr,
            "sitespool: the site %s belongs to %s, and this command runs as %s: files it "
            "made would be %s's, which %s's daemons could not use.  Run it as the site's "
            "owner:\n  sudo -u %s %s\n  (as root: runuser -u %s -- %s; root's commands run "
            "as the owner by themselves)\n",
            c->root, c->owner, c->invoker, c->invoker, c->owner, c->owner, typed, c->owner, typed);
    return EXIT_NOPERM;
}

void cli_hint_unreadable(const cli *c, char **paths, int count, bool stdin_too)
{
    if (!c->as_owner) return;
    for (int i = 0; i < count; i++) {
        if (!strcmp(paths[i], "-") || access(paths[i], R_OK) == 0 || errno != EACCES) continue;
        fprintf(stderr,
                "sitespool: %s is not readable by %s, the site's owner, as whom this command "
                "runs (root's commands on a site run as its owner, so that what they make is "
                "the owner's): make it readable by %s%s\n",
                paths[i], c->owner, c->owner,
                stdin_too ? ", or give it on standard input ('-')" : "");
    }
}

int cli_open(cli *c)
{
    ss_error e = {0};
    char db_path[PATH_MAX];
    int rc = cli_become_owner(c);
    if (rc != 0) exit(rc); /* nothing is open yet */
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

void cli_user_name(const cli *c, char *out, size_t len)
{
    if (c->invoker[0])
        snprintf(out, len, "%s", c->invoker);
    else
        cli_uid_name(geteuid(), out, len);
}
