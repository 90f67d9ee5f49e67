/*
 * cmd_check.c - `sitespool check`: the `postfix check` / `nginx -t` of a
 * site.  Validates site.conf (every bad line, not only the first), the
 * site key (there, a regular file of the running user, mode 0600, its .pub
 * its public half, listed in site.db, not expiring), the SSH identity when
 * an sftp:// peer needs it, every folder of the site tree (a folder, not a
 * symbolic link, writable by the running user) and the files the
 * commands write, site.db (opens, schema version), every peer address
 * (parses; a local inbox is a writable folder; an SFTP server has a pinned
 * host key), peers' keys and blocks, outboxes of sites that are no peers,
 * and the key directory.
 *
 * Output: one line per finding - severity (error, warning, ok), what, and
 * the command that fixes it (paths as this command was given them, so it
 * runs from here).  Exit 0 without errors (warnings allowed), 1 with any,
 * 2 on a usage error.
 *
 * Security stance: check reads and never repairs; it connects nowhere
 * (host keys are judged from keys/known_hosts and site.db); it works on a
 * broken site - an unreadable site.conf is reported and the rest checked
 * with what its good lines say; a missing site.db is reported and the
 * checks that need it skipped.  Opening site.db brings an older schema up
 * to date, as every command does.
 * Known limits: a local inbox is checked as this user sees it; whether a
 * remote one is writable is only known by delivering (sitespool peer list).
 */
#include "cli.h"
#include "../inboxes/fileio.h"
#include "../inboxes/json.h"
#include "../keystore/keyfile.h"
#include "../keystore/ldapdir.h"
#include "../keystore/store.h"
#include "../sender/address.h"
#include "../sender/hostkeys.h"
#include "../sender/remote.h"
#include "../sender/sender.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: sitespool [-C SITE_ROOT] check [--json] [--quiet]\n"
    "\n"
    "Checks the site before a (re)start, like postfix check or nginx -t:\n"
    "  settings   site.conf parses (every bad line is named) and its values make sense\n"
    "  keys       keys/<SITE>.key is there, a regular file of this user, mode 0600; its .pub\n"
    "             is its public half; site.db lists it; it is not expired or expiring;\n"
    "             the SSH identity (sftp_identity) likewise when an sftp:// peer needs it\n"
    "  folders    every folder of the site tree exists, is a folder (not a symbolic link)\n"
    "             and is writable by this user; so are site.db and the logs\n"
    "  database   site.db opens; its schema version\n"
    "  peers      every address parses; a local inbox is a writable folder; an SFTP server\n"
    "             has a pinned host key; each peer's key is known and its site not blocked;\n"
    "             no outbox holds pairs for a site that is no peer\n"
    "  directory  the key directory folder (setting directory) can be read\n"
    "Nothing is changed and nothing is connected to.  One line per finding: error,\n"
    "warning or ok, what is wrong, and the command that fixes it.\n"
    "\n"
    "  --json    one JSON array of {severity, area, subject, message, fix}\n"
    "  --quiet   only errors and warnings\n"
    "\n"
    "Exit codes: 0 no errors (warnings allowed), 1 errors found, 2 usage error.\n";

enum severity { SEV_OK, SEV_WARNING, SEV_ERROR };
static const char *const severity_names[] = {"ok", "warning", "error"};

struct finding {
    enum severity sev;
    const char *area;
    char *subject, *message, *fix; /* fix NULL: none */
};

struct checker {
    const char *root;
    char user[100];
    struct finding *v;
    size_t n, cap;
    ss_conf conf;             /* the settings, or what their good lines say */
    char conf_path[PATH_MAX]; /* where they are (ss_conf_locate) */
    char conf_name[PATH_MAX]; /* how findings name it: site.conf, or its path */
    bool have_code;           /* conf.site_code is known */
    ss_db db;
    bool db_open;
    bool any_remote; /* an sftp:// peer address exists */
};

/* ------------------------------------------------------------- findings */

static void add(struct checker *k, enum severity sev, const char *area, const char *subject,
                const char *fix, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void add(struct checker *k, enum severity sev, const char *area, const char *subject,
                const char *fix, const char *fmt, ...)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 32;
        struct finding *v = realloc(k->v, cap * sizeof *v);
        if (!v) return; /* out of memory: the finding is lost, the exit code is not */
        k->v = v;
        k->cap = cap;
    }
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct finding *f = &k->v[k->n++];
    f->sev = sev;
    f->area = area;
    f->subject = strdup(subject);
    f->message = strdup(msg);
    f->fix = fix && *fix ? strdup(fix) : NULL;
}

static bool any_error(const struct checker *k)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->v[i].sev == SEV_ERROR) return true;
    return false;
}

