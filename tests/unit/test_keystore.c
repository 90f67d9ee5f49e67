/*
 * test_keystore.c - CUnit suite for the keystore library and the logs it
 * writes through: minisign signature files (round trip and every malformed
 * input, each its own test, each checking the error code and that the
 * message names the problem), minisign key files (key id form checked
 * against stock minisign, parse errors, secret key permission and password
 * refusals), constant-memory signing of a 1 GiB file, the trace-format log
 * writer (line shape, control characters, rotation under concurrent
 * writers), status messages (catalogue, store, log, notify_command),
 * site.db (WAL, schema version, refusing a newer database) and the marker
 * by which trust changes wake a running despooler.
 *
 * Inputs are parsed from heap buffers of exactly their length, so the
 * sanitizer build catches any read past the end.
 */
#include "testutil.h"
#include "../../inboxes/log.h"
#include "../../keystore/sigfile.h"
#include "../../keystore/keyfile.h"
#include "../../keystore/ldapdir.h"
#include "../../keystore/links.h"
#include "../../inboxes/dirurl.h"
#include "../../keystore/trust.h"

#include <fcntl.h>
#include <sodium.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIG_BLOB_BYTES (2 + SS_KEYID_BYTES + crypto_sign_BYTES)

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static ss_seckey *make_key(ss_pubkey *pk)
{
    ss_seckey *sk = NULL;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_keypair_generate(pk, &sk, &e), 0);
    return sk;
}

static void hash_bytes(const void *data, size_t len, unsigned char out[SS_HASH_BYTES])
{
    ss_hash h;
    ss_hash_init(&h);
    ss_hash_update(&h, data, len);
    ss_hash_final(&h, out);
}

static const char payload[] = "replication data for site SS1\n";
static const char fields[] = "sitespool/1 id=0123456789abcdef0123456789abcdef from=PS1 to=SS1 "
                             "type=data dest=replmgr.box name=x.txt size=30 zip=zlib seq=1 "
                             "created=1 expires=2";

/* A valid signature text over payload with trusted comment tc (malloc'ed). */
static char *signed_text(const ss_seckey *sk, const char *tc)
{
    unsigned char hash[SS_HASH_BYTES];
    hash_bytes(payload, strlen(payload), hash);
    char *text = malloc(SS_SIGFILE_MAX);
    ss_error e = {0};
    int rc =
        ss_sign_hash(sk, hash, tc, "sitespool instruction PS1 -> SS1", text, SS_SIGFILE_MAX, &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return text;
}

/* Parses exactly len bytes from a heap copy with no terminator after it. */
static int parse_exact(const char *text, size_t len, ss_sig *sig, ss_error *e)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    int rc = ss_sig_parse(copy, len, sig, e);
    free(copy);
    return rc;
}

/* Asserts that parsing fails with code and a message containing needle. */
static void expect_parse_error(const char *text, size_t len, enum ss_errcode code,
                               const char *needle)
{
    ss_sig *sig = malloc(sizeof *sig);
    ss_error e = {0};
    int rc = parse_exact(text, len, sig, &e);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_EQUAL(e.code, code);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needle));
    if (rc != -1 || e.code != code || !strstr(e.msg, needle))
        fprintf(stderr, "\n    parse gave rc=%d code=%d msg='%s', wanted code=%d with '%s'\n", rc,
                (int)e.code, e.msg, (int)code, needle);
    free(sig);
}

