/*
 * sigfile.c - minisign hashed signatures: sign, parse, verify.  See sigfile.h.
 */
#include "sigfile.h"
#include "../inboxes/fileio.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UNTRUSTED_PREFIX "untrusted comment: "
#define TRUSTED_PREFIX "trusted comment: "
#define SIG_BLOB (2 + SS_KEYID_BYTES + crypto_sign_BYTES)
#define HASH_CHUNK (256 * 1024)

void ss_hash_init(ss_hash *h)
{
    crypto_generichash_init(h, NULL, 0, SS_HASH_BYTES);
}

void ss_hash_update(ss_hash *h, const void *buf, size_t len)
{
    crypto_generichash_update(h, buf, len);
}

void ss_hash_final(ss_hash *h, unsigned char out[SS_HASH_BYTES])
{
    crypto_generichash_final(h, out, SS_HASH_BYTES);
}

int ss_hash_fd(int fd, unsigned char out[SS_HASH_BYTES], uint64_t *bytes, ss_error *e)
{
    unsigned char *buf = malloc(HASH_CHUNK);
    if (!buf) return ss_err(e, SS_E_NOMEM, "out of memory");
    ss_hash h;
    ss_hash_init(&h);
    uint64_t total = 0;
    ssize_t n;
    while ((n = ss_read_full(fd, buf, HASH_CHUNK, e)) > 0) {
        ss_hash_update(&h, buf, (size_t)n);
        total += (uint64_t)n;
    }
    free(buf);
    if (n < 0) return -1;
    ss_hash_final(&h, out);
    if (bytes) *bytes = total;
    return 0;
}

static bool comment_printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return false;
    }
    return true;
}

