/*
 * bench_limits.c - the machine limits the sitespool benchmarks compare
 * against, measured in the same run (tests/bench/run.sh prints both):
 *
 *   fsync-baseline DIR N SIZE  create + write + fsync + rename + fsync-dir,
 *                              one file at a time: files/s
 *   deflate-hash FILE LEVEL    zlib-deflate FILE in memory and BLAKE2b the
 *                              output: MB/s of input
 *   hash-inflate FILE          BLAKE2b + inflate a zlib FILE in memory: MB/s
 *                              of output
 *   write-fsync DIR BYTES      write BYTES of non-zero data in 256 KiB chunks
 *                              to a new file in DIR, fsync it, rename it and
 *                              fsync DIR: MB/s, the rate at which this disk
 *                              stores a large file durably
 *   verify N                   Ed25519 verifications of a 64-byte hash: /s
 *   latency RECEIVE INCOMING STAGE N
 *                              for each pair staged in STAGE (<id>.pck,
 *                              <id>.ins, <id>.name holding the delivered
 *                              name): rename the package then the
 *                              instruction into RECEIVE and time until the
 *                              file appears in INCOMING; prints p50 and p99
 *                              in milliseconds.
 * Not a test: it prints figures.
 */
#include "../../inboxes/codec.h"
#include "../../inboxes/fileio.h"
#include "../../keystore/sigfile.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    ss_error e = {0};
    if (ss_read_small_file(AT_FDCWD, path, (size_t)8 << 30, &buf, len, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    return (unsigned char *)buf;
}

static int fsync_baseline(const char *dir, int n, size_t size)
{
    int dfd = ss_open_dir(dir, NULL);
    char *data = calloc(1, size);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        char tmp[64], final[64];
        snprintf(tmp, sizeof tmp, ".f%d.tmp", i);
        snprintf(final, sizeof final, "f%d", i);
        int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, data, size) != (ssize_t)size || fsync(fd) != 0 || close(fd) != 0 ||
            renameat(dfd, tmp, dfd, final) != 0 || fsync(dfd) != 0) {
            perror("baseline");
            return 1;
        }
    }
    double dt = now_s() - t0;
    printf("%.1f\n", n / dt);
    free(data);
    close(dfd);
    return 0;
}

static int write_fsync(const char *dir, long long bytes)
{
    enum { CHUNK = 256 * 1024 };
    int dfd = ss_open_dir(dir, NULL);
    unsigned char *data = malloc(CHUNK);
    if (dfd < 0 || data == NULL || bytes < 0) {
        perror("write-fsync");
        return 1;
    }
    /* non-zero, and not one repeated byte: nothing below the file system
     * can make these blocks cheaper than a delivered payload's */
    randombytes_buf(data, CHUNK);
    for (size_t i = 0; i < CHUNK; i++)
        data[i] |= 1;
    double t0 = now_s();
    int fd = openat(dfd, ".big.tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror("write-fsync: create");
        return 1;
    }
    for (long long left = bytes; left > 0;) {
        size_t n = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t w = write(fd, data, n);
        if (w <= 0) {
            perror("write-fsync: write");
            return 1;
        }
        left -= w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || renameat(dfd, ".big.tmp", dfd, "big") != 0 ||
        fsync(dfd) != 0) {
        perror("write-fsync");
        return 1;
    }
    double dt = now_s() - t0;
    printf("%.1f\n", (double)bytes / dt / 1e6);
    free(data);
    close(dfd);
    return 0;
}

static int hash_sink(void *ctx, const void *buf, size_t len, ss_error *e)
{
    (void)e;
    ss_hash_update(ctx, buf, len);
    return 0;
}

static int deflate_hash(const char *path, int level)
{
    size_t len;
    unsigned char *in = slurp(path, &len), out[SS_HASH_BYTES];
    ss_deflater d;
    ss_hash h;
    ss_error e = {0};
    double t0 = now_s();
    ss_hash_init(&h);
    ss_deflater_init(&d, SS_ZIP_ZLIB, level, &e);
    for (size_t off = 0; off < len; off += 256 * 1024) {
        size_t n = len - off < 256 * 1024 ? len - off : 256 * 1024;
        ss_deflater_feed(&d, in + off, n, hash_sink, &h, &e);
    }
    ss_deflater_finish(&d, hash_sink, &h, &e);
    ss_hash_final(&h, out);
    double dt = now_s() - t0;
    printf("%.1f\n", (double)len / dt / 1e6);
    ss_deflater_free(&d);
    free(in);
    return 0;
}