/* Line index (0-based) of text, without its newline, malloc'ed. */
static char *line_of(const char *text, int index)
{
    const char *p = text;
    for (int i = 0; i < index; i++) {
        p = strchr(p, '\n');
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        p++;
    }
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    char *out = malloc(n + 1);
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

/* text with line index replaced by replacement (each line keeps its '\n'). */
static char *with_line(const char *text, int index, const char *replacement)
{
    size_t cap = strlen(text) + strlen(replacement) + 2;
    char *out = malloc(cap);
    size_t o = 0;
    const char *p = text;
    for (int i = 0; *p; i++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *src = i == index ? replacement : p;
        size_t sn = i == index ? strlen(replacement) : n;
        memcpy(out + o, src, sn);
        o += sn;
        if (nl) out[o++] = '\n';
        p = nl ? nl + 1 : p + n;
    }
    out[o] = '\0';
    return out;
}

/* The first n lines of text, each with its newline (malloc'ed). */
static char *first_lines(const char *text, int n)
{
    const char *p = text;
    for (int i = 0; i < n; i++)
        p = strchr(p, '\n') + 1;
    size_t len = (size_t)(p - text);
    char *out = malloc(len + 1);
    memcpy(out, text, len);
    out[len] = '\0';
    return out;
}

static char *base64_of(const unsigned char *bin, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    sodium_bin2base64(out, cap, bin, len, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

/* The decoded signature line (algorithm, key id, signature) of text. */
static void sig_blob_of(const char *text, unsigned char blob[SIG_BLOB_BYTES])
{
    char *line = line_of(text, 1);
    size_t got = 0;
    CU_ASSERT_EQUAL_FATAL(sodium_base642bin(blob, SIG_BLOB_BYTES, line, strlen(line), NULL, &got,
                                            NULL, sodium_base64_VARIANT_ORIGINAL),
                          0);
    CU_ASSERT_EQUAL_FATAL(got, SIG_BLOB_BYTES);
    free(line);
}

static int run_shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_shell(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------------------------------ */
/* signature files                                                     */
/* ------------------------------------------------------------------ */

static void test_sig_roundtrip(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    CU_ASSERT(ss_sig_looks_signed(text, strlen(text)));
    ss_sig *sig = malloc(sizeof *sig);
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(parse_exact(text, strlen(text), sig, &e), 0);
    CU_ASSERT_STRING_EQUAL(sig->trusted_comment, fields);
    CU_ASSERT_STRING_EQUAL(sig->untrusted_comment, "sitespool instruction PS1 -> SS1");
    CU_ASSERT(memcmp(sig->keyid, pk.keyid, SS_KEYID_BYTES) == 0);
    unsigned char hash[SS_HASH_BYTES];
    hash_bytes(payload, strlen(payload), hash);
    CU_ASSERT_EQUAL(ss_sig_verify_hash(sig, &pk, hash, &e), 0);
    CU_ASSERT_EQUAL(ss_sig_verify_comment(sig, &pk, &e), 0);
    CU_ASSERT_EQUAL(ss_sig_verify_package(sig, &pk, hash, &e), 0);
    /* The text is exactly four lines. */
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    CU_ASSERT_EQUAL(lines, 4);
    free(sig);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_crlf_line_ends_accepted(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    char *crlf = malloc(2 * strlen(text) + 1);
    size_t o = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '\n') crlf[o++] = '\r';
        crlf[o++] = *p;
    }
    ss_sig *sig = malloc(sizeof *sig);
    ss_error e = {0};
    CU_ASSERT_EQUAL(parse_exact(crlf, o, sig, &e), 0);
    unsigned char hash[SS_HASH_BYTES];
    hash_bytes(payload, strlen(payload), hash);
    CU_ASSERT_EQUAL(ss_sig_verify_hash(sig, &pk, hash, &e), 0);
    CU_ASSERT_STRING_EQUAL(sig->trusted_comment, fields);
    free(sig);
    free(crlf);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_truncated_each_line_missing(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    static const char *const missing[] = {"untrusted comment", "signature", "trusted comment",
                                          "global signature"};
    for (int keep = 0; keep < 4; keep++) {
        char *part = first_lines(text, keep);
        char needle[64];
        snprintf(needle, sizeof needle, "before its %s line", missing[keep]);
        expect_parse_error(part, strlen(part), SS_E_TRUNCATED, needle);
        free(part);
    }
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_truncated_no_final_newline(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    expect_parse_error(text, strlen(text) - 1, SS_E_TRUNCATED, "no newline");
    /* Cut in the middle of the last line too. */
    expect_parse_error(text, strlen(text) - 20, SS_E_TRUNCATED, "global signature");
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_truncated_inside_line(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    /* Cut inside the signature line: the rest of the file is missing. */
    char *line1 = line_of(text, 0);
    expect_parse_error(text, strlen(line1) + 1 + 30, SS_E_TRUNCATED, "signature line");
    free(line1);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_bad_base64_signature_line(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    char *line = line_of(text, 1);
    line[10] = '!';
    char *bad = with_line(text, 1, line);
    expect_parse_error(bad, strlen(bad), SS_E_BASE64, "signature line is not valid base64");
    /* A space inside the base64 is not tolerated either. */
    line[10] = ' ';
    free(bad);
    bad = with_line(text, 1, line);
    expect_parse_error(bad, strlen(bad), SS_E_BASE64, "signature line is not valid base64");
    free(bad);
    free(line);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_bad_base64_global_line(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    char *line = line_of(text, 3);
    line[5] = '*';
    char *bad = with_line(text, 3, line);
    expect_parse_error(bad, strlen(bad), SS_E_BASE64, "global signature line is not valid base64");
    free(bad);
    free(line);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_wrong_length_signature_line(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    unsigned char blob[SIG_BLOB_BYTES + 40];
    sig_blob_of(text, blob);
    memset(blob + SIG_BLOB_BYTES, 0x41, 40);

    char *short_b64 = base64_of(blob, SIG_BLOB_BYTES - 8);
    char *bad = with_line(text, 1, short_b64);
    expect_parse_error(bad, strlen(bad), SS_E_TRUNCATED, "decodes to 66 bytes instead of 74");
    free(bad);

    char *long_b64 = base64_of(blob, SIG_BLOB_BYTES + 40);
    bad = with_line(text, 1, long_b64);
    expect_parse_error(bad, strlen(bad), SS_E_FORMAT, "longer than a 74-byte value");
    free(bad);

    /* An empty signature line. */
    bad = with_line(text, 1, "");
    expect_parse_error(bad, strlen(bad), SS_E_TRUNCATED, "signature line is empty");
    free(bad);
    free(short_b64);
    free(long_b64);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_wrong_length_global_line(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    unsigned char bytes[100];
    memset(bytes, 0x5a, sizeof bytes);
    char *short_b64 = base64_of(bytes, 63);
    char *bad = with_line(text, 3, short_b64);
    expect_parse_error(bad, strlen(bad), SS_E_TRUNCATED,
                       "global signature line decodes to 63 bytes instead of 64");
    free(bad);
    char *long_b64 = base64_of(bytes, 100);
    bad = with_line(text, 3, long_b64);
    expect_parse_error(bad, strlen(bad), SS_E_FORMAT, "global signature line is longer");
    free(bad);
    free(short_b64);
    free(long_b64);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_legacy_algorithm_Ed(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    unsigned char blob[SIG_BLOB_BYTES];
    sig_blob_of(text, blob);
    memcpy(blob, "Ed", 2);
    char *b64 = base64_of(blob, sizeof blob);
    char *bad = with_line(text, 1, b64);
    expect_parse_error(bad, strlen(bad), SS_E_ALG, "legacy");
    free(bad);
    free(b64);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_unknown_algorithm(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    unsigned char blob[SIG_BLOB_BYTES];
    sig_blob_of(text, blob);
    memcpy(blob, "XY", 2);
    char *b64 = base64_of(blob, sizeof blob);
    char *bad = with_line(text, 1, b64);
    expect_parse_error(bad, strlen(bad), SS_E_ALG, "unsupported signature algorithm 0x5859");
    free(bad);
    free(b64);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_keyid_mismatch_names_both_ids(void)
{
    ss_pubkey pk_a, pk_b;
    ss_seckey *sk_a = make_key(&pk_a);
    ss_seckey *sk_b = make_key(&pk_b);
    char *text = signed_text(sk_a, fields);
    ss_sig *sig = malloc(sizeof *sig);
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(parse_exact(text, strlen(text), sig, &e), 0);
    unsigned char hash[SS_HASH_BYTES];
    hash_bytes(payload, strlen(payload), hash);
    char hex_a[SS_KEYID_HEX + 1], hex_b[SS_KEYID_HEX + 1];
    ss_keyid_hex(pk_a.keyid, hex_a);
    ss_keyid_hex(pk_b.keyid, hex_b);
    for (int i = 0; i < SS_KEYID_HEX; i++)
        CU_ASSERT(strchr("0123456789ABCDEF", hex_a[i]) != NULL);

    CU_ASSERT_EQUAL(ss_sig_verify_hash(sig, &pk_b, hash, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_KEYID);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, hex_a));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, hex_b));

    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_sig_verify_comment(sig, &pk_b, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_KEYID);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, hex_a));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, hex_b));

    /* Same key id but another key: the signature itself fails. */
    memcpy(pk_b.keyid, pk_a.keyid, SS_KEYID_BYTES);
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_sig_verify_hash(sig, &pk_b, hash, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADSIG);
    free(sig);
    free(text);
    ss_seckey_free(sk_a);
    ss_seckey_free(sk_b);
}

static void test_sig_trusted_comment_too_long(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    size_t n = strlen("trusted comment: ") + SS_TRUSTED_COMMENT_MAX + 1;
    char *line = malloc(n + 1);
    strcpy(line, "trusted comment: ");
    memset(line + strlen("trusted comment: "), 'a', SS_TRUSTED_COMMENT_MAX + 1);
    line[n] = '\0';
    char *bad = with_line(text, 2, line);
    expect_parse_error(bad, strlen(bad), SS_E_COMMENT, "longer than 8192 bytes");
    free(bad);
    free(line);

    /* The signer refuses it too. */
    char *long_tc = malloc(SS_TRUSTED_COMMENT_MAX + 2);
    memset(long_tc, 'b', SS_TRUSTED_COMMENT_MAX + 1);
    long_tc[SS_TRUSTED_COMMENT_MAX + 1] = '\0';
    unsigned char hash[SS_HASH_BYTES] = {0};
    char *out = malloc(SS_SIGFILE_MAX);
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_sign_hash(sk, hash, long_tc, "x", out, SS_SIGFILE_MAX, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_COMMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "8192"));
    free(out);
    free(long_tc);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_trusted_comment_at_limit_verifies(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *tc = malloc(SS_TRUSTED_COMMENT_MAX + 1);
    memset(tc, 'c', SS_TRUSTED_COMMENT_MAX);
    tc[SS_TRUSTED_COMMENT_MAX] = '\0';
    char *text = signed_text(sk, tc);
    ss_sig *sig = malloc(sizeof *sig);
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(parse_exact(text, strlen(text), sig, &e), 0);
    unsigned char hash[SS_HASH_BYTES];
    hash_bytes(payload, strlen(payload), hash);
    CU_ASSERT_EQUAL(ss_sig_verify_hash(sig, &pk, hash, &e), 0);
    CU_ASSERT_EQUAL(strlen(sig->trusted_comment), SS_TRUSTED_COMMENT_MAX);
    free(sig);
    free(text);
    free(tc);
    ss_seckey_free(sk);
}

static void test_sig_trusted_comment_control_chars(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    static const char *const hostile[] = {"trusted comment: sitespool/1 id=1\x01 from=PS1",
                                          "trusted comment: sitespool/1\x1b[2J from=PS1",
                                          "trusted comment: tab\there", "trusted comment: del\x7f",
                                          "trusted comment: cr\rinside"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        char *bad = with_line(text, 2, hostile[i]);
        expect_parse_error(bad, strlen(bad), SS_E_COMMENT, "trusted comment holds control");
        free(bad);
    }
    /* The signer refuses it too. */
    unsigned char hash[SS_HASH_BYTES] = {0};
    char *out = malloc(SS_SIGFILE_MAX);
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_sign_hash(sk, hash, "a\nb", "x", out, SS_SIGFILE_MAX, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_COMMENT);
    free(out);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_missing_untrusted_prefix(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    char *bad = with_line(text, 0, "untrusted: sitespool instruction");
    expect_parse_error(bad, strlen(bad), SS_E_FORMAT, "must start with 'untrusted comment: '");
    CU_ASSERT_FALSE(ss_sig_looks_signed(bad, strlen(bad)));
    free(bad);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_missing_trusted_prefix(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    char *bad = with_line(text, 2, fields); /* the fields without the prefix */
    expect_parse_error(bad, strlen(bad), SS_E_FORMAT, "must start with 'trusted comment: '");
    free(bad);
    bad = with_line(text, 2, "Trusted comment: x");
    expect_parse_error(bad, strlen(bad), SS_E_FORMAT, "must start with 'trusted comment: '");
    free(bad);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_trailing_garbage(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    static const char *const tails[] = {"extra\n", "\n", "x"};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        char *bad = malloc(strlen(text) + strlen(tails[i]) + 1);
        strcpy(bad, text);
        strcat(bad, tails[i]);
        char needle[64];
        snprintf(needle, sizeof needle, "%zu unexpected bytes follow the global signature",
                 strlen(tails[i]));
        expect_parse_error(bad, strlen(bad), SS_E_TRAILING, needle);
        free(bad);
    }
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_nul_bytes(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    size_t len = strlen(text);
    char *bad = malloc(len);
    memcpy(bad, text, len);
    char *tc = strstr(bad, "trusted comment: sitespool");
    CU_ASSERT_PTR_NOT_NULL_FATAL(tc);
    tc[20] = '\0';
    expect_parse_error(bad, len, SS_E_FORMAT, "NUL");
    /* And a NUL at the very end (after the last newline). */
    char *tail = malloc(len + 1);
    memcpy(tail, text, len);
    tail[len] = '\0';
    expect_parse_error(tail, len + 1, SS_E_FORMAT, "NUL");
    free(tail);
    free(bad);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_modified_trusted_comment(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    char *tc_line = line_of(text, 2);
    char *to = strstr(tc_line, "to=SS1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(to);
    to[5] = '2'; /* to=SS2 */
    char *forged = with_line(text, 2, tc_line);
    ss_sig *sig = malloc(sizeof *sig);
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(parse_exact(forged, strlen(forged), sig, &e), 0);
    unsigned char hash[SS_HASH_BYTES];
    hash_bytes(payload, strlen(payload), hash);
    CU_ASSERT_EQUAL(ss_sig_verify_hash(sig, &pk, hash, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADGLOBAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "trusted comment"));
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_sig_verify_comment(sig, &pk, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADGLOBAL);
    free(sig);
    free(forged);
    free(tc_line);
    free(text);
    ss_seckey_free(sk);
}

static void test_sig_modified_file(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    ss_sig *sig = malloc(sizeof *sig);
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(parse_exact(text, strlen(text), sig, &e), 0);
    char changed[sizeof payload];
    memcpy(changed, payload, sizeof payload);
    changed[0] ^= 1;
    unsigned char hash[SS_HASH_BYTES];
    hash_bytes(changed, strlen(changed), hash);
    CU_ASSERT_EQUAL(ss_sig_verify_hash(sig, &pk, hash, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADSIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "does not match the package"));
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_sig_verify_package(sig, &pk, hash, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADSIG);
    /* The comment alone still verifies: the fields were not touched. */
    CU_ASSERT_EQUAL(ss_sig_verify_comment(sig, &pk, &e), 0);

    /* Through the whole-file helpers, on disk. */
    char *dir = tu_tempdir("sigfile");
    char path[600], sig_path[600];
    snprintf(path, sizeof path, "%s/data.bin", dir);
    snprintf(sig_path, sizeof sig_path, "%s/data.bin.minisig", dir);
    tu_write(dir, "data.bin", payload, strlen(payload));
    CU_ASSERT_EQUAL(ss_sign_file(sk, path, sig_path, fields, "test", &e), 0);
    CU_ASSERT_EQUAL(ss_verify_file(&pk, path, sig_path, sig, &e), 0);
    CU_ASSERT_STRING_EQUAL(sig->trusted_comment, fields);
    tu_write(dir, "data.bin", changed, strlen(changed));
    CU_ASSERT_EQUAL(ss_verify_file(&pk, path, sig_path, sig, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADSIG);
    tu_rm_rf(dir);
    free(dir);
    free(sig);
    free(text);
    ss_seckey_free(sk);
}

/* Every prefix of a valid file, and a file with every single byte flipped,
 * is either refused with an error or (never) accepted; nothing crashes. */
static void test_sig_every_prefix_and_byte_flip_never_crashes(void)
{
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk);
    char *text = signed_text(sk, fields);
    size_t len = strlen(text);
    unsigned char hash[SS_HASH_BYTES];
    hash_bytes(payload, strlen(payload), hash);
    ss_sig *sig = malloc(sizeof *sig);
    int accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        ss_error e = {0};
        if (parse_exact(text, cut, sig, &e) == 0)
            accepted++;
        else
            CU_ASSERT(e.code != SS_OK && e.msg[0] != '\0');
    }
    CU_ASSERT_EQUAL(accepted, 0);
    char *copy = malloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, text, len);
        copy[i] ^= 0x20;
        ss_error e = {0};
        if (parse_exact(copy, len, sig, &e) == 0 && ss_sig_verify_hash(sig, &pk, hash, &e) == 0)
            accepted++;
    }
    /* Flipping case in the untrusted comment is the only harmless change. */
    char *uc = line_of(text, 0);
    CU_ASSERT(accepted <= (int)strlen(uc) - (int)strlen("untrusted comment: "));
    free(uc);
    free(copy);
    free(sig);
    free(text);
    ss_seckey_free(sk);
}

/* ------------------------------------------------------------------ */
/* key files                                                           */
/* ------------------------------------------------------------------ */

static void test_keyid_hex_matches_stock_minisign(void)
{
    char *dir = tu_tempdir("minisign");
    int rc = run_shell("cd '%s' && minisign -G -W -p m.pub -s m.key >/dev/null 2>&1", dir);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    char path[600];
    snprintf(path, sizeof path, "%s/m.pub", dir);
    ss_pubkey pk;
    char comment[256];
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_pubkey_load(path, &pk, comment, sizeof comment, &e), 0);
    const char *prefix = "minisign public key ";
    CU_ASSERT_EQUAL_FATAL(strncmp(comment, prefix, strlen(prefix)), 0);
    const char *minisign_id = comment + strlen(prefix);
    /* minisign prints the id unpadded ("%" PRIX64), so one key in sixteen
     * shows fewer than 16 digits; ours is the same number, zero-padded. */
    size_t printed = strlen(minisign_id);
    CU_ASSERT_FATAL(printed >= 1 && printed <= SS_KEYID_HEX);
    char expected[SS_KEYID_HEX + 1];
    memset(expected, '0', SS_KEYID_HEX - printed);
    memcpy(expected + SS_KEYID_HEX - printed, minisign_id, printed + 1);
    char hex[SS_KEYID_HEX + 1];
    ss_keyid_hex(pk.keyid, hex);
    CU_ASSERT_STRING_EQUAL(hex, expected);
    /* The printed form parses back to the same bytes. */
    unsigned char back[SS_KEYID_BYTES];
    CU_ASSERT_EQUAL(ss_keyid_parse(minisign_id, back), 0);
    CU_ASSERT(memcmp(back, pk.keyid, SS_KEYID_BYTES) == 0);

    /* minisign's unencrypted secret key loads and matches its public key. */
    snprintf(path, sizeof path, "%s/m.key", dir);
    ss_seckey *sk = NULL;
    CU_ASSERT_EQUAL_FATAL(ss_seckey_load(path, &sk, &e), 0);
    ss_pubkey derived;
    ss_seckey_public(sk, &derived);
    CU_ASSERT(memcmp(derived.keyid, pk.keyid, SS_KEYID_BYTES) == 0);
    CU_ASSERT(memcmp(derived.pk, pk.pk, SS_PK_BYTES) == 0);
    ss_seckey_free(sk);
    tu_rm_rf(dir);
    free(dir);
}

/* Key ids as minisign prints them (unpadded) and as administrators type
 * them (lower case) denote the same key; anything else is refused. */
static void test_keyid_parse_accepts_unpadded_and_lower_case(void)
{
    const unsigned char id[SS_KEYID_BYTES] = {0xE3, 0x4D, 0x4D, 0xE0, 0x69, 0x1F, 0xB1, 0x0F};
    unsigned char back[SS_KEYID_BYTES];
    CU_ASSERT_EQUAL(ss_keyid_parse("FB11F69E04D4DE3", back), 0);
    CU_ASSERT(memcmp(back, id, sizeof id) == 0);
    CU_ASSERT_EQUAL(ss_keyid_parse("0fb11f69e04d4de3", back), 0);
    CU_ASSERT(memcmp(back, id, sizeof id) == 0);
    char canon[SS_KEYID_HEX + 1];
    CU_ASSERT_EQUAL(ss_keyid_canonical("fb11f69e04d4de3", canon), 0);
    CU_ASSERT_STRING_EQUAL(canon, "0FB11F69E04D4DE3");
    CU_ASSERT_EQUAL(ss_keyid_canonical("1", canon), 0);
    CU_ASSERT_STRING_EQUAL(canon, "0000000000000001");
    CU_ASSERT_EQUAL(ss_keyid_parse("", back), -1);
    CU_ASSERT_EQUAL(ss_keyid_parse("10FB11F69E04D4DE3", back), -1); /* 17 digits */
    CU_ASSERT_EQUAL(ss_keyid_parse("0123456789ABCDEG", back), -1);
    CU_ASSERT_EQUAL(ss_keyid_parse("0123 456789ABCDE", back), -1);
    CU_ASSERT_EQUAL(ss_keyid_parse("-123456789ABCDEF", back), -1);
    CU_ASSERT_EQUAL(ss_keyid_canonical("XYZ", canon), -1);
}

static void test_keyid_hex_is_little_endian(void)
{
    const unsigned char id[SS_KEYID_BYTES] = {0xE0, 0xD5, 0x67, 0xB5, 0xBB, 0x75, 0x28, 0x5E};
    char hex[SS_KEYID_HEX + 1];
    ss_keyid_hex(id, hex);
    CU_ASSERT_STRING_EQUAL(hex, "5E2875BBB567D5E0");
}

static void test_pubkey_roundtrip_and_parse_errors(void)
{
    ss_pubkey pk, got;
    ss_seckey *sk = make_key(&pk);
    char text[512];
    CU_ASSERT_EQUAL_FATAL(
        ss_pubkey_format(&pk, "sitespool public key for site PS1", text, sizeof text), 0);
    char comment[128];
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_pubkey_parse(text, strlen(text), &got, comment, sizeof comment, &e), 0);
    CU_ASSERT(memcmp(&got, &pk, sizeof pk) == 0);
    CU_ASSERT_STRING_EQUAL(comment, "sitespool public key for site PS1");

    char *b64 = line_of(text, 1);
    char bad[512];

    /* Bad base64. */
    char *broken = strdup(b64);
    broken[7] = '#';
    snprintf(bad, sizeof bad, "untrusted comment: k\n%s\n", broken);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BASE64);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "public key line is not valid base64"));
    free(broken);

    /* Wrong algorithm: a signature-style "ED" blob. */
    unsigned char blob[2 + SS_KEYID_BYTES + SS_PK_BYTES];
    size_t n;
    CU_ASSERT_EQUAL_FATAL(sodium_base642bin(blob, sizeof blob, b64, strlen(b64), NULL, &n, NULL,
                                            sodium_base64_VARIANT_ORIGINAL),
                          0);
    memcpy(blob, "ED", 2);
    char *alg = base64_of(blob, sizeof blob);
    snprintf(bad, sizeof bad, "untrusted comment: k\n%s\n", alg);
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_ALG);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "algorithm"));
    free(alg);

    /* Trailing data after the key. */
    snprintf(bad, sizeof bad, "%sextra line\n", text);
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TRAILING);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "after the public key"));
    /* ...but a trailing blank line is what editors leave: accepted. */
    snprintf(bad, sizeof bad, "%s\n", text);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), 0);

    /* A comment with a control character (an escape sequence, a tab) is
     * refused, naming the byte; CRLF line ends are not one. */
    snprintf(bad, sizeof bad, "untrusted comment: site PS1\x1b[31m\n%s\n", b64);
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_COMMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "control character 0x1b at byte 9"));
    snprintf(bad, sizeof bad, "untrusted comment: a\tb\n%s\n", b64);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), -1);
    snprintf(bad, sizeof bad, "untrusted comment: sitespool public key for site PS1\r\n%s\r\n", b64);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, comment, sizeof comment, &e), 0);
    CU_ASSERT_STRING_EQUAL(comment, "sitespool public key for site PS1");

    /* Wrong length: the key without its last bytes. */
    char *shorter = base64_of(blob, sizeof blob - 4);
    snprintf(bad, sizeof bad, "untrusted comment: k\n%s\n", shorter);
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TRUNCATED);
    free(shorter);

    /* No comment line prefix; only a comment line. */
    snprintf(bad, sizeof bad, "%s\n", b64);
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "untrusted comment: "));
    snprintf(bad, sizeof bad, "untrusted comment: k\n");
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_pubkey_parse(bad, strlen(bad), &got, NULL, 0, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TRUNCATED);

    /* Loading from a file: the message names the file and keeps the cause. */
    char *dir = tu_tempdir("pubkey");
    char path[600];
    snprintf(path, sizeof path, "%s/junk.pub", dir);
    tu_write(dir, "junk.pub", "junk\n", 5);
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_pubkey_load(path, &got, NULL, 0, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "the first line must start with 'untrusted comment: '"));
    tu_rm_rf(dir);
    free(dir);
    free(b64);
    ss_seckey_free(sk);
}

static void test_seckey_permission_refused(void)
{
    char *dir = tu_tempdir("seckey");
    char path[600];
    snprintf(path, sizeof path, "%s/PS1.key", dir);
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk), *loaded = NULL;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_seckey_save(path, sk, &e), 0);
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);

    static const mode_t loose[] = {0640, 0644, 0604};
    static const char *const shown[] = {"0640", "0644", "0604"};
    for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(chmod(path, loose[i]), 0);
        ss_err_clear(&e);
        CU_ASSERT_EQUAL(ss_seckey_load(path, &loaded, &e), -1);
        CU_ASSERT_PTR_NULL(loaded);
        CU_ASSERT_EQUAL(e.code, SS_E_PERM);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, shown[i]));
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "chmod 600"));
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, path));
    }
    CU_ASSERT_EQUAL_FATAL(chmod(path, 0600), 0);
    CU_ASSERT_EQUAL(ss_seckey_load(path, &loaded, &e), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(loaded);
    CU_ASSERT(memcmp(loaded->sk, sk->sk, SS_SK_BYTES) == 0);
    CU_ASSERT(memcmp(loaded->keyid, sk->keyid, SS_KEYID_BYTES) == 0);
    /* Saving again never replaces the key. */
    ss_err_clear(&e);
    CU_ASSERT_EQUAL(ss_seckey_save(path, sk, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_EXISTS);
    ss_seckey_free(loaded);
    ss_seckey_free(sk);
    tu_rm_rf(dir);
    free(dir);
}

static void test_seckey_password_encrypted_refused(void)
{
    char *dir = tu_tempdir("enckey");
    int rc = run_shell("cd '%s' && printf 'pw\\npw\\n' | minisign -G -p x.pub -s x.key "
                       ">/dev/null 2>&1",
                       dir);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    char path[600];
    snprintf(path, sizeof path, "%s/x.key", dir);
    size_t len;
    char *text = tu_read(dir, "x.key", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "encrypted"));
    free(text);
    CU_ASSERT_EQUAL_FATAL(chmod(path, 0600), 0);
    ss_seckey *sk = NULL;
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_seckey_load(path, &sk, &e), -1);
    CU_ASSERT_PTR_NULL(sk);
    CU_ASSERT_EQUAL(e.code, SS_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "password-encrypted"));
    if (!strstr(e.msg, "password-encrypted")) fprintf(stderr, "\n    message: %s\n", e.msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "minisign -G -W"));
    tu_rm_rf(dir);
    free(dir);
}

