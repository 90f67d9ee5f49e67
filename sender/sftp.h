/*
 * sftp.h - a pipelined SFTP (version 3) client over a libssh channel, just
 * what delivery needs: create files exclusively, write them, fsync and
 * close them, rename without replacing, look names up, remove them.
 *
 * Why not libssh's own sftp_*: in libssh 0.10 (Debian 12) every call waits
 * for its reply, so one small file costs five round trips (open, write,
 * fsync, close, rename) and a flush of 500 pairs over a 50 ms link takes
 * minutes.  Here requests are sent back to back - the writes, fsync and
 * close of a file in one go, many files at once - and replies are matched
 * by id, so a batch costs a handful of round trips whatever its size.
 * libssh still does everything below the channel: key exchange, host key,
 * authentication, encryption, flow control.
 *
 * Security stance: the server's replies are parsed strictly (lengths
 * checked against the packet, unknown ids and types end the session); a
 * handle is at most 256 bytes (the protocol's limit); files are created
 * with SSH_FXF_EXCL, so an existing name is never overwritten or followed.
 *
 * Diagnostics: every failure names the operation, the remote path and the
 * server's status code and message.  Known limits: protocol version 3 only
 * (what OpenSSH speaks); no reads.
 */
#ifndef SS_SFTP_H
#define SS_SFTP_H

#include "../inboxes/error.h"

#include <libssh/libssh.h>
#include <stdbool.h>
#include <stdint.h>

/* Status codes of the protocol, and two of ours. */
enum {
    SS_FX_OK = 0,
    SS_FX_NO_SUCH_FILE = 2,
    SS_FX_PERMISSION_DENIED = 3,
    SS_FX_FAILURE = 4,
    SS_FX_PENDING = -1, /* not answered (the session ended first) */
};

typedef struct ss_sftp ss_sftp;

/* Starts the sftp subsystem on an authenticated session; replies are
 * awaited at most timeout_ms. */
int ss_sftp_start(ssh_session session, int timeout_ms, ss_sftp **out, ss_error *e);
void ss_sftp_end(ss_sftp *c);
/* The server offers fsync@openssh.com (files and folders reach its disk). */
bool ss_sftp_can_fsync(const ss_sftp *c);

/* One file to upload. */
typedef struct ss_sftp_put {
    int fd;           /* local source, read from offset 0 */
    uint64_t size;    /* bytes to send */
    const char *path; /* remote name to create (must not exist) */
    /* results */
    bool created; /* the remote file exists now (remove it if abandoned) */
    bool done;    /* written, fsynced (when offered) and closed */
    int status;   /* first non-OK status, SS_FX_OK if none */
    char error[200];
    /* private to sftp.c */
    int phase;
    char handle[256];
    uint32_t handle_len;
    uint64_t sent;
    unsigned acks_due;
} ss_sftp_put;

/* Uploads files, pipelined.  0 when every one is done; otherwise -1 and e
 * names the first failure (the session may still be usable: check
 * ss_sftp_alive). */
int ss_sftp_put_files(ss_sftp *c, ss_sftp_put *files, size_t n, ss_error *e);

/* One name-level request: rename (from -> to, never replacing), remove
 * (from), lstat (from). */
typedef struct ss_sftp_op {
    const char *from, *to;
    int status;    /* SS_FX_OK, an SSH_FX code, or SS_FX_PENDING */
    bool exists;   /* lstat: the name exists */
    uint64_t size; /* lstat: its size when it does */
    char error[200];
} ss_sftp_op;

enum ss_sftp_opkind { SS_SFTP_RENAME, SS_SFTP_REMOVE, SS_SFTP_LSTAT };
/* Runs n requests of one kind, pipelined; each gets its own status (lstat
 * of a missing name is OK with exists false).  -1 only when the session
 * failed (e says why). */
int ss_sftp_ops(ss_sftp *c, enum ss_sftp_opkind kind, ss_sftp_op *ops, size_t n, ss_error *e);

/* Opens the remote folder and fsyncs it (fsync@openssh.com on a folder's
 * handle, kept open for the session), so renames inside it are durable.
 * 0, or -1 with e. */
int ss_sftp_sync_dir(ss_sftp *c, const char *path, ss_error *e);

/* False once the channel or the session failed. */
bool ss_sftp_alive(const ss_sftp *c);

#endif