static void print_findings(const struct checker *k, bool json, bool quiet)
{
    size_t count[3] = {0};
    if (json) printf("[");
    bool first = true;
    for (size_t i = 0; i < k->n; i++) {
        const struct finding *f = &k->v[i];
        count[f->sev]++;
        if (quiet && f->sev == SEV_OK) continue;
        if (json) {
            printf("%s{\"severity\":\"%s\",\"area\":\"%s\",\"subject\":", first ? "" : ",\n ",
                   severity_names[f->sev], f->area);
            ss_json_string(stdout, f->subject ? f->subject : "");
            printf(",\"message\":");
            ss_json_string(stdout, f->message ? f->message : "");
            printf(",\"fix\":");
            if (f->fix)
                ss_json_string(stdout, f->fix);
            else
                printf("null");
            printf("}");
        } else {
            printf("%s: %s: %s%s%s\n", severity_names[f->sev], f->subject ? f->subject : "",
                   f->message ? f->message : "", f->fix ? " -- fix: " : "", f->fix ? f->fix : "");
        }
        first = false;
    }
    if (json)
        printf("]\n");
    else
        printf("check: %zu error(s), %zu warning(s), %zu ok\n", count[SEV_ERROR],
               count[SEV_WARNING], count[SEV_OK]);
}

static void free_findings(struct checker *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->v[i].subject);
        free(k->v[i].message);
        free(k->v[i].fix);
    }
    free(k->v);
}

/* ---------------------------------------------------------------- paths */

/* A path as the shell needs it: quoted unless it is plain. */
static void shell_quote(const char *s, char *out, size_t len)
{
    if (*s &&
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-+:@%,") ==
            strlen(s)) {
        snprintf(out, len, "%s", s);
        return;
    }
    size_t o = 0;
    if (o + 1 < len) out[o++] = '\'';
    for (; *s && o + 5 < len; s++) {
        if (*s == '\'') {
            memcpy(out + o, "'\\''", 4);
            o += 4;
        } else {
            out[o++] = *s;
        }
    }
    if (o + 1 < len) out[o++] = '\'';
    out[o] = '\0';
}

/* ROOT/rel as the shell needs it from here ("rel" for the root "."). */
static void fix_path(const struct checker *k, const char *rel, char *out, size_t len)
{
    char path[PATH_MAX];
    if (!strcmp(k->root, "."))
        snprintf(path, sizeof path, "%s", rel);
    else
        snprintf(path, sizeof path, "%s/%s", k->root, rel);
    shell_quote(path, out, len);
}

static void site_path(const struct checker *k, const char *rel, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", k->root, rel);
}

/* "sitespool -C ROOT" (or "sitespool" for the root "."), for fixes. */
static void sitespool_cmd(const struct checker *k, char *out, size_t len)
{
    char root[PATH_MAX + 8];
    shell_quote(k->root, root, sizeof root);
    if (!strcmp(k->root, "."))
        snprintf(out, len, "sitespool");
    else
        snprintf(out, len, "sitespool -C %s", root);
}

static const char *owner_name(uid_t uid, char *buf, size_t len)
{
    cli_uid_name(uid, buf, len);
    return buf;
}

/* ------------------------------------------------------------- settings */

/* The line number in "<path>:<n>: ..." (0 if none). */
static int error_line(const char *msg, const char *path)
{
    size_t n = strlen(path);
    if (strncmp(msg, path, n) != 0 || msg[n] != ':') return 0;
    return atoi(msg + n + 1);
}

/* "edit <settings file>[ (line N)]". */
static void edit_fix(const struct checker *k, const char *what, int line, char *out, size_t len)
{
    char q[PATH_MAX + 8], where[64] = "";
    shell_quote(k->conf_path, q, sizeof q);
    if (line) snprintf(where, sizeof where, " (line %d)", line);
    snprintf(out, len, "edit %s%s%s", what, q, where);
}

/* msg is "<path>:<line>: ..." or "<path>: ...": the subject says the file. */
static void settings_error(struct checker *k, const char *msg, int line)
{
    char edit[PATH_MAX + 128];
    const char *path = k->conf_path;
    edit_fix(k, "", line, edit, sizeof edit);
    int own = error_line(msg, path);
    size_t n = strlen(path);
    if (!strncmp(msg, path, n) && msg[n] == ':') msg += n + 1 + (msg[n + 1] == ' ');
    if (own)
        add(k, SEV_ERROR, "settings", k->conf_name, edit, "line %s", msg);
    else if (line)
        add(k, SEV_ERROR, "settings", k->conf_name, edit, "line %d: %s", line, msg);
    else
        add(k, SEV_ERROR, "settings", k->conf_name, edit, "%s", msg);
}

/* Every bad line, not only the first: the lines are added one by one to
 * what parsed so far (a bad one is left out, as an empty line, so that
 * numbers stay right), which also finds a setting given twice and values
 * that only fail together with others (reported at the line that made the
 * file fail).  What is left gives the other checks their settings - the
 * site code above all.  Returns how many errors were reported. */
