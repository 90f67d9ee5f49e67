/*
 * store.c - keys and peers in site.db; this site's own key files.  See store.h.
 */
#include "store.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static const char *const state_names[SS_KEY_STATES] = {"own", "trusted", "pending", "retired",
                                                       "revoked"};

const char *ss_key_state_name(enum ss_key_state s)
{
    return (unsigned)s < SS_KEY_STATES ? state_names[s] : "?";
}

int ss_key_state_parse(const char *name, enum ss_key_state *out)
{
    for (int i = 0; i < SS_KEY_STATES; i++)
        if (name && !strcmp(name, state_names[i])) {
            *out = (enum ss_key_state)i;
            return 0;
        }
    return -1;
}

void ss_keyrec_init(ss_keyrec *k, const char *site, const ss_pubkey *pk, enum ss_key_state state,
                    const char *source, int64_t not_after)
{
    memset(k, 0, sizeof *k);
    snprintf(k->site, sizeof k->site, "%s", site);
    ss_keyid_hex(pk->keyid, k->key_id);
    k->pk = *pk;
    k->state = state;
    snprintf(k->source, sizeof k->source, "%s", source);
    k->created = ss_now();
    k->not_after = not_after;
}

/* A row that does not read back as a record (a state this program does not
 * know, a key of the wrong length) is an error, not a usable key. */
