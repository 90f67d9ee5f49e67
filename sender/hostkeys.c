/*
 * hostkeys.c - pinned SSH host keys of SFTP peers.  See hostkeys.h.
 */
#include "hostkeys.h"
#include "../inboxes/fileio.h"
#include "../inboxes/site.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KNOWN_HOSTS_MAX (4u << 20)

int ss_hostkeys_path(const char *root, char *out, size_t len)
{
    return snprintf(out, len, "%s/" SS_DIR_KEYS "/known_hosts", root) >= (int)len ? -1 : 0;
}

bool ss_fingerprint_valid(const char *fp)
{
    if (strncmp(fp, "SHA256:", 7) != 0 || strlen(fp) != 7 + 43) return false;
    for (const char *c = fp + 7; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '+' || *c == '/'))
            return false;
    return true;
}

int ss_hostkeys_configure(const char *root, ssh_session session, ss_error *e)
{
    char path[PATH_MAX];
    if (ss_hostkeys_path(root, path, sizeof path) != 0)
        return ss_err(e, SS_E_IO, "the site root path is too long");
    if (ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, path) != SSH_OK ||
        ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") != SSH_OK)
        return ss_err(e, SS_E_IO, "cannot point libssh at %s: %s", path, ssh_get_error(session));
    return 0;
}

/* "SHA256:..." of a key; 0 or -1. */
static int fingerprint_of(ssh_key key, char out[SS_FINGERPRINT_MAX])
{
    unsigned char *hash = NULL;
    size_t hlen = 0;
    out[0] = '\0';
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != SSH_OK) return -1;
    char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    ssh_clean_pubkey_hash(&hash);
    if (!fp) return -1;
    snprintf(out, SS_FINGERPRINT_MAX, "%s", fp);
    ssh_string_free_char(fp);
    return 0;
}

/* ------------------------------------------------------------ the file */

/* Reads known_hosts (absent: empty); *text is malloc'ed and terminated. */
static int read_known_hosts(const char *root, char **text, size_t *len, ss_error *e)
{
    char keys[PATH_MAX];
    snprintf(keys, sizeof keys, "%s/" SS_DIR_KEYS, root);
    int dfd = ss_open_dir(keys, e);
    if (dfd < 0) return -1;
    int rc = ss_read_small_file(dfd, "known_hosts", KNOWN_HOSTS_MAX, text, len, e);
    close(dfd);
    if (rc != 0 && e->code == SS_E_NOENT) {
        ss_err_clear(e); /* no file yet: nothing pinned */
        *text = calloc(1, 1);
        *len = 0;
        return *text ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    }
    return rc;
}

/* True when a known_hosts line is an entry for host_label (hashed or
 * not; markers such as @revoked and comments are never "for" a host). */
static bool line_for_host(const char *host_label, const char *line)
{
    if (!line[0] || line[0] == '#' || line[0] == '@') return false;
    struct ssh_knownhosts_entry *entry = NULL;
    int rc = ssh_known_hosts_parse_line(host_label, line, &entry);
    ssh_knownhosts_entry_free(entry);
    return rc == SSH_OK;
}

/* Rewrites known_hosts: lines for host_label dropped, new_line appended
 * (a full "host keytype base64" line). */
static int replace_host_lines(const char *root, const char *host_label, const char *new_line,
                              ss_error *e)
{
    char *text = NULL;
    size_t len = 0;
    if (read_known_hosts(root, &text, &len, e) != 0) return -1;
    char *out = malloc(len + strlen(new_line) + 2);
    if (!out) {
        free(text);
        return ss_err(e, SS_E_NOMEM, "out of memory");
    }
    size_t n = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (line_for_host(host_label, line)) continue;
        n += (size_t)sprintf(out + n, "%s\n", line);
    }
    n += (size_t)sprintf(out + n, "%s\n", new_line);
    free(text);
    char keys[PATH_MAX];
    snprintf(keys, sizeof keys, "%s/" SS_DIR_KEYS, root);
    int dfd = ss_open_dir(keys, e);
    int rc = dfd < 0
                 ? -1
                 : ss_write_file_atomic(dfd, "known_hosts", out, n, 0644, SS_ATOMIC_SYNC_DIR, e);
    if (dfd >= 0) close(dfd);
    free(out);
    return rc;
}

int ss_hostkeys_pinned(const char *root, const char *host_label, char out[SS_FINGERPRINT_MAX])
{
    out[0] = '\0';
    char *text = NULL;
    size_t len = 0;
    ss_error e;
    if (read_known_hosts(root, &text, &len, &e) != 0) return -1;
    for (char *line = text, *next; line && *line && !out[0]; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (!line[0] || line[0] == '#' || line[0] == '@') continue;
        struct ssh_knownhosts_entry *entry = NULL;
        if (ssh_known_hosts_parse_line(host_label, line, &entry) == SSH_OK && entry->publickey)
            (void)fingerprint_of(entry->publickey, out);
        ssh_knownhosts_entry_free(entry);
    }
    free(text);
    return 0;
}

