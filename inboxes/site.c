/*
 * site.c - site tree layout and site.conf parsing.  See site.h.
 *
 * Diagnostics: "site.conf:12: unknown setting 'key_lookup_retry' ..." - file,
 * line, what is wrong, what is expected.
 */
#include "site.h"
#include "dirurl.h"
#include "fileio.h"

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool ss_site_code_valid(const char *code)
{
    size_t n = strlen(code);
    if (n < 3 || n > SS_SITE_CODE_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!((code[i] >= 'A' && code[i] <= 'Z') || (code[i] >= '0' && code[i] <= '9')))
            return false;
    return true;
}

bool ss_dest_name_valid(const char *dest)
{
    size_t n = strlen(dest);
    if (n < 5 || n > 36 || strcmp(dest + n - 4, ".box") != 0) return false;
    for (size_t i = 0; i < n - 4; i++)
        if (!((dest[i] >= 'a' && dest[i] <= 'z') || (dest[i] >= '0' && dest[i] <= '9') ||
              dest[i] == '_'))
            return false;
    return true;
}

void ss_conf_defaults(ss_conf *c)
{
    memset(c, 0, sizeof *c);
    c->require_secure_key_exchange = true;
    c->tofu_auto_approve = false;
    c->sign_instructions = true;
    c->key_lookup_retries = 100;
    c->key_lookup_interval = 300;
    c->rescan_interval = 60;
    snprintf(c->allowed_dest, sizeof c->allowed_dest, "replmgr.box");
    c->max_package_bytes = 4ULL << 30;
    c->log_max_bytes = 1 << 20;
    c->expiry_warning_days = 90;
    c->rollover_grace_days = 90;
    c->key_lifetime_days = 730;
    c->package_lifetime = 30 * 86400;
    c->max_clock_skew = 3600;
    c->max_package_lifetime = 400 * 86400;
    c->backlog_warning_age = 86400;
    c->send_retry_interval = 60;
    c->send_retry_max_interval = 3600;
    c->batch_max = 256;
    snprintf(c->sftp_identity, sizeof c->sftp_identity, "keys/sftp_id");
    c->sftp_timeout = 30;
    c->sftp_batch_max = 2048;
    c->heartbeat_interval = 3600;
    c->link_degraded_after = 12;
    c->receipt_timeout = 4 * 3600;
    c->resend_keep = 7 * 86400;
    c->directory_timeout = 5;
    snprintf(c->log_format, sizeof c->log_format, "trace");
    c->compression_level = 6;
    c->bundle_max_files = 256;
    c->bundle_below = 64 * 1024;
    c->seal = true;
}

int ss_parse_duration(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || !isdigit((unsigned char)s[0])) return -1;
    unsigned long long mul = 1;
    if (*end) {
        switch (*end++) {
        case 's':
            mul = 1;
            break;
        case 'm':
            mul = 60;
            break;
        case 'h':
            mul = 3600;
            break;
        case 'd':
            mul = 86400;
            break;
        default:
            return -1;
        }
        if (*end) return -1;
    }
    if (v > UINT32_MAX / mul) return -1;
    *out = (unsigned)(v * mul);
    return 0;
}

int ss_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || !isdigit((unsigned char)s[0])) return -1;
    unsigned shift = 0;
    if (*end) {
        switch (*end++) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return -1;
        }
        if (*end) return -1;
    }
    if (v > (UINT64_MAX >> shift)) return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "1"))
        *out = true;
    else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

enum conf_kind { K_BOOL, K_DURATION, K_UINT, K_SIZE, K_STRING, K_SITE, K_INT };

struct conf_key {
    const char *name;
    enum conf_kind kind;
    size_t offset;
    size_t size;
    const char *help;
};

