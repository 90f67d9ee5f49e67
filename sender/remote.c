/*
 * remote.c - connecting to an SFTP address.  See remote.h.
 */
#include "remote.h"
#include "../inboxes/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ss_remote_identity_path(const char *root, const ss_conf *conf, char *out, size_t len)
{
    int n = conf->sftp_identity[0] == '/' ? snprintf(out, len, "%s", conf->sftp_identity)
                                          : snprintf(out, len, "%s/%s", root, conf->sftp_identity);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The identity: a regular file of ours, 0600, no passphrase. */
static int load_identity(const char *root, const ss_conf *conf, ssh_key *key, ss_error *e)
{
    char path[PATH_MAX];
    if (ss_remote_identity_path(root, conf, path, sizeof path) != 0)
        return ss_err(e, SS_E_CONF, "the sftp_identity path is too long");
    struct stat st;
    if (lstat(path, &st) != 0)
        return ss_err_sys(e,
                          "cannot read the SSH identity %s (setting sftp_identity; 'sitespool peer "
                          "ssh-key' makes one)",
                          path);
    if (!S_ISREG(st.st_mode))
        return ss_err(e, SS_E_NOTREG, "the SSH identity %s is not a regular file", path);
    if ((st.st_mode & 077) != 0 || st.st_uid != geteuid())
        return ss_err(e, SS_E_PERM,
                      "the SSH identity %s has mode %04o or another owner; it must be 0600 and "
                      "owned by the user running sitespool (chmod 600 %s)",
                      path, (unsigned)(st.st_mode & 07777), path);
    if (ssh_pki_import_privkey_file(path, NULL, NULL, NULL, key) != SSH_OK)
        return ss_err(e, SS_E_FORMAT,
                      "cannot load the SSH identity %s: not an unencrypted private key "
                      "(a daemon cannot type a passphrase)",
                      path);
    return 0;
}

static int set_options(ssh_session s, const ss_address *a, const char *root, const ss_conf *conf,
                       ss_error *e)
{
    long timeout = (long)conf->sftp_timeout;
    int no = 0, yes = 1;
    unsigned port = a->port;
    if (ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no) != SSH_OK ||
        ssh_options_set(s, SSH_OPTIONS_HOST, a->host) != SSH_OK ||
        ssh_options_set(s, SSH_OPTIONS_PORT, &port) != SSH_OK ||
        ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &timeout) != SSH_OK ||
        ssh_options_set(s, SSH_OPTIONS_NODELAY, &yes) != SSH_OK ||
        (a->user[0] && ssh_options_set(s, SSH_OPTIONS_USER, a->user) != SSH_OK))
        return ss_err(e, SS_E_CONF, "cannot set up SSH for %s: %s", a->text, ssh_get_error(s));
    return ss_hostkeys_configure(root, s, e);
}

static int login(ssh_session s, const ss_address *a, const char *root, const ss_conf *conf,
                 ss_error *e)
{
    ssh_key key = NULL;
    if (load_identity(root, conf, &key, e) != 0) return -1;
    int rc = ssh_userauth_publickey(s, NULL, key);
    ssh_key_free(key);
    if (rc == SSH_AUTH_SUCCESS) return 0;
    if (rc == SSH_AUTH_ERROR)
        return ss_err(e, SS_E_IO, "SSH login to %s failed: %s", a->host_label, ssh_get_error(s));
    char user[64];
    const char *shown = a->user;
    if (!shown[0] && ssh_options_get(s, SSH_OPTIONS_USER, (char **)&shown) == SSH_OK) {
        snprintf(user, sizeof user, "%s", shown);
        ssh_string_free_char((char *)shown);
        shown = user;
    }
    return ss_err(e, SS_E_PERM,
                  "%s refused the SSH login of user %s with the site's identity: add its .pub "
                  "line to that user's authorized_keys there",
                  a->host_label, shown);
}

int ss_remote_open(ss_remote *r, const ss_address *a, const char *root, const ss_conf *conf,
                   ss_db *db, const char *site, ss_host_check *host, ss_error *e)
{
    memset(r, 0, sizeof *r);
    memset(host, 0, sizeof *host);
    host->verdict = SS_HOST_PINNED;
    r->session = ssh_new();
    if (!r->session) return ss_err(e, SS_E_NOMEM, "out of memory");
    int rc = set_options(r->session, a, root, conf, e);
    if (rc == 0 && ssh_connect(r->session) != SSH_OK)
        rc = ss_err(e, SS_E_IO, "cannot connect to %s: %s", a->host_label,
                    ssh_get_error(r->session));
    if (rc == 0) rc = ss_hostkeys_judge(root, db, site, r->session, a->host_label, host, e);
    if (rc == 0 && host->verdict == SS_HOST_UNKNOWN)
        rc = ss_err(e, SS_E_PERM, "host key %s of %s is not pinned", host->offered, a->host_label);
    if (rc == 0 && host->verdict == SS_HOST_CHANGED)
        rc = ss_err(e, SS_E_PERM, "host key of %s changed: offered %s, pinned %s", a->host_label,
                    host->offered, host->pinned);
    if (rc == 0) rc = login(r->session, a, root, conf, e);
    if (rc == 0) rc = ss_sftp_start(r->session, (int)conf->sftp_timeout * 1000, &r->sftp, e);
    if (rc != 0) ss_remote_close(r);
    return rc;
}

void ss_remote_close(ss_remote *r)
{
    ss_sftp_end(r->sftp);
    r->sftp = NULL;
    if (r->session) {
        if (ssh_is_connected(r->session)) ssh_disconnect(r->session);
        ssh_free(r->session);
        r->session = NULL;
    }
}

int ss_remote_make_identity(const char *path, const char *comment, char *pub_line, size_t len,
                            ss_error *e)
{
    if (access(path, F_OK) == 0)
        return ss_err(e, SS_E_EXISTS, "%s exists; remove it first to make a new one", path);
    ssh_key key = NULL;
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK)
        return ss_err(e, SS_E_IO, "cannot make an ed25519 key");
    mode_t old = umask(077);
    int rc = ssh_pki_export_privkey_file(key, NULL, NULL, NULL, path) == SSH_OK ? 0 : -1;
    umask(old);
    char *b64 = NULL;
    if (rc == 0) rc = ssh_pki_export_pubkey_base64(key, &b64) == SSH_OK ? 0 : -1;
    if (rc != 0) {
        ssh_key_free(key);
        (void)unlink(path);
        return ss_err(e, SS_E_IO, "cannot write the SSH identity %s", path);
    }
    snprintf(pub_line, len, "ssh-ed25519 %s %s", b64, comment);
    ssh_string_free_char(b64);
    ssh_key_free(key);
    (void)chmod(path, 0600);
    char pub[PATH_MAX + 8];
    snprintf(pub, sizeof pub, "%s.pub", path);
    int fd = open(pub, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return ss_err_sys(e, "cannot write %s", pub);
    rc = ss_write_all(fd, pub_line, strlen(pub_line), e) == 0 && ss_write_all(fd, "\n", 1, e) == 0
             ? 0
             : -1;
    if (rc == 0 && fsync(fd) != 0) rc = ss_err_sys(e, "cannot write %s", pub);
    close(fd);
    return rc;
}