static int row_to_keyrec(sqlite3_stmt *st, ss_keyrec *k, ss_error *e)
{
    memset(k, 0, sizeof *k);
    snprintf(k->site, sizeof k->site, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(k->key_id, sizeof k->key_id, "%s", (const char *)sqlite3_column_text(st, 1));
    if (sqlite3_column_bytes(st, 2) != SS_PK_BYTES || ss_keyid_parse(k->key_id, k->pk.keyid) != 0 ||
        ss_key_state_parse((const char *)sqlite3_column_text(st, 3), &k->state) != 0)
        return ss_err(e, SS_E_DB, "site.db holds a damaged key record (site %s, key %s)", k->site,
                      k->key_id);
    memcpy(k->pk.pk, sqlite3_column_blob(st, 2), SS_PK_BYTES);
    snprintf(k->source, sizeof k->source, "%s", (const char *)sqlite3_column_text(st, 4));
    k->created = sqlite3_column_int64(st, 5);
    k->not_after = sqlite3_column_int64(st, 6);
    k->last_seen = sqlite3_column_int64(st, 7);
    k->grace_until = sqlite3_column_int64(st, 8);
    return 0;
}

#define KEY_COLUMNS                                                                                \
    "site, key_id, public_key, state, source, created, not_after, last_seen, grace_until"

/* Steps a query for at most one key record: 1 found, 0 none, -1 error. */
static int one_key(ss_db *db, sqlite3_stmt *st, ss_keyrec *out, ss_error *e)
{
    ss_keyrec scratch;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = row_to_keyrec(st, out ? out : &scratch, e) == 0 ? 1 : -1;
    else if (rc == SQLITE_DONE)
        rc = 0;
    else
        rc = ss_db_fail(db, "looking up a key", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_keys_get(ss_db *db, const char *site, const char *key_id, ss_keyrec *out, ss_error *e)
{
    sqlite3_stmt *st =
        ss_db_prepare(db, "SELECT " KEY_COLUMNS " FROM keys WHERE site=? AND key_id=?", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key_id, -1, SQLITE_STATIC);
    return one_key(db, st, out, e);
}

int ss_keys_get_pk(ss_db *db, const char *site, const ss_pubkey *pk, ss_keyrec *out, ss_error *e)
{
    sqlite3_stmt *st =
        ss_db_prepare(db, "SELECT " KEY_COLUMNS " FROM keys WHERE site=? AND public_key=?", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, pk->pk, SS_PK_BYTES, SQLITE_STATIC);
    /* The record may carry another key id: the caller compares them. */
    return one_key(db, st, out, e);
}

int ss_keys_add(ss_db *db, const ss_keyrec *k, ss_error *e)
{
    ss_keyrec existing;
    int found = ss_keys_get(db, k->site, k->key_id, &existing, e);
    if (found < 0) return -1;
    if (found) {
        if (sodium_memcmp(existing.pk.pk, k->pk.pk, SS_PK_BYTES) != 0)
            return ss_err(e, SS_E_EXISTS,
                          "site %s already has a different key with id %s; "
                          "refusing the new one (forged key id?)",
                          k->site, k->key_id);
        return 0;
    }
    sqlite3_stmt *st =
        ss_db_prepare(db, "INSERT INTO keys(" KEY_COLUMNS ") VALUES(?,?,?,?,?,?,?,NULL,NULL)", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, k->site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, k->pk.pk, SS_PK_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ss_key_state_name(k->state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, k->source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, k->created);
    if (k->not_after)
        sqlite3_bind_int64(st, 7, k->not_after);
    else
        sqlite3_bind_null(st, 7);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "storing a key", e);
    sqlite3_finalize(st);
    return rc;
}

/* Calls fn for every row of a prepared key query. */
static int each_key(ss_db *db, sqlite3_stmt *st, ss_keyrec_fn fn, void *ctx, ss_error *e)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ss_keyrec k;
        if (row_to_keyrec(st, &k, e) != 0) {
            sqlite3_finalize(st);
            return -1;
        }
        if (fn(ctx, &k) != 0) break;
    }
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : ss_db_fail(db, "listing keys", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_keys_foreach(ss_db *db, const char *site, ss_keyrec_fn fn, void *ctx, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        site ? "SELECT " KEY_COLUMNS " FROM keys WHERE site=? ORDER BY site, created, key_id"
             : "SELECT " KEY_COLUMNS " FROM keys ORDER BY state<>'own', site, created, key_id",
        e);
    if (!st) return -1;
    if (site) sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    return each_key(db, st, fn, ctx, e);
}

int ss_keys_foreach_pk(ss_db *db, const ss_pubkey *pk, ss_keyrec_fn fn, void *ctx, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db, "SELECT " KEY_COLUMNS " FROM keys WHERE public_key=? ORDER BY site, key_id", e);
    if (!st) return -1;
    sqlite3_bind_blob(st, 1, pk->pk, SS_PK_BYTES, SQLITE_STATIC);
    return each_key(db, st, fn, ctx, e);
}

int ss_keys_foreach_id(ss_db *db, const char *key_id, ss_keyrec_fn fn, void *ctx, ss_error *e)
{
    sqlite3_stmt *st =
        ss_db_prepare(db, "SELECT " KEY_COLUMNS " FROM keys WHERE key_id=? ORDER BY site", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    return each_key(db, st, fn, ctx, e);
}

int ss_keys_in_state(ss_db *db, const char *site, enum ss_key_state state,
                     char ids[][SS_KEYID_HEX + 1], int max, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db, "SELECT key_id FROM keys WHERE site=? AND state=? ORDER BY created, key_id", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ss_key_state_name(state), -1, SQLITE_STATIC);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n < max && ids) snprintf(ids[n], SS_KEYID_HEX + 1, "%s", sqlite3_column_text(st, 0));
        n++;
    }
    if (rc != SQLITE_DONE) n = ss_db_fail(db, "listing a site's keys", e);
    sqlite3_finalize(st);
    return n;
}

/* Runs a statement whose parameters are ?1 site and ?2 text (or NULL). */
static int exec_site(ss_db *db, const char *sql, const char *site, const char *text,
                     const char *what, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    if (text) sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, what, e);
    sqlite3_finalize(st);
    return rc;
}

int ss_keys_set_state(ss_db *db, const char *site, const char *key_id, enum ss_key_state state,
                      int64_t grace_until, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db, "UPDATE keys SET state=?3, grace_until=?4 WHERE site=?1 AND key_id=?2", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, ss_key_state_name(state), -1, SQLITE_STATIC);
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

int ss_keys_forget_site(ss_db *db, const char *site, ss_error *e)
{
    if (exec_site(db, "DELETE FROM keys WHERE site=?1 AND state NOT IN ('revoked','own')", site,
                  NULL, "forgetting a site's keys", e) != 0)
        return -1;
    return sqlite3_changes(db->h);
}