#define F(field) offsetof(ss_conf, field), sizeof(((ss_conf *)0)->field)
static const struct conf_key conf_keys[] = {
    {"site_code", K_SITE, F(site_code), "This site's code (3-8 of A-Z0-9). Set by init."},
    {"require_secure_key_exchange", K_BOOL, F(require_secure_key_exchange),
     "Reject unsigned instructions and unsigned key exchanges (status 4404)."},
    {"tofu_auto_approve", K_BOOL, F(tofu_auto_approve),
     "With secure key exchange off: trust a new site's first key without approval."},
    {"sign_instructions", K_BOOL, F(sign_instructions),
     "Sign outgoing instructions. Turn off only for peers that accept unsigned data."},
    {"key_lookup_retries", K_UINT, F(key_lookup_retries),
     "How many times a missing sender key is looked up again (status 4405)."},
    {"key_lookup_interval", K_DURATION, F(key_lookup_interval),
     "Time between key lookups for an instruction whose key is missing (s, m, h, d)."},
    {"rescan_interval", K_DURATION, F(rescan_interval),
     "The despooler rescans its inboxes this often; inotify events are only hints."},
    {"directory", K_STRING, F(directory),
     "Key directory: a folder holding <SITE>.pub records, or a directory server "
     "ldap://host[:port]/BASE-DN or ldaps://... (entries sitespoolSiteCode=<SITE>,BASE-DN; "
     "the DN percent-encoded as in RFC 4516) (empty: none)."},
    {"directory_starttls", K_BOOL, F(directory_starttls),
     "With an ldap:// directory: StartTLS before anything else is sent (not with ldaps://)."},
    {"directory_bind_dn", K_STRING, F(directory_bind_dn),
     "DN the despooler and 'key publish' bind to the directory server as (empty: anonymous; "
     "publishing needs a DN allowed to write the site's entry)."},
    {"directory_password_file", K_STRING, F(directory_password_file),
     "File holding the bind DN's password (one line), relative to the site root unless "
     "absolute; mode 0600, owned by the user running sitespool."},
    {"directory_ca_file", K_STRING, F(directory_ca_file),
     "PEM file of the CAs that may sign the directory server's certificate (ldaps:// and "
     "StartTLS) (empty: the system's)."},
    {"directory_timeout", K_DURATION, F(directory_timeout),
     "How long the directory server may take to connect, and to answer each operation, "
     "before the lookup counts as failed (status 4441) and the pair waits."},
    {"allowed_dest", K_STRING, F(allowed_dest),
     "Space-separated destination inboxes peers may deliver into."},
    {"max_package_bytes", K_SIZE, F(max_package_bytes),
     "Largest package (file and declared payload size) accepted (k, M, G)."},
    {"log_max_bytes", K_SIZE, F(log_max_bytes),
     "A log passing this size is renamed to .lo_ and a new one started."},
    {"expiry_warning_days", K_UINT, F(expiry_warning_days),
     "Warn this many days before a key's validity ends."},
    {"rollover_grace_days", K_UINT, F(rollover_grace_days),
     "After a peer's key rollover its old key stays accepted this many days."},
    {"key_lifetime_days", K_UINT, F(key_lifetime_days), "Validity of newly made keys."},
    {"package_lifetime", K_DURATION, F(package_lifetime),
     "Instructions sent by this site expire after this time."},
    {"max_clock_skew", K_DURATION, F(max_clock_skew),
     "Instructions created further ahead of this site's clock are refused (status 4424)."},
    {"max_package_lifetime", K_DURATION, F(max_package_lifetime),
     "Instructions that expire further ahead than this are refused (status 4425)."},
    {"backlog_warning_age", K_DURATION, F(backlog_warning_age),
     "Warn about files waiting in the receive inbox longer than this."},
    {"send_retry_interval", K_DURATION, F(send_retry_interval),
     "First wait before retrying delivery to an unreachable peer; doubles each time."},
    {"send_retry_max_interval", K_DURATION, F(send_retry_max_interval),
     "Longest wait between delivery retries."},
    {"batch_max", K_UINT, F(batch_max),
     "Pairs the despooler commits in one database transaction and directory fsync."},
    {"compression_level", K_INT, F(compression_level), "zlib level for packages (0-9)."},
    {"bundle_max_files", K_UINT, F(bundle_max_files),
     "Small files of one send to one peer and inbox share a package (a tar bundle) up to "
     "this many; 1 = one package per file."},
    {"bundle_below", K_SIZE, F(bundle_below),
     "Only files smaller than this go into bundles (k, M); larger ones get a package each."},
    {"seal", K_BOOL, F(seal),
     "Data sent to a peer whose key this site trusts is sealed (encrypted) to the peer's "
     "newest trusted key: only that site can read the files and their names. Key, rollover, "
     "receipt and heartbeat instructions are never sealed; a peer without a trusted key gets "
     "its data unsealed (said once in sender.log)."},
    {"notify_command", K_STRING, F(notify_command),
     "Program run (via /bin/sh -c) for every status message, with SITESPOOL_STATUS_* "
     "in its environment (empty: none)."},
    {"sftp_identity", K_STRING, F(sftp_identity),
     "SSH private key (OpenSSH format, no passphrase, mode 0600) used to log in to "
     "sftp:// peers; relative to the site root. 'sitespool peer ssh-key' makes one."},
    {"log_format", K_STRING, F(log_format),
     "trace: ConfigMgr's server trace lines (text $$<COMPONENT><time><thread>); ccm: the "
     "<![LOG[text]LOG]!><time=... type=...> lines that CMTrace, OneTrace and log parsers "
     "read with severities."},
    {"metrics_file", K_STRING, F(metrics_file),
     "Prometheus text file the despooler rewrites (atomically) every 15 s, for "
     "node_exporter's textfile collector; relative to the site root; empty: none."},
    {"sftp_batch_max", K_UINT, F(sftp_batch_max),
     "Pairs delivered to an SFTP address per batch (one pipelined pass of uploads, renames "
     "and a folder fsync: a few round trips whatever its size)."},
    {"sftp_timeout", K_DURATION, F(sftp_timeout),
     "How long an SFTP peer may take to connect or to answer a request before the "
     "address counts as unreachable."},
    {"heartbeat_interval", K_DURATION, F(heartbeat_interval),
     "The sender daemon sends each peer a signed heartbeat this often (this site's keys and "
     "which of the peer's keys it trusts); 0: none, and no link states."},
    {"link_degraded_after", K_UINT, F(link_degraded_after),
     "A peer not heard from (heartbeat or receipt) for this many heartbeat intervals is "
     "degraded, for twice as many failed (ConfigMgr: 12 and 24 missed cycles)."},
    {"receipt_timeout", K_DURATION, F(receipt_timeout),
     "A pair in a peer's inbox this long without a receipt is reported (status 4512)."},
    {"resend_keep", K_DURATION, F(resend_keep),
     "A copy of each pair delivered by copy or SFTP is kept in schedule.box/sent/<PEER>/ for "
     "'send --resend' until the peer's receipt confirms it, at most this long; 0: none kept."},
};
#undef F

