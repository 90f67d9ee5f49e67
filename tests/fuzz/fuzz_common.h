/*
 * fuzz_common.h - small helpers shared by the libFuzzer targets (see
 * README.md in this folder): a per-process scratch folder, whole-file
 * writes, and a check that reports and aborts (libFuzzer then saves the
 * input as crash-<sha1>).
 */
#ifndef SS_FUZZ_COMMON_H
#define SS_FUZZ_COMMON_H

#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An invariant of the code under test: report the broken one and abort. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "\n==FUZZ INVARIANT== %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char fuzz_scratch_path[512];

static int fuzz_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

__attribute__((unused)) static void fuzz_rm_rf(const char *path)
{
    nftw(path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void fuzz_scratch_remove(void)
{
    if (fuzz_scratch_path[0]) fuzz_rm_rf(fuzz_scratch_path);
}

/* A fresh folder for this process, removed at exit: under $SS_FUZZ_TMPDIR,
 * else /dev/shm (tmpfs: fsync is free there), else $TMPDIR or /tmp. */
__attribute__((unused)) static const char *fuzz_scratch(const char *tag)
{
    if (fuzz_scratch_path[0]) return fuzz_scratch_path;
    const char *base = getenv("SS_FUZZ_TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(fuzz_scratch_path, sizeof fuzz_scratch_path, "%s/ssfuzz-%s-XXXXXX", base, tag);
    if (!mkdtemp(fuzz_scratch_path)) {
        perror(fuzz_scratch_path);
        abort();
    }
    atexit(fuzz_scratch_remove);
    return fuzz_scratch_path;
}

/* Writes exactly len bytes to path (mode 0644), replacing it. */
__attribute__((unused)) static void fuzz_write(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n <= 0) {
            perror(path);
            abort();
        }
        p += n;
        len -= (size_t)n;
    }
    close(fd);
}

/* data as a NUL-terminated heap string (a NUL inside ends it early, as
 * for every caller that holds C strings). */
__attribute__((unused)) static char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
