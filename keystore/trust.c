/*
 * trust.c - trust rules over the keystore.  See trust.h.
 */
#include "trust.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ss_site_keys_in_state(ss_db *db, const char *site, const char *state,
                          char ids[][SS_KEYID_HEX + 1], int max, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db, "SELECT key_id FROM keys WHERE site=? AND state=? ORDER BY created, key_id", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n < max && ids) snprintf(ids[n], SS_KEYID_HEX + 1, "%s", sqlite3_column_text(st, 0));
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

void ss_site_trusted_list(ss_db *db, const char *site, char *out, size_t len)
{
    char ids[8][SS_KEYID_HEX + 1];
    int n = ss_site_keys_in_state(db, site, "trusted", ids, 8, NULL);
    out[0] = '\0';
    for (int i = 0; i < n && i < 8; i++) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", i ? ", " : "", ids[i]);
    }
}

int ss_site_blocked(ss_db *db, const char *site, char key_id[SS_KEYID_HEX + 1])
{
    sqlite3_stmt *st =
        ss_db_prepare(db, "SELECT blocked_key_id FROM sites WHERE site=? AND blocked=1", NULL);
    int blocked = 0;
    if (!st) return 0;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        blocked = 1;
        if (key_id) {
            const unsigned char *id = sqlite3_column_text(st, 0);
            snprintf(key_id, SS_KEYID_HEX + 1, "%s", id ? (const char *)id : "");
        }
    }
    sqlite3_finalize(st);
    return blocked;
}