static int salvage_settings(struct checker *k, const char *text)
{
    const char *path = k->conf_path;
    size_t len = strlen(text), used = 0;
    char *good = malloc(len + 2), *cand = malloc(len + 2);
    int errors = 0, lineno = 0;
    if (!good || !cand) {
        free(good);
        free(cand);
        return 0;
    }
    good[0] = '\0';
    for (const char *line = text; *line; lineno++) {
        size_t n = strcspn(line, "\n");
        memcpy(cand, good, used);
        memcpy(cand + used, line, n);
        cand[used + n] = '\0';
        ss_conf scratch;
        ss_conf_defaults(&scratch);
        ss_error e = {0};
        bool fine = ss_conf_parse(&scratch, cand, path, &e) == 0;
        if (!fine) {
            settings_error(k, e.msg, lineno + 1);
            errors++;
        }
        if (fine) {
            memcpy(good + used, line, n);
            used += n;
        }
        good[used++] = '\n';
        good[used] = '\0';
        line += n;
        if (*line) line++;
    }
    ss_conf_defaults(&k->conf);
    ss_error e = {0};
    (void)ss_conf_parse(&k->conf, good, path, &e);
    free(good);
    free(cand);
    return errors;
}

/* Values that parse but cannot work. */
static void check_values(struct checker *k)
{
    char dests[sizeof k->conf.allowed_dest], *save = NULL;
    snprintf(dests, sizeof dests, "%s", k->conf.allowed_dest);
    for (char *d = strtok_r(dests, " ,", &save); d; d = strtok_r(NULL, " ,", &save))
        if (!ss_dest_name_valid(d)) {
            char edit[PATH_MAX + 128];
            edit_fix(k, "allowed_dest in ", 0, edit, sizeof edit);
            add(k, SEV_ERROR, "settings", "allowed_dest", edit,
                "'%s' is not an inbox name ([a-z0-9_]{1,32}.box): nothing can be delivered "
                "into it",
                d);
        }
    const char *cmd = k->conf.notify_command;
    if (cmd[0] == '/') {
        char prog[PATH_MAX];
        snprintf(prog, sizeof prog, "%.*s", (int)strcspn(cmd, " \t"), cmd);
        if (access(prog, X_OK) != 0)
            add(k, SEV_WARNING, "settings", "notify_command", NULL,
                "%s cannot be run by %s (%s): status messages are stored and logged, but "
                "nobody is notified",
                prog, k->user, strerror(errno));
    }
}

/* The settings file's text (a regular file, not followed); NULL, *e. */
static char *read_settings(const char *path, ss_error *e)
{
    char dir[PATH_MAX], *text = NULL;
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : path;
    if (slash) *slash = '\0';
    int fd = ss_open_dir_follow(slash ? (dir[0] ? dir : "/") : ".", e);
    if (fd < 0) return NULL;
    if (ss_read_small_file(fd, name, 1 << 20, &text, NULL, e) != 0) text = NULL;
    close(fd);
    return text;
}

static void check_settings(struct checker *k)
{
    char own[PATH_MAX];
    site_path(k, SS_FILE_CONF, own, sizeof own);
    if (ss_conf_locate(k->root, false, k->conf_path, sizeof k->conf_path) != 0)
        snprintf(k->conf_path, sizeof k->conf_path, "%s", own);
    snprintf(k->conf_name, sizeof k->conf_name, "%s",
             strcmp(k->conf_path, own) ? k->conf_path : SS_FILE_CONF);
    ss_error e = {0};
    if (ss_conf_load(&k->conf, k->root, &e) == 0) {
        k->have_code = true;
        add(k, SEV_OK, "settings", k->conf_name, NULL, "parses; site %s", k->conf.site_code);
    } else {
        ss_error re = {0};
        char *text = read_settings(k->conf_path, &re);
        if (!text) {
            char init[PATH_MAX + 64];
            sitespool_cmd(k, init, sizeof init);
            strncat(init, " init --site CODE", sizeof init - strlen(init) - 1);
            add(k, SEV_ERROR, "settings", k->conf_name, init,
                "cannot be read: %s (this is not a site folder: make one in an empty folder, or "
                "give -C the site's folder)",
                re.msg);
            ss_conf_defaults(&k->conf);
            return;
        }
        if (salvage_settings(k, text) == 0)
            settings_error(k, e.msg, error_line(e.msg, k->conf_path));
        free(text);
        k->have_code = k->conf.site_code[0] != '\0';
    }
    check_values(k);
    struct stat st;
    if (lstat(k->conf_path, &st) == 0 && (st.st_mode & 022)) {
        char fix[PATH_MAX + 16], q[PATH_MAX + 8];
        shell_quote(k->conf_path, q, sizeof q);
        snprintf(fix, sizeof fix, "chmod go-w %s", q);
        add(k, SEV_WARNING, "settings", k->conf_name, fix,
            "mode %04o: group or others can change this site's security settings",
            (unsigned)(st.st_mode & 07777));
    }
}