static const struct conf_key *conf_key_find(const char *name)
{
    for (size_t i = 0; i < sizeof conf_keys / sizeof conf_keys[0]; i++)
        if (!strcmp(conf_keys[i].name, name)) return &conf_keys[i];
    return NULL;
}

static int conf_set(ss_conf *c, const struct conf_key *k, const char *v)
{
    void *p = (char *)c + k->offset;
    switch (k->kind) {
    case K_BOOL:
        return parse_bool(v, p);
    case K_DURATION:
        return ss_parse_duration(v, p);
    case K_SIZE:
        return ss_parse_size(v, p);
    case K_UINT: {
        char *end;
        errno = 0;
        unsigned long u = strtoul(v, &end, 10);
        if (!isdigit((unsigned char)*v) || *end || errno || u > UINT32_MAX) return -1;
        *(unsigned *)p = (unsigned)u;
        return 0;
    }
    case K_INT: {
        char *end;
        long l = strtol(v, &end, 10);
        if (end == v || *end || l < 0 || l > 9) return -1;
        *(int *)p = (int)l;
        return 0;
    }
    case K_SITE:
        if (!ss_site_code_valid(v)) return -1;
        /* fall through */
    case K_STRING:
        if (strlen(v) >= k->size) return -1;
        memcpy(p, v, strlen(v) + 1);
        return 0;
    }
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

/* The directory_* settings belong to a directory server URL, and agree. */
static int check_directory(const ss_conf *c, const char *origin, ss_error *e)
{
    if (!ss_dirurl_is_ldap(c->directory)) {
        const char *stray = c->directory_starttls           ? "directory_starttls"
                            : c->directory_bind_dn[0]       ? "directory_bind_dn"
                            : c->directory_password_file[0] ? "directory_password_file"
                            : c->directory_ca_file[0]       ? "directory_ca_file"
                                                            : NULL;
        if (!stray) return 0;
        return ss_err(e, SS_E_CONF,
                      "%s: %s is set, but directory is %s%s%s: it applies to a directory "
                      "server only (directory = ldap://HOST/BASE-DN or ldaps://...)",
                      origin, stray, c->directory[0] ? "the folder '" : "not set", c->directory,
                      c->directory[0] ? "'" : "");
    }
    ss_dirurl u;
    ss_error why = {0};
    if (ss_dirurl_parse(c->directory, &u, &why) != 0)
        return ss_err(e, SS_E_CONF, "%s: directory: %s", origin, why.msg);
    if (u.ldaps && c->directory_starttls)
        return ss_err(e, SS_E_CONF,
                      "%s: directory_starttls = yes with an ldaps:// directory: ldaps is TLS "
                      "from the first byte; use ldap:// with StartTLS, or ldaps:// without it",
                      origin);
    if (c->directory_bind_dn[0] && !c->directory_password_file[0])
        return ss_err(e, SS_E_CONF,
                      "%s: directory_bind_dn is set but directory_password_file is not: a bind "
                      "with an empty password is unauthenticated (RFC 4513); name the file "
                      "that holds the password, or empty directory_bind_dn for anonymous",
                      origin);
    if (c->directory_password_file[0] && !c->directory_bind_dn[0])
        return ss_err(e, SS_E_CONF,
                      "%s: directory_password_file is set but directory_bind_dn is not: name "
                      "the DN the password belongs to",
                      origin);
    if (c->directory_timeout == 0)
        return ss_err(e, SS_E_CONF, "%s: directory_timeout must be at least 1s", origin);
    return 0;
}

int ss_conf_parse(ss_conf *c, const char *text, const char *origin, ss_error *e)
{
    char *copy = strdup(text);
    if (!copy) return ss_err(e, SS_E_NOMEM, "out of memory");
    bool seen[sizeof conf_keys / sizeof conf_keys[0]] = {0};
    int rc = 0, lineno = 0;
    char *next = copy;
    while (next) {
        char *line = next;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = ss_err(e, SS_E_CONF, "%s:%d: expected 'key = value', found '%.60s'", origin,
                        lineno, s);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        const struct conf_key *k = conf_key_find(key);
        if (!k) {
            rc = ss_err(e, SS_E_CONF,
                        "%s:%d: unknown setting '%s' (sitespool init writes "
                        "every setting with its explanation)",
                        origin, lineno, key);
            break;
        }
        size_t idx = (size_t)(k - conf_keys);
        if (seen[idx]) {
            rc = ss_err(e, SS_E_CONF, "%s:%d: '%s' is set twice", origin, lineno, key);
            break;
        }
        seen[idx] = true;
        if (conf_set(c, k, value) != 0) {
            rc = ss_err(e, SS_E_CONF, "%s:%d: bad value '%s' for %s (%s)", origin, lineno, value,
                        key, k->help);
            break;
        }
    }
    free(copy);
    if (rc == 0 && (c->bundle_max_files == 0 || c->bundle_max_files > SS_BUNDLE_FILES_MAX))
        rc = ss_err(e, SS_E_CONF, "%s: bundle_max_files must be 1 to %d", origin,
                    SS_BUNDLE_FILES_MAX);
    if (rc == 0 && strcmp(c->log_format, "trace") != 0 && strcmp(c->log_format, "ccm") != 0)
        rc = ss_err(e, SS_E_CONF, "%s: log_format is '%s'; it must be trace or ccm", origin,
                    c->log_format);
    if (rc == 0 && c->sftp_batch_max == 0)
        rc = ss_err(e, SS_E_CONF, "%s: sftp_batch_max must be at least 1", origin);
    if (rc == 0 && c->link_degraded_after == 0)
        rc = ss_err(e, SS_E_CONF, "%s: link_degraded_after must be at least 1", origin);
    if (rc == 0 && c->sftp_timeout == 0)
        rc = ss_err(e, SS_E_CONF, "%s: sftp_timeout must be at least 1s", origin);
    if (rc == 0) rc = check_directory(c, origin, e);
    if (rc == 0 && c->batch_max == 0)
        rc = ss_err(e, SS_E_CONF, "%s: batch_max must be at least 1", origin);
    if (rc == 0 && (c->send_retry_interval == 0 || c->send_retry_max_interval == 0))
        rc = ss_err(e, SS_E_CONF,
                    "%s: send_retry_interval and send_retry_max_interval must be "
                    "at least 1s",
                    origin);
    return rc;
}

int ss_path(char *buf, size_t len, const char *root, const char *rel)
{
    int n = snprintf(buf, len, "%s/%s", root, rel);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

const char *ss_conf_dir(void)
{
    const char *env = getenv("SITESPOOL_CONF_DIR");
    return env && env[0] == '/' ? env : SITESPOOL_CONF_DIR;
}

const char *ss_state_dir(void)
{
    const char *env = getenv("SITESPOOL_STATE_DIR");
    return env && env[0] == '/' ? env : SITESPOOL_STATE_DIR;
}

int ss_conf_locate(const char *root, bool system, char *path, size_t len)
{
    char own[PATH_MAX];
    if (ss_path(own, sizeof own, root, SS_FILE_CONF) != 0) return -1;
    const char *base = strrchr(root, '/');
    base = base ? base + 1 : root;
    struct stat st;
    bool use_own = !system && (lstat(own, &st) == 0 || !ss_site_code_valid(base));
    if (!use_own) {
        int n = snprintf(path, len, "%s/%s.conf", ss_conf_dir(), base);
        if (n < 0 || (size_t)n >= len) return -1;
        if (system || lstat(path, &st) == 0) return 0;
    }
    return snprintf(path, len, "%s", own) >= (int)len ? -1 : 0;
}

/* Reads the settings file at path (a regular file, not followed). */
static int read_conf_file(const char *path, char **text, ss_error *e)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *name = path;
    if (slash) {
        *slash = '\0';
        name = slash + 1;
    }
    int dirfd = ss_open_dir(slash ? (dir[0] ? dir : "/") : ".", e);
    if (dirfd < 0) return -1;
    int rc = ss_read_small_file(dirfd, name, 1 << 20, text, NULL, e);
    close(dirfd);
    return rc;
}

int ss_conf_load(ss_conf *c, const char *root, ss_error *e)
{
    char path[PATH_MAX];
    ss_conf_defaults(c);
    if (ss_conf_locate(root, false, path, sizeof path) != 0)
        return ss_err(e, SS_E_TOOBIG, "site path too long");
    int rootfd = ss_open_dir(root, e);
    if (rootfd < 0)
        return ss_err(e, SS_E_NOENT,
                      "%s is not a site folder (run 'sitespool init' or set "
                      "-C / SITESPOOL_SITE)",
                      root);
    close(rootfd);
    char *text = NULL;
    int rc = read_conf_file(path, &text, e);
    if (rc != 0 && e->code == SS_E_NOENT)
        return ss_err(e, SS_E_NOENT,
                      "%s is not a site: it has no site.conf. Run this in a site folder, or name "
                      "one with -C SITE_ROOT or SITESPOOL_SITE ('sitespool init --site CODE' "
                      "makes one)",
                      root);
    if (rc != 0) return ss_err(e, e->code, "cannot read %s: %s", path, e->msg);
    rc = ss_conf_parse(c, text, path, e);
    free(text);
    if (rc == 0 && !c->site_code[0]) return ss_err(e, SS_E_CONF, "%s: site_code is not set", path);
    return rc;
}

bool ss_conf_dest_allowed(const ss_conf *c, const char *dest)
{
    if (!ss_dest_name_valid(dest)) return false;
    size_t n = strlen(dest);
    for (const char *p = c->allowed_dest; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, " ,");
        if (len == n && !strncmp(p, dest, n)) return true;
        p += len;
    }
    return false;
}