int ss_keys_touch(ss_db *db, const char *site, const char *key_id, int64_t when, ss_error *e)
{
    static const char sql[] = "UPDATE keys SET last_seen=? WHERE site=? AND key_id=?";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, when);
    sqlite3_bind_text(st, 2, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "updating a key", e);
    ss_db_release(db, st);
    return rc;
}

int ss_site_block_get(ss_db *db, const char *site, char key_id[SS_KEYID_HEX + 1], ss_error *e)
{
    sqlite3_stmt *st =
        ss_db_prepare(db, "SELECT blocked_key_id FROM sites WHERE site=? AND blocked=1", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(st, 0);
        if (key_id) snprintf(key_id, SS_KEYID_HEX + 1, "%s", id ? (const char *)id : "");
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading a site's block", e);
    }
    sqlite3_finalize(st);
    return rc;
}

int ss_site_block_set(ss_db *db, const char *site, const char *key_id, ss_error *e)
{
    return exec_site(db,
                     "INSERT INTO sites(site, blocked, blocked_key_id) VALUES(?1, 1, ?2) "
                     "ON CONFLICT(site) DO UPDATE SET blocked=1, blocked_key_id=?2",
                     site, key_id, "blocking a site", e);
}

int ss_site_block_clear(ss_db *db, const char *site, ss_error *e)
{
    return exec_site(db, "UPDATE sites SET blocked=0, blocked_key_id=NULL WHERE site=?1", site,
                     NULL, "lifting a site's block", e);
}

int ss_peer_add(ss_db *db, const char *site, const char *inbox, ss_error *e)
{
    return ss_peer_set(db, site, &inbox, 1, false, e);
}

static int insert_address(ss_db *db, const char *site, unsigned pos, const char *address,
                          ss_error *e)
{
    sqlite3_stmt *st =
        ss_db_prepare(db, "INSERT INTO peer_addresses(site, pos, address) VALUES(?,?,?)", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)pos);
    sqlite3_bind_text(st, 3, address, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "adding a peer address", e);
    sqlite3_finalize(st);
    return rc;
}

static int set_peer_row(ss_db *db, const char *site, const char *first, bool round_robin,
                        ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "INSERT INTO peers(site, inbox, added, round_robin) VALUES(?,?,?,?) "
        "ON CONFLICT(site) DO UPDATE SET inbox=excluded.inbox, round_robin=excluded.round_robin, "
        "rr_next=0",
        e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, first, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, ss_now());
    sqlite3_bind_int(st, 4, round_robin);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "adding a peer", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_peer_set(ss_db *db, const char *site, const char *const *addresses, size_t n,
                bool round_robin, ss_error *e)
{
    if (n == 0 || n > SS_PEER_ADDRESSES_MAX)
        return ss_err(e, SS_E_USAGE, "a peer has 1 to %d addresses", SS_PEER_ADDRESSES_MAX);
    if (ss_db_begin(db, e) != 0) return -1;
    int rc = set_peer_row(db, site, addresses[0], round_robin, e);
    if (rc == 0)
        rc = exec_site(db, "DELETE FROM peer_addresses WHERE site=?1", site, NULL,
                       "replacing a peer's addresses", e);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = insert_address(db, site, (unsigned)i, addresses[i], e);
    if (rc == 0) return ss_db_commit(db, e);
    ss_db_rollback(db);
    return -1;
}