/* -------------------------------------------------------------- folders */

/* A folder or file of the site: there, not a symbolic link, of the right
 * type, writable by this user.  Returns true when fine. */
static bool check_entry(struct checker *k, const char *rel, bool dir, bool required)
{
    char path[PATH_MAX], q[PATH_MAX + 8], fix[2 * PATH_MAX + 64], owner[100];
    site_path(k, rel, path, sizeof path);
    fix_path(k, rel, q, sizeof q);
    const char *area = dir ? "folders" : "files";
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT) {
            add(k, SEV_ERROR, area, rel, NULL, "cannot be examined: %s", strerror(errno));
            return false;
        }
        if (!required) return true;
        snprintf(fix, sizeof fix, "mkdir -p %s", q);
        add(k, SEV_ERROR, area, rel, dir ? fix : NULL, "is missing");
        return false;
    }
    if (S_ISLNK(st.st_mode)) {
        snprintf(fix, sizeof fix, "rm %s && mkdir %s", q, q);
        add(k, SEV_ERROR, area, rel, dir ? fix : NULL,
            "is a symbolic link: sitespool never follows one inside its site tree (the fix "
            "removes only the link; move what its target holds into the new folder)");
        return false;
    }
    if (dir != !!S_ISDIR(st.st_mode)) {
        add(k, SEV_ERROR, area, rel, NULL, "is not a %s", dir ? "folder" : "regular file");
        return false;
    }
    if (faccessat(AT_FDCWD, path, dir ? W_OK | X_OK : R_OK | W_OK, AT_EACCESS) != 0) {
        int err = errno;
        if (err == EROFS) {
            add(k, SEV_ERROR, area, rel, NULL, "is on a read-only filesystem");
        } else if (st.st_uid != geteuid()) {
            snprintf(fix, sizeof fix, "chown %s %s", k->user, q);
            add(k, SEV_ERROR, area, rel, fix, "is owned by %s, mode %04o: %s cannot write it",
                owner_name(st.st_uid, owner, sizeof owner), (unsigned)(st.st_mode & 07777),
                k->user);
        } else {
            snprintf(fix, sizeof fix, "chmod u+%s %s", dir ? "rwx" : "rw", q);
            add(k, SEV_ERROR, area, rel, fix, "mode %04o: %s cannot write it",
                (unsigned)(st.st_mode & 07777), k->user);
        }
        return false;
    }
    return true;
}