static void render_value(const ss_conf *c, const struct conf_key *k, char *out, size_t len)
{
    const void *p = (const char *)c + k->offset;
    switch (k->kind) {
    case K_BOOL:
        snprintf(out, len, "%s", *(const bool *)p ? "yes" : "no");
        break;
    case K_DURATION:
        snprintf(out, len, "%us", *(const unsigned *)p);
        break;
    case K_UINT:
        snprintf(out, len, "%u", *(const unsigned *)p);
        break;
    case K_INT:
        snprintf(out, len, "%d", *(const int *)p);
        break;
    case K_SIZE:
        snprintf(out, len, "%llu", (unsigned long long)*(const uint64_t *)p);
        break;
    case K_SITE:
    case K_STRING:
        snprintf(out, len, "%s", (const char *)p);
        break;
    }
}

char *ss_conf_render(const ss_conf *c)
{
    size_t cap = 16384, used = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    used += (size_t)snprintf(out, cap,
                             "# sitespool site settings: 'key = value', '#' starts a comment.\n"
                             "# Durations take s, m, h or d; sizes take k, M or G.\n");
    for (size_t i = 0; i < sizeof conf_keys / sizeof conf_keys[0]; i++) {
        char value[PATH_MAX];
        render_value(c, &conf_keys[i], value, sizeof value);
        used += (size_t)snprintf(out + used, cap - used, "\n# %s\n%s = %s\n", conf_keys[i].help,
                                 conf_keys[i].name, value);
        if (used >= cap) {
            free(out);
            return NULL;
        }
    }
    return out;
}