static void test_seckey_damaged_refused(void)
{
    char *dir = tu_tempdir("badkey");
    char path[600];
    snprintf(path, sizeof path, "%s/k.key", dir);
    ss_pubkey pk;
    ss_seckey *sk = make_key(&pk), *loaded = NULL;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_seckey_save(path, sk, &e), 0);
    size_t len;
    char *text = tu_read(dir, "k.key", &len);
    /* Flip one secret key byte deep in the base64 (checksum must catch it). */
    char *line = line_of(text, 1);
    unsigned char blob[256];
    size_t n;
    CU_ASSERT_EQUAL_FATAL(sodium_base642bin(blob, sizeof blob, line, strlen(line), NULL, &n, NULL,
                                            sodium_base64_VARIANT_ORIGINAL),
                          0);
    blob[80] ^= 0xff;
    char *b64 = base64_of(blob, n);
    char *damaged = with_line(text, 1, b64);
    CU_ASSERT_EQUAL(unlink(path), 0);
    tu_write(dir, "k.key", damaged, strlen(damaged));
    CU_ASSERT_EQUAL_FATAL(chmod(path, 0600), 0);
    CU_ASSERT_EQUAL(ss_seckey_load(path, &loaded, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "checksum"));
    if (!strstr(e.msg, "checksum")) fprintf(stderr, "\n    message: %s\n", e.msg);
    free(damaged);
    free(b64);
    free(line);
    free(text);
    ss_seckey_free(sk);
    tu_rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* a large file in constant memory                                     */
/* ------------------------------------------------------------------ */

#define LARGE_FILE_BYTES ((off_t)1 << 30)
#define LARGE_FILE_RSS_LIMIT_KIB (16 * 1024)

/* In the child: sign and verify a sparse 1 GiB file, then check that a
 * change in its very last byte is caught (so all of it was hashed). */
static int large_file_child(const char *dir)
{
    char path[600], sig_path[600];
    snprintf(path, sizeof path, "%s/large.bin", dir);
    snprintf(sig_path, sizeof sig_path, "%s/large.bin.minisig", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, LARGE_FILE_BYTES) != 0 || pwrite(fd, "head", 4, 0) != 4 ||
        pwrite(fd, "tail", 4, LARGE_FILE_BYTES - 4) != 4)
        return 10;
    ss_pubkey pk;
    ss_seckey *sk = NULL;
    ss_error e = {0};
    ss_sig *sig = malloc(sizeof *sig);
    if (ss_keypair_generate(&pk, &sk, &e) != 0) return 11;
    if (ss_sign_file(sk, path, sig_path, fields, "large", &e) != 0) {
        fprintf(stderr, "sign: %s\n", e.msg);
        return 12;
    }
    if (ss_verify_file(&pk, path, sig_path, sig, &e) != 0) {
        fprintf(stderr, "verify: %s\n", e.msg);
        return 13;
    }
    if (strcmp(sig->trusted_comment, fields) != 0) return 14;
    if (pwrite(fd, "TAIL", 4, LARGE_FILE_BYTES - 4) != 4) return 15;
    close(fd);
    if (ss_verify_file(&pk, path, sig_path, sig, &e) != -1 || e.code != SS_E_BADSIG) return 16;
    free(sig);
    ss_seckey_free(sk);
    return 0;
}

static void test_large_file_signs_and_verifies_in_flat_memory(void)
{
    char *dir = tu_tempdir("large");
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) _exit(large_file_child(dir));
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    CU_ASSERT_EQUAL_FATAL(wait4(pid, &status, 0, &ru), pid);
    CU_ASSERT(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "\n    large file child status 0x%x\n", (unsigned)status);
#if defined(__SANITIZE_ADDRESS__)
    (void)ru; /* ASan's shadow memory makes RSS meaningless here. */
#else
    CU_ASSERT(ru.ru_maxrss > 0);
    CU_ASSERT(ru.ru_maxrss < LARGE_FILE_RSS_LIMIT_KIB);
    if (ru.ru_maxrss >= LARGE_FILE_RSS_LIMIT_KIB)
        fprintf(stderr, "\n    peak RSS %ld KiB signing 1 GiB\n", ru.ru_maxrss);
#endif
    tu_rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* logs                                                                */
/* ------------------------------------------------------------------ */

#define TRACE_RE                                                                                   \
    "^(.*)  \\$\\$<([A-Z_]+)><([0-9]{2})-([0-9]{2})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2})"   \
    "\\.([0-9]{3})([+-][0-9]{3})><thread=([0-9]+) \\(0x([0-9A-F]+)\\)>$"

typedef struct trace_line {
    char text[SS_LOG_LINE_MAX];
    char component[64];
    struct tm tm;
    int millis;
    long bias;
    long thread;
    unsigned long thread_hex;
} trace_line;

/* Parses one log line (without its newline); false when it is malformed. */
static bool trace_parse(const char *line, trace_line *out)
{
    static regex_t re;
    static bool compiled;
    if (!compiled) {
        CU_ASSERT_EQUAL_FATAL(regcomp(&re, TRACE_RE, REG_EXTENDED), 0);
        compiled = true;
    }
    regmatch_t m[13];
    if (regexec(&re, line, 13, m, 0) != 0) return false;
    int v[13] = {0};
    char buf[SS_LOG_LINE_MAX];
    for (int i = 1; i < 13; i++) {
        int n = (int)(m[i].rm_eo - m[i].rm_so);
        snprintf(buf, sizeof buf, "%.*s", n, line + m[i].rm_so);
        if (i == 1)
            snprintf(out->text, sizeof out->text, "%s", buf);
        else if (i == 2)
            snprintf(out->component, sizeof out->component, "%s", buf);
        else if (i == 10)
            out->bias = strtol(buf, NULL, 10);
        else if (i == 11)
            out->thread = strtol(buf, NULL, 10);
        else if (i == 12)
            out->thread_hex = strtoul(buf, NULL, 16);
        else
            v[i] = atoi(buf);
    }
    memset(&out->tm, 0, sizeof out->tm);
    out->tm.tm_mon = v[3] - 1;
    out->tm.tm_mday = v[4];
    out->tm.tm_year = v[5] - 1900;
    out->tm.tm_hour = v[6];
    out->tm.tm_min = v[7];
    out->tm.tm_sec = v[8];
    out->millis = v[9];
    return v[3] >= 1 && v[3] <= 12 && v[4] >= 1 && v[4] <= 31 && v[6] < 24 && v[7] < 60 &&
           v[8] < 61;
}

/* Checks every line of a file: complete ('\n'-terminated) and well-formed;
 * calls fn on each parsed line; returns the number of lines, -1 if bad. */
static int check_log_file(const char *dir, const char *name, const char *component,
                          void (*fn)(const trace_line *, void *), void *ctx)
{
    size_t len;
    char *text = tu_read(dir, name, &len);
    if (!text) return 0;
    int lines = 0;
    bool ok = len == 0 || text[len - 1] == '\n';
    if (!ok) fprintf(stderr, "\n    %s does not end with a newline\n", name);
    trace_line *t = malloc(sizeof *t);
    for (char *p = text, *nl; ok && p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) break;
        *nl = '\0';
        if (!trace_parse(p, t) || strcmp(t->component, component) != 0 ||
            t->thread != (long)t->thread_hex) {
            fprintf(stderr, "\n    malformed line in %s: '%s'\n", name, p);
            ok = false;
            break;
        }
        if (fn) fn(t, ctx);
        lines++;
    }
    free(t);
    free(text);
    return ok ? lines : -1;
}

static void test_log_line_shape(void)
{
    char *dir = tu_tempdir("log");
    char path[600];
    snprintf(path, sizeof path, "%s/despool.log", dir);
    /* A zone without tzdata: EST5 is UTC-5, so the bias is +300. */
    char *old_tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    setenv("TZ", "EST5", 1);
    tzset();
    ss_log l;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_log_open(&l, path, "SITESPOOL_DESPOOLER", 0, &e), 0);
    time_t before = time(NULL);
    ss_logf(&l, "Will retry instruction %s from site %s %d more times", "4fc1.ins", "SS1", 100);
    time_t after = time(NULL);
    ss_log_close(&l);
    if (old_tz)
        setenv("TZ", old_tz, 1);
    else
        unsetenv("TZ");
    tzset();
    free(old_tz);

    size_t len;
    char *text = tu_read(dir, "despool.log", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT(len > 0 && text[len - 1] == '\n');
    CU_ASSERT_PTR_NULL(memchr(text, '\n', len - 1)); /* exactly one line */
    text[len - 1] = '\0';
    trace_line *t = malloc(sizeof *t);
    CU_ASSERT_FATAL(trace_parse(text, t));
    CU_ASSERT_STRING_EQUAL(t->text, "Will retry instruction 4fc1.ins from site SS1 100 more times");
    CU_ASSERT_STRING_EQUAL(t->component, "SITESPOOL_DESPOOLER");
    CU_ASSERT_EQUAL(t->bias, 300);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "+300><thread="));
    CU_ASSERT_EQUAL(t->thread, (long)t->thread_hex);
    CU_ASSERT_EQUAL(t->thread, (long)gettid());
    CU_ASSERT(t->millis >= 0 && t->millis <= 999);
    /* UTC = local time + bias. */
    time_t utc = timegm(&t->tm) + t->bias * 60;
    CU_ASSERT(utc >= before && utc <= after);
    free(t);
    free(text);
    tu_rm_rf(dir);
    free(dir);
}

static void test_log_control_chars_replaced(void)
{
    char *dir = tu_tempdir("logctl");
    char path[600];
    snprintf(path, sizeof path, "%s/hman.log", dir);
    ss_log l;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_log_open(&l, path, "SITESPOOL_HMAN", 0, &e), 0);
    ss_log_text(&l, "name=evil\nSTATMSG: ID=4400 forged\r\t\x1b[31mred\x7f end");
    /* An over-long text is cut, never split or left without its suffix. */
    char *huge = malloc(3 * SS_LOG_LINE_MAX);
    memset(huge, 'h', 3 * SS_LOG_LINE_MAX - 1);
    huge[3 * SS_LOG_LINE_MAX - 1] = '\0';
    ss_log_text(&l, huge);
    free(huge);
    ss_log_close(&l);

    size_t len;
    char *text = tu_read(dir, "hman.log", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *nl = strchr(text, '\n');
    CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
    *nl = '\0';
    trace_line *t = malloc(sizeof *t);
    CU_ASSERT(trace_parse(text, t));
    CU_ASSERT_STRING_EQUAL(t->text, "name=evil?STATMSG: ID=4400 forged???[31mred? end");
    char *second = nl + 1;
    nl = strchr(second, '\n');
    CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
    CU_ASSERT_EQUAL(nl[1], '\0');
    *nl = '\0';
    CU_ASSERT(strlen(second) < SS_LOG_LINE_MAX);
    CU_ASSERT(trace_parse(second, t));
    CU_ASSERT_STRING_EQUAL(t->component, "SITESPOOL_HMAN");
    CU_ASSERT(strlen(t->text) > 3000);
    free(t);
    free(text);
    tu_rm_rf(dir);
    free(dir);
}

static void test_log_rotation_replaces_lo_(void)
{
    char *dir = tu_tempdir("logrot");
    char path[600];
    snprintf(path, sizeof path, "%s/sender.log", dir);
    char rotated[600];
    ss_log_rotated_name(path, rotated, sizeof rotated);
    char expect[600];
    snprintf(expect, sizeof expect, "%s/sender.lo_", dir);
    CU_ASSERT_STRING_EQUAL(rotated, expect);
    ss_log_rotated_name("/x/trace", rotated, sizeof rotated);
    CU_ASSERT_STRING_EQUAL(rotated, "/x/trace.lo_");

    const uint64_t max_bytes = 2000;
    ss_log l;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_log_open(&l, path, "SITESPOOL_SENDER", max_bytes, &e), 0);
    struct stat st;
    ino_t first_rotation_ino = 0;
    int rotations_seen = 0, line_no = 0;
    for (; line_no < 5000 && rotations_seen < 2; line_no++) {
        ss_logf(&l, "line %06d of the rotation test", line_no);
        CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
        CU_ASSERT((uint64_t)st.st_size <= max_bytes);
        if (stat(expect, &st) == 0 && st.st_ino != first_rotation_ino) {
            /* A new .lo_ appeared: the first, or one that replaced it. */
            rotations_seen++;
            first_rotation_ino = st.st_ino;
            CU_ASSERT((uint64_t)st.st_size <= max_bytes);
        }
    }
    ss_log_close(&l);
    CU_ASSERT_EQUAL(rotations_seen, 2);
    /* Only the log and one .lo_: the second rotation replaced the first. */
    CU_ASSERT_EQUAL(tu_count(dir, ""), 2);
    CU_ASSERT(tu_exists(dir, "sender.lo_"));
    /* The .lo_ holds the lines just before the current log's first line. */
    size_t len;
    char *old = tu_read(dir, "sender.lo_", &len);
    char *cur = tu_read(dir, "sender.log", NULL);
    int last_old = -1, first_cur = -1;
    for (char *p = old; (p = strstr(p, "line ")) != NULL; p += 5)
        last_old = atoi(p + 5);
    char *p = strstr(cur, "line ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    first_cur = atoi(p + 5);
    CU_ASSERT_EQUAL(first_cur, last_old + 1);
    CU_ASSERT(atoi(strstr(old, "line ") + 5) > 0); /* not the very first lines */
    CU_ASSERT(check_log_file(dir, "sender.log", "SITESPOOL_SENDER", NULL, NULL) > 0);
    CU_ASSERT(check_log_file(dir, "sender.lo_", "SITESPOOL_SENDER", NULL, NULL) > 0);
    free(old);
    free(cur);
    tu_rm_rf(dir);
    free(dir);
}

#define WRITERS 6
#define LINES_PER_WRITER 1500

static size_t pad_length(int writer, int seq)
{
    return (size_t)((writer * 131 + seq * 37) % 400);
}

static int concurrent_writer(const char *path, int writer)
{
    ss_log l;
    ss_error e = {0};
    if (ss_log_open(&l, path, "SITESPOOL_DESPOOLER", 16384, &e) != 0) return 1;
    char pad[512];
    for (int seq = 0; seq < LINES_PER_WRITER; seq++) {
        size_t n = pad_length(writer, seq);
        memset(pad, 'x', n);
        pad[n] = '\0';
        ss_logf(&l, "writer=%d seq=%d pad=%s end", writer, seq, pad);
    }
    ss_log_close(&l);
    return 0;
}