static void check_folders(struct checker *k)
{
    size_t n, bad = 0;
    const char *const *dirs = ss_site_dirs(&n);
    for (size_t i = 0; i < n; i++)
        bad += !check_entry(k, dirs[i], true, true);
    if (!bad)
        add(k, SEV_OK, "folders", "inboxes/, keys/, logs/", NULL,
            "all %zu folders of the site tree exist and %s can write them", n, k->user);
    /* What the commands write besides: the database and the logs. */
    static const char *const files[] = {
        SS_FILE_DB,         "site.db-wal",     "site.db-shm",
        "logs/despool.log", "logs/sender.log", "logs/hman.log",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        (void)check_entry(k, files[i], false, false);
}

/* ----------------------------------------------------------------- keys */

/* A secret file of this user: regular, ours, no access for group/others.
 * rel is relative to the root, or absolute. */
static bool check_secret_file(struct checker *k, const char *area, const char *rel,
                              enum severity sev)
{
    char path[PATH_MAX], q[PATH_MAX + 8], fix[PATH_MAX + 128], owner[100];
    if (rel[0] == '/') {
        snprintf(path, sizeof path, "%s", rel);
        shell_quote(rel, q, sizeof q);
    } else {
        site_path(k, rel, path, sizeof path);
        fix_path(k, rel, q, sizeof q);
    }
    struct stat st;
    if (lstat(path, &st) != 0) return false; /* the caller says what is missing */
    if (!S_ISREG(st.st_mode)) {
        add(k, sev, area, rel, NULL, "is not a regular file (a symbolic link is not followed)");
        return false;
    }
    bool fine = true;
    if (st.st_uid != geteuid()) {
        snprintf(fix, sizeof fix, "chown %s %s", k->user, q);
        add(k, sev, area, rel, fix, "is owned by %s, not by %s who runs sitespool",
            owner_name(st.st_uid, owner, sizeof owner), k->user);
        fine = false;
    }
    if (st.st_mode & 077) {
        snprintf(fix, sizeof fix, "chmod 600 %s", q);
        add(k, sev, area, rel, fix,
            "mode %04o: group or others can read this secret, so sitespool refuses to use it "
            "(consider it compromised if others had access)",
            (unsigned)(st.st_mode & 07777));
        fine = false;
    }
    return fine;
}

static void check_own_pub(struct checker *k, const ss_pubkey *pk, const char *pub_rel)
{
    char path[PATH_MAX], id[SS_KEYID_HEX + 1];
    site_path(k, pub_rel, path, sizeof path);
    ss_keyid_hex(pk->keyid, id);
    ss_pubkey file_pk;
    ss_error e = {0};
    if (ss_pubkey_load(path, &file_pk, NULL, 0, &e) != 0)
        add(k, SEV_ERROR, "keys", pub_rel, NULL,
            "%s: 'sitespool key export' has nothing to give the peers (restore it from a "
            "backup)",
            e.msg);
    else if (memcmp(&file_pk, pk, sizeof file_pk) != 0)
        add(k, SEV_ERROR, "keys", pub_rel, NULL,
            "is not the public half of keys/%s.key (key %s): peers given this file cannot "
            "verify what this site signs (restore it from a backup)",
            k->conf.site_code, id);
    else
        add(k, SEV_OK, "keys", pub_rel, NULL, "is the public half of the site key %s", id);
}

/* The site key in site.db: listed as this site's own, valid long enough. */
static void check_own_record(struct checker *k, const ss_pubkey *pk)
{
    char id[SS_KEYID_HEX + 1], fix[PATH_MAX + 64], when[32];
    ss_keyid_hex(pk->keyid, id);
    ss_keyrec rec;
    ss_error e = {0};
    int found = ss_keys_get_pk(&k->db, k->conf.site_code, pk, &rec, &e);
    if (found < 0) {
        add(k, SEV_ERROR, "keys", "site.db", NULL, "%s", e.msg);
        return;
    }
    if (!found || rec.state != SS_KEY_OWN) {
        add(k, SEV_WARNING, "keys", "site.db", NULL,
            "does not list key %s (keys/%s.key) as this site's own key%s%s", id, k->conf.site_code,
            found ? "; its state is " : "", found ? ss_key_state_name(rec.state) : "");
        return;
    }
    sitespool_cmd(k, fix, sizeof fix);
    strncat(fix, " key rotate", sizeof fix - strlen(fix) - 1);
    if (!rec.not_after) {
        add(k, SEV_OK, "keys", "site key", NULL, "key %s has no end of validity", id);
        return;
    }
    time_t t = (time_t)rec.not_after;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d", localtime_r(&t, &tm));
    int64_t left = (rec.not_after - ss_now()) / 86400;
    if (rec.not_after <= ss_now())
        add(k, SEV_ERROR, "keys", "site key", fix,
            "key %s expired on %s: peers hold what this site signs with it", id, when);
    else if (left < (int64_t)k->conf.expiry_warning_days)
        add(k, SEV_WARNING, "keys", "site key", fix,
            "key %s expires on %s (%lld days left; peers then hold what it signs)", id, when,
            (long long)left);
    else
        add(k, SEV_OK, "keys", "site key", NULL, "key %s is valid until %s (%lld days)", id, when,
            (long long)left);
}

static void check_site_key(struct checker *k, ss_pubkey *pk, bool *have_pk)
{
    char key_rel[64], pub_rel[64], path[PATH_MAX];
    *have_pk = false;
    if (!k->have_code) {
        add(k, SEV_WARNING, "keys", "keys/", NULL,
            "not checked: site.conf does not say which site this is (site_code)");
        return;
    }
    snprintf(key_rel, sizeof key_rel, SS_DIR_KEYS "/%s.key", k->conf.site_code);
    snprintf(pub_rel, sizeof pub_rel, SS_DIR_KEYS "/%s.pub", k->conf.site_code);
    site_path(k, key_rel, path, sizeof path);
    struct stat st;
    if (lstat(path, &st) != 0) {
        add(k, SEV_ERROR, "keys", key_rel, NULL,
            "is missing: this site cannot sign what it sends (restore it from a backup; peers "
            "trust only its public half)");
        return;
    }
    if (!check_secret_file(k, "keys", key_rel, SEV_ERROR)) return;
    ss_seckey *sk = NULL;
    ss_error e = {0};
    if (ss_seckey_load(path, &sk, &e) != 0) {
        add(k, SEV_ERROR, "keys", key_rel, NULL, "%s", e.msg);
        return;
    }
    ss_seckey_public(sk, pk);
    ss_seckey_free(sk);
    *have_pk = true;
    add(k, SEV_OK, "keys", key_rel, NULL, "a secret key of %s, mode 0600", k->user);
    check_own_pub(k, pk, pub_rel);
}

/* The SSH identity: needed (an error) when an sftp:// peer exists. */
static void check_identity(struct checker *k)
{
    char path[PATH_MAX], fix[PATH_MAX + 64];
    const char *rel = k->conf.sftp_identity; /* relative to the root, or absolute */
    if (ss_remote_identity_path(k->root, &k->conf, path, sizeof path) != 0) return;
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (!k->any_remote) return;
        sitespool_cmd(k, fix, sizeof fix);
        strncat(fix, " peer ssh-key", sizeof fix - strlen(fix) - 1);
        add(k, SEV_ERROR, "keys", rel, fix,
            "is missing (setting sftp_identity): nothing can log in to the sftp:// peers");
        return;
    }
    if (check_secret_file(k, "keys", rel, k->any_remote ? SEV_ERROR : SEV_WARNING))
        add(k, SEV_OK, "keys", rel, NULL, "SSH identity of %s, mode 0600", k->user);
}