static const char *const site_dirs[] = {
    SS_DIR_KEYS,        SS_DIR_LOGS,     SS_DIR_RECEIVE,
    SS_DIR_REJECTED,    SS_DIR_CONSUMED, SS_DIR_HMAN,
    SS_DIR_HMAN_PUBKEY, SS_DIR_OUTBOX,   "inboxes/replmgr.box/incoming",
};

const char *const *ss_site_dirs(size_t *count)
{
    *count = sizeof site_dirs / sizeof site_dirs[0];
    return site_dirs;
}

int ss_site_make_tree(const char *root, bool system, ss_error *e)
{
    char path[PATH_MAX];
    if (ss_mkdirs(root, 0750, e) != 0) return -1;
    if (ss_conf_locate(root, system, path, sizeof path) != 0)
        return ss_err(e, SS_E_TOOBIG, "site path too long");
    if (access(path, F_OK) == 0)
        return ss_err(e, SS_E_EXISTS,
                      "%s already holds a site (%s exists); refusing to "
                      "overwrite it",
                      root, path);
    for (size_t i = 0; i < sizeof site_dirs / sizeof site_dirs[0]; i++) {
        if (ss_path(path, sizeof path, root, site_dirs[i]) != 0 || ss_mkdirs(path, 0750, e) != 0)
            return -1;
    }
    if (ss_path(path, sizeof path, root, SS_DIR_KEYS) == 0) (void)chmod(path, 0700);
    return 0;
}