int ss_peer_addresses(ss_db *db, const char *site, ss_peer_address *out, size_t max, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db,
                                     "SELECT pos, address, state, last_error, last_attempt, "
                                     "last_success FROM peer_addresses WHERE site=? ORDER BY pos",
                                     e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) {
        ss_peer_address *a = &out[n++];
        const unsigned char *err = sqlite3_column_text(st, 3);
        a->pos = (unsigned)sqlite3_column_int(st, 0);
        snprintf(a->address, sizeof a->address, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(a->state, sizeof a->state, "%s", (const char *)sqlite3_column_text(st, 2));
        snprintf(a->last_error, sizeof a->last_error, "%s", err ? (const char *)err : "");
        a->last_attempt = sqlite3_column_int64(st, 4);
        a->last_success = sqlite3_column_int64(st, 5);
    }
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? (int)n
                                                 : ss_db_fail(db, "reading a peer's addresses", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_peer_address_record(ss_db *db, const char *site, unsigned pos, const char *state,
                           const char *error, ss_error *e)
{
    bool ok = !strcmp(state, "ok");
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "UPDATE peer_addresses SET state=?3, last_error=?4, last_attempt=?5, "
        "last_success=CASE WHEN ?6 THEN ?5 ELSE last_success END WHERE site=?1 AND pos=?2",
        e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)pos);
    sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
    if (error && !ok)
        sqlite3_bind_text(st, 4, error, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, ss_now());
    sqlite3_bind_int(st, 6, ok);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "recording an address", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_peer_rotate(ss_db *db, const char *site, unsigned n_addresses, ss_error *e)
{
    sqlite3_stmt *st =
        ss_db_prepare(db, "UPDATE peers SET rr_next = (rr_next + 1) % ?2 WHERE site=?1", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, n_addresses ? (int)n_addresses : 1);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "turning a peer's addresses", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_peer_remove(ss_db *db, const char *site, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, "DELETE FROM peers WHERE site=?", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "removing a peer", e);
    sqlite3_finalize(st);
    bool removed = rc == 0 && sqlite3_changes(db->h) > 0;
    if (removed)
        rc = exec_site(db, "DELETE FROM peer_addresses WHERE site=?1", site, NULL,
                       "removing a peer's addresses", e);
    if (rc == 0 && !removed)
        return ss_err(e, SS_E_NOENT, "site %s is not a peer ('sitespool peer list' shows them)",
                      site);
    return rc;
}

#define PEER_COLUMNS                                                                               \
    "site, inbox, added, last_success, next_attempt, failures, next_seq, last_error, "             \
    "round_robin, rr_next"

static void row_to_peer(sqlite3_stmt *st, ss_peer *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->site, sizeof p->site, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(p->inbox, sizeof p->inbox, "%s", (const char *)sqlite3_column_text(st, 1));
    p->added = sqlite3_column_int64(st, 2);
    p->last_success = sqlite3_column_int64(st, 3);
    p->next_attempt = sqlite3_column_int64(st, 4);
    p->failures = (unsigned)sqlite3_column_int(st, 5);
    p->next_seq = (uint64_t)sqlite3_column_int64(st, 6);
    const unsigned char *err = sqlite3_column_text(st, 7);
    snprintf(p->last_error, sizeof p->last_error, "%s", err ? (const char *)err : "");
    p->round_robin = sqlite3_column_int(st, 8) != 0;
    p->rr_next = (unsigned)sqlite3_column_int(st, 9);
}

int ss_peer_get(ss_db *db, const char *site, ss_peer *out, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, "SELECT " PEER_COLUMNS " FROM peers WHERE site=?", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (out) row_to_peer(st, out);
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading a peer", e);
    }
    sqlite3_finalize(st);
    return rc;
}

int ss_peer_require(ss_db *db, const char *site, ss_peer *out, ss_error *e)
{
    int found = ss_peer_get(db, site, out, e);
    if (found < 0) return -1;
    if (!found)
        return ss_err(e, SS_E_NOENT,
                      "site %s is not a peer; add it first with 'sitespool peer add %s --inbox "
                      "PATH'",
                      site, site);
    return 0;
}

int ss_peer_foreach(ss_db *db, ss_peer_fn fn, void *ctx, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, "SELECT " PEER_COLUMNS " FROM peers ORDER BY site", e);
    if (!st) return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ss_peer p;
        row_to_peer(st, &p);
        if (fn(ctx, &p) != 0) break;
    }
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : ss_db_fail(db, "listing peers", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_peer_take_seqs(ss_db *db, const char *site, uint64_t count, uint64_t *first, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db, "UPDATE peers SET next_seq = next_seq + ?2 WHERE site=?1 RETURNING next_seq - ?2", e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)count);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *first = (uint64_t)sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = ss_err(e, SS_E_NOENT,
                    "site %s is not a peer; add it first with 'sitespool peer "
                    "add %s --inbox PATH'",
                    site, site);
    } else {
        rc = ss_db_fail(db, "numbering an instruction", e);
    }
    sqlite3_finalize(st);
    return rc;
}