struct concurrent_check {
    int last_seq[WRITERS];
    int bad;
};

static void check_concurrent_line(const trace_line *t, void *ctx_)
{
    struct concurrent_check *ctx = ctx_;
    int writer = -1, seq = -1, used = 0;
    if (sscanf(t->text, "writer=%d seq=%d pad=%n", &writer, &seq, &used) != 2 || used == 0 ||
        writer < 0 || writer >= WRITERS) {
        ctx->bad++;
        return;
    }
    const char *pad = t->text + used;
    size_t n = strspn(pad, "x");
    if (n != pad_length(writer, seq) || strcmp(pad + n, " end") != 0) ctx->bad++;
    /* Each writer's lines appear in order within one file. */
    if (seq <= ctx->last_seq[writer]) ctx->bad++;
    ctx->last_seq[writer] = seq;
}

static void test_log_rotation_concurrent_writers_never_split_lines(void)
{
    char *dir = tu_tempdir("logconc");
    char path[600];
    snprintf(path, sizeof path, "%s/despool.log", dir);
    pid_t pids[WRITERS];
    fflush(NULL);
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        CU_ASSERT_FATAL(pids[w] >= 0);
        if (pids[w] == 0) _exit(concurrent_writer(path, w));
    }
    for (int w = 0; w < WRITERS; w++) {
        int status = 0;
        CU_ASSERT_EQUAL(waitpid(pids[w], &status, 0), pids[w]);
        CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CU_ASSERT(tu_exists(dir, "despool.lo_"));
    CU_ASSERT_EQUAL(tu_count(dir, ""), 2);
    static const char *const files[] = {"despool.lo_", "despool.log"};
    for (int f = 0; f < 2; f++) {
        struct concurrent_check ctx = {.bad = 0};
        for (int w = 0; w < WRITERS; w++)
            ctx.last_seq[w] = -1;
        int lines =
            check_log_file(dir, files[f], "SITESPOOL_DESPOOLER", check_concurrent_line, &ctx);
        CU_ASSERT(lines > 0);
        CU_ASSERT_EQUAL(ctx.bad, 0);
    }
    tu_rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* status messages                                                     */
/* ------------------------------------------------------------------ */

static void test_catalogue_ids_ranges_and_fixed_meanings(void)
{
    size_t n = 0;
    const ss_msgdef *cat = ss_catalogue(&n);
    CU_ASSERT_FATAL(n > 3);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++)
            CU_ASSERT_NOT_EQUAL(cat[i].id, cat[j].id);
        int lo = cat[i].component == SS_COMP_DESPOOLER ? 4400
                 : cat[i].component == SS_COMP_SENDER  ? 4500
                                                       : 3300;
        CU_ASSERT(cat[i].id >= lo && cat[i].id <= lo + 99);
        CU_ASSERT(cat[i].severity == 'I' || cat[i].severity == 'W' || cat[i].severity == 'E');
        CU_ASSERT(cat[i].format && cat[i].format[0]);
        CU_ASSERT(cat[i].explanation && cat[i].explanation[0]);
        CU_ASSERT(cat[i].remedy && cat[i].remedy[0]);
        CU_ASSERT_PTR_EQUAL(ss_msgdef_find(cat[i].id), &cat[i]);
    }
    static const struct {
        int id;
        char severity;
    } fixed[] = {{4400, 'I'}, {4404, 'E'}, {4405, 'W'}};
    for (size_t i = 0; i < 3; i++) {
        const ss_msgdef *d = ss_msgdef_find(fixed[i].id);
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        CU_ASSERT_EQUAL(d->severity, fixed[i].severity);
        CU_ASSERT_EQUAL(d->component, SS_COMP_DESPOOLER);
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(ss_msgdef_find(4404)->format, "not signed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(ss_msgdef_find(4405)->format, "no valid public key"));
    CU_ASSERT_PTR_NULL(ss_msgdef_find(4499));
    CU_ASSERT_STRING_EQUAL(ss_component_name(SS_COMP_DESPOOLER), "SITESPOOL_DESPOOLER");
    CU_ASSERT_STRING_EQUAL(ss_component_log(SS_COMP_DESPOOLER), "despool.log");
    enum ss_component c;
    CU_ASSERT_EQUAL(ss_component_parse("sender", &c), 0);
    CU_ASSERT_EQUAL(c, SS_COMP_SENDER);
    CU_ASSERT_EQUAL(ss_component_parse("SITESPOOL_HMAN", &c), 0);
    CU_ASSERT_EQUAL(c, SS_COMP_HMAN);
    CU_ASSERT_EQUAL(ss_component_parse("nobody", &c), -1);
}

static void test_msg_render_insertion_strings(void)
{
    const char *istr[] = {"A", "BB"};
    char out[64];
    ss_msg_render("%1-%2-%3.", 2, istr, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "A-BB-.");
    char tiny[5];
    ss_msg_render("%2%2%2%2", 2, istr, tiny, sizeof tiny);
    CU_ASSERT_STRING_EQUAL(tiny, "BBBB");
    ss_msg_render("100%", 0, NULL, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "100%");
}

static void test_report_stores_logs_and_statmsg(void)
{
    char *dir = tu_tempdir("report");
    tu_site s;
    tu_site_make(&s, dir, "PS1", NULL);
    ss_report(&s.rep, 4405, "abc.ins", "SS1", "5E2875BBB567D5E0", "99", "5", NULL);
    ss_report(&s.rep, 3300, "5E2875BBB567D5E0", "SS1", "evil\nSTATMSG: ID=9999 \"x\"", NULL);
    CU_ASSERT_EQUAL(tu_status_count(&s, 4405), 1);
    CU_ASSERT_EQUAL(tu_status_count(&s, 3300), 1);

    sqlite3_stmt *st = ss_db_prepare(
        &s.db, "SELECT severity, component, site, istr, text FROM status WHERE msg_id=4405", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL_FATAL(sqlite3_step(st), SQLITE_ROW);
    char expected_text[2048];
    const char *istr[] = {"abc.ins", "SS1", "5E2875BBB567D5E0", "99", "5"};
    ss_msg_render(ss_msgdef_find(4405)->format, 5, istr, expected_text, sizeof expected_text);
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 0), "W");
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 1), "SITESPOOL_DESPOOLER");
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 2), "PS1");
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 3),
                           "[\"abc.ins\",\"SS1\",\"5E2875BBB567D5E0\",\"99\",\"5\"]");
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 4), expected_text);
    CU_ASSERT_PTR_NOT_NULL(strstr(expected_text, "retry 99 more times"));
    sqlite3_finalize(st);

    char logs[600];
    snprintf(logs, sizeof logs, "%s/logs", s.root);
    char *despool = tu_read(logs, "despool.log", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(despool);
    CU_ASSERT_PTR_NOT_NULL(strstr(despool, expected_text));
    CU_ASSERT_PTR_NOT_NULL(strstr(despool, "STATMSG: ID=4405 SEV=W "));
    CU_ASSERT_PTR_NOT_NULL(strstr(despool, "COMP=\"SITESPOOL_DESPOOLER\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(despool, "SITE=PS1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(despool, "ISTR0=\"abc.ins\" ISTR1=\"SS1\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(despool, "ISTR4=\"5\""));
    CU_ASSERT(check_log_file(logs, "despool.log", "SITESPOOL_DESPOOLER", NULL, NULL) == 2);

    /* 3300 belongs to the hierarchy manager: hman.log, not despool.log. */
    char *hman = tu_read(logs, "hman.log", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hman);
    CU_ASSERT_PTR_NOT_NULL(strstr(hman, "STATMSG: ID=3300 SEV=I "));
    CU_ASSERT_PTR_NULL(strstr(despool, "ID=3300"));
    /* A hostile insertion string cannot start a line of its own. */
    CU_ASSERT_PTR_NULL(strstr(hman, "\nSTATMSG: ID=9999"));
    CU_ASSERT(check_log_file(logs, "hman.log", "SITESPOOL_HMAN", NULL, NULL) == 2);
    free(hman);
    free(despool);
    tu_site_close(&s);
    tu_rm_rf(dir);
    free(dir);
}

/* Value of NAME=... in env-style text (malloc'ed), NULL when absent. */
static char *env_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, name, n) && p[n] == '=') {
            const char *v = p + n + 1, *end = strchr(v, '\n');
            return strndup(v, end ? (size_t)(end - v) : strlen(v));
        }
    }
    return NULL;
}

static void test_report_runs_notify_command_with_environment(void)
{
    char *dir = tu_tempdir("notify");
    tu_site s;
    tu_site_make(&s, dir, "PS1", NULL);
    snprintf(s.conf.notify_command, sizeof s.conf.notify_command,
             "env > '%s/notify.tmp' && mv '%s/notify.tmp' '%s/notify.env'", dir, dir, dir);
    /* The program inherits our environment, minus stale status variables. */
    setenv("SITESPOOL_TEST_INHERITED", "yes", 1);
    setenv("SITESPOOL_STATUS_ISTR2", "stale from a parent", 1);
    ss_report(&s.rep, 4404, "0123456789abcdef0123456789abcdef", "SS1", NULL);
    unsetenv("SITESPOOL_TEST_INHERITED");
    unsetenv("SITESPOOL_STATUS_ISTR2");

    char *env = NULL;
    for (int i = 0; i < 100 && !(env = tu_read(dir, "notify.env", NULL)); i++)
        usleep(50 * 1000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(env);
    const char *istr[] = {"0123456789abcdef0123456789abcdef", "SS1"};
    char expected_text[2048];
    ss_msg_render(ss_msgdef_find(4404)->format, 2, istr, expected_text, sizeof expected_text);
    static const char *const names[] = {"SITESPOOL_STATUS_ID",    "SITESPOOL_STATUS_SEVERITY",
                                        "SITESPOOL_STATUS_TEXT",  "SITESPOOL_STATUS_ISTR0",
                                        "SITESPOOL_STATUS_ISTR1", "SITESPOOL_STATUS_COMPONENT",
                                        "SITESPOOL_STATUS_SITE"};
    const char *want[] = {"4404", "E", expected_text, istr[0], istr[1], "SITESPOOL_DESPOOLER",
                          "PS1"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *v = env_value(env, names[i]);
        CU_ASSERT_PTR_NOT_NULL(v);
        if (v) CU_ASSERT_STRING_EQUAL(v, want[i]);
        free(v);
    }
    char *none = env_value(env, "SITESPOOL_STATUS_ISTR2");
    CU_ASSERT_PTR_NULL(none);
    free(none);
    char *inherited = env_value(env, "SITESPOOL_TEST_INHERITED");
    CU_ASSERT_PTR_NOT_NULL(inherited);
    if (inherited) CU_ASSERT_STRING_EQUAL(inherited, "yes");
    free(inherited);
    free(env);
    tu_site_close(&s);
    tu_rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* site.db                                                             */
/* ------------------------------------------------------------------ */

static void test_db_wal_and_schema_version(void)
{
    char *dir = tu_tempdir("db");
    char path[600];
    snprintf(path, sizeof path, "%s/site.db", dir);
    ss_db db;
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_db_open(&db, path, false, &e), -1); /* missing, no create */
    CU_ASSERT_EQUAL(e.code, SS_E_DB);
    CU_ASSERT_PTR_NULL(db.h);
    CU_ASSERT_EQUAL_FATAL(ss_db_open(&db, path, true, &e), 0);
    CU_ASSERT_EQUAL(ss_db_schema_version(&db), SS_DB_SCHEMA_VERSION);
    ss_db_close(&db);

    /* Another connection sees WAL mode persisted in the file. */
    sqlite3 *h = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    CU_ASSERT_EQUAL_FATAL(sqlite3_step(st), SQLITE_ROW);
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(h);

    /* Reopening an up-to-date database changes nothing. */
    CU_ASSERT_EQUAL_FATAL(ss_db_open(&db, path, false, &e), 0);
    CU_ASSERT_EQUAL(ss_db_schema_version(&db), SS_DB_SCHEMA_VERSION);
    ss_db_close(&db);
    tu_rm_rf(dir);
    free(dir);
}

static void test_db_newer_schema_refused(void)
{
    char *dir = tu_tempdir("dbnew");
    char path[600];
    snprintf(path, sizeof path, "%s/site.db", dir);
    ss_db db;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_db_open(&db, path, true, &e), 0);
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", SS_DB_SCHEMA_VERSION + 1);
    CU_ASSERT_EQUAL_FATAL(ss_db_exec(&db, pragma, &e), 0);
    ss_db_close(&db);

    CU_ASSERT_EQUAL(ss_db_open(&db, path, false, &e), -1);
    CU_ASSERT_PTR_NULL(db.h);
    CU_ASSERT_EQUAL(e.code, SS_E_DB);
    char version[32];
    snprintf(version, sizeof version, "schema version %d", SS_DB_SCHEMA_VERSION + 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, version));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "newer"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "upgrade sitespool"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, path));

    /* The refused database was left as it was. */
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    CU_ASSERT_EQUAL_FATAL(sqlite3_step(st), SQLITE_ROW);
    CU_ASSERT_EQUAL(sqlite3_column_int(st, 0), SS_DB_SCHEMA_VERSION + 1);
    sqlite3_finalize(st);
    sqlite3_close(h);
    tu_rm_rf(dir);
    free(dir);
}

/* ---- trust changes wake a running despooler (keystore/trust.h) ---- */

static void collect_istr(void *ctx, const ss_status_row *row)
{
    snprintf(ctx, 1024, "%s", row->istr_json);
}

/* The marker's text, or NULL when there is none. */
static char *trust_marker(const tu_site *s)
{
    char hman[700];
    snprintf(hman, sizeof hman, "%s/" SS_DIR_HMAN, s->root);
    return tu_exists(hman, SS_TRUST_MARKER) ? tu_read(hman, SS_TRUST_MARKER, NULL) : NULL;
}

static void drop_trust_marker(const tu_site *s)
{
    char path[800];
    snprintf(path, sizeof path, "%s/" SS_DIR_HMAN "/" SS_TRUST_MARKER, s->root);
    unlink(path);
}