static int exec_site(ss_db *db, const char *sql, const char *site, const char *key_id, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    if (key_id) sqlite3_bind_text(st, 2, key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "updating site trust", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_site_set_blocked(ss_db *db, const char *site, const char *key_id, ss_error *e)
{
    return exec_site(db,
                     "INSERT INTO sites(site, blocked, blocked_key_id) VALUES(?1, 1, ?2) "
                     "ON CONFLICT(site) DO UPDATE SET blocked=1, blocked_key_id=?2",
                     site, key_id, e);
}

int ss_site_clear_block(ss_db *db, const char *site, ss_error *e)
{
    return exec_site(db, "UPDATE sites SET blocked=0, blocked_key_id=NULL WHERE site=?1", site,
                     NULL, e);
}

int ss_keys_set_state(ss_db *db, const char *site, const char *key_id, const char *state,
                      int64_t grace_until, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db, "UPDATE keys SET state=?3, grace_until=?4 WHERE site=?1 AND key_id=?2", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
    if (grace_until)
        sqlite3_bind_int64(st, 4, grace_until);
    else
        sqlite3_bind_null(st, 4);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "changing a key's state", e);
    sqlite3_finalize(st);
    if (rc == 0 && sqlite3_changes(db->h) == 0)
        return ss_err(e, SS_E_NOENT, "site %s has no key %s", site, key_id);
    return rc;
}

int ss_key_is_revoked(ss_db *db, const char *key_id)
{
    sqlite3_stmt *st =
        ss_db_prepare(db, "SELECT 1 FROM keys WHERE key_id=? AND state='revoked'", NULL);
    int revoked = 0;
    if (st) {
        sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
        revoked = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    return revoked;
}

int ss_site_untrust(ss_db *db, const char *site, ss_error *e)
{
    if (exec_site(db, "DELETE FROM keys WHERE site=?1 AND state NOT IN ('revoked','own')", site,
                  NULL, e) != 0)
        return -1;
    int removed = sqlite3_changes(db->h);
    if (ss_site_clear_block(db, site, e) != 0) return -1;
    return removed;
}

const char *ss_key_unusable_reason(const ss_keyrec *k, int64_t now)
{
    if (!strcmp(k->state, "revoked")) return "revoked";
    if (!strcmp(k->state, "pending")) return "waiting for an administrator's approval";
    if (!strcmp(k->state, "retired") && (!k->grace_until || now > k->grace_until))
        return "retired by a rollover and past its grace period";
    if (k->not_after && now > k->not_after) return "expired";
    return NULL;
}

#define ROLLOVER_MAGIC "sitespool-rollover/1"

static void rollover_statement(const char *site, const char *previous, const char *next, char *out,
                               size_t len)
{
    snprintf(out, len, ROLLOVER_MAGIC " site=%s previous=%s next=%s", site, previous, next);
}

long long ss_days_left(int64_t not_after, int64_t now)
{
    return not_after > now ? (long long)((not_after - now + 86399) / 86400) : 0;
}

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

int ss_rollover_payload(const char *site, const ss_pubkey *old_pk, const ss_seckey *next_sk,
                        int64_t next_not_after, char *out, size_t len, ss_error *e)
{
    ss_pubkey next;
    char old_id[SS_KEYID_HEX + 1], next_id[SS_KEYID_HEX + 1], statement[128], comment[128];
    ss_seckey_public(next_sk, &next);
    ss_keyid_hex(old_pk->keyid, old_id);
    ss_keyid_hex(next.keyid, next_id);
    rollover_statement(site, old_id, next_id, statement, sizeof statement);
    unsigned char proof[crypto_sign_BYTES];
    crypto_sign_detached(proof, NULL, (const unsigned char *)statement, strlen(statement),
                         next_sk->sk);
    char proof_b64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(proof_b64, sizeof proof_b64, proof, sizeof proof,
                      sodium_base64_VARIANT_ORIGINAL);
    ss_pubkey_comment(site, next_not_after, comment, sizeof comment);
    if (ss_pubkey_format(&next, comment, out, len) != 0)
        return ss_err(e, SS_E_TOOBIG, "rollover payload too long");
    size_t used = strlen(out);
    int n = snprintf(out + used, len - used, ROLLOVER_MAGIC " previous=%s proof=%s\n", old_id,
                     proof_b64);
    return (n < 0 || (size_t)n >= len - used) ? ss_err(e, SS_E_TOOBIG, "payload too long") : 0;
}

int ss_rollover_parse(const char *site, const char *text, size_t len,
                      unsigned char previous[SS_KEYID_BYTES], ss_pubkey *next,
                      int64_t *next_not_after, ss_error *e)
{
    /* The public key file is the first two lines; the proof line follows. */
    const char *nl = memchr(text, '\n', len);
    const char *nl2 = nl ? memchr(nl + 1, '\n', len - (size_t)(nl + 1 - text)) : NULL;
    if (!nl2) return ss_err(e, SS_E_FORMAT, "the rollover payload is not a public key and a proof");
    char comment[SS_COMMENT_MAX + 1];
    if (ss_pubkey_parse(text, (size_t)(nl2 + 1 - text), next, comment, sizeof comment, e) != 0)
        return -1;
    *next_not_after = ss_pubkey_comment_not_after(comment);
    const char *line = nl2 + 1;
    size_t line_len = len - (size_t)(line - text);
    if (line_len && line[line_len - 1] == '\n') line_len--;
    char buf[256], old_id[SS_KEYID_HEX + 1], proof_b64[128];
    if (line_len >= sizeof buf)
        return ss_err(e, SS_E_FORMAT, "the rollover proof line is too long");
    memcpy(buf, line, line_len);
    buf[line_len] = '\0';
    if (sscanf(buf, ROLLOVER_MAGIC " previous=%16[0-9A-F] proof=%127s", old_id, proof_b64) != 2 ||
        ss_keyid_parse(old_id, previous) != 0)
        return ss_err(e, SS_E_FORMAT, "the rollover proof line is malformed");
    unsigned char proof[crypto_sign_BYTES];
    size_t got;
    const char *b64_end;
    if (sodium_base642bin(proof, sizeof proof, proof_b64, strlen(proof_b64), NULL, &got, &b64_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        got != sizeof proof || *b64_end)
        return ss_err(e, SS_E_BASE64, "the rollover proof is not valid base64");
    char next_id[SS_KEYID_HEX + 1], statement[128];
    ss_keyid_hex(next->keyid, next_id);
    rollover_statement(site, old_id, next_id, statement, sizeof statement);
    if (crypto_sign_verify_detached(proof, (const unsigned char *)statement, strlen(statement),
                                    next->pk) != 0)
        return ss_err(e, SS_E_BADSIG, "the proof of the new key %s does not verify", next_id);
    return 0;
}
