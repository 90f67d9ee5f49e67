/*
 * keys.c - key pairs and minisign key files.  See keys.h.
 *
 * Diagnostics: parse errors say which line and what was expected; the
 * permission refusal says which mode was found and the chmod that fixes it.
 */
#include "keys.h"
#include "../inboxes/fileio.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PK_BLOB (2 + SS_KEYID_BYTES + SS_PK_BYTES)
#define SK_BLOB (2 + 2 + 2 + 32 + 8 + 8 + SS_KEYID_BYTES + SS_SK_BYTES + 32)
#define UNTRUSTED_PREFIX "untrusted comment: "

void ss_keyid_hex(const unsigned char keyid[SS_KEYID_BYTES], char out[SS_KEYID_HEX + 1])
{
    static const char hex[] = "0123456789ABCDEF";
    for (int i = 0; i < SS_KEYID_BYTES; i++) {
        unsigned char b = keyid[SS_KEYID_BYTES - 1 - i];
        out[2 * i] = hex[b >> 4];
        out[2 * i + 1] = hex[b & 15];
    }
    out[SS_KEYID_HEX] = '\0';
}

/* minisign prints key ids with "%" PRIX64, so ids whose top digit is zero
 * appear shorter (about one key in sixteen); 1-16 hex digits are accepted,
 * in either case, as the number they denote. */
int ss_keyid_parse(const char *hex, unsigned char keyid[SS_KEYID_BYTES])
{
    size_t len = strlen(hex);
    if (len == 0 || len > SS_KEYID_HEX) return -1;
    char padded[SS_KEYID_HEX + 1];
    memset(padded, '0', SS_KEYID_HEX - len);
    memcpy(padded + SS_KEYID_HEX - len, hex, len + 1);
    unsigned char be[SS_KEYID_BYTES];
    size_t bin_len;
    if (sodium_hex2bin(be, sizeof be, padded, SS_KEYID_HEX, NULL, &bin_len, NULL) != 0 ||
        bin_len != SS_KEYID_BYTES)
        return -1;
    for (int i = 0; i < SS_KEYID_BYTES; i++)
        keyid[i] = be[SS_KEYID_BYTES - 1 - i];
    return 0;
}

int ss_keyid_canonical(const char *hex, char out[SS_KEYID_HEX + 1])
{
    unsigned char keyid[SS_KEYID_BYTES];
    if (ss_keyid_parse(hex, keyid) != 0) return -1;
    ss_keyid_hex(keyid, out);
    return 0;
}

ss_seckey *ss_seckey_new(void)
{
    ss_seckey *sk = sodium_malloc(sizeof *sk);
    if (sk) sodium_memzero(sk, sizeof *sk);
    return sk;
}

void ss_seckey_free(ss_seckey *sk)
{
    if (sk) sodium_free(sk); /* wipes before releasing */
}

void ss_seckey_public(const ss_seckey *sk, ss_pubkey *pk)
{
    memcpy(pk->keyid, sk->keyid, SS_KEYID_BYTES);
    crypto_sign_ed25519_sk_to_pk(pk->pk, sk->sk);
}

int ss_keypair_generate(ss_pubkey *pk, ss_seckey **out, ss_error *e)
{
    ss_seckey *sk = ss_seckey_new();
    if (!sk) return ss_err(e, SS_E_NOMEM, "cannot allocate secure memory for a secret key");
    randombytes_buf(sk->keyid, sizeof sk->keyid);
    crypto_sign_keypair(pk->pk, sk->sk);
    memcpy(pk->keyid, sk->keyid, SS_KEYID_BYTES);
    *out = sk;
    return 0;
}