static void test_trust_change_writes_marker_unless_despooler(void)
{
    char *dir = tu_tempdir("trustwake");
    tu_site ss1;
    tu_site_make(&ss1, dir, "SS1", NULL);
    ss_pubkey pk;
    ss_seckey *sk = NULL;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_keypair_generate(&pk, &sk, &e), 0);
    char comment[128], text[512], id[SS_KEYID_HEX + 1], want[128];
    ss_pubkey_comment("PS2", 0, comment, sizeof comment);
    CU_ASSERT_EQUAL_FATAL(ss_pubkey_format(&pk, comment, text, sizeof text), 0);
    tu_write(dir, "PS2.pub", text, strlen(text));
    ss_keyid_hex(pk.keyid, id);
    ss_keyctx cmd = {ss1.root, &ss1.conf, &ss1.db, &ss1.rep, false, NULL};
    ss_keyctx daemon = cmd;
    daemon.in_despooler = true;

    /* The despooler's own import: no marker. */
    CU_ASSERT_EQUAL(ss_trust_import_file(&daemon, "nowhere/PS2.pub", NULL, "hman", false, NULL, &e),
                    -1);
    char path[700];
    snprintf(path, sizeof path, "%s/PS2.pub", dir);
    CU_ASSERT_EQUAL(ss_trust_import_file(&daemon, path, NULL, "hman", false, NULL, &e), 0);
    CU_ASSERT_PTR_NULL(trust_marker(&ss1));
    CU_ASSERT_EQUAL(ss_trust_untrust(&daemon, "PS2", &e), 1);
    CU_ASSERT_PTR_NULL(trust_marker(&ss1));

    /* A command's import, by a relative path: a marker naming the key, and
     * 3300 naming the file by its absolute path. */
    char cwd[600];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    CU_ASSERT_EQUAL_FATAL(chdir(dir), 0);
    int rc = ss_trust_import_file(&cmd, "./PS2.pub", NULL, "import", false, NULL, &e);
    CU_ASSERT_EQUAL_FATAL(chdir(cwd), 0);
    CU_ASSERT_EQUAL(rc, 0);
    char *marker = trust_marker(&ss1);
    snprintf(want, sizeof want, " key %s of site PS2\n", id);
    CU_ASSERT_PTR_NOT_NULL(marker);
    if (marker) CU_ASSERT_PTR_NOT_NULL(strstr(marker, want));
    free(marker);
    char istr[1024] = "", real[PATH_MAX], quoted[PATH_MAX + 16];
    int64_t after = 0;
    CU_ASSERT_EQUAL(ss_status_query(&ss1.db, &after, 0, 3300, NULL, 0, collect_istr, istr, &e), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(dir, real));
    snprintf(quoted, sizeof quoted, "\"%s/PS2.pub\"", real);
    CU_ASSERT_PTR_NOT_NULL(strstr(istr, quoted));

    /* Untrust and revoke by a command: each replaces the marker. */
    drop_trust_marker(&ss1);
    CU_ASSERT_EQUAL(ss_trust_revoke(&cmd, "PS2", id, &e), 0);
    marker = trust_marker(&ss1);
    snprintf(want, sizeof want, " revoked key %s of site PS2\n", id);
    CU_ASSERT_PTR_NOT_NULL(marker);
    if (marker) CU_ASSERT_PTR_NOT_NULL(strstr(marker, want));
    free(marker);
    drop_trust_marker(&ss1);
    CU_ASSERT_EQUAL(ss_trust_untrust(&cmd, "PS2", &e), 0);
    marker = trust_marker(&ss1);
    CU_ASSERT_PTR_NOT_NULL(marker);
    if (marker) CU_ASSERT_PTR_NOT_NULL(strstr(marker, " untrusted site PS2\n"));
    free(marker);
    /* A refused import changes nothing: no marker. */
    drop_trust_marker(&ss1);
    CU_ASSERT_EQUAL(ss_trust_import_file(&cmd, path, NULL, "import", false, NULL, &e), -1);
    CU_ASSERT_PTR_NULL(trust_marker(&ss1));

    ss_seckey_free(sk);
    tu_site_close(&ss1);
    tu_rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* site.db links (keystore/links.h): receipts due, sent pairs and their */
/* fates, peers' heartbeats and link states, rollouts                   */
/* ------------------------------------------------------------------ */

/* A fresh site.db at the current schema in a temporary folder. */
static char *links_db(ss_db *db)
{
    char *dir = tu_tempdir("links");
    char path[600];
    snprintf(path, sizeof path, "%s/site.db", dir);
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_db_open(db, path, true, &e), 0);
    return dir;
}

static void links_db_done(ss_db *db, char *dir)
{
    ss_db_close(db);
    tu_rm_rf(dir);
    free(dir);
}

/* Instruction id number n: 32 lowercase hex digits. */
static const char *lid(int n)
{
    static char ids[8][SS_ID_HEX + 1];
    static int next;
    char *out = ids[next++ % 8];
    snprintf(out, SS_ID_HEX + 1, "%032x", n);
    return out;
}

/* Rows of receipts_due for site, as "id-number:fate:status" joined by spaces. */
static void due_rows(ss_db *db, const char *site, char *out, size_t len)
{
    ss_receipt_line lines[16];
    size_t n = 99;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_receipt_take(db, site, lines, 16, &n, &e), 0);
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && at < len; i++)
        at += (size_t)snprintf(out + at, len - at, "%s%x:%s:%d", i ? " " : "",
                               (unsigned)strtoul(lines[i].id, NULL, 16),
                               ss_fate_name(lines[i].fate), lines[i].status_id);
}

static int collect_sites(void *ctx, const char *site)
{
    char *out = ctx;
    if (out[0]) strcat(out, " ");
    strcat(out, site);
    return 0;
}

struct site_count {
    int n, stop_at;
    char first[16], last[16];
};

static int count_sites(void *ctx, const char *site)
{
    struct site_count *c = ctx;
    if (!c->n++) snprintf(c->first, sizeof c->first, "%s", site);
    snprintf(c->last, sizeof c->last, "%s", site);
    return c->n == c->stop_at ? 9 : 0;
}

static void test_links_receipts_due(void)
{
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    char rows[512], sites[64] = "";

    CU_ASSERT_EQUAL(ss_receipt_sites(&db, collect_sites, sites, &e), 0);
    CU_ASSERT_STRING_EQUAL(sites, "");
    CU_ASSERT_EQUAL(ss_receipt_note(&db, "PS1", lid(1), SS_FATE_WAITING, 4405, 100, &e), 0);
    CU_ASSERT_EQUAL(ss_receipt_note(&db, "PS1", lid(2), SS_FATE_DELIVERED, 4400, 50, &e), 0);
    CU_ASSERT_EQUAL(ss_receipt_note(&db, "PS1", lid(3), SS_FATE_HELD, 4420, 200, &e), 0);
    CU_ASSERT_EQUAL(ss_receipt_note(&db, "PS2", lid(2), SS_FATE_DUPLICATE, 4402, 10, &e), 0);
    /* A newer fate for the same (site, id) replaces the older one, and its
     * time with it. */
    CU_ASSERT_EQUAL(ss_receipt_note(&db, "PS1", lid(1), SS_FATE_QUARANTINED, 4406, 150, &e), 0);
    due_rows(&db, "PS1", rows, sizeof rows);
    CU_ASSERT_STRING_EQUAL(rows, "2:delivered:4400 1:quarantined:4406 3:held:4420");
    due_rows(&db, "PS2", rows, sizeof rows);
    CU_ASSERT_STRING_EQUAL(rows, "2:duplicate:4402");
    due_rows(&db, "PS3", rows, sizeof rows);
    CU_ASSERT_STRING_EQUAL(rows, "");

    CU_ASSERT_EQUAL(ss_receipt_sites(&db, collect_sites, sites, &e), 0);
    CU_ASSERT_STRING_EQUAL(sites, "PS1 PS2");

    /* Oldest first, at most max (no write past out[max - 1]). */
    ss_receipt_line got[3];
    memset(got, 0xa5, sizeof got);
    size_t n = 99;
    CU_ASSERT_EQUAL(ss_receipt_take(&db, "PS1", got, 2, &n, &e), 0);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_STRING_EQUAL(got[0].id, lid(2));
    CU_ASSERT_EQUAL(got[0].fate, SS_FATE_DELIVERED);
    CU_ASSERT_EQUAL(got[0].status_id, 4400);
    CU_ASSERT_STRING_EQUAL(got[1].id, lid(1));
    CU_ASSERT_EQUAL(got[1].fate, SS_FATE_QUARANTINED);
    CU_ASSERT_EQUAL(got[1].status_id, 4406);
    CU_ASSERT_EQUAL(got[2].status_id, (int)0xa5a5a5a5);
    CU_ASSERT_EQUAL(ss_receipt_take(&db, "PS1", got, 0, &n, &e), 0);
    CU_ASSERT_EQUAL(n, 0);

    /* Meanwhile id 1's fate changes (delivered after the administrator
     * released it) and id 3 gets another status id: forgetting what the
     * receipt carried leaves both due, and PS2's row for the same id. */
    ss_receipt_line sent[3];
    CU_ASSERT_EQUAL(ss_receipt_take(&db, "PS1", sent, 3, &n, &e), 0);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(ss_receipt_note(&db, "PS1", lid(1), SS_FATE_DELIVERED, 4400, 300, &e), 0);
    CU_ASSERT_EQUAL(ss_receipt_note(&db, "PS1", lid(3), SS_FATE_HELD, 3303, 310, &e), 0);
    CU_ASSERT_EQUAL(ss_receipt_forget(&db, "PS1", sent, 3, &e), 0);
    due_rows(&db, "PS1", rows, sizeof rows);
    CU_ASSERT_STRING_EQUAL(rows, "1:delivered:4400 3:held:3303");
    due_rows(&db, "PS2", rows, sizeof rows);
    CU_ASSERT_STRING_EQUAL(rows, "2:duplicate:4402");

    /* Forgetting the rest: PS1 has nothing due and is no longer listed. */
    CU_ASSERT_EQUAL(ss_receipt_take(&db, "PS1", sent, 3, &n, &e), 0);
    CU_ASSERT_EQUAL(ss_receipt_forget(&db, "PS1", sent, n, &e), 0);
    due_rows(&db, "PS1", rows, sizeof rows);
    CU_ASSERT_STRING_EQUAL(rows, "");
    sites[0] = '\0';
    CU_ASSERT_EQUAL(ss_receipt_sites(&db, collect_sites, sites, &e), 0);
    CU_ASSERT_STRING_EQUAL(sites, "PS2");

    /* Every site is listed, however many (in site order), and the
     * callback stops the walk with its value. */
    for (int i = 0; i < 100; i++) {
        char site[8];
        snprintf(site, sizeof site, "X%02d", 99 - i);
        CU_ASSERT_EQUAL_FATAL(ss_receipt_note(&db, site, lid(1), SS_FATE_DELIVERED, 0, 1, &e), 0);
    }
    struct site_count c = {0};
    CU_ASSERT_EQUAL(ss_receipt_sites(&db, count_sites, &c, &e), 0);
    CU_ASSERT_EQUAL(c.n, 101);
    CU_ASSERT_STRING_EQUAL(c.first, "PS2");
    CU_ASSERT_STRING_EQUAL(c.last, "X99");
    c = (struct site_count){.stop_at = 3};
    CU_ASSERT_EQUAL(ss_receipt_sites(&db, count_sites, &c, &e), 9);
    CU_ASSERT_EQUAL(c.n, 3);
    CU_ASSERT_STRING_EQUAL(c.last, "X01");
    links_db_done(&db, dir);
}

static void queue_sent(ss_db *db, const char *peer, int n, const char *type, int64_t queued,
                       int64_t sent_at)
{
    ss_error e = {0};
    char name[32];
    snprintf(name, sizeof name, "file%d.txt", n);
    CU_ASSERT_EQUAL_FATAL(
        ss_sent_queued(db, peer, lid(n), type, name, (uint64_t)n * 10, queued, &e), 0);
    if (sent_at) CU_ASSERT_EQUAL_FATAL(ss_sent_delivered(db, lid(n), sent_at, &e), SS_SENT_PAIR);
}

/* Applies a receipt line from peer; returns what ss_sent_apply returned. */
static int apply_fate(ss_db *db, const char *peer, int n, enum ss_fate fate, int status,
                      int64_t now, ss_sent *row, enum ss_fate *before, bool *had)
{
    ss_receipt_line l = {.fate = fate, .status_id = status};
    snprintf(l.id, sizeof l.id, "%s", lid(n));
    ss_sent r;
    enum ss_fate b;
    bool h;
    ss_error e = {0};
    return ss_sent_apply(db, peer, &l, now, row ? row : &r, before ? before : &b, had ? had : &h,
                         &e);
}

static void test_links_sent_queued_and_delivered(void)
{
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    ss_sent s;
    CU_ASSERT_EQUAL(ss_sent_get(&db, lid(1), &s, &e), 0);
    CU_ASSERT_EQUAL(ss_sent_queued(&db, "PS1", lid(1), "data", "a b.txt", 12345, 100, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(1), &s, &e), 1);
    CU_ASSERT_STRING_EQUAL(s.id, lid(1));
    CU_ASSERT_STRING_EQUAL(s.peer, "PS1");
    CU_ASSERT_STRING_EQUAL(s.type, "data");
    CU_ASSERT_STRING_EQUAL(s.name, "a b.txt");
    CU_ASSERT_EQUAL(s.size, 12345);
    CU_ASSERT_EQUAL(s.queued, 100);
    CU_ASSERT_EQUAL(s.sent_at, 0);
    CU_ASSERT_FALSE(s.has_fate);
    CU_ASSERT_EQUAL(s.status_id, 0);
    CU_ASSERT_EQUAL(s.heard_at, 0);

    /* In the peer's inbox: the time it left is kept on a second call. */
    CU_ASSERT_EQUAL(ss_sent_delivered(&db, lid(1), 200, &e), SS_SENT_PAIR);
    CU_ASSERT_EQUAL(ss_sent_delivered(&db, lid(1), 300, &e), SS_SENT_PAIR);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(1), &s, &e), 1);
    CU_ASSERT_EQUAL(s.sent_at, 200);
    CU_ASSERT_FALSE(s.has_fate);

    /* Receipts and heartbeats: their rows go once they are delivered. */
    CU_ASSERT_EQUAL(ss_sent_queued(&db, "PS1", lid(2), "receipt", "receipt", 60, 100, &e), 0);
    CU_ASSERT_EQUAL(ss_sent_queued(&db, "PS1", lid(3), "heartbeat", "heartbeat", 80, 100, &e), 0);
    CU_ASSERT_EQUAL(ss_sent_get(&db, lid(2), &s, &e), 1);
    CU_ASSERT_EQUAL(ss_sent_delivered(&db, lid(2), 200, &e), SS_SENT_REPORT);
    CU_ASSERT_EQUAL(ss_sent_get(&db, lid(2), &s, &e), 0);
    CU_ASSERT_EQUAL(ss_sent_delivered(&db, lid(3), 200, &e), SS_SENT_REPORT);
    CU_ASSERT_EQUAL(ss_sent_get(&db, lid(3), &s, &e), 0);
    CU_ASSERT_EQUAL(ss_sent_delivered(&db, lid(2), 300, &e), SS_SENT_UNKNOWN);
    /* A pair queued before receipts existed has no row. */
    CU_ASSERT_EQUAL(ss_sent_delivered(&db, lid(4), 300, &e), SS_SENT_UNKNOWN);
    CU_ASSERT_EQUAL(ss_sent_get(&db, lid(4), &s, &e), 0);
    /* The pair's row was not touched by any of that. */
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(1), &s, &e), 1);
    CU_ASSERT_EQUAL(s.sent_at, 200);
    links_db_done(&db, dir);
}

