/*
 * hostkeys.h - which SSH host keys this site accepts from its SFTP peers.
 *
 * The pinned keys are in the site's keys/known_hosts, in OpenSSH's format
 * (unhashed "host keytype base64" lines, host written "[host]:port" off
 * port 22), so `ssh-keygen -F HOST -f keys/known_hosts` and `ssh -o
 * UserKnownHostsFile=keys/known_hosts` read the same trust.  No other
 * known_hosts file counts (not ~/.ssh, not /etc/ssh).
 *
 * The rules are the site keys' rules: a key is never accepted silently.
 * A host whose key is not pinned is refused and the key it offered is
 * recorded (site.db host_keys, state 'offered') with its SHA256
 * fingerprint, so `peer trust-host SITE SHA256:...` can pin it without
 * connecting again.  A fingerprint can also be pinned for a site before
 * any connection (`peer add --host-key`, or trust-host of a key not seen
 * yet: state 'pinned'); the first server of that site offering it is then
 * written to known_hosts.  A server offering a key other than the pinned
 * one is refused (a changed key: reinstalled, or a man in the middle) until
 * the administrator pins the new one, which replaces the old lines.
 *
 * Security stance: fail closed - an unreadable known_hosts or site.db
 * means no connection; known_hosts is rewritten whole (temporary file,
 * fsync, rename) inside a site.db write transaction, so concurrent
 * commands never lose each other's lines.
 */
#ifndef SS_HOSTKEYS_H
#define SS_HOSTKEYS_H

#include "../keystore/db.h"

#include <libssh/libssh.h>
#include <stdbool.h>

#define SS_FINGERPRINT_MAX 100

enum ss_host_verdict {
    SS_HOST_PINNED,  /* the key is pinned: go ahead */
    SS_HOST_UNKNOWN, /* nothing pinned for this host: refused */
    SS_HOST_CHANGED, /* another key is pinned for this host: refused */
};

typedef struct ss_host_check {
    enum ss_host_verdict verdict;
    bool newly_pinned; /* met a fingerprint pinned in advance: now in known_hosts */
    char offered[SS_FINGERPRINT_MAX];
    char pinned[SS_FINGERPRINT_MAX]; /* SS_HOST_CHANGED: the pinned key */
} ss_host_check;

/* ROOT/keys/known_hosts */
int ss_hostkeys_path(const char *root, char *out, size_t len);

/* Points the session at the site's known_hosts alone (before connecting). */
int ss_hostkeys_configure(const char *root, ssh_session session, ss_error *e);

/* Judges the host key of a connected session for site's address whose
 * known_hosts name is host_label.  -1 (an error: refuse) or 0 with *out. */
int ss_hostkeys_judge(const char *root, ss_db *db, const char *site, ssh_session session,
                      const char *host_label, ss_host_check *out, ss_error *e);

/* Pins fingerprint for site: the hosts that offered it are written to
 * known_hosts now (their names in pinned_hosts, comma-separated, *written
 * how many); otherwise it waits for the first server offering it.  */
int ss_hostkeys_trust(const char *root, ss_db *db, const char *site, const char *fingerprint,
                      char *pinned_hosts, size_t len, unsigned *written, ss_error *e);

/* The fingerprint pinned in known_hosts for host_label ("" if none). */
int ss_hostkeys_pinned(const char *root, const char *host_label, char out[SS_FINGERPRINT_MAX]);

/* What is known of site's host keys without connecting (sitespool check):
 * the fingerprint pinned in advance for all its servers, and the newest one
 * a server at host_label offered without it being pinned ("" where none). */
int ss_hostkeys_pending(ss_db *db, const char *site, const char *host_label,
                        char advance[SS_FINGERPRINT_MAX], char offered[SS_FINGERPRINT_MAX],
                        ss_error *e);

/* True for "SHA256:" followed by 43 base64 characters (ssh-keygen -l). */
bool ss_fingerprint_valid(const char *fp);

#endif
