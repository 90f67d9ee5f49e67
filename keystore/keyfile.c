/*
 * keyfile.c - key file conventions and proofs of possession.  See keyfile.h.
 *
 * Diagnostics: every refusal says which part is wrong and, for a site
 * mismatch, both sites.
 */
#include "keyfile.h"

#include <inttypes.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY_MAGIC "sitespool-key/1"
#define ROLLOVER_MAGIC "sitespool-rollover/1"
#define VOUCH_MAGIC "sitespool-vouch/1"
#define COMMENT_SITE_TAG "for site "
#define PROOF_B64_LEN sodium_base64_ENCODED_LEN(crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL)

void ss_pubkey_comment(const char *site, int64_t not_after, char *out, size_t len)
{
    if (not_after)
        snprintf(out, len, "sitespool public key for site %s valid until %" PRId64, site,
                 not_after);
    else
        snprintf(out, len, "sitespool public key for site %s", site);
}

int64_t ss_pubkey_comment_not_after(const char *comment)
{
    const char *p = strstr(comment, " valid until ");
    if (!p) return 0;
    char *end;
    long long v = strtoll(p + 13, &end, 10);
    return (end != p + 13 && v > 0) ? (int64_t)v : 0;
}

int ss_pubkey_comment_site(const char *comment, char code[SS_SITE_CODE_MAX + 1])
{
    const char *tag = strstr(comment, COMMENT_SITE_TAG);
    if (!tag) return 0;
    const char *p = tag + strlen(COMMENT_SITE_TAG);
    size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    if (n > SS_SITE_CODE_MAX || (p[n] != '\0' && p[n] != ' ')) return 0;
    memcpy(code, p, n);
    code[n] = '\0';
    if (ss_site_code_valid(code)) return 1;
    code[0] = '\0';
    return 0;
}