static void test_links_sent_apply(void)
{
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    ss_sent row, s;
    enum ss_fate before;
    bool had;
    queue_sent(&db, "PS1", 1, "data", 100, 200);
    queue_sent(&db, "PS2", 2, "data", 100, 200);

    /* Another peer's receipt naming our id for PS1 changes nothing; nor
     * does an id never sent. */
    CU_ASSERT_EQUAL(apply_fate(&db, "PS2", 1, SS_FATE_QUARANTINED, 4406, 250, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(1), &s, &e), 1);
    CU_ASSERT_FALSE(s.has_fate);
    CU_ASSERT_EQUAL(s.heard_at, 0);
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 9, SS_FATE_DELIVERED, 4400, 250, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(ss_sent_get(&db, lid(9), &s, &e), 0);

    /* First fate: nothing before. */
    had = true;
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 1, SS_FATE_WAITING, 4405, 300, &row, &before, &had), 1);
    CU_ASSERT_FALSE(had);
    CU_ASSERT_STRING_EQUAL(row.id, lid(1));
    CU_ASSERT_STRING_EQUAL(row.peer, "PS1");
    CU_ASSERT_STRING_EQUAL(row.name, "file1.txt");
    CU_ASSERT_TRUE(row.has_fate);
    CU_ASSERT_EQUAL(row.fate, SS_FATE_WAITING);
    CU_ASSERT_EQUAL(row.status_id, 4405);
    CU_ASSERT_EQUAL(row.heard_at, 300);
    CU_ASSERT_EQUAL(row.sent_at, 200);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(1), &s, &e), 1);
    CU_ASSERT_TRUE(s.has_fate && s.fate == SS_FATE_WAITING && s.status_id == 4405);
    CU_ASSERT_EQUAL(s.heard_at, 300);

    /* The same fate again (a receipt sent twice): no change, heard_at kept. */
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 1, SS_FATE_WAITING, 4405, 400, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(1), &s, &e), 1);
    CU_ASSERT_EQUAL(s.heard_at, 300);

    /* waiting -> quarantined -> delivered, each reporting the fate before. */
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 1, SS_FATE_QUARANTINED, 4406, 500, &row, &before, &had),
                    1);
    CU_ASSERT_TRUE(had);
    CU_ASSERT_EQUAL(before, SS_FATE_WAITING);
    CU_ASSERT_EQUAL(row.fate, SS_FATE_QUARANTINED);
    CU_ASSERT_EQUAL(row.status_id, 4406);
    had = false;
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 1, SS_FATE_DELIVERED, 4400, 600, &row, &before, &had),
                    1);
    CU_ASSERT_TRUE(had);
    CU_ASSERT_EQUAL(before, SS_FATE_QUARANTINED);
    CU_ASSERT_EQUAL(row.fate, SS_FATE_DELIVERED);
    CU_ASSERT_EQUAL(row.heard_at, 600);

    /* Delivered is final: neither a later quarantine nor duplicate undoes it. */
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 1, SS_FATE_QUARANTINED, 4406, 700, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 1, SS_FATE_DUPLICATE, 4402, 700, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 1, SS_FATE_WAITING, 4405, 700, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(1), &s, &e), 1);
    CU_ASSERT_EQUAL(s.fate, SS_FATE_DELIVERED);
    CU_ASSERT_EQUAL(s.status_id, 4400);
    CU_ASSERT_EQUAL(s.heard_at, 600);

    /* Duplicate is final too. */
    CU_ASSERT_EQUAL(apply_fate(&db, "PS2", 2, SS_FATE_DUPLICATE, 4402, 300, NULL, NULL, NULL), 1);
    CU_ASSERT_EQUAL(apply_fate(&db, "PS2", 2, SS_FATE_HELD, 4420, 400, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(apply_fate(&db, "PS2", 2, SS_FATE_DELIVERED, 4400, 400, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(2), &s, &e), 1);
    CU_ASSERT_EQUAL(s.fate, SS_FATE_DUPLICATE);
    CU_ASSERT_EQUAL(s.heard_at, 300);

    /* A receipt that overtook the outbox: the pair counts as sent then. */
    queue_sent(&db, "PS1", 3, "key", 100, 0);
    CU_ASSERT_EQUAL(apply_fate(&db, "PS1", 3, SS_FATE_HELD, 4416, 800, &row, &before, &had), 1);
    CU_ASSERT_EQUAL(row.sent_at, 800);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(3), &s, &e), 1);
    CU_ASSERT_EQUAL(s.sent_at, 800);
    CU_ASSERT_EQUAL(ss_sent_delivered(&db, lid(3), 900, &e), SS_SENT_PAIR);
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(3), &s, &e), 1);
    CU_ASSERT_EQUAL(s.sent_at, 800);
    links_db_done(&db, dir);
}

/* PS1: 1 queued; 2, 3 unconfirmed (sent 300, 250); 4 waiting; 5 held;
 * 6 quarantined; 7 delivered; 8 duplicate; a receipt row (10) still queued.
 * PS2: 9 unconfirmed. */
static void sent_fixture(ss_db *db)
{
    queue_sent(db, "PS1", 1, "data", 110, 0);
    queue_sent(db, "PS1", 2, "data", 120, 300);
    queue_sent(db, "PS1", 3, "data", 130, 250);
    queue_sent(db, "PS1", 4, "key", 140, 260);
    queue_sent(db, "PS1", 5, "data", 150, 260);
    queue_sent(db, "PS1", 6, "data", 160, 260);
    queue_sent(db, "PS1", 7, "data", 170, 260);
    queue_sent(db, "PS1", 8, "data", 180, 260);
    queue_sent(db, "PS2", 9, "data", 105, 270);
    queue_sent(db, "PS1", 10, "receipt", 100, 0);
    CU_ASSERT_EQUAL(apply_fate(db, "PS1", 4, SS_FATE_WAITING, 4405, 400, NULL, NULL, NULL), 1);
    CU_ASSERT_EQUAL(apply_fate(db, "PS1", 5, SS_FATE_HELD, 4420, 400, NULL, NULL, NULL), 1);
    CU_ASSERT_EQUAL(apply_fate(db, "PS1", 6, SS_FATE_QUARANTINED, 4406, 400, NULL, NULL, NULL), 1);
    CU_ASSERT_EQUAL(apply_fate(db, "PS1", 7, SS_FATE_DELIVERED, 4400, 400, NULL, NULL, NULL), 1);
    CU_ASSERT_EQUAL(apply_fate(db, "PS1", 8, SS_FATE_DUPLICATE, 4402, 500, NULL, NULL, NULL), 1);
}

struct sent_list {
    char text[512];
    int calls, stop_after;
};

static int collect_sent(void *ctx, const ss_sent *s)
{
    struct sent_list *l = ctx;
    size_t at = strlen(l->text);
    snprintf(l->text + at, sizeof l->text - at, "%s%s:%x", at ? " " : "", s->peer,
             (unsigned)strtoul(s->id, NULL, 16));
    return ++l->calls == l->stop_after ? 5 : 0;
}