/* --------------------------------------------------------- the records */

/* Is fingerprint pinned for site (in advance, or for another of its
 * hosts)?  1, 0 (then *other gets the newest fingerprint pinned in advance
 * for all its servers, or ""), -1. */
static int pinned_in_advance(ss_db *db, const char *site, const char *fp,
                             char other[SS_FINGERPRINT_MAX], ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "SELECT fingerprint FROM host_keys WHERE site=?1 AND state='pinned' AND "
        "(fingerprint=?2 OR host='*') ORDER BY fingerprint=?2 DESC, time DESC LIMIT 1",
        e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, fp, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    other[0] = '\0';
    if (rc == SQLITE_ROW) {
        const char *found = (const char *)sqlite3_column_text(st, 0);
        rc = !strcmp(found, fp);
        if (!rc) snprintf(other, SS_FINGERPRINT_MAX, "%s", found);
    } else {
        rc = rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading host keys", e);
    }
    sqlite3_finalize(st);
    return rc;
}

/* The newest fingerprint of site's host_keys rows for host in state. */
static int newest_fingerprint(ss_db *db, const char *site, const char *host, const char *state,
                              char out[SS_FINGERPRINT_MAX], ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db,
                                     "SELECT fingerprint FROM host_keys WHERE site=? AND host=? "
                                     "AND state=? ORDER BY time DESC LIMIT 1",
                                     e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    out[0] = '\0';
    if (rc == SQLITE_ROW)
        snprintf(out, SS_FINGERPRINT_MAX, "%s", (const char *)sqlite3_column_text(st, 0));
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading host keys", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_hostkeys_pending(ss_db *db, const char *site, const char *host_label,
                        char advance[SS_FINGERPRINT_MAX], char offered[SS_FINGERPRINT_MAX],
                        ss_error *e)
{
    if (newest_fingerprint(db, site, "*", "pinned", advance, e) != 0) return -1;
    return newest_fingerprint(db, site, host_label, "offered", offered, e);
}

static int record_offered(ss_db *db, const char *site, const char *host, const char *fp,
                          const char *line, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "INSERT INTO host_keys(site, host, fingerprint, known_hosts_line, state, time) "
        "VALUES(?,?,?,?,'offered',?) ON CONFLICT DO UPDATE SET known_hosts_line="
        "excluded.known_hosts_line, time=excluded.time WHERE state='offered'",
        e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, fp, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, line, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, ss_now());
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "recording a host key", e);
    sqlite3_finalize(st);
    return rc;
}

