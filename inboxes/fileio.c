/*
 * fileio.c - careful file access for hostile spool directories.
 *
 * See fileio.h for the security stance.  Diagnostics name the file and the
 * system error; callers add context (which inbox, which peer).
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool ss_name_is_temporary(const char *name)
{
    size_t len = strlen(name);
    return name[0] == '.' || (len >= 4 && strcmp(name + len - 4, ".tmp") == 0);
}

int ss_open_regular(int dirfd, const char *name, uint64_t max_bytes, struct stat *st, ss_error *e)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ELOOP)
            return ss_err(e, SS_E_NOTREG, "%s is a symbolic link; refusing to follow it", name);
        return ss_err_sys(e, "cannot open %s", name);
    }
    struct stat local;
    if (!st) st = &local;
    if (fstat(fd, st) != 0) {
        ss_err_sys(e, "cannot stat %s", name);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return ss_err(e, SS_E_NOTREG, "%s is not a regular file", name);
    }
    /* Postfix's safe_open rule: a second link could be a file outside the
     * inbox, made readable (or its mode changeable) through this name. */
    if (st->st_nlink != 1) {
        close(fd);
        return ss_err(e, SS_E_NOTREG, "%s has %lu hard links; refusing to read it", name,
                      (unsigned long)st->st_nlink);
    }
    if (max_bytes && (uint64_t)st->st_size > max_bytes) {
        close(fd);
        return ss_err(e, SS_E_TOOBIG, "%s is %lld bytes, more than the limit of %llu", name,
                      (long long)st->st_size, (unsigned long long)max_bytes);
    }
    /* O_NONBLOCK only kept a fifo from blocking the open; regular files
     * ignore it, so there is nothing to undo. */
    return fd;
}

int ss_read_small_file(int dirfd, const char *name, size_t max_bytes, char **out, size_t *out_len,
                       ss_error *e)
{
    struct stat st;
    int fd = ss_open_regular(dirfd, name, max_bytes, &st, e);
    if (fd < 0) return -1;
    size_t cap = (size_t)st.st_size;
    char *buf = malloc(cap + 2);
    if (!buf) {
        close(fd);
        return ss_err(e, SS_E_NOMEM, "out of memory reading %s", name);
    }
    /* Read one byte beyond the stat size to notice a file growing under us. */
    ssize_t n = ss_read_full(fd, buf, cap + 1, e);
    close(fd);
    if (n < 0) {
        free(buf);
        return -1;
    }
    if ((size_t)n > cap) {
        free(buf);
        return ss_err(e, SS_E_TOOBIG, "%s grew while it was read", name);
    }
    buf[n] = '\0';
    *out = buf;
    if (out_len) *out_len = (size_t)n;
    return 0;
}

int ss_write_all(int fd, const void *buf, size_t len, ss_error *e)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return ss_err_sys(e, "write failed");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t ss_read_full(int fd, void *buf, size_t len, ss_error *e)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            ss_err_sys(e, "read failed");
            return -1;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int ss_fsync_dirfd(int dirfd, ss_error *e)
{
    if (fsync(dirfd) != 0 && errno != EINVAL) return ss_err_sys(e, "cannot fsync directory");
    return 0;
}

int ss_open_dir(const char *path, ss_error *e)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return ss_err_sys(e, "cannot open directory %s", path);
    return fd;
}

int ss_open_dir_follow(const char *path, ss_error *e)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ss_err_sys(e, "cannot open directory %s", path);
    return fd;
}

int ss_fsync_dir(const char *path, ss_error *e)
{
    int fd = ss_open_dir(path, e);
    if (fd < 0) return -1;
    int rc = ss_fsync_dirfd(fd, e);
    close(fd);
    return rc;
}

int ss_mkdirs(const char *path, mode_t mode, ss_error *e)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ss_err(e, SS_E_TOOBIG, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return ss_err_sys(e, "cannot create directory %s", buf);
            *p = saved;
            if (saved == '\0') break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return ss_err(e, SS_E_IO, "%s exists and is not a directory", path);
    return 0;
}