static int count_sink(void *ctx, const void *buf, size_t len, ss_error *e)
{
    (void)e;
    (void)buf;
    *(size_t *)ctx += len;
    return 0;
}

static int hash_inflate(const char *path)
{
    size_t len, produced = 0;
    unsigned char *in = slurp(path, &len), out[SS_HASH_BYTES];
    ss_inflater f;
    ss_hash h;
    ss_error e = {0};
    double t0 = now_s();
    ss_hash_init(&h);
    ss_inflater_init(&f, SS_ZIP_ZLIB, UINT64_MAX, &e);
    for (size_t off = 0; off < len; off += 256 * 1024) {
        size_t n = len - off < 256 * 1024 ? len - off : 256 * 1024;
        ss_hash_update(&h, in + off, n);
        ss_inflater_feed(&f, in + off, n, count_sink, &produced, &e);
    }
    ss_hash_final(&h, out);
    double dt = now_s() - t0;
    printf("%.1f\n", (double)produced / dt / 1e6);
    ss_inflater_free(&f);
    free(in);
    return 0;
}

static int verify_rate(int n)
{
    unsigned char pk[32], sk[64], msg[64], sig[64];
    crypto_sign_keypair(pk, sk);
    randombytes_buf(msg, sizeof msg);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, sk);
    double t0 = now_s();
    for (int i = 0; i < n; i++)
        if (crypto_sign_verify_detached(sig, msg, sizeof msg, pk) != 0) return 1;
    printf("%.1f\n", n / (now_s() - t0));
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int latency(const char *receive, const char *incoming, const char *stage, int n)
{
    int ino = inotify_init1(IN_CLOEXEC);
    inotify_add_watch(ino, incoming, IN_MOVED_TO);
    DIR *d = opendir(stage);
    struct dirent *de;
    double *samples = calloc((size_t)n, sizeof *samples);
    int count = 0;
    while ((de = readdir(d)) != NULL && count < n) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".name") != 0) continue;
        char id[64], from[1024], to[1024], name_path[1024];
        snprintf(id, sizeof id, "%.*s", (int)(len - 5), de->d_name);
        snprintf(name_path, sizeof name_path, "%s/%s", stage, de->d_name);
        size_t nlen;
        char *want = (char *)slurp(name_path, &nlen);
        want[strcspn(want, "\n")] = '\0';
        snprintf(from, sizeof from, "%s/%s.pck", stage, id);
        snprintf(to, sizeof to, "%s/%s.pck", receive, id);
        rename(from, to);
        snprintf(from, sizeof from, "%s/%s.ins", stage, id);
        snprintf(to, sizeof to, "%s/%s.ins", receive, id);
        double t0 = now_s();
        rename(from, to);
        for (bool seen = false; !seen;) {
            struct pollfd p = {.fd = ino, .events = POLLIN};
            if (poll(&p, 1, 5000) <= 0) {
                fprintf(stderr, "timed out waiting for %s\n", want);
                return 1;
            }
            char buf[4096] __attribute__((aligned(8)));
            ssize_t r = read(ino, buf, sizeof buf);
            for (char *q = buf; q < buf + r;) {
                struct inotify_event *ev = (struct inotify_event *)q;
                if (ev->len && !strcmp(ev->name, want)) seen = true;
                q += sizeof *ev + ev->len;
            }
        }
        samples[count++] = (now_s() - t0) * 1000.0;
        free(want);
        usleep(20 * 1000); /* idle between pairs */
    }
    closedir(d);
    qsort(samples, (size_t)count, sizeof *samples, cmp_double);
    printf("%d %.3f %.3f\n", count, samples[count / 2], samples[(count * 99) / 100]);
    free(samples);
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0 || argc < 2) return 2;
    if (!strcmp(argv[1], "fsync-baseline") && argc == 5)
        return fsync_baseline(argv[2], atoi(argv[3]), (size_t)atol(argv[4]));
    if (!strcmp(argv[1], "deflate-hash") && argc == 4) return deflate_hash(argv[2], atoi(argv[3]));
    if (!strcmp(argv[1], "hash-inflate") && argc == 3) return hash_inflate(argv[2]);
    if (!strcmp(argv[1], "write-fsync") && argc == 4) return write_fsync(argv[2], atoll(argv[3]));
    if (!strcmp(argv[1], "verify") && argc == 3) return verify_rate(atoi(argv[2]));
    if (!strcmp(argv[1], "latency") && argc == 6)
        return latency(argv[2], argv[3], argv[4], atoi(argv[5]));
    fprintf(stderr, "usage: see the header of bench_limits.c\n");
    return 2;
}