/* The session's "host keytype base64" line, without its newline. */
static int session_line(ssh_session session, char *out, size_t len, ss_error *e)
{
    char *line = NULL;
    if (ssh_session_export_known_hosts_entry(session, &line) != SSH_OK || !line)
        return ss_err(e, SS_E_IO, "cannot read the server's host key: %s", ssh_get_error(session));
    snprintf(out, len, "%s", line);
    ssh_string_free_char(line);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

/* --------------------------------------------------------------- judging */

/* Not pinned in known_hosts: a fingerprint pinned in advance admits it
 * (written to known_hosts now); otherwise it is recorded as offered. */
static int judge_unpinned(const char *root, ss_db *db, const char *site, ssh_session session,
                          const char *host_label, ss_host_check *out, ss_error *e)
{
    char line[8192];
    if (session_line(session, line, sizeof line, e) != 0 || ss_db_begin(db, e) != 0) return -1;
    char other[SS_FINGERPRINT_MAX];
    int advance = pinned_in_advance(db, site, out->offered, other, e);
    int rc = advance < 0 ? -1 : 0;
    /* A key pinned for the site, and this server offers another: as good
     * as a changed key (the man-in-the-middle case), not a new one. */
    if (advance == 0 && other[0] && out->verdict == SS_HOST_UNKNOWN) {
        out->verdict = SS_HOST_CHANGED;
        snprintf(out->pinned, sizeof out->pinned, "%s", other);
    }
    if (advance == 1) {
        rc = replace_host_lines(root, host_label, line, e);
        out->verdict = SS_HOST_PINNED;
        out->newly_pinned = rc == 0;
    } else if (advance == 0) {
        rc = record_offered(db, site, host_label, out->offered, line, e);
    }
    if (rc == 0) return ss_db_commit(db, e);
    ss_db_rollback(db);
    return -1;
}

int ss_hostkeys_judge(const char *root, ss_db *db, const char *site, ssh_session session,
                      const char *host_label, ss_host_check *out, ss_error *e)
{
    memset(out, 0, sizeof *out);
    ssh_key key = NULL;
    if (ssh_get_server_publickey(session, &key) != SSH_OK)
        return ss_err(e, SS_E_IO, "the server sent no host key: %s", ssh_get_error(session));
    int rc = fingerprint_of(key, out->offered);
    ssh_key_free(key);
    if (rc != 0) return ss_err(e, SS_E_IO, "cannot fingerprint the server's host key");
    switch (ssh_session_is_known_server(session)) {
    case SSH_KNOWN_HOSTS_OK:
        out->verdict = SS_HOST_PINNED;
        return 0;
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER:
        out->verdict = SS_HOST_CHANGED;
        if (ss_hostkeys_pinned(root, host_label, out->pinned) != 0 || !out->pinned[0])
            snprintf(out->pinned, sizeof out->pinned, "(a key of another type)");
        return judge_unpinned(root, db, site, session, host_label, out, e);
    case SSH_KNOWN_HOSTS_UNKNOWN:
    case SSH_KNOWN_HOSTS_NOT_FOUND:
        out->verdict = SS_HOST_UNKNOWN;
        return judge_unpinned(root, db, site, session, host_label, out, e);
    default:
        return ss_err(e, SS_E_IO, "cannot read the site's known_hosts: %s", ssh_get_error(session));
    }
}

/* --------------------------------------------------------------- pinning */

struct offered {
    char host[300];
    char line[8192];
};

/* The hosts of site that offered fingerprint (at most max). */
static int find_offered(ss_db *db, const char *site, const char *fp, struct offered *out,
                        size_t max, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db,
                                     "SELECT host, known_hosts_line FROM host_keys WHERE site=? "
                                     "AND fingerprint=? AND state='offered' ORDER BY host",
                                     e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, fp, -1, SQLITE_STATIC);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && (size_t)n < max) {
        snprintf(out[n].host, sizeof out[n].host, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(out[n].line, sizeof out[n].line, "%s", (const char *)sqlite3_column_text(st, 1));
        n++;
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? n : ss_db_fail(db, "reading host keys", e);
    sqlite3_finalize(st);
    return rc;
}

/* Runs an UPDATE or INSERT on host_keys binding site, fingerprint and now. */
static int host_keys_exec(ss_db *db, const char *sql, const char *site, const char *fp, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, fp, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, ss_now());
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "pinning a host key", e);
    sqlite3_finalize(st);
    return rc;
}

/* The hosts that offered fp are pinned now (their lines are in known_hosts);
 * fingerprints pinned in advance for the site that its servers contradicted
 * are superseded by this decision. */
static int mark_pinned(ss_db *db, const char *site, const char *fp, ss_error *e)
{
    if (host_keys_exec(db,
                       "UPDATE host_keys SET state='pinned', time=?3 WHERE site=?1 AND "
                       "fingerprint=?2",
                       site, fp, e) != 0)
        return -1;
    return host_keys_exec(db,
                          "DELETE FROM host_keys WHERE site=?1 AND host='*' AND fingerprint<>?2 "
                          "AND ?3 IS NOT NULL",
                          site, fp, e);
}

/* fp is pinned in advance for every server of site (host '*'). */
static int pin_in_advance(ss_db *db, const char *site, const char *fp, ss_error *e)
{
    return host_keys_exec(db,
                          "INSERT INTO host_keys(site, host, fingerprint, state, time) "
                          "VALUES(?1,'*',?2,'pinned',?3) ON CONFLICT DO UPDATE SET time=?3",
                          site, fp, e);
}

int ss_hostkeys_trust(const char *root, ss_db *db, const char *site, const char *fingerprint,
                      char *pinned_hosts, size_t len, unsigned *written, ss_error *e)
{
    if (!ss_fingerprint_valid(fingerprint))
        return ss_err(e, SS_E_USAGE,
                      "'%s' is not a host key fingerprint; write it as ssh-keygen -l prints it: "
                      "SHA256: followed by 43 characters",
                      fingerprint);
    enum { MAX_HOSTS = 16 };
    struct offered *hosts = calloc(MAX_HOSTS, sizeof *hosts);
    if (!hosts) return ss_err(e, SS_E_NOMEM, "out of memory");
    *written = 0;
    pinned_hosts[0] = '\0';
    if (ss_db_begin(db, e) != 0) {
        free(hosts);
        return -1;
    }
    int n = find_offered(db, site, fingerprint, hosts, MAX_HOSTS, e);
    int rc = n < 0 ? -1 : 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = replace_host_lines(root, hosts[i].host, hosts[i].line, e);
        size_t used = strlen(pinned_hosts);
        snprintf(pinned_hosts + used, len - used, "%s%s", used ? ", " : "", hosts[i].host);
        (*written)++;
    }
    if (rc == 0)
        rc = n ? mark_pinned(db, site, fingerprint, e)
               : pin_in_advance(db, site, fingerprint, e); /* not offered yet */
    free(hosts);
    if (rc == 0) return ss_db_commit(db, e);
    ss_db_rollback(db);
    return -1;
}