static void test_links_sent_summary_and_each(void)
{
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    sent_fixture(&db);
    ss_sent_summary sum;
    memset(&sum, 0xff, sizeof sum);
    CU_ASSERT_EQUAL(ss_sent_summary_get(&db, "PS1", &sum, &e), 0);
    CU_ASSERT_EQUAL(sum.queued, 1);
    CU_ASSERT_EQUAL(sum.unconfirmed, 2);
    CU_ASSERT_EQUAL(sum.waiting, 1);
    CU_ASSERT_EQUAL(sum.held, 1);
    CU_ASSERT_EQUAL(sum.quarantined, 1);
    CU_ASSERT_EQUAL(sum.confirmed, 2);
    CU_ASSERT_EQUAL(sum.oldest_unconfirmed, 250);
    CU_ASSERT_EQUAL(ss_sent_summary_get(&db, "PS2", &sum, &e), 0);
    CU_ASSERT_EQUAL(sum.queued, 0);
    CU_ASSERT_EQUAL(sum.unconfirmed, 1);
    CU_ASSERT_EQUAL(sum.confirmed, 0);
    CU_ASSERT_EQUAL(sum.oldest_unconfirmed, 270);
    memset(&sum, 0xff, sizeof sum);
    CU_ASSERT_EQUAL(ss_sent_summary_get(&db, "PS3", &sum, &e), 0);
    CU_ASSERT_EQUAL(
        sum.queued + sum.unconfirmed + sum.waiting + sum.held + sum.quarantined + sum.confirmed, 0);
    CU_ASSERT_EQUAL(sum.oldest_unconfirmed, 0);

    /* Not yet delivered at the peer, oldest first; never the receipt. */
    struct sent_list l = {0};
    CU_ASSERT_EQUAL(ss_sent_each(&db, "PS1", false, collect_sent, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "PS1:1 PS1:2 PS1:3 PS1:4 PS1:5 PS1:6");
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(ss_sent_each(&db, "PS1", true, collect_sent, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "PS1:1 PS1:2 PS1:3 PS1:4 PS1:5 PS1:6 PS1:7 PS1:8");
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(ss_sent_each(&db, NULL, false, collect_sent, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "PS2:9 PS1:1 PS1:2 PS1:3 PS1:4 PS1:5 PS1:6");
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(ss_sent_each(&db, "PS3", true, collect_sent, &l, &e), 0);
    CU_ASSERT_EQUAL(l.calls, 0);
    /* The callback stops the walk with its value. */
    memset(&l, 0, sizeof l);
    l.stop_after = 2;
    CU_ASSERT_EQUAL(ss_sent_each(&db, NULL, true, collect_sent, &l, &e), 5);
    CU_ASSERT_STRING_EQUAL(l.text, "PS2:9 PS1:1");

    /* The fields of a row with a fate. */
    ss_sent s;
    CU_ASSERT_EQUAL_FATAL(ss_sent_get(&db, lid(6), &s, &e), 1);
    CU_ASSERT_TRUE(s.has_fate);
    CU_ASSERT_EQUAL(s.fate, SS_FATE_QUARANTINED);
    CU_ASSERT_EQUAL(s.status_id, 4406);
    CU_ASSERT_EQUAL(s.heard_at, 400);
    CU_ASSERT_EQUAL(s.sent_at, 260);
    CU_ASSERT_EQUAL(s.queued, 160);
    links_db_done(&db, dir);
}

struct overdue_list {
    char text[256];
    int stop;
};

static int collect_overdue(void *ctx, const char *peer, size_t count, const ss_sent *oldest)
{
    struct overdue_list *l = ctx;
    size_t at = strlen(l->text);
    CU_ASSERT_STRING_EQUAL(oldest->peer, peer);
    snprintf(l->text + at, sizeof l->text - at, "%s%s:%zu:%x@%lld", at ? " " : "", peer, count,
             (unsigned)strtoul(oldest->id, NULL, 16), (long long)oldest->sent_at);
    return l->stop;
}

static void test_links_sent_overdue_told_once(void)
{
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    sent_fixture(&db); /* unconfirmed: PS1 2 (300), 3 (250); PS2 9 (270) */
    queue_sent(&db, "PS2", 11, "data", 106, 280);
    queue_sent(&db, "PS1", 12, "data", 190, 1000);

    /* Before 200: nothing sent that early is unconfirmed. */
    struct overdue_list l = {0};
    CU_ASSERT_EQUAL(ss_sent_overdue(&db, 200, collect_overdue, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "");

    /* A callback that stops: its value, and nothing marked as told. */
    l.stop = 3;
    CU_ASSERT_EQUAL(ss_sent_overdue(&db, 500, collect_overdue, &l, &e), 3);
    CU_ASSERT_STRING_EQUAL(l.text, "PS1:2:3@250");

    /* Each peer once, with its count and oldest (waiting, held and
     * quarantined pairs have a receipt: not overdue; 12 is too recent). */
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(ss_sent_overdue(&db, 500, collect_overdue, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "PS1:2:3@250 PS2:2:9@270");
    /* Never again for the same pairs. */
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(ss_sent_overdue(&db, 500, collect_overdue, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "");
    /* Later only the pair not told yet. */
    CU_ASSERT_EQUAL(ss_sent_overdue(&db, 2000, collect_overdue, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "PS1:1:c@1000");
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(ss_sent_overdue(&db, 5000, collect_overdue, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "");
    /* Told does not mean confirmed: still unconfirmed in the summary. */
    ss_sent_summary sum;
    CU_ASSERT_EQUAL(ss_sent_summary_get(&db, "PS1", &sum, &e), 0);
    CU_ASSERT_EQUAL(sum.unconfirmed, 3);
    links_db_done(&db, dir);
}

static void test_links_sent_prune(void)
{
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    sent_fixture(&db); /* 7 delivered heard 400, 8 duplicate heard 500, 4-6 heard 400 */
    CU_ASSERT_EQUAL(ss_sent_prune(&db, 400, &e), 0);
    struct sent_list l = {0};
    CU_ASSERT_EQUAL(ss_sent_each(&db, NULL, true, collect_sent, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "PS2:9 PS1:1 PS1:2 PS1:3 PS1:4 PS1:5 PS1:6 PS1:7 PS1:8");
    CU_ASSERT_EQUAL(ss_sent_prune(&db, 401, &e), 0);
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(ss_sent_each(&db, NULL, true, collect_sent, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "PS2:9 PS1:1 PS1:2 PS1:3 PS1:4 PS1:5 PS1:6 PS1:8");
    /* Only final fates go, however old the others are. */
    CU_ASSERT_EQUAL(ss_sent_prune(&db, 1000000, &e), 0);
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(ss_sent_each(&db, NULL, true, collect_sent, &l, &e), 0);
    CU_ASSERT_STRING_EQUAL(l.text, "PS2:9 PS1:1 PS1:2 PS1:3 PS1:4 PS1:5 PS1:6");
    ss_sent s;
    CU_ASSERT_EQUAL(ss_sent_get(&db, lid(7), &s, &e), 0);
    links_db_done(&db, dir);
}

static ss_heartbeat make_hb(int64_t time, const char *key, const char *next, const char *holds)
{
    ss_heartbeat hb;
    memset(&hb, 0, sizeof hb);
    snprintf(hb.head.from, sizeof hb.head.from, "PS1");
    snprintf(hb.head.to, sizeof hb.head.to, "SS1");
    hb.head.time = time;
    snprintf(hb.key, sizeof hb.key, "%s", key);
    snprintf(hb.next, sizeof hb.next, "%s", next);
    for (const char *p = holds; *p && hb.nholds < SS_HEARTBEAT_HOLDS_MAX; p += 16 + (p[16] == ' '))
        snprintf(hb.holds[hb.nholds++], SS_KEYID_TEXT + 1, "%.16s", p);
    return hb;
}

#define KA "AAAAAAAAAAAAAAA1"
#define KB "BBBBBBBBBBBBBBB2"
#define KC "CCCCCCCCCCCCCCC3"
#define KD "DDDDDDDDDDDDDDD4"

static void test_links_peer_heartbeats(void)
{
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    ss_peer_view v;
    memset(&v, 0x5a, sizeof v);
    CU_ASSERT_EQUAL(ss_peer_view_get(&db, "PS1", &v, &e), 0);
    CU_ASSERT_STRING_EQUAL(v.site, "PS1");
    CU_ASSERT_EQUAL(v.last_heard, 0);
    CU_ASSERT_FALSE(v.has_heartbeat);
    CU_ASSERT_EQUAL(v.nholds, 0);
    CU_ASSERT_EQUAL(v.link, SS_LINK_UNKNOWN);
    CU_ASSERT_EQUAL(v.hb_sent + v.first_hb_sent, 0);
    CU_ASSERT_FALSE(v.hb_due);

    ss_heartbeat hb = make_hb(1000, KA, KB, KC " " KD);
    CU_ASSERT_EQUAL(ss_peer_heard_heartbeat(&db, "PS1", &hb, 5000, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_EQUAL(v.last_heard, 5000);
    CU_ASSERT_EQUAL(v.heartbeat_time, 1000);
    CU_ASSERT_TRUE(v.has_heartbeat);
    CU_ASSERT_STRING_EQUAL(v.key_id, KA);
    CU_ASSERT_STRING_EQUAL(v.next_key_id, KB);
    CU_ASSERT_EQUAL_FATAL(v.nholds, 2);
    CU_ASSERT_STRING_EQUAL(v.holds[0], KC);
    CU_ASSERT_STRING_EQUAL(v.holds[1], KD);
    CU_ASSERT_TRUE(ss_peer_holds(&v, KC));
    CU_ASSERT_TRUE(ss_peer_holds(&v, KD));
    CU_ASSERT_FALSE(ss_peer_holds(&v, KA));
    CU_ASSERT_FALSE(ss_peer_holds(&v, ""));

    /* An older heartbeat arriving later (reordered): heard, but the newer
     * key view stays. */
    hb = make_hb(900, KD, "", KA);
    CU_ASSERT_EQUAL(ss_peer_heard_heartbeat(&db, "PS1", &hb, 6000, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_EQUAL(v.last_heard, 6000);
    CU_ASSERT_EQUAL(v.heartbeat_time, 1000);
    CU_ASSERT_STRING_EQUAL(v.key_id, KA);
    CU_ASSERT_STRING_EQUAL(v.next_key_id, KB);
    CU_ASSERT_EQUAL(v.nholds, 2);
    CU_ASSERT_TRUE(ss_peer_holds(&v, KC));
    CU_ASSERT_FALSE(ss_peer_holds(&v, KA));

    /* A newer one replaces it all: no next key, holds only KD now. */
    hb = make_hb(1100, KB, "", KD);
    CU_ASSERT_EQUAL(ss_peer_heard_heartbeat(&db, "PS1", &hb, 7000, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_EQUAL(v.last_heard, 7000);
    CU_ASSERT_EQUAL(v.heartbeat_time, 1100);
    CU_ASSERT_STRING_EQUAL(v.key_id, KB);
    CU_ASSERT_STRING_EQUAL(v.next_key_id, "");
    CU_ASSERT_EQUAL(v.nholds, 1);
    CU_ASSERT_TRUE(ss_peer_holds(&v, KD));
    CU_ASSERT_FALSE(ss_peer_holds(&v, KC));

    /* A receipt: heard, the key view unchanged. */
    CU_ASSERT_EQUAL(ss_peer_heard(&db, "PS1", 8000, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_EQUAL(v.last_heard, 8000);
    CU_ASSERT_EQUAL(v.heartbeat_time, 1100);
    CU_ASSERT_STRING_EQUAL(v.key_id, KB);
    CU_ASSERT_TRUE(ss_peer_holds(&v, KD));
    /* Our clock set back: heard now, by the clock as it is. */
    CU_ASSERT_EQUAL(ss_peer_heard(&db, "PS1", 7500, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_EQUAL(v.last_heard, 7500);
    hb = make_hb(1200, KB, "", KD);
    CU_ASSERT_EQUAL(ss_peer_heard_heartbeat(&db, "PS1", &hb, 7400, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_EQUAL(v.last_heard, 7400);

    /* A peer heard only by receipt has no key view. */
    CU_ASSERT_EQUAL(ss_peer_heard(&db, "PS2", 100, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS2", &v, &e), 1);
    CU_ASSERT_EQUAL(v.last_heard, 100);
    CU_ASSERT_FALSE(v.has_heartbeat);
    CU_ASSERT_STRING_EQUAL(v.key_id, "");
    CU_ASSERT_EQUAL(v.nholds, 0);

    /* The most held keys a heartbeat carries survive the round trip. */
    hb = make_hb(50, KA, "", "");
    for (int i = 0; i < SS_HEARTBEAT_HOLDS_MAX; i++)
        snprintf(hb.holds[i], SS_KEYID_TEXT + 1, "0123456789ABCD%02X", i);
    hb.nholds = SS_HEARTBEAT_HOLDS_MAX;
    CU_ASSERT_EQUAL(ss_peer_heard_heartbeat(&db, "PS3", &hb, 100, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS3", &v, &e), 1);
    CU_ASSERT_EQUAL_FATAL(v.nholds, SS_HEARTBEAT_HOLDS_MAX);
    for (int i = 0; i < SS_HEARTBEAT_HOLDS_MAX; i++)
        CU_ASSERT_STRING_EQUAL(v.holds[i], hb.holds[i]);
    CU_ASSERT_TRUE(ss_peer_holds(&v, "0123456789ABCD0F"));
    CU_ASSERT_FALSE(ss_peer_holds(&v, "0123456789ABCD10"));
    links_db_done(&db, dir);
}

static void test_links_heartbeat_due(void)
{
    ss_peer_view v;
    memset(&v, 0, sizeof v);
    /* Before the first: an interval from when the peer was added. */
    CU_ASSERT_FALSE(ss_heartbeat_is_due(&v, 1000, 1000, 3600));
    CU_ASSERT_FALSE(ss_heartbeat_is_due(&v, 1000, 4599, 3600));
    CU_ASSERT_TRUE(ss_heartbeat_is_due(&v, 1000, 4600, 3600));
    CU_ASSERT_TRUE(ss_heartbeat_is_due(&v, 1000, 999, 3600)); /* clock set back */
    /* After one: an interval from it, whenever the peer was added. */
    v.hb_sent = 10000;
    CU_ASSERT_FALSE(ss_heartbeat_is_due(&v, 1000, 10000, 3600));
    CU_ASSERT_FALSE(ss_heartbeat_is_due(&v, 1000, 13599, 3600));
    CU_ASSERT_TRUE(ss_heartbeat_is_due(&v, 1000, 13600, 3600));
    CU_ASSERT_TRUE(ss_heartbeat_is_due(&v, 1000, 9999, 3600)); /* clock set back */
    CU_ASSERT_FALSE(ss_heartbeat_is_due(&v, 20000, 10001, 3600));
    /* Asked for: at once. */
    v.hb_due = true;
    CU_ASSERT_TRUE(ss_heartbeat_is_due(&v, 1000, 10000, 3600));

    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_heartbeat_sent(&db, "PS1", 10000, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_EQUAL(v.hb_sent, 10000);
    CU_ASSERT_EQUAL(v.first_hb_sent, 10000);
    CU_ASSERT_FALSE(v.hb_due);
    CU_ASSERT_EQUAL(v.last_heard, 0);
    CU_ASSERT_EQUAL(ss_heartbeat_sent(&db, "PS1", 13600, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_EQUAL(v.hb_sent, 13600);
    CU_ASSERT_EQUAL(v.first_hb_sent, 10000);
    CU_ASSERT_FALSE(ss_heartbeat_is_due(&v, 0, 14000, 3600));

    /* Asked for one peer (a view made if needed), then for all. */
    CU_ASSERT_EQUAL(ss_heartbeat_request(&db, "PS1", &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_TRUE(v.hb_due);
    CU_ASSERT_TRUE(ss_heartbeat_is_due(&v, 0, 14000, 3600));
    CU_ASSERT_EQUAL(ss_heartbeat_request(&db, "PS2", &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS2", &v, &e), 1);
    CU_ASSERT_TRUE(v.hb_due);
    CU_ASSERT_EQUAL(v.hb_sent, 0);
    CU_ASSERT_EQUAL(ss_heartbeat_sent(&db, "PS1", 14000, &e), 0);
    CU_ASSERT_EQUAL(ss_heartbeat_sent(&db, "PS2", 14000, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_FALSE(v.hb_due);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS2", &v, &e), 1);
    CU_ASSERT_FALSE(v.hb_due);
    CU_ASSERT_EQUAL(v.first_hb_sent, 14000);
    CU_ASSERT_EQUAL(ss_heartbeat_request(&db, NULL, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
    CU_ASSERT_TRUE(v.hb_due);
    CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS2", &v, &e), 1);
    CU_ASSERT_TRUE(v.hb_due);
    links_db_done(&db, dir);
}

static void test_links_link_judge(void)
{
    ss_peer_view v;
    memset(&v, 0, sizeof v);
    /* interval 100 s, degraded after 12: 1200 s healthy, 2400 s degraded. */
    CU_ASSERT_EQUAL(ss_link_judge(&v, 1000000, 100, 12), SS_LINK_UNKNOWN);
    v.last_heard = 1000;
    CU_ASSERT_EQUAL(ss_link_judge(&v, 1000, 100, 12), SS_LINK_HEALTHY);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 2200, 100, 12), SS_LINK_HEALTHY);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 2201, 100, 12), SS_LINK_DEGRADED);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 3400, 100, 12), SS_LINK_DEGRADED);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 3401, 100, 12), SS_LINK_FAILED);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 1000000, 100, 12), SS_LINK_FAILED);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 1301, 100, 3), SS_LINK_DEGRADED);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 1601, 100, 3), SS_LINK_FAILED);
    /* Heard counts, not our heartbeats. */
    v.first_hb_sent = 1;
    v.hb_sent = 3000;
    CU_ASSERT_EQUAL(ss_link_judge(&v, 2200, 100, 12), SS_LINK_HEALTHY);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 3401, 100, 12), SS_LINK_FAILED);
    /* Never heard: from our first heartbeat, unknown until it is overdue. */
    v.last_heard = 0;
    v.first_hb_sent = 5000;
    CU_ASSERT_EQUAL(ss_link_judge(&v, 5000, 100, 12), SS_LINK_UNKNOWN);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 6200, 100, 12), SS_LINK_UNKNOWN);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 6201, 100, 12), SS_LINK_DEGRADED);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 7400, 100, 12), SS_LINK_DEGRADED);
    CU_ASSERT_EQUAL(ss_link_judge(&v, 7401, 100, 12), SS_LINK_FAILED);

    CU_ASSERT_STRING_EQUAL(ss_link_name(SS_LINK_UNKNOWN), "unknown");
    CU_ASSERT_STRING_EQUAL(ss_link_name(SS_LINK_HEALTHY), "healthy");
    CU_ASSERT_STRING_EQUAL(ss_link_name(SS_LINK_DEGRADED), "degraded");
    CU_ASSERT_STRING_EQUAL(ss_link_name(SS_LINK_FAILED), "failed");
    CU_ASSERT_STRING_EQUAL(ss_link_name((enum ss_link)9), "unknown");

    /* The state judged is kept with its time, each in turn. */
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    static const enum ss_link states[] = {SS_LINK_DEGRADED, SS_LINK_FAILED, SS_LINK_HEALTHY};
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(ss_link_set(&db, "PS1", states[i], 100 + i, &e), 0);
        CU_ASSERT_EQUAL_FATAL(ss_peer_view_get(&db, "PS1", &v, &e), 1);
        CU_ASSERT_EQUAL(v.link, states[i]);
        CU_ASSERT_EQUAL(v.link_since, 100 + i);
    }
    CU_ASSERT_EQUAL(v.last_heard, 0);
    links_db_done(&db, dir);
}

static void test_links_rollout_complete_once(void)
{
    ss_db db;
    char *dir = links_db(&db);
    ss_error e = {0};
    int64_t when = -1;
    CU_ASSERT_EQUAL(ss_rollout_complete_get(&db, KA, &when, &e), 0);
    CU_ASSERT_EQUAL(when, 0);
    CU_ASSERT_EQUAL(ss_rollout_complete_set(&db, KA, 100, &e), 1);
    CU_ASSERT_EQUAL(ss_rollout_complete_set(&db, KA, 200, &e), 0);
    CU_ASSERT_EQUAL(ss_rollout_complete_get(&db, KA, &when, &e), 0);
    CU_ASSERT_EQUAL(when, 100);
    CU_ASSERT_EQUAL(ss_rollout_complete_get(&db, KB, &when, &e), 0);
    CU_ASSERT_EQUAL(when, 0);
    CU_ASSERT_EQUAL(ss_rollout_complete_set(&db, KB, 300, &e), 1);
    CU_ASSERT_EQUAL(ss_rollout_complete_get(&db, KB, &when, &e), 0);
    CU_ASSERT_EQUAL(when, 300);
    links_db_done(&db, dir);
}

/* ------------------------------------------- the key directory on LDAP */

static void test_dirurl_parse_good(void)
{
    ss_dirurl u;
    ss_error e = {0};
    CU_ASSERT_TRUE(ss_dirurl_is_ldap("ldap://x/dc=a"));
    CU_ASSERT_TRUE(ss_dirurl_is_ldap("LDAPS://x/dc=a"));
    CU_ASSERT_FALSE(ss_dirurl_is_ldap("/srv/keys"));
    CU_ASSERT_FALSE(ss_dirurl_is_ldap("ldapi:///"));
    CU_ASSERT_EQUAL(ss_dirurl_parse("ldap://ldap.example.org/ou=keys,dc=example,dc=org", &u, &e),
                    0);
    CU_ASSERT_FALSE(u.ldaps);
    CU_ASSERT_STRING_EQUAL(u.host, "ldap.example.org");
    CU_ASSERT_EQUAL(u.port, 389);
    CU_ASSERT_STRING_EQUAL(u.base_dn, "ou=keys,dc=example,dc=org");
    CU_ASSERT_STRING_EQUAL(u.server, "ldap://ldap.example.org:389");
    CU_ASSERT_EQUAL(ss_dirurl_parse("ldaps://10.0.0.1/dc=x", &u, &e), 0);
    CU_ASSERT_TRUE(u.ldaps);
    CU_ASSERT_EQUAL(u.port, 636);
    CU_ASSERT_EQUAL(ss_dirurl_parse("ldap://[::1]:1389/o=Acme%2C%20Inc.,c=DE", &u, &e), 0);
    CU_ASSERT_STRING_EQUAL(u.host, "[::1]");
    CU_ASSERT_EQUAL(u.port, 1389);
    CU_ASSERT_STRING_EQUAL(u.base_dn, "o=Acme, Inc.,c=DE");
    CU_ASSERT_STRING_EQUAL(u.server, "ldap://[::1]:1389");
}

static void test_dirurl_parse_refusals(void)
{
    static const struct {
        const char *url, *says;
    } bad[] = {
        {"ldap:///dc=x", "names no host"},
        {"ldap://user@host/dc=x", "user part"},
        {"ldap://host", "names no base DN"},
        {"ldap://host/", "names no base DN"},
        {"ldap://host/dc=x?cn?sub", "only the base DN"},
        {"ldap://host/dc=x#frag", "only the base DN"},
        {"ldap://host/dc=a b", "percent-encoded"},
        {"ldap://host/dc=%zz", "two hex digits"},
        {"ldap://host/dc=%0a", "control character"},
        {"ldap://host:0/dc=x", "port"},
        {"ldap://host:70000/dc=x", "port"},
        {"ldap://host:/dc=x", "port"},
        {"ldap://ho_st/dc=x", "letters, digits"},
        {"ldap://[zz]/dc=x", "IPv6"},
        {"http://host/dc=x", "not an ldap"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ss_dirurl u;
        ss_error e = {0};
        CU_ASSERT_EQUAL(ss_dirurl_parse(bad[i].url, &u, &e), -1);
        CU_ASSERT_EQUAL(e.code, SS_E_CONF);
        if (!strstr(e.msg, bad[i].says))
            fprintf(stderr, "\n%s: '%s' lacks '%s'\n", bad[i].url, e.msg, bad[i].says);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, bad[i].says));
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, bad[i].url));
    }
}

static int conf_says(const char *text, const char *says)
{
    ss_conf c;
    ss_error e = {0};
    ss_conf_defaults(&c);
    int rc = ss_conf_parse(&c, text, "site.conf", &e);
    if (says && (rc == 0 || !strstr(e.msg, says)))
        fprintf(stderr, "\n'%s': rc %d '%s' lacks '%s'\n", text, rc, e.msg, says);
    return says ? rc != 0 && strstr(e.msg, says) != NULL : rc == 0;
}

static void test_dirconf_validation(void)
{
    CU_ASSERT_TRUE(conf_says("directory = ldap://h/dc=x\ndirectory_starttls = yes\n"
                             "directory_bind_dn = cn=PS1,dc=x\n"
                             "directory_password_file = keys/ldap.pw\n"
                             "directory_ca_file = /etc/ca.pem\ndirectory_timeout = 2s\n",
                             NULL));
    CU_ASSERT_TRUE(conf_says("directory = /srv/keys\n", NULL));
    CU_ASSERT_TRUE(
        conf_says("directory = ldaps://h/dc=x\ndirectory_starttls = yes\n", "ldaps is TLS"));
    CU_ASSERT_TRUE(conf_says("directory = ldap://h/dc=x\ndirectory_bind_dn = cn=a\n",
                             "directory_password_file is not"));
    CU_ASSERT_TRUE(conf_says("directory = ldap://h/dc=x\ndirectory_password_file = p\n",
                             "directory_bind_dn is not"));
    CU_ASSERT_TRUE(
        conf_says("directory = /srv/keys\ndirectory_bind_dn = cn=a\n", "directory server only"));
    CU_ASSERT_TRUE(conf_says("directory_starttls = yes\n", "directory server only"));
    CU_ASSERT_TRUE(conf_says("directory = ldap://h\n", "names no base DN"));
    CU_ASSERT_TRUE(
        conf_says("directory = ldap://h/dc=x\ndirectory_timeout = 0\n", "directory_timeout"));
}

/* A directory next key value for site PS1: cur vouches for next. */
static void make_next_value(ss_seckey **cur, ss_pubkey *cur_pk, ss_seckey **next,
                            ss_pubkey *next_pk, char *out, size_t len)
{
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_keypair_generate(cur_pk, cur, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_keypair_generate(next_pk, next, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_dirnext_payload("PS1", *cur, *next, 1900000000, out, len, &e), 0);
}

static void test_vouch_roundtrip_and_format(void)
{
    ss_seckey *cur, *next;
    ss_pubkey cur_pk, next_pk, got;
    char value[2048], cur_id[SS_KEYID_HEX + 1];
    int64_t na = 0;
    ss_error e = {0};
    make_next_value(&cur, &cur_pk, &next, &next_pk, value, sizeof value);
    ss_keyid_hex(cur_pk.keyid, cur_id);
    /* key file (2 lines), rollover proof, vouch: four lines */
    int lines = 0;
    for (const char *p = value; *p; p++)
        lines += *p == '\n';
    CU_ASSERT_EQUAL(lines, 4);
    char expect[64];
    snprintf(expect, sizeof expect, "\nsitespool-vouch/1 previous=%s vouch=", cur_id);
    CU_ASSERT_PTR_NOT_NULL(strstr(value, expect));
    CU_ASSERT_EQUAL(ss_dirnext_parse("PS1", value, strlen(value), &cur_pk, &got, &na, &e), 0);
    CU_ASSERT_EQUAL(memcmp(&got, &next_pk, sizeof got), 0);
    CU_ASSERT_EQUAL(na, 1900000000);
    /* another site: its comment names PS1 */
    CU_ASSERT_EQUAL(ss_dirnext_parse("SS1", value, strlen(value), &cur_pk, &got, &na, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_FORMAT);
    /* another current key: the proof and vouch name the real one */
    ss_seckey *other;
    ss_pubkey other_pk;
    CU_ASSERT_EQUAL_FATAL(ss_keypair_generate(&other_pk, &other, &e), 0);
    CU_ASSERT_EQUAL(ss_dirnext_parse("PS1", value, strlen(value), &other_pk, &got, &na, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, cur_id));
    /* no vouch line */
    char *last = strstr(value, "sitespool-vouch/1");
    size_t cut = (size_t)(last - value);
    CU_ASSERT_EQUAL(ss_dirnext_parse("PS1", value, cut, &cur_pk, &got, &na, &e), -1);
    /* a vouch by the wrong key: signed by other, naming cur */
    char forged[2048];
    CU_ASSERT_EQUAL_FATAL(
        ss_dirnext_payload("PS1", other, next, 1900000000, forged, sizeof forged, &e), 0);
    char *fv = strstr(forged, " vouch=");
    char *ov = strstr(value, " vouch=");
    char mixed[2048];
    snprintf(mixed, sizeof mixed, "%.*s%s", (int)(ov - value), value, fv);
    CU_ASSERT_EQUAL(ss_dirnext_parse("PS1", mixed, strlen(mixed), &cur_pk, &got, &na, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADSIG);
    /* the validity end is vouched for too */
    char *va = strstr(value, "valid until 1900000000");
    CU_ASSERT_PTR_NOT_NULL_FATAL(va);
    va[strlen("valid until 19")] = '1';
    CU_ASSERT_EQUAL(ss_dirnext_parse("PS1", value, strlen(value), &cur_pk, &got, &na, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADSIG);
    ss_seckey_free(cur);
    ss_seckey_free(next);
    ss_seckey_free(other);
}

static void test_dirrec_fill(void)
{
    ss_seckey *cur, *next;
    ss_pubkey cur_pk, next_pk;
    char value[2048], cur_text[512], comment[128];
    make_next_value(&cur, &cur_pk, &next, &next_pk, value, sizeof value);
    ss_pubkey_comment("PS1", 1800000000, comment, sizeof comment);
    CU_ASSERT_EQUAL_FATAL(ss_pubkey_format(&cur_pk, comment, cur_text, sizeof cur_text), 0);
    ss_dirrec r;
    memset(&r, 0, sizeof r);
    ss_dirrec_fill(&r, "PS1", cur_text, value, "20270101000000Z", "20300101000000Z");
    CU_ASSERT_TRUE(r.found && r.has_current && r.has_next && r.next_ok);
    CU_ASSERT_EQUAL(r.current_not_after, 1800000000); /* the key file's own */
    CU_ASSERT_EQUAL(memcmp(&r.next, &next_pk, sizeof next_pk), 0);
    CU_ASSERT_STRING_EQUAL(r.problem, "");
    /* a record for another site is not PS1's current key */
    memset(&r, 0, sizeof r);
    ss_dirrec_fill(&r, "SS1", cur_text, NULL, NULL, NULL);
    CU_ASSERT_FALSE(r.has_current);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.problem, "names PS1, not site SS1"));
    /* a broken next key is never used; a bad time is named */
    memset(&r, 0, sizeof r);
    value[strlen(value) - 5] ^= 1;
    ss_dirrec_fill(&r, "PS1", cur_text, value, "2027-01-01", NULL);
    CU_ASSERT_TRUE(r.has_current && r.has_next);
    CU_ASSERT_FALSE(r.next_ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.problem, "GeneralizedTime"));
    int64_t t;
    char back[16];
    CU_ASSERT_EQUAL(ss_gentime_parse("20270101000000Z", &t), 0);
    CU_ASSERT_EQUAL(t, 1798761600);
    ss_gentime_format(t, back);
    CU_ASSERT_STRING_EQUAL(back, "20270101000000Z");
    CU_ASSERT_EQUAL(ss_gentime_parse("20271301000000Z", &t), -1);
    CU_ASSERT_EQUAL(ss_gentime_parse("202701010000Z", &t), -1);
    ss_seckey_free(cur);
    ss_seckey_free(next);
}

static int password_says(const char *root, const char *file, const char *text, mode_t mode,
                         const char *want, const char *says)
{
    ss_conf c;
    ss_conf_defaults(&c);
    snprintf(c.directory_password_file, sizeof c.directory_password_file, "%s", file);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, file);
    unlink(path);
    if (text) {
        tu_write(root, file, text, strlen(text));
        chmod(path, mode);
    }
    char *secret = NULL;
    ss_error e = {0};
    int rc = ss_dir_password_load(root, &c, &secret, &e);
    int ok = want ? rc == 0 && secret && !strcmp(secret, want)
                  : rc == -1 && !secret && strstr(e.msg, says) && strstr(e.msg, path);
    if (!ok) fprintf(stderr, "\n%s: rc %d '%s'\n", file, rc, e.msg);
    if (secret) sodium_free(secret);
    return ok;
}

static void test_dir_password_file(void)
{
    char *root = tu_tempdir("ldappw");
    CU_ASSERT_TRUE(password_says(root, "pw", "s3cret\n", 0600, "s3cret", NULL));
    CU_ASSERT_TRUE(password_says(root, "pw", "s3cret", 0400, "s3cret", NULL));
    CU_ASSERT_TRUE(password_says(root, "pw", "s3cret\r\n", 0600, "s3cret", NULL));
    CU_ASSERT_TRUE(password_says(root, "pw", "s3cret\n", 0640, NULL, "chmod 600"));
    CU_ASSERT_TRUE(password_says(root, "pw", "s3cret\n", 0604, NULL, "mode 0604"));
    CU_ASSERT_TRUE(password_says(root, "pw", "\n", 0600, NULL, "is empty"));
    CU_ASSERT_TRUE(password_says(root, "pw", "a\nb\n", 0600, NULL, "more than one line"));
    CU_ASSERT_TRUE(password_says(root, "none", NULL, 0600, NULL, "cannot be used"));
    /* an absolute path is taken as it is */
    char abs[PATH_MAX];
    snprintf(abs, sizeof abs, "%s/pw", root);
    ss_conf c;
    ss_conf_defaults(&c);
    snprintf(c.directory_password_file, sizeof c.directory_password_file, "%s", abs);
    tu_write(root, "pw", "x\n", 2);
    chmod(abs, 0600);
    char *secret = NULL;
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_dir_password_load("/nonexistent", &c, &secret, &e), 0);
    if (secret) sodium_free(secret);
    /* owned by another user: refused (root can make one) */
    if (geteuid() == 0 && chown(abs, 65534, 65534) == 0) {
        secret = NULL;
        CU_ASSERT_EQUAL(ss_dir_password_load("/nonexistent", &c, &secret, &e), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "not to the user running sitespool"));
    }
    /* a symbolic link is not followed */
    unlink(abs);
    tu_write(root, "real", "x\n", 2);
    char real[PATH_MAX];
    snprintf(real, sizeof real, "%s/real", root);
    chmod(real, 0600);
    CU_ASSERT_EQUAL(symlink(real, abs), 0);
    secret = NULL;
    CU_ASSERT_EQUAL(ss_dir_password_load("/nonexistent", &c, &secret, &e), -1);
    tu_rm_rf(root);
    free(root);
}

int main(void)
{
    static const tu_test tests[] = {
        {"signature round trip", test_sig_roundtrip},
        {"signature with CRLF line ends is accepted", test_sig_crlf_line_ends_accepted},
        {"truncated: each line missing", test_sig_truncated_each_line_missing},
        {"truncated: no final newline", test_sig_truncated_no_final_newline},
        {"truncated: cut inside the signature line", test_sig_truncated_inside_line},
        {"bad base64 in the signature line", test_sig_bad_base64_signature_line},
        {"bad base64 in the global signature line", test_sig_bad_base64_global_line},
        {"wrong length of the signature line", test_sig_wrong_length_signature_line},
        {"wrong length of the global signature line", test_sig_wrong_length_global_line},
        {"legacy algorithm Ed refused", test_sig_legacy_algorithm_Ed},
        {"unknown algorithm refused", test_sig_unknown_algorithm},
        {"key id mismatch names both ids", test_sig_keyid_mismatch_names_both_ids},
        {"trusted comment over 8192 bytes", test_sig_trusted_comment_too_long},
        {"trusted comment of exactly 8192 bytes verifies",
         test_sig_trusted_comment_at_limit_verifies},
        {"trusted comment with control characters", test_sig_trusted_comment_control_chars},
        {"missing 'untrusted comment: ' prefix", test_sig_missing_untrusted_prefix},
        {"missing 'trusted comment: ' prefix", test_sig_missing_trusted_prefix},
        {"trailing garbage after the global signature", test_sig_trailing_garbage},
        {"NUL bytes", test_sig_nul_bytes},
        {"modified trusted comment (BADGLOBAL)", test_sig_modified_trusted_comment},
        {"modified file (BADSIG)", test_sig_modified_file},
        {"every prefix and byte flip: refused, never a crash",
         test_sig_every_prefix_and_byte_flip_never_crashes},
        {"key id hex matches stock minisign", test_keyid_hex_matches_stock_minisign},
        {"key id hex is little-endian", test_keyid_hex_is_little_endian},
        {"key id parse: minisign's unpadded form and lower case",
         test_keyid_parse_accepts_unpadded_and_lower_case},
        {"public key round trip and parse errors", test_pubkey_roundtrip_and_parse_errors},
        {"secret key with loose permissions refused", test_seckey_permission_refused},
        {"password-encrypted secret key refused", test_seckey_password_encrypted_refused},
        {"damaged secret key refused", test_seckey_damaged_refused},
        {"1 GiB file signs and verifies in flat memory",
         test_large_file_signs_and_verifies_in_flat_memory},
        {"log line shape", test_log_line_shape},
        {"log control characters become '?'", test_log_control_chars_replaced},
        {"log rotation replaces .lo_", test_log_rotation_replaces_lo_},
        {"log rotation with concurrent writers never splits lines",
         test_log_rotation_concurrent_writers_never_split_lines},
        {"catalogue ids, ranges and fixed meanings", test_catalogue_ids_ranges_and_fixed_meanings},
        {"insertion strings render", test_msg_render_insertion_strings},
        {"report stores, logs and writes STATMSG", test_report_stores_logs_and_statmsg},
        {"report runs notify_command with the message in its environment",
         test_report_runs_notify_command_with_environment},
        {"site.db is WAL at the current schema version", test_db_wal_and_schema_version},
        {"a newer site.db is refused", test_db_newer_schema_refused},
        {"a command's trust change writes the despooler's marker, the despooler's own does not",
         test_trust_change_writes_marker_unless_despooler},
        {"links: fates due, replaced, taken oldest first, forgotten unless changed",
         test_links_receipts_due},
        {"links: sent pairs queued and delivered, reports forgotten",
         test_links_sent_queued_and_delivered},
        {"links: receipts apply to the peer's own pairs, never undo a final fate",
         test_links_sent_apply},
        {"links: sent summary and listing", test_links_sent_summary_and_each},
        {"links: overdue pairs told once per peer", test_links_sent_overdue_told_once},
        {"links: pruning forgets old final fates only", test_links_sent_prune},
        {"links: heartbeats and the key view, reordered", test_links_peer_heartbeats},
        {"links: heartbeat due and requested", test_links_heartbeat_due},
        {"links: link states by the clock", test_links_link_judge},
        {"links: a rollout completes once", test_links_rollout_complete_once},
        {"directory URL: ldap:// and ldaps:// parsed, base DN percent-decoded",
         test_dirurl_parse_good},
        {"directory URL: every malformed part refused, naming it", test_dirurl_parse_refusals},
        {"directory settings: agree with the URL, or are refused", test_dirconf_validation},
        {"directory next key: proof and vouch round trip, forgeries refused",
         test_vouch_roundtrip_and_format},
        {"directory entry values: parsed strictly, problems named", test_dirrec_fill},
        {"directory password file: owner, mode, one line", test_dir_password_file},
    };
    return tu_run("keystore", tests, sizeof tests / sizeof tests[0]);
}
