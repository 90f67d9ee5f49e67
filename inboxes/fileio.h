/*
 * fileio.h - careful file access for hostile spool directories.
 *
 * Security stance: every file a peer can write is opened with O_NOFOLLOW and
 * O_NONBLOCK and checked with fstat() to be a regular file within a size
 * limit before a single byte is read, so symlinks, fifos and devices never
 * make a reader follow, block or read unbounded.  Every file this program
 * makes visible goes tmp name -> write -> fsync -> rename -> fsync directory
 * (the Postfix/Maildir discipline); a crash leaves at worst a dot-named
 * temporary file that readers ignore.
 */
#ifndef SS_FILEIO_H
#define SS_FILEIO_H

#include "error.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Names that are work in progress: readers skip them. */
bool ss_name_is_temporary(const char *name);

/* Opens dirfd/name read-only, refusing symlinks, non-regular files, files
 * with more than one hard link (SS_E_NOTREG) and files larger than
 * max_bytes (0: no limit, SS_E_TOOBIG).  Fills *st when not NULL. */
int ss_open_regular(int dirfd, const char *name, uint64_t max_bytes, struct stat *st, ss_error *e);

/* Reads a whole small regular file (<= max_bytes) into a NUL-terminated
 * malloc'ed buffer. */
int ss_read_small_file(int dirfd, const char *name, size_t max_bytes, char **out, size_t *out_len,
                       ss_error *e);

int ss_write_all(int fd, const void *buf, size_t len, ss_error *e);
/* Reads up to len bytes, retrying on short reads; returns bytes read or -1. */
ssize_t ss_read_full(int fd, void *buf, size_t len, ss_error *e);

int ss_fsync_dirfd(int dirfd, ss_error *e);
int ss_fsync_dir(const char *path, ss_error *e);
/* mkdir -p with mode for the created components. */
int ss_mkdirs(const char *path, mode_t mode, ss_error *e);
/* Opens a directory (O_DIRECTORY|O_NOFOLLOW). */
int ss_open_dir(const char *path, ss_error *e);
/* The same through symbolic links on the way, for paths an administrator
 * configured (a peer's inbox behind a mount point's link). */
int ss_open_dir_follow(const char *path, ss_error *e);

enum {
    SS_ATOMIC_NOREPLACE = 1, /* fail with SS_E_EXISTS if the final name exists */
    SS_ATOMIC_SYNC_DIR = 2,  /* fsync the directory after the rename */
};

/* A file being written under a temporary dot-name in a directory. */
typedef struct ss_atomic {
    int dirfd;
    int fd;
    char tmp[256];
    char final[256];
} ss_atomic;

/* Creates ".<name>.<random>.tmp" in dirfd with O_EXCL and the given mode. */
int ss_atomic_begin(ss_atomic *a, int dirfd, const char *name, mode_t mode, ss_error *e);
/* fsync, close, rename to the final name (see flags).  On failure the
 * temporary file is removed. */
int ss_atomic_commit(ss_atomic *a, unsigned flags, ss_error *e);
/* Like ss_atomic_begin with a caller-chosen temporary name (replacing a
 * stale one), for writers that must find their temporary file after a crash. */
int ss_atomic_begin_named(ss_atomic *a, int dirfd, const char *name, const char *tmp_name,
                          mode_t mode, ss_error *e);
/* Batches: close without fsync, make many files durable with one
 * ss_sync_fs(), then publish each with ss_atomic_rename() and fsync the
 * directory once.  Data is durable before any name points at it. */
int ss_atomic_close(ss_atomic *a, bool sync, ss_error *e);
int ss_atomic_rename(ss_atomic *a, unsigned flags, ss_error *e);
/* syncfs() of the filesystem holding fd: one flush for a whole batch. */
int ss_sync_fs(int fd, ss_error *e);

/* Copies the rest of in_fd to out_fd;
 * returns the bytes copied or -1.  Uses copy_file_range where possible. */
int64_t ss_copy_fd(int in_fd, int out_fd, ss_error *e);

/* Closes and removes the temporary file; safe to call twice. */
void ss_atomic_abort(ss_atomic *a);

/* Convenience: writes data to dirfd/name atomically. */
int ss_write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                         unsigned flags, ss_error *e);

/* rename within or across directories without replacing an existing name;
 * falls back to link+unlink where renameat2 is unsupported. */
int ss_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname,
                        ss_error *e);

#endif