int ss_peer_record_attempt(ss_db *db, const char *site, bool ok, const char *error,
                           int64_t next_attempt, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        ok ? "UPDATE peers SET last_success=?, failures=0, last_error=NULL, next_attempt=0 "
             "WHERE site=?"
           : "UPDATE peers SET failures=failures+1, last_error=?, next_attempt=? WHERE site=?",
        e);
    if (!st) return -1;
    if (ok) {
        sqlite3_bind_int64(st, 1, ss_now());
        sqlite3_bind_text(st, 2, site, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_text(st, 1, error ? error : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, next_attempt);
        sqlite3_bind_text(st, 3, site, -1, SQLITE_STATIC);
    }
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "updating a peer", e);
    sqlite3_finalize(st);
    return rc;
}

int ss_own_key_paths(const char *root, const char *site, char *sk_path, char *pk_path, size_t len)
{
    if (sk_path && snprintf(sk_path, len, "%s/" SS_DIR_KEYS "/%s.key", root, site) >= (int)len)
        return -1;
    if (pk_path && snprintf(pk_path, len, "%s/" SS_DIR_KEYS "/%s.pub", root, site) >= (int)len)
        return -1;
    return 0;
}

int ss_own_key_load(const char *root, const ss_conf *c, ss_seckey **sk, ss_pubkey *pk, ss_error *e)
{
    char sk_path[PATH_MAX];
    if (ss_own_key_paths(root, c->site_code, sk_path, NULL, sizeof sk_path) != 0)
        return ss_err(e, SS_E_TOOBIG, "site path too long");
    if (ss_seckey_load(sk_path, sk, e) != 0) return -1;
    ss_seckey_public(*sk, pk);
    return 0;
}

/* Runs a statement with ?1 site and, where it has them, ?2 an integer and
 * ?3 text. */
static int exec_seq(ss_db *db, const char *sql, const char *site, int64_t n, const char *text,
                    ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(db, sql, e);
    if (!st) return -1;
    int params = sqlite3_bind_parameter_count(st);
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    if (params >= 2) sqlite3_bind_int64(st, 2, n);
    if (params >= 3) sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : ss_db_fail(db, "noting a site's sequence", e);
    sqlite3_finalize(st);
    return rc;
}

/* seq_next moves past every early number that is now contiguous. */
static int absorb_early(ss_db *db, const char *site, ss_error *e)
{
    if (exec_seq(db,
                 "WITH RECURSIVE run(n) AS (SELECT seq_next FROM sites WHERE site=?1 UNION ALL "
                 "SELECT n + 1 FROM run WHERE EXISTS (SELECT 1 FROM seq_early WHERE site=?1 "
                 "AND seq=n)) UPDATE sites SET seq_next=(SELECT max(n) FROM run) WHERE site=?1",
                 site, 0, NULL, e) != 0)
        return -1;
    return exec_seq(db,
                    "DELETE FROM seq_early WHERE site=?1 AND seq < (SELECT seq_next FROM sites "
                    "WHERE site=?1)",
                    site, 0, NULL, e);
}

int ss_site_note_seen(ss_db *db, const char *site, const char *id, uint64_t seq, const char *key_id,
                      int64_t when, ss_error *e)
{
    /* The common case, the next number in order, is this one statement;
     * a new site's row starts without a mark (set when its drain ends). */
    static const char sql[] =
        "INSERT INTO sites(site, last_seq_in, last_key_id, last_seen) VALUES(?1,?2,?3,?4) "
        "ON CONFLICT(site) DO UPDATE SET last_seq_in=max(last_seq_in, ?2), last_key_id=?3, "
        "last_seen=?4, seq_next = CASE WHEN seq_next = ?2 THEN ?2 + 1 ELSE seq_next END "
        "RETURNING seq_next";
    sqlite3_stmt *st = ss_db_cached(db, sql, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    sqlite3_bind_text(st, 3, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, when);
    int rc = sqlite3_step(st);
    bool in_order = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
                    sqlite3_column_int64(st, 0) > (sqlite3_int64)seq;
    if (rc == SQLITE_ROW) rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) rc = ss_db_fail(db, "noting a site's sequence", e);
    ss_db_release(db, st);
    if (rc != SQLITE_DONE) return -1;
    if (in_order) return 0;
    /* Out of order (or a site's first numbers): kept aside until the drain
     * ends (ss_site_gaps); numbers below the mark are late arrivals. */
    return exec_seq(db,
                    "INSERT OR IGNORE INTO seq_early(site, seq, id) SELECT ?1, ?2, ?3 FROM sites "
                    "WHERE site=?1 AND (seq_next IS NULL OR ?2 >= seq_next)",
                    site, (int64_t)seq, id, e);
}