/* ------------------------------------------------------------- database */

static void check_database(struct checker *k)
{
    char path[PATH_MAX];
    site_path(k, SS_FILE_DB, path, sizeof path);
    struct stat st;
    if (lstat(path, &st) != 0) {
        add(k, SEV_ERROR, "database", SS_FILE_DB, NULL,
            "is missing: keys, peers, the ledger and waiting pairs are recorded there (restore "
            "it from a backup; 'sitespool init' makes one only for a new site)");
        return;
    }
    ss_error e = {0};
    if (ss_db_open_short_lived(&k->db, path, &e) != 0) {
        add(k, SEV_ERROR, "database", SS_FILE_DB, NULL, "%s", e.msg);
        return;
    }
    k->db_open = true;
    add(k, SEV_OK, "database", SS_FILE_DB, NULL, "opens; schema version %d (this sitespool: %d)",
        ss_db_schema_version(&k->db), SS_DB_SCHEMA_VERSION);
}

/* ---------------------------------------------------------------- peers */

static void check_local_inbox(struct checker *k, const char *site, const ss_address *a)
{
    char subject[64], q[PATH_MAX + 8], fix[3 * PATH_MAX + 128], cmd[PATH_MAX + 64];
    snprintf(subject, sizeof subject, "peer %s", site);
    shell_quote(a->path, q, sizeof q);
    sitespool_cmd(k, cmd, sizeof cmd);
    struct stat st;
    if (stat(a->path, &st) != 0) {
        int err = errno;
        snprintf(fix, sizeof fix,
                 "mkdir -p %s (if that is where %s's receive inbox is), or %s "
                 "peer add %s --inbox RIGHT_PATH",
                 q, site, cmd, site);
        add(k, SEV_ERROR, "peers", subject, fix,
            "its inbox %s cannot be reached (%s): deliveries wait in the outbox (4501)", a->path,
            strerror(err));
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(fix, sizeof fix, "%s peer add %s --inbox RIGHT_PATH", cmd, site);
        add(k, SEV_ERROR, "peers", subject, fix, "its inbox %s is not a folder", a->path);
        return;
    }
    if (faccessat(AT_FDCWD, a->path, W_OK | X_OK, AT_EACCESS) != 0) {
        char owner[100];
        snprintf(fix, sizeof fix, "chown %s %s (or give %s write access to it)", k->user, q,
                 k->user);
        add(k, SEV_ERROR, "peers", subject, fix,
            "its inbox %s (owned by %s, mode %04o) is not writable by %s: %s", a->path,
            owner_name(st.st_uid, owner, sizeof owner), (unsigned)(st.st_mode & 07777), k->user,
            strerror(errno));
        return;
    }
    add(k, SEV_OK, "peers", subject, NULL, "inbox %s is a folder %s can write", a->path, k->user);
}

static void check_remote_inbox(struct checker *k, const char *site, const ss_address *a)
{
    char subject[64], fp[SS_FINGERPRINT_MAX], advance[SS_FINGERPRINT_MAX],
        offered[SS_FINGERPRINT_MAX], fix[PATH_MAX + 256], cmd[PATH_MAX + 64];
    snprintf(subject, sizeof subject, "peer %s", site);
    k->any_remote = true;
    if (ss_hostkeys_pinned(k->root, a->host_label, fp) == 0 && fp[0]) {
        add(k, SEV_OK, "peers", subject, NULL, "%s: host key %s is pinned", a->text, fp);
        return;
    }
    ss_error e = {0};
    if (ss_hostkeys_pending(&k->db, site, a->host_label, advance, offered, &e) != 0) {
        add(k, SEV_ERROR, "peers", subject, NULL, "%s", e.msg);
        return;
    }
    if (advance[0]) {
        add(k, SEV_OK, "peers", subject, NULL,
            "%s: fingerprint %s is pinned in advance; the server offering it is accepted at "
            "the first connection",
            a->text, advance);
        return;
    }
    sitespool_cmd(k, cmd, sizeof cmd);
    if (offered[0]) {
        snprintf(fix, sizeof fix,
                 "%s peer trust-host %s %s (only once %s's administrator "
                 "confirmed that fingerprint)",
                 cmd, site, offered, site);
        add(k, SEV_ERROR, "peers", subject, fix,
            "%s: the server offered host key %s, which is not pinned: deliveries are refused "
            "(4507)",
            a->text, offered);
    } else {
        snprintf(fix, sizeof fix,
                 "%s peer trust-host %s SHA256:... (the fingerprint %s's "
                 "administrator reads with ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)",
                 cmd, site, site);
        add(k, SEV_ERROR, "peers", subject, fix,
            "%s: no host key is pinned for %s: the first delivery is refused (4507)", a->text,
            a->host_label);
    }
}

