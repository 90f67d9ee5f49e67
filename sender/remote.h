/*
 * remote.h - a connection to a peer's SFTP address: SSH with the host key
 * judged against the site's pins (hostkeys.h), public-key login with the
 * site's identity file, and the pipelined SFTP client (sftp.h) on it.
 *
 * Security stance: no password, agent, or ~/.ssh/config is ever used; the
 * identity file (setting sftp_identity) must be a regular file of ours
 * with mode 0600 (as the site key), else nothing connects; a host key that
 * is not pinned ends the connection before authentication, so not even
 * the login name reaches an unverified server.
 */
#ifndef SS_REMOTE_H
#define SS_REMOTE_H

#include "../inboxes/site.h"
#include "address.h"
#include "hostkeys.h"
#include "sftp.h"

typedef struct ss_remote {
    ssh_session session;
    ss_sftp *sftp;
} ss_remote;

/* Connects to a (a remote address of site).  0 when ready; -1 with e
 * otherwise, and host->verdict says whether the host key was the reason
 * (SS_HOST_UNKNOWN, SS_HOST_CHANGED; SS_HOST_PINNED otherwise). */
int ss_remote_open(ss_remote *r, const ss_address *a, const char *root, const ss_conf *conf,
                   ss_db *db, const char *site, ss_host_check *host, ss_error *e);
void ss_remote_close(ss_remote *r);

/* The identity file named by the settings (absolute, or under root). */
int ss_remote_identity_path(const char *root, const ss_conf *conf, char *out, size_t len);

/* Makes a new ed25519 identity at path (mode 0600) and its .pub; the
 * public line (for the peer's authorized_keys) goes to pub_line. */
int ss_remote_make_identity(const char *path, const char *comment, char *pub_line, size_t len,
                            ss_error *e);

#endif