int ss_sign_hash(const ss_seckey *sk, const unsigned char hash[SS_HASH_BYTES],
                 const char *trusted_comment, const char *untrusted_comment, char *out,
                 size_t out_len, ss_error *e)
{
    size_t tc_len = strlen(trusted_comment), uc_len = strlen(untrusted_comment);
    if (tc_len > SS_TRUSTED_COMMENT_MAX || !comment_printable(trusted_comment, tc_len))
        return ss_err(e, SS_E_COMMENT,
                      "the trusted comment is longer than %d bytes or holds "
                      "control characters",
                      SS_TRUSTED_COMMENT_MAX);
    if (uc_len > SS_COMMENT_MAX || !comment_printable(untrusted_comment, uc_len))
        return ss_err(e, SS_E_COMMENT, "the untrusted comment is too long or not printable");

    unsigned char blob[SIG_BLOB];
    memcpy(blob, "ED", 2);
    memcpy(blob + 2, sk->keyid, SS_KEYID_BYTES);
    crypto_sign_detached(blob + 2 + SS_KEYID_BYTES, NULL, hash, SS_HASH_BYTES, sk->sk);

    unsigned char *global_msg = malloc(crypto_sign_BYTES + tc_len);
    if (!global_msg) return ss_err(e, SS_E_NOMEM, "out of memory");
    memcpy(global_msg, blob + 2 + SS_KEYID_BYTES, crypto_sign_BYTES);
    memcpy(global_msg + crypto_sign_BYTES, trusted_comment, tc_len);
    unsigned char global_sig[crypto_sign_BYTES];
    crypto_sign_detached(global_sig, NULL, global_msg, crypto_sign_BYTES + tc_len, sk->sk);
    free(global_msg);

    char sig_b64[sodium_base64_ENCODED_LEN(SIG_BLOB, sodium_base64_VARIANT_ORIGINAL)];
    char gs_b64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(sig_b64, sizeof sig_b64, blob, sizeof blob, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(gs_b64, sizeof gs_b64, global_sig, sizeof global_sig,
                      sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(out, out_len, UNTRUSTED_PREFIX "%s\n%s\n" TRUSTED_PREFIX "%s\n%s\n",
                     untrusted_comment, sig_b64, trusted_comment, gs_b64);
    if (n < 0 || (size_t)n >= out_len)
        return ss_err(e, SS_E_TOOBIG, "signature text does not fit its buffer");
    return 0;
}

bool ss_sig_looks_signed(const char *text, size_t len)
{
    return len >= strlen(UNTRUSTED_PREFIX) &&
           memcmp(text, UNTRUSTED_PREFIX, strlen(UNTRUSTED_PREFIX)) == 0;
}

/* One line, which must end in "\n" (a "\r\n" is tolerated). */
static int take_line(const char **cursor, const char *end, const char **line, size_t *len,
                     const char *what, ss_error *e)
{
    if (*cursor >= end)
        return ss_err(e, SS_E_TRUNCATED, "the signature file ends before its %s line", what);
    const char *nl = memchr(*cursor, '\n', (size_t)(end - *cursor));
    if (!nl)
        return ss_err(e, SS_E_TRUNCATED,
                      "the %s line of the signature file is not complete "
                      "(no newline: truncated file?)",
                      what);
    *line = *cursor;
    *len = (size_t)(nl - *cursor);
    if (*len && (*line)[*len - 1] == '\r') (*len)--;
    *cursor = nl + 1;
    return 0;
}

static int take_b64(const char *line, size_t len, unsigned char *out, size_t want, const char *what,
                    ss_error *e)
{
    size_t got;
    const char *b64_end;
    if (len == 0) return ss_err(e, SS_E_TRUNCATED, "the %s line is empty", what);
    if (sodium_base642bin(out, want, line, len, NULL, &got, &b64_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        b64_end != line + len) {
        /* Too long decodes fail in libsodium too: tell the two apart. */
        if (len > sodium_base64_ENCODED_LEN(want, sodium_base64_VARIANT_ORIGINAL) - 1)
            return ss_err(e, SS_E_FORMAT, "the %s line is longer than a %zu-byte value", what,
                          want);
        return ss_err(e, SS_E_BASE64, "the %s line is not valid base64", what);
    }
    if (got != want)
        return ss_err(e, SS_E_TRUNCATED, "the %s line decodes to %zu bytes instead of %zu", what,
                      got, want);
    return 0;
}

static int take_comment(const char *line, size_t len, const char *prefix, size_t max, char *out,
                        const char *what, ss_error *e)
{
    size_t plen = strlen(prefix);
    if (len < plen || memcmp(line, prefix, plen) != 0)
        return ss_err(e, SS_E_FORMAT, "the %s line must start with '%s'", what, prefix);
    if (len - plen > max)
        return ss_err(e, SS_E_COMMENT, "the %s is longer than %zu bytes", what, max);
    if (!comment_printable(line + plen, len - plen))
        return ss_err(e, SS_E_COMMENT, "the %s holds control characters", what);
    memcpy(out, line + plen, len - plen);
    out[len - plen] = '\0';
    return 0;
}

int ss_sig_parse(const char *text, size_t len, ss_sig *sig, ss_error *e)
{
    const char *cursor = text, *end = text + len, *line = NULL;
    size_t line_len = 0;
    unsigned char blob[SIG_BLOB];
    if (memchr(text, '\0', len))
        return ss_err(e, SS_E_FORMAT, "the signature file holds NUL bytes");
    if (take_line(&cursor, end, &line, &line_len, "untrusted comment", e) != 0 ||
        take_comment(line, line_len, UNTRUSTED_PREFIX, SS_COMMENT_MAX, sig->untrusted_comment,
                     "untrusted comment", e) != 0)
        return -1;
    if (take_line(&cursor, end, &line, &line_len, "signature", e) != 0 ||
        take_b64(line, line_len, blob, sizeof blob, "signature", e) != 0)
        return -1;
    if (memcmp(blob, "Ed", 2) == 0)
        return ss_err(e, SS_E_ALG,
                      "legacy (non-prehashed 'Ed') signatures are not accepted; "
                      "sign with minisign 0.8 or later without -l");
    if (memcmp(blob, "ED", 2) != 0)
        return ss_err(e, SS_E_ALG, "unsupported signature algorithm 0x%02X%02X (expected 'ED')",
                      blob[0], blob[1]);
    memcpy(sig->keyid, blob + 2, SS_KEYID_BYTES);
    memcpy(sig->sig, blob + 2 + SS_KEYID_BYTES, crypto_sign_BYTES);
    if (take_line(&cursor, end, &line, &line_len, "trusted comment", e) != 0 ||
        take_comment(line, line_len, TRUSTED_PREFIX, SS_TRUSTED_COMMENT_MAX, sig->trusted_comment,
                     "trusted comment", e) != 0)
        return -1;
    if (take_line(&cursor, end, &line, &line_len, "global signature", e) != 0 ||
        take_b64(line, line_len, sig->global_sig, crypto_sign_BYTES, "global signature", e) != 0)
        return -1;
    if (cursor != end)
        return ss_err(e, SS_E_TRAILING, "%zu unexpected bytes follow the global signature",
                      (size_t)(end - cursor));
    return 0;
}

int ss_sig_verify_comment(const ss_sig *sig, const ss_pubkey *pk, ss_error *e)
{
    if (sodium_memcmp(sig->keyid, pk->keyid, SS_KEYID_BYTES) != 0) {
        char want[SS_KEYID_HEX + 1], got[SS_KEYID_HEX + 1];
        ss_keyid_hex(pk->keyid, want);
        ss_keyid_hex(sig->keyid, got);
        return ss_err(e, SS_E_KEYID, "signature key id %s does not match public key id %s", got,
                      want);
    }
    size_t tc_len = strlen(sig->trusted_comment);
    unsigned char *msg = malloc(crypto_sign_BYTES + tc_len);
    if (!msg) return ss_err(e, SS_E_NOMEM, "out of memory");
    memcpy(msg, sig->sig, crypto_sign_BYTES);
    memcpy(msg + crypto_sign_BYTES, sig->trusted_comment, tc_len);
    int rc = crypto_sign_verify_detached(sig->global_sig, msg, crypto_sign_BYTES + tc_len, pk->pk);
    free(msg);
    if (rc != 0)
        return ss_err(e, SS_E_BADGLOBAL,
                      "the trusted comment signature does not verify (the "
                      "instruction fields were altered or forged)");
    return 0;
}

int ss_sig_verify_package(const ss_sig *sig, const ss_pubkey *pk,
                          const unsigned char hash[SS_HASH_BYTES], ss_error *e)
{
    if (crypto_sign_verify_detached(sig->sig, hash, SS_HASH_BYTES, pk->pk) != 0)
        return ss_err(e, SS_E_BADSIG,
                      "the signature does not match the package (forged or "
                      "damaged in transit)");
    return 0;
}

int ss_sig_verify_hash(const ss_sig *sig, const ss_pubkey *pk,
                       const unsigned char hash[SS_HASH_BYTES], ss_error *e)
{
    /* Same order as minisign: the file signature, then the comment. */
    if (sodium_memcmp(sig->keyid, pk->keyid, SS_KEYID_BYTES) != 0)
        return ss_sig_verify_comment(sig, pk, e);
    if (ss_sig_verify_package(sig, pk, hash, e) != 0) return -1;
    return ss_sig_verify_comment(sig, pk, e);
}

int ss_sign_file(const ss_seckey *sk, const char *path, const char *sig_path,
                 const char *trusted_comment, const char *untrusted_comment, ss_error *e)
{
    int fd = ss_open_regular(AT_FDCWD, path, 0, NULL, e);
    if (fd < 0) return -1;
    unsigned char hash[SS_HASH_BYTES];
    int rc = ss_hash_fd(fd, hash, NULL, e);
    close(fd);
    if (rc != 0) return -1;
    char *text = malloc(SS_SIGFILE_MAX);
    if (!text) return ss_err(e, SS_E_NOMEM, "out of memory");
    rc = ss_sign_hash(sk, hash, trusted_comment, untrusted_comment, text, SS_SIGFILE_MAX, e);
    if (rc == 0) {
        char dir[PATH_MAX], base[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", sig_path);
        snprintf(base, sizeof base, "%s", sig_path);
        int dirfd = ss_open_dir(dirname(dir), e);
        rc = dirfd < 0 ? -1
                       : ss_write_file_atomic(dirfd, basename(base), text, strlen(text), 0644,
                                              SS_ATOMIC_SYNC_DIR, e);
        if (dirfd >= 0) close(dirfd);
    }
    free(text);
    return rc;
}

int ss_verify_file(const ss_pubkey *pk, const char *path, const char *sig_path, ss_sig *sig,
                   ss_error *e)
{
    char *text = NULL;
    size_t len;
    if (ss_read_small_file(AT_FDCWD, sig_path, SS_SIGFILE_MAX, &text, &len, e) != 0) return -1;
    int rc = ss_sig_parse(text, len, sig, e);
    free(text);
    if (rc != 0) return -1;
    int fd = ss_open_regular(AT_FDCWD, path, 0, NULL, e);
    if (fd < 0) return -1;
    unsigned char hash[SS_HASH_BYTES];
    rc = ss_hash_fd(fd, hash, NULL, e);
    close(fd);
    if (rc != 0) return -1;
    return ss_sig_verify_hash(sig, pk, hash, e);
}