int ss_keyfile_name_site(const char *path, char code[SS_SITE_CODE_MAX + 1])
{
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    const char *base = basename(copy);
    const char *dot = strrchr(base, '.');
    if (!dot || (strcasecmp(dot, ".pub") && strcasecmp(dot, ".ct4") && strcasecmp(dot, ".ct5")))
        return 0;
    size_t n = (size_t)(dot - base);
    if (n > SS_SITE_CODE_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        code[i] = (char)(base[i] >= 'a' && base[i] <= 'z' ? base[i] - 'a' + 'A' : base[i]);
    code[n] = '\0';
    if (ss_site_code_valid(code)) return 1;
    code[0] = '\0';
    return 0;
}

int ss_keyfile_load(const char *path, ss_keyfile *kf, ss_error *e)
{
    memset(kf, 0, sizeof *kf);
    if (ss_pubkey_load(path, &kf->pk, kf->comment, sizeof kf->comment, e) != 0) return -1;
    (void)ss_keyfile_name_site(path, kf->name_site);
    (void)ss_pubkey_comment_site(kf->comment, kf->comment_site);
    kf->not_after = ss_pubkey_comment_not_after(kf->comment);
    return 0;
}

/* ----------------------------------------------------------- proofs */

static void proof_sign(const ss_seckey *sk, const char *statement, char b64[PROOF_B64_LEN])
{
    unsigned char proof[crypto_sign_BYTES];
    crypto_sign_detached(proof, NULL, (const unsigned char *)statement, strlen(statement), sk->sk);
    sodium_bin2base64(b64, PROOF_B64_LEN, proof, sizeof proof, sodium_base64_VARIANT_ORIGINAL);
}

static int proof_verify(const ss_pubkey *pk, const char *statement, const char *b64, ss_error *e)
{
    unsigned char proof[crypto_sign_BYTES];
    size_t got;
    const char *b64_end;
    if (sodium_base642bin(proof, sizeof proof, b64, strlen(b64), NULL, &got, &b64_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        got != sizeof proof || *b64_end)
        return ss_err(e, SS_E_FORMAT, "the proof of possession is not valid base64");
    char id[SS_KEYID_HEX + 1];
    ss_keyid_hex(pk->keyid, id);
    if (crypto_sign_verify_detached(proof, (const unsigned char *)statement, strlen(statement),
                                    pk->pk) != 0)
        return ss_err(e, SS_E_BADSIG, "the proof of possession of key %s does not verify", id);
    return 0;
}

/* Writes the public key file of pk for site, then the proof line. */
static int payload_write(const char *site, const ss_pubkey *pk, int64_t not_after,
                         const char *proof_line, char *out, size_t len, ss_error *e)
{
    char comment[128];
    ss_pubkey_comment(site, not_after, comment, sizeof comment);
    if (ss_pubkey_format(pk, comment, out, len) != 0)
        return ss_err(e, SS_E_TOOBIG, "key payload too long");
    size_t used = strlen(out);
    int n = snprintf(out + used, len - used, "%s\n", proof_line);
    return (n < 0 || (size_t)n >= len - used) ? ss_err(e, SS_E_TOOBIG, "key payload too long") : 0;
}

/* Splits a payload into its public key (first two lines, checked to name
 * site; *key_ok once they did) and its proof line (third line, nothing
 * after it). */
static int payload_split(const char *site, const char *text, size_t len, ss_pubkey *pk,
                         int64_t *not_after, bool *key_ok, char *line, size_t line_cap, ss_error *e)
{
    *key_ok = false;
    const char *nl = memchr(text, '\n', len);
    const char *nl2 = nl ? memchr(nl + 1, '\n', len - (size_t)(nl + 1 - text)) : NULL;
    if (!nl2) return ss_err(e, SS_E_FORMAT, "the payload is not a public key and a proof");
    char comment[SS_COMMENT_MAX + 1], named[SS_SITE_CODE_MAX + 1];
    if (ss_pubkey_parse(text, (size_t)(nl2 + 1 - text), pk, comment, sizeof comment, e) != 0)
        return -1;
    if (!ss_pubkey_comment_site(comment, named))
        return ss_err(e, SS_E_FORMAT, "the key's comment names no site (it must name %s)", site);
    if (strcmp(named, site) != 0)
        return ss_err(e, SS_E_FORMAT, "the key's comment names site %s, the instruction site %s",
                      named, site);
    *not_after = ss_pubkey_comment_not_after(comment);
    *key_ok = true;
    const char *p = nl2 + 1;
    size_t n = len - (size_t)(p - text);
    if (n && p[n - 1] == '\n') n--;
    if (n == 0) return ss_err(e, SS_E_FORMAT, "the payload carries no proof of possession");
    if (n >= line_cap || memchr(p, '\n', n) || memchr(p, '\0', n))
        return ss_err(e, SS_E_FORMAT, "the proof line is malformed");
    memcpy(line, p, n);
    line[n] = '\0';
    return 0;
}

int ss_key_offer_payload(const char *site, const ss_seckey *sk, int64_t not_after, char *out,
                         size_t len, ss_error *e)
{
    ss_pubkey pk;
    char id[SS_KEYID_HEX + 1], statement[96], proof[PROOF_B64_LEN], line[160];
    ss_seckey_public(sk, &pk);
    ss_keyid_hex(pk.keyid, id);
    snprintf(statement, sizeof statement, KEY_MAGIC " site=%s key=%s", site, id);
    proof_sign(sk, statement, proof);
    snprintf(line, sizeof line, KEY_MAGIC " proof=%s", proof);
    return payload_write(site, &pk, not_after, line, out, len, e);
}

int ss_key_offer_parse(const char *site, const char *text, size_t len, ss_pubkey *pk,
                       int64_t *not_after, ss_error *e)
{
    char line[256], id[SS_KEYID_HEX + 1], statement[96];
    bool key_ok;
    if (payload_split(site, text, len, pk, not_after, &key_ok, line, sizeof line, e) != 0)
        return -1;
    static const char prefix[] = KEY_MAGIC " proof=";
    if (strncmp(line, prefix, sizeof prefix - 1) != 0)
        return ss_err(e, SS_E_FORMAT,
                      "the payload carries no proof of possession (expected '" KEY_MAGIC
                      " proof=...')");
    ss_keyid_hex(pk->keyid, id);
    snprintf(statement, sizeof statement, KEY_MAGIC " site=%s key=%s", site, id);
    return proof_verify(pk, statement, line + sizeof prefix - 1, e);
}

static void rollover_statement(const char *site, const char *previous, const char *next, char *out,
                               size_t len)
{
    snprintf(out, len, ROLLOVER_MAGIC " site=%s previous=%s next=%s", site, previous, next);
}

int ss_rollover_payload(const char *site, const ss_pubkey *old_pk, const ss_seckey *next_sk,
                        int64_t next_not_after, char *out, size_t len, ss_error *e)
{
    ss_pubkey next;
    char old_id[SS_KEYID_HEX + 1], next_id[SS_KEYID_HEX + 1], statement[128], proof[PROOF_B64_LEN],
        line[192];
    ss_seckey_public(next_sk, &next);
    ss_keyid_hex(old_pk->keyid, old_id);
    ss_keyid_hex(next.keyid, next_id);
    rollover_statement(site, old_id, next_id, statement, sizeof statement);
    proof_sign(next_sk, statement, proof);
    snprintf(line, sizeof line, ROLLOVER_MAGIC " previous=%s proof=%s", old_id, proof);
    return payload_write(site, &next, next_not_after, line, out, len, e);
}

int ss_rollover_parse(const char *site, const char *text, size_t len,
                      unsigned char previous[SS_KEYID_BYTES], ss_pubkey *next, bool *next_parsed,
                      int64_t *next_not_after, ss_error *e)
{
    char line[256], old_id[SS_KEYID_HEX + 1], next_id[SS_KEYID_HEX + 1], statement[128];
    /* A rollover without a valid proof still presents its next key. */
    if (payload_split(site, text, len, next, next_not_after, next_parsed, line, sizeof line, e) !=
        0)
        return -1;
    /* Exactly: "<magic> previous=<16 upper-case hex> proof=<base64>". */
    static const char prefix[] = ROLLOVER_MAGIC " previous=", middle[] = " proof=";
    const char *p = line + sizeof prefix - 1;
    if (strncmp(line, prefix, sizeof prefix - 1) != 0 ||
        strspn(p, "0123456789ABCDEF") != SS_KEYID_HEX ||
        strncmp(p + SS_KEYID_HEX, middle, sizeof middle - 1) != 0)
        return ss_err(e, SS_E_FORMAT, "the rollover proof line is malformed");
    memcpy(old_id, p, SS_KEYID_HEX);
    old_id[SS_KEYID_HEX] = '\0';
    if (ss_keyid_parse(old_id, previous) != 0)
        return ss_err(e, SS_E_FORMAT, "the rollover proof line is malformed");
    ss_keyid_hex(next->keyid, next_id);
    rollover_statement(site, old_id, next_id, statement, sizeof statement);
    return proof_verify(next, statement, p + SS_KEYID_HEX + sizeof middle - 1, e);
}

/* ------------------------------------------------- directory next key */

static void vouch_statement(const char *site, const char *previous, const ss_pubkey *next,
                            int64_t not_after, char *out, size_t len)
{
    char next_id[SS_KEYID_HEX + 1], hex[SS_PK_BYTES * 2 + 1];
    ss_keyid_hex(next->keyid, next_id);
    sodium_bin2hex(hex, sizeof hex, next->pk, sizeof next->pk);
    snprintf(out, len, VOUCH_MAGIC " site=%s previous=%s next=%s key=%s not_after=%" PRId64, site,
             previous, next_id, hex, not_after);
}

int ss_dirnext_payload(const char *site, const ss_seckey *cur_sk, const ss_seckey *next_sk,
                       int64_t next_not_after, char *out, size_t len, ss_error *e)
{
    ss_pubkey cur, next;
    char cur_id[SS_KEYID_HEX + 1], statement[256], vouch[PROOF_B64_LEN];
    ss_seckey_public(cur_sk, &cur);
    ss_seckey_public(next_sk, &next);
    if (ss_rollover_payload(site, &cur, next_sk, next_not_after, out, len, e) != 0) return -1;
    ss_keyid_hex(cur.keyid, cur_id);
    vouch_statement(site, cur_id, &next, next_not_after, statement, sizeof statement);
    proof_sign(cur_sk, statement, vouch);
    size_t used = strlen(out);
    int n = snprintf(out + used, len - used, VOUCH_MAGIC " previous=%s vouch=%s\n", cur_id, vouch);
    return (n < 0 || (size_t)n >= len - used) ? ss_err(e, SS_E_TOOBIG, "next key value too long")
                                              : 0;
}

/* The vouch line: "<magic> previous=<16 upper-case hex> vouch=<base64>". */
static int vouch_check(const char *site, const char *line, const ss_pubkey *cur,
                       const ss_pubkey *next, int64_t not_after, ss_error *e)
{
    static const char prefix[] = VOUCH_MAGIC " previous=", middle[] = " vouch=";
    char cur_id[SS_KEYID_HEX + 1], statement[256];
    ss_keyid_hex(cur->keyid, cur_id);
    const char *p = line + sizeof prefix - 1;
    if (strncmp(line, prefix, sizeof prefix - 1) != 0 ||
        strspn(p, "0123456789ABCDEF") != SS_KEYID_HEX ||
        strncmp(p + SS_KEYID_HEX, middle, sizeof middle - 1) != 0)
        return ss_err(e, SS_E_FORMAT,
                      "the vouch line is malformed (expected '" VOUCH_MAGIC
                      " previous=<key id> vouch=<base64>')");
    if (strncmp(p, cur_id, SS_KEYID_HEX) != 0)
        return ss_err(e, SS_E_FORMAT, "the vouch names previous key %.16s, the current key is %s",
                      p, cur_id);
    vouch_statement(site, cur_id, next, not_after, statement, sizeof statement);
    if (proof_verify(cur, statement, p + SS_KEYID_HEX + sizeof middle - 1, e) != 0)
        return ss_err(e, e->code, "the vouch by current key %s: %s", cur_id, e->msg);
    return 0;
}

int ss_dirnext_parse(const char *site, const char *text, size_t len, const ss_pubkey *cur,
                     ss_pubkey *next, int64_t *next_not_after, ss_error *e)
{
    size_t n = len;
    if (n && text[n - 1] == '\n') n--;
    if (memchr(text, '\0', n)) return ss_err(e, SS_E_FORMAT, "the next key value holds a NUL");
    const char *last = n ? memrchr(text, '\n', n) : NULL;
    if (!last) return ss_err(e, SS_E_FORMAT, "the next key value carries no vouch line");
    char line[256], cur_id[SS_KEYID_HEX + 1], named[SS_KEYID_HEX + 1];
    size_t line_len = n - (size_t)(last + 1 - text);
    if (line_len == 0 || line_len >= sizeof line)
        return ss_err(e, SS_E_FORMAT, "the vouch line is malformed");
    memcpy(line, last + 1, line_len);
    line[line_len] = '\0';
    unsigned char previous[SS_KEYID_BYTES];
    bool parsed;
    if (ss_rollover_parse(site, text, (size_t)(last + 1 - text), previous, next, &parsed,
                          next_not_after, e) != 0)
        return -1;
    ss_keyid_hex(cur->keyid, cur_id);
    ss_keyid_hex(previous, named);
    if (memcmp(previous, cur->keyid, SS_KEYID_BYTES) != 0)
        return ss_err(e, SS_E_FORMAT,
                      "the next key's rollover proof names previous key %s, the current key is %s",
                      named, cur_id);
    return vouch_check(site, line, cur, next, *next_not_after, e);
}