int ss_pubkey_format(const ss_pubkey *pk, const char *comment, char *out, size_t len)
{
    unsigned char blob[PK_BLOB];
    char b64[sodium_base64_ENCODED_LEN(PK_BLOB, sodium_base64_VARIANT_ORIGINAL)];
    memcpy(blob, "Ed", 2);
    memcpy(blob + 2, pk->keyid, SS_KEYID_BYTES);
    memcpy(blob + 2 + SS_KEYID_BYTES, pk->pk, SS_PK_BYTES);
    sodium_bin2base64(b64, sizeof b64, blob, sizeof blob, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(out, len, UNTRUSTED_PREFIX "%s\n%s\n", comment, b64);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

/* Splits off the next line ("\n" or "\r\n" terminated, or the rest). */
static const char *next_line(const char **cursor, const char *end, size_t *line_len)
{
    const char *start = *cursor;
    if (start >= end) return NULL;
    const char *nl = memchr(start, '\n', (size_t)(end - start));
    const char *stop = nl ? nl : end;
    *line_len = (size_t)(stop - start);
    if (*line_len && start[*line_len - 1] == '\r') (*line_len)--;
    *cursor = nl ? nl + 1 : end;
    return start;
}

static int decode_b64_exact(const char *line, size_t len, unsigned char *out, size_t want,
                            const char *what, ss_error *e)
{
    size_t got;
    const char *b64_end;
    if (sodium_base642bin(out, want, line, len, NULL, &got, &b64_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        b64_end != line + len)
        return ss_err(e, SS_E_BASE64, "the %s line is not valid base64 of %zu bytes", what, want);
    if (got != want)
        return ss_err(e, SS_E_TRUNCATED, "the %s line decodes to %zu bytes instead of %zu", what,
                      got, want);
    return 0;
}

int ss_pubkey_parse(const char *text, size_t len, ss_pubkey *pk, char *comment_out,
                    size_t comment_len, ss_error *e)
{
    const char *cursor = text, *end = text + len, *line;
    size_t line_len;
    line = next_line(&cursor, end, &line_len);
    if (!line || line_len < strlen(UNTRUSTED_PREFIX) ||
        memcmp(line, UNTRUSTED_PREFIX, strlen(UNTRUSTED_PREFIX)) != 0)
        return ss_err(e, SS_E_FORMAT,
                      "not a public key file: the first line must start with '" UNTRUSTED_PREFIX
                      "'");
    if (line_len - strlen(UNTRUSTED_PREFIX) > SS_COMMENT_MAX)
        return ss_err(e, SS_E_COMMENT, "the public key comment is longer than %d bytes",
                      SS_COMMENT_MAX);
    /* The comment names the site and reaches logs, status messages and
     * terminals: no control characters (a CRLF line end is not one). */
    for (size_t i = strlen(UNTRUSTED_PREFIX); i < line_len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            return ss_err(e, SS_E_COMMENT,
                          "the public key comment holds the control character 0x%02x at "
                          "byte %zu; a key file's comment is one line of text",
                          (unsigned char)line[i], i - strlen(UNTRUSTED_PREFIX) + 1);
    if (comment_out)
        snprintf(comment_out, comment_len, "%.*s", (int)(line_len - strlen(UNTRUSTED_PREFIX)),
                 line + strlen(UNTRUSTED_PREFIX));
    line = next_line(&cursor, end, &line_len);
    if (!line) return ss_err(e, SS_E_TRUNCATED, "the public key file ends after its comment line");
    unsigned char blob[PK_BLOB];
    if (decode_b64_exact(line, line_len, blob, sizeof blob, "public key", e) != 0) return -1;
    if (memcmp(blob, "Ed", 2) != 0)
        return ss_err(e, SS_E_ALG, "unsupported public key algorithm (expected Ed25519 'Ed')");
    for (; cursor < end; cursor++)
        if (*cursor != '\n' && *cursor != '\r' && *cursor != ' ')
            return ss_err(e, SS_E_TRAILING, "unexpected data after the public key");
    memcpy(pk->keyid, blob + 2, SS_KEYID_BYTES);
    memcpy(pk->pk, blob + 2 + SS_KEYID_BYTES, SS_PK_BYTES);
    return 0;
}

int ss_pubkey_load(const char *path, ss_pubkey *pk, char *comment_out, size_t comment_len,
                   ss_error *e)
{
    char *text = NULL;
    size_t len;
    if (ss_read_small_file(AT_FDCWD, path, 4096, &text, &len, e) != 0) return -1;
    int rc = ss_pubkey_parse(text, len, pk, comment_out, comment_len, e);
    free(text);
    if (rc != 0) return ss_err(e, e->code, "%s: %s", path, e->msg);
    return 0;
}

static void seckey_chk(const unsigned char *blob, unsigned char chk[32])
{
    /* BLAKE2b-256 over sig_alg || keynum || sk, as minisign computes it. */
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, blob, 2);
    crypto_generichash_update(&st, blob + 54, SS_KEYID_BYTES + SS_SK_BYTES);
    crypto_generichash_final(&st, chk, 32);
}

int ss_seckey_save(const char *path, const ss_seckey *sk, ss_error *e)
{
    unsigned char *blob = sodium_malloc(SK_BLOB);
    char *text = sodium_malloc(512);
    int rc = -1;
    if (!blob || !text) {
        ss_err(e, SS_E_NOMEM, "cannot allocate secure memory");
        goto out;
    }
    sodium_memzero(blob, SK_BLOB);
    memcpy(blob, "Ed", 2);     /* signature algorithm */
    memcpy(blob + 4, "B2", 2); /* checksum algorithm; kdf "\0\0" = not encrypted */
    memcpy(blob + 54, sk->keyid, SS_KEYID_BYTES);
    memcpy(blob + 62, sk->sk, SS_SK_BYTES);
    seckey_chk(blob, blob + 126);
    int n = snprintf(text, 512, UNTRUSTED_PREFIX "sitespool secret key (unencrypted)\n");
    sodium_bin2base64(text + n, 512 - (size_t)n, blob, SK_BLOB, sodium_base64_VARIANT_ORIGINAL);
    strcat(text, "\n");
    char dir[PATH_MAX], base[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(base, sizeof base, "%s", path);
    int dirfd = ss_open_dir(dirname(dir), e);
    if (dirfd < 0) goto out;
    rc = ss_write_file_atomic(dirfd, basename(base), text, strlen(text), 0600,
                              SS_ATOMIC_NOREPLACE | SS_ATOMIC_SYNC_DIR, e);
    close(dirfd);
out:
    if (blob) sodium_free(blob);
    if (text) sodium_free(text);
    return rc;
}

static int seckey_parse(const char *text, size_t len, unsigned char *blob, ss_error *e)
{
    const char *cursor = text, *end = text + len, *line;
    size_t line_len;
    line = next_line(&cursor, end, &line_len);
    if (!line || line_len < strlen(UNTRUSTED_PREFIX) ||
        memcmp(line, UNTRUSTED_PREFIX, strlen(UNTRUSTED_PREFIX)) != 0)
        return ss_err(e, SS_E_FORMAT, "not a minisign secret key file");
    line = next_line(&cursor, end, &line_len);
    if (!line) return ss_err(e, SS_E_TRUNCATED, "the secret key file ends after its comment line");
    if (decode_b64_exact(line, line_len, blob, SK_BLOB, "secret key", e) != 0) return -1;
    if (memcmp(blob, "Ed", 2) != 0 || memcmp(blob + 4, "B2", 2) != 0)
        return ss_err(e, SS_E_ALG, "unsupported secret key algorithm");
    if (blob[2] != 0 || blob[3] != 0)
        return ss_err(e, SS_E_FORMAT,
                      "the secret key is password-encrypted; a daemon cannot "
                      "type a password. Make an unencrypted key (minisign -G -W) or let "
                      "'sitespool init' make one");
    unsigned char chk[32], zero[32] = {0};
    seckey_chk(blob, chk);
    /* minisign 0.11 leaves the checksum zero in unencrypted keys. */
    if (sodium_memcmp(chk, blob + 126, 32) != 0 && sodium_memcmp(zero, blob + 126, 32) != 0)
        return ss_err(e, SS_E_FORMAT, "the secret key checksum does not match (damaged file)");
    return 0;
}

int ss_seckey_load(const char *path, ss_seckey **out, ss_error *e)
{
    struct stat st;
    int fd = ss_open_regular(AT_FDCWD, path, 4096, &st, e);
    if (fd < 0) return ss_err(e, e->code, "cannot open secret key: %s", e->msg);
    if (st.st_mode & 077) {
        close(fd);
        return ss_err(e, SS_E_PERM,
                      "secret key %s has mode %04o: group or others can read it. "
                      "Refusing to use it; run 'chmod 600 %s' and consider the key "
                      "compromised if others had access",
                      path, (unsigned)(st.st_mode & 07777), path);
    }
    char *text = sodium_malloc(4097);
    unsigned char *blob = sodium_malloc(SK_BLOB);
    ss_seckey *sk = ss_seckey_new();
    int rc = -1;
    if (!text || !blob || !sk) {
        ss_err(e, SS_E_NOMEM, "cannot allocate secure memory");
        goto out;
    }
    ssize_t n = ss_read_full(fd, text, 4096, e);
    if (n < 0) goto out;
    if (seckey_parse(text, (size_t)n, blob, e) != 0) {
        ss_err(e, e->code, "%s: %s", path, e->msg);
        goto out;
    }
    memcpy(sk->keyid, blob + 54, SS_KEYID_BYTES);
    memcpy(sk->sk, blob + 62, SS_SK_BYTES);
    *out = sk;
    sk = NULL;
    rc = 0;
out:
    close(fd);
    if (text) sodium_free(text);
    if (blob) sodium_free(blob);
    ss_seckey_free(sk);
    return rc;
}