int ss_atomic_begin(ss_atomic *a, int dirfd, const char *name, mode_t mode, ss_error *e)
{
    a->dirfd = dirfd;
    a->fd = -1;
    if (snprintf(a->final, sizeof a->final, "%s", name) >= (int)sizeof a->final)
        return ss_err(e, SS_E_TOOBIG, "file name too long: %s", name);
    for (int attempt = 0; attempt < 8; attempt++) {
        if (snprintf(a->tmp, sizeof a->tmp, ".%.200s.%08x.tmp", name, randombytes_random()) >=
            (int)sizeof a->tmp)
            return ss_err(e, SS_E_TOOBIG, "file name too long: %s", name);
        a->fd = openat(dirfd, a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (a->fd >= 0) return 0;
        if (errno != EEXIST) break;
    }
    ss_err_sys(e, "cannot create temporary file for %s", name);
    a->tmp[0] = '\0'; /* nothing of ours to remove on abort */
    return -1;
}

void ss_atomic_abort(ss_atomic *a)
{
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    if (a->tmp[0]) {
        (void)unlinkat(a->dirfd, a->tmp, 0);
        a->tmp[0] = '\0';
    }
}

/* oldname and newname are links of one file: an earlier link-and-unlink
 * (below) was interrupted between its two steps. */
static bool same_file(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
    struct stat a, b;
    return fstatat(olddirfd, oldname, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
           fstatat(newdirfd, newname, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* The target exists: finished already if it is the very same file (the
 * old name is then only the leftover second link), else refused. */
static int target_exists(int olddirfd, const char *oldname, int newdirfd, const char *newname,
                         ss_error *e)
{
    if (same_file(olddirfd, oldname, newdirfd, newname)) {
        if (unlinkat(olddirfd, oldname, 0) != 0)
            return ss_err_sys(e, "cannot remove the second link %s", oldname);
        return 0;
    }
    return ss_err(e, SS_E_EXISTS, "%s already exists; not overwriting it", newname);
}

int ss_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname,
                        ss_error *e)
{
    if (renameat2(olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE) == 0) return 0;
    if (errno == EEXIST) return target_exists(olddirfd, oldname, newdirfd, newname, e);
    if (errno != EINVAL && errno != ENOSYS)
        return ss_err_sys(e, "cannot rename %s to %s", oldname, newname);
    /* Filesystems without RENAME_NOREPLACE: link() refuses existing names too. */
    if (linkat(olddirfd, oldname, newdirfd, newname, 0) != 0) {
        if (errno == EEXIST) return target_exists(olddirfd, oldname, newdirfd, newname, e);
        return ss_err_sys(e, "cannot link %s to %s", oldname, newname);
    }
    if (unlinkat(olddirfd, oldname, 0) != 0)
        return ss_err_sys(e, "linked %s as %s but cannot remove the old name", oldname, newname);
    return 0;
}

int ss_atomic_begin_named(ss_atomic *a, int dirfd, const char *name, const char *tmp_name,
                          mode_t mode, ss_error *e)
{
    a->dirfd = dirfd;
    a->fd = -1;
    if (snprintf(a->final, sizeof a->final, "%s", name) >= (int)sizeof a->final ||
        snprintf(a->tmp, sizeof a->tmp, "%s", tmp_name) >= (int)sizeof a->tmp)
        return ss_err(e, SS_E_TOOBIG, "file name too long: %s", name);
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    a->fd = openat(dirfd, a->tmp, flags, mode);
    if (a->fd < 0 && errno == EEXIST && unlinkat(dirfd, a->tmp, 0) == 0)
        a->fd = openat(dirfd, a->tmp, flags, mode); /* a stale one from a crash */
    if (a->fd < 0) {
        a->tmp[0] = '\0';
        return ss_err_sys(e, "cannot create temporary file for %s", name);
    }
    return 0;
}

int ss_atomic_close(ss_atomic *a, bool sync, ss_error *e)
{
    if (sync && fsync(a->fd) != 0) {
        ss_err_sys(e, "cannot fsync %s", a->final);
        ss_atomic_abort(a);
        return -1;
    }
    int rc = close(a->fd);
    a->fd = -1;
    if (rc != 0) {
        ss_err_sys(e, "cannot close %s", a->final);
        ss_atomic_abort(a);
        return -1;
    }
    return 0;
}

int ss_atomic_rename(ss_atomic *a, unsigned flags, ss_error *e)
{
    int rc;
    if (flags & SS_ATOMIC_NOREPLACE) {
        rc = ss_rename_noreplace(a->dirfd, a->tmp, a->dirfd, a->final, e);
    } else {
        rc = renameat(a->dirfd, a->tmp, a->dirfd, a->final);
        if (rc != 0) ss_err_sys(e, "cannot rename into %s", a->final);
    }
    if (rc != 0) {
        if (e && e->code != SS_E_EXISTS) ss_atomic_abort(a);
        return -1;
    }
    a->tmp[0] = '\0';
    if ((flags & SS_ATOMIC_SYNC_DIR) && ss_fsync_dirfd(a->dirfd, e) != 0) return -1;
    return 0;
}

int ss_atomic_commit(ss_atomic *a, unsigned flags, ss_error *e)
{
    if (ss_atomic_close(a, true, e) != 0) return -1;
    if (ss_atomic_rename(a, flags, e) != 0) {
        ss_atomic_abort(a);
        return -1;
    }
    return 0;
}

int ss_sync_fs(int fd, ss_error *e)
{
    if (syncfs(fd) != 0) return ss_err_sys(e, "cannot flush the filesystem (syncfs)");
    return 0;
}

int64_t ss_copy_fd(int in_fd, int out_fd, ss_error *e)
{
    int64_t total = 0;
    for (;;) {
        ssize_t n = copy_file_range(in_fd, NULL, out_fd, NULL, 1 << 30, 0);
        if (n > 0) {
            total += n;
            continue;
        }
        if (n == 0) return total;
        if (errno == EINTR) continue;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return ss_err_sys(e, "copy failed");
        break; /* fall back to read/write */
    }
    char *buf = malloc(128 * 1024);
    if (!buf) return ss_err(e, SS_E_NOMEM, "out of memory");
    ssize_t n;
    while ((n = ss_read_full(in_fd, buf, 128 * 1024, e)) > 0) {
        if (ss_write_all(out_fd, buf, (size_t)n, e) != 0) {
            free(buf);
            return -1;
        }
        total += n;
    }
    free(buf);
    return n < 0 ? -1 : total;
}

int ss_write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                         unsigned flags, ss_error *e)
{
    ss_atomic a;
    if (ss_atomic_begin(&a, dirfd, name, mode, e) != 0) return -1;
    if (ss_write_all(a.fd, data, len, e) != 0) {
        ss_atomic_abort(&a);
        return -1;
    }
    return ss_atomic_commit(&a, flags, e);
}