int ss_site_write_conf(const char *root, const ss_conf *c, bool system, ss_error *e)
{
    char path[PATH_MAX];
    if (ss_conf_locate(root, system, path, sizeof path) != 0)
        return ss_err(e, SS_E_TOOBIG, "site path too long");
    char *text = ss_conf_render(c);
    if (!text) return ss_err(e, SS_E_NOMEM, "out of memory");
    char *slash = strrchr(path, '/');
    *slash = '\0';
    int dirfd = ss_open_dir(path[0] ? path : "/", e);
    int rc = dirfd < 0 ? -1
                       : ss_write_file_atomic(dirfd, slash + 1, text, strlen(text), 0640,
                                              SS_ATOMIC_NOREPLACE | SS_ATOMIC_SYNC_DIR, e);
    if (dirfd >= 0) close(dirfd);
    free(text);
    return rc;
}

/* ------------------------------------------------- settings documentation */

static void render_duration(unsigned v, char *out, size_t len)
{
    static const struct {
        unsigned seconds;
        char unit;
    } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (v && v % units[i].seconds == 0) {
            snprintf(out, len, "%u%c", v / units[i].seconds, units[i].unit);
            return;
        }
    }
    snprintf(out, len, "%us", v);
}

static void render_size(uint64_t v, char *out, size_t len)
{
    static const struct {
        unsigned shift;
        char unit;
    } units[] = {{30, 'G'}, {20, 'M'}, {10, 'k'}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (v && v % (1ULL << units[i].shift) == 0) {
            snprintf(out, len, "%llu%c", (unsigned long long)(v >> units[i].shift), units[i].unit);
            return;
        }
    }
    snprintf(out, len, "%llu", (unsigned long long)v);
}

static const char *kind_name(enum conf_kind kind)
{
    switch (kind) {
    case K_BOOL:
        return "yes/no";
    case K_DURATION:
        return "duration";
    case K_UINT:
        return "number";
    case K_SIZE:
        return "size";
    case K_STRING:
        return "text";
    case K_SITE:
        return "site code";
    case K_INT:
        return "number 0-9";
    }
    return "text";
}

void ss_conf_describe(void (*fn)(void *ctx, const ss_setting_doc *s), void *ctx)
{
    ss_conf defaults;
    ss_conf_defaults(&defaults);
    for (size_t i = 0; i < sizeof conf_keys / sizeof conf_keys[0]; i++) {
        const struct conf_key *k = &conf_keys[i];
        const void *p = (const char *)&defaults + k->offset;
        char value[PATH_MAX];
        if (k->kind == K_DURATION)
            render_duration(*(const unsigned *)p, value, sizeof value);
        else if (k->kind == K_SIZE)
            render_size(*(const uint64_t *)p, value, sizeof value);
        else
            render_value(&defaults, k, value, sizeof value);
        ss_setting_doc doc = {k->name, kind_name(k->kind), value, k->help};
        fn(ctx, &doc);
    }
}