static void check_peer_trust(struct checker *k, const char *site)
{
    char subject[64], cmd[PATH_MAX + 64], fix[PATH_MAX + 192], blocked[SS_KEYID_HEX + 1];
    snprintf(subject, sizeof subject, "peer %s", site);
    sitespool_cmd(k, cmd, sizeof cmd);
    ss_error e = {0};
    int trusted = ss_keys_in_state(&k->db, site, SS_KEY_TRUSTED, NULL, 0, &e);
    int retired = trusted >= 0 ? ss_keys_in_state(&k->db, site, SS_KEY_RETIRED, NULL, 0, &e) : -1;
    if (trusted == 0 && retired == 0) {
        snprintf(fix, sizeof fix, "%s key import %s.pub (the file %s's administrator exported)",
                 cmd, site, site);
        add(k, SEV_WARNING, "peers", subject, fix,
            "no trusted public key of %s: what it sends waits for its key (4405)", site);
    }
    int b = ss_site_block_get(&k->db, site, blocked, &e);
    if (b == 1) {
        snprintf(fix, sizeof fix, "%s key trust %s %s (or: key revoke %s --site %s)", cmd, site,
                 blocked, blocked, site);
        add(k, SEV_WARNING, "peers", subject, fix,
            "site %s is blocked since its different key %s was presented (3303): its data is "
            "held",
            site, blocked);
    }
    if (trusted < 0 || b < 0) add(k, SEV_ERROR, "peers", subject, NULL, "%s", e.msg);
}

static int check_peer(void *ctx, const ss_peer *p)
{
    struct checker *k = ctx;
    ss_peer_address rows[SS_PEER_ADDRESSES_MAX];
    ss_error e = {0};
    char subject[64], cmd[PATH_MAX + 64], fix[PATH_MAX + 128];
    snprintf(subject, sizeof subject, "peer %s", p->site);
    int n = ss_peer_addresses(&k->db, p->site, rows, SS_PEER_ADDRESSES_MAX, &e);
    if (n < 0) {
        add(k, SEV_ERROR, "peers", subject, NULL, "%s", e.msg);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        ss_address a;
        if (ss_address_parse(rows[i].address, &a, &e) != 0) {
            sitespool_cmd(k, cmd, sizeof cmd);
            snprintf(fix, sizeof fix, "%s peer add %s --inbox ADDRESS", cmd, p->site);
            add(k, SEV_ERROR, "peers", subject, fix, "address '%s' is not usable: %s",
                rows[i].address, e.msg);
        } else if (a.remote) {
            check_remote_inbox(k, p->site, &a);
        } else {
            check_local_inbox(k, p->site, &a);
        }
    }
    check_peer_trust(k, p->site);
    return 0;
}

/* Outbox folders with pairs for sites that are no peers (removed). */
static void check_orphan_outboxes(struct checker *k)
{
    char path[PATH_MAX], cmd[PATH_MAX + 64], fix[PATH_MAX + 128];
    site_path(k, SS_DIR_OUTBOX, path, sizeof path);
    DIR *d = opendir(path);
    if (!d) return; /* a missing folder is reported with the folders */
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        ss_peer peer;
        ss_outbox_info info;
        ss_error e = {0};
        if (!ss_site_code_valid(de->d_name) || ss_peer_get(&k->db, de->d_name, &peer, &e) != 0 ||
            ss_outbox_info_get(k->root, de->d_name, &info, &e) != 0 || !info.queued)
            continue;
        char subject[64];
        snprintf(subject, sizeof subject, "outbox %s", de->d_name);
        sitespool_cmd(k, cmd, sizeof cmd);
        snprintf(fix, sizeof fix, "%s peer add %s --inbox ADDRESS", cmd, de->d_name);
        add(k, SEV_WARNING, "peers", subject, fix,
            "%zu pair(s) are queued for %s, which is not a peer: they are never delivered",
            info.queued, de->d_name);
    }
    closedir(d);
}

struct peer_count {
    struct checker *k;
    int n;
};

static int count_peer(void *ctx, const ss_peer *p)
{
    struct peer_count *pc = ctx;
    pc->n++;
    return check_peer(pc->k, p);
}