int ss_site_gaps(ss_db *db, ss_gap_fn fn, void *ctx, ss_error *e)
{
    /* First the numbers that arrived out of order are merged into each
     * site's contiguous run; a site's first drain sets where its numbers
     * start: the lowest seen (a receiver that joins late does not call
     * 1..n-1 lost). */
    char last[SS_SITE_CODE_MAX + 1] = "";
    for (;;) { /* every site, in order, however many */
        sqlite3_stmt *next =
            ss_db_prepare(db, "SELECT min(site) FROM seq_early WHERE site > ?1", e);
        if (!next) return -1;
        sqlite3_bind_text(next, 1, last, -1, SQLITE_TRANSIENT);
        bool more = sqlite3_step(next) == SQLITE_ROW && sqlite3_column_type(next, 0) != SQLITE_NULL;
        if (more) snprintf(last, sizeof last, "%s", sqlite3_column_text(next, 0));
        sqlite3_finalize(next);
        if (!more) break;
        if (exec_seq(db,
                     "UPDATE sites SET seq_next=coalesce(seq_next, (SELECT min(seq) FROM "
                     "seq_early WHERE site=?1)) WHERE site=?1",
                     last, 0, NULL, e) != 0 ||
            absorb_early(db, last, e) != 0)
            return -1;
    }
    /* Per site, the missing run below its lowest early number. */
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "SELECT s.site, s.seq_next, x.seq, x.id FROM sites s JOIN seq_early x ON x.site = s.site "
        "WHERE s.seq_next IS NOT NULL AND x.seq = (SELECT min(seq) FROM seq_early WHERE site = "
        "s.site) ORDER BY s.site",
        e);
    if (!st) return -1;
    struct gap {
        char site[SS_SITE_CODE_MAX + 1], id[64];
        int64_t from, seq;
    } gaps[16];
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < 16) {
        snprintf(gaps[n].site, sizeof gaps[n].site, "%s", sqlite3_column_text(st, 0));
        gaps[n].from = sqlite3_column_int64(st, 1);
        gaps[n].seq = sqlite3_column_int64(st, 2);
        snprintf(gaps[n].id, sizeof gaps[n].id, "%s", sqlite3_column_text(st, 3));
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return ss_db_fail(db, "reading sequence gaps", e);
    for (int i = 0; i < n; i++) {
        /* Reported once: the mark skips the gap (late arrivals are still
         * delivered; they just fall below the mark). */
        if (ss_db_begin(db, e) != 0) return -1;
        if (exec_seq(db, "UPDATE sites SET seq_next=?2 WHERE site=?1", gaps[i].site, gaps[i].seq,
                     NULL, e) != 0 ||
            absorb_early(db, gaps[i].site, e) != 0 || ss_db_commit(db, e) != 0) {
            ss_db_rollback(db);
            return -1;
        }
        fn(ctx, gaps[i].site, gaps[i].id, (uint64_t)gaps[i].seq, (uint64_t)gaps[i].from,
           (uint64_t)gaps[i].seq - 1);
    }
    return 0;
}

int ss_sites_foreach(ss_db *db, ss_site_view_fn fn, void *ctx, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "WITH known(site) AS (SELECT site FROM keys WHERE state <> 'own' UNION SELECT site FROM "
        "sites) SELECT known.site, coalesce(blocked, 0), blocked_key_id, last_key_id, last_seen "
        "FROM known LEFT JOIN sites USING (site) ORDER BY known.site",
        e);
    if (!st) return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ss_site_view v = {(const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1) != 0,
                          (const char *)sqlite3_column_text(st, 2),
                          (const char *)sqlite3_column_text(st, 3), sqlite3_column_int64(st, 4)};
        fn(ctx, &v);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : ss_db_fail(db, "listing sites", e);
}