static void check_peers(struct checker *k)
{
    struct peer_count pc = {k, 0};
    ss_error e = {0};
    if (ss_peer_foreach(&k->db, count_peer, &pc, &e) != 0)
        add(k, SEV_ERROR, "peers", "site.db", NULL, "%s", e.msg);
    else if (!pc.n)
        add(k, SEV_OK, "peers", "peers", NULL,
            "none yet ('sitespool peer add CODE --inbox ADDRESS' names one)");
    check_orphan_outboxes(k);
}

/* ------------------------------------------------------------ directory */

/* A directory server: its settings parsed already; the password file and
 * the CA file are checked here, the server is not contacted (check
 * connects to nothing). */
static void check_directory_server(struct checker *k)
{
    const char *dir = k->conf.directory;
    char *secret = NULL, fix[PATH_MAX + 160];
    ss_error e = {0};
    if (k->conf.directory_bind_dn[0]) {
        if (ss_dir_password_load(k->root, &k->conf, &secret, &e) != 0) {
            snprintf(fix, sizeof fix,
                     "write the password alone into directory_password_file, 'chmod 600' it "
                     "and make %s its owner",
                     k->user);
            add(k, SEV_ERROR, "directory", dir, fix,
                "the bind as %s cannot be made: %s; the despooler raises 4442 and keys are "
                "not found there",
                k->conf.directory_bind_dn, e.msg);
            return;
        }
        sodium_free(secret);
    }
    if (k->conf.directory_ca_file[0] && access(k->conf.directory_ca_file, R_OK) != 0) {
        add(k, SEV_ERROR, "directory", dir, "fix directory_ca_file",
            "the CA file %s cannot be read by %s (%s): TLS to the directory fails (4441)",
            k->conf.directory_ca_file, k->user, strerror(errno));
        return;
    }
    add(k, SEV_OK, "directory", dir, NULL,
        "a directory server (%s, not contacted by check: 'sitespool key list --directory' "
        "asks it)",
        k->conf.directory_bind_dn[0] ? "bind DN and password file usable" : "anonymous");
}

static void check_directory(struct checker *k)
{
    const char *dir = k->conf.directory;
    if (!dir[0]) return;
    if (ss_dirurl_is_ldap(dir)) {
        check_directory_server(k);
        return;
    }
    char fix[PATH_MAX + 128], edit[PATH_MAX + 128];
    edit_fix(k, "directory in ", 0, edit, sizeof edit);
    snprintf(fix, sizeof fix, "mount it, or %s", edit);
    DIR *d = opendir(dir);
    if (!d) {
        add(k, SEV_ERROR, "directory", dir, fix,
            "the key directory cannot be read by %s (%s): keys are not looked up there", k->user,
            strerror(errno));
        return;
    }
    int records = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        records += n > 4 && !strcmp(de->d_name + n - 4, ".pub");
    }
    closedir(d);
    add(k, SEV_OK, "directory", dir, NULL, "the key directory is readable (%d .pub record(s))",
        records);
}

/* ------------------------------------------------------------------ run */

static void run_checks(struct checker *k)
{
    struct stat st;
    if (stat(k->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        char init[PATH_MAX + 64];
        sitespool_cmd(k, init, sizeof init);
        strncat(init, " init --site CODE", sizeof init - strlen(init) - 1);
        add(k, SEV_ERROR, "folders", k->root, init,
            "is not a folder: no site here (give -C or SITESPOOL_SITE the site's folder)");
        return;
    }
    check_settings(k);
    check_folders(k);
    ss_pubkey pk;
    bool have_pk;
    check_site_key(k, &pk, &have_pk);
    check_database(k);
    if (k->db_open) {
        if (have_pk) check_own_record(k, &pk);
        check_peers(k);
    } else {
        add(k, SEV_WARNING, "peers", "peers", NULL, "not checked: site.db cannot be opened");
    }
    check_identity(k);
    check_directory(k);
}

int cmd_check(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool json = false, quiet = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        if (ch == 'j')
            json = true;
        else if (ch == 'q')
            quiet = true;
        else if (ch == 'h')
            return fputs(usage, stdout), 0;
        else
            return cli_usage(usage, "bad option for check");
    }
    if (optind != argc) return cli_usage(usage, "unexpected argument '%s'", argv[optind]);
    /* Root's check judges as the site's owner (what its daemons need);
     * anyone else's as themselves: check changes nothing, and a service
     * user checking a site root made is told what to chown. */
    int owner_rc = geteuid() == 0 ? cli_become_owner(c) : 0;
    if (owner_rc != 0) return owner_rc;
    struct checker k = {.root = c->root};
    if (c->as_owner)
        snprintf(k.user, sizeof k.user, "%s", c->owner);
    else
        cli_user_name(c, k.user, sizeof k.user);
    ss_conf_defaults(&k.conf);
    run_checks(&k);
    print_findings(&k, json, quiet);
    bool failed = any_error(&k);
    if (k.db_open) ss_db_close(&k.db);
    free_findings(&k);
    return failed ? 1 : 0;
}
