/*
 * test_trust.c - CUnit suite for the trust module (keystore/trust.h) and
 * the proofs of possession (keystore/keyfile.h).
 *
 * The rule table is checked two ways: every cell (evidence x site state x
 * key standing, under the settings that matter for the evidence) against
 * tests/unit/trust_rules.txt, a reviewed table that a rule change has to
 * change visibly; and invariants over every cell under every setting, which
 * state the security promises directly (nothing but an administrator or a
 * trusted key makes a key trusted; a use of a key never changes state; a
 * revoked key is never accepted; only verified evidence blocks).  The
 * stateful layer is checked on a real site.db, including SQLite refusing
 * reads in the middle of a check (an authorizer denies the table), which
 * must give a hold, never an accept.
 *
 * `test_trust --print-table` prints the table (to review a change).
 */
#include "testutil.h"
#include "../../keystore/keyfile.h"
#include "../../keystore/lookup.h"
#include "../../keystore/trust.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *table_path;

/* ---------------------------------------------------------- the table */

static const char *action_name(enum ss_trust_action a)
{
    static const char *const names[] = {"accept", "hold", "reject", "missing"};
    return names[a];
}

static void tx_names(unsigned tx, char *out, size_t len)
{
    static const struct {
        unsigned bit;
        const char *name;
    } bits[] = {{SS_TX_TRUST, "trust"},
                {SS_TX_PENDING, "pending"},
                {SS_TX_BLOCK, "block"},
                {SS_TX_UNBLOCK, "unblock"},
                {SS_TX_RETIRE_SIGNER, "retire-signer"}};
    out[0] = '\0';
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        if (tx & bits[i].bit)
            snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? "+" : "", bits[i].name);
    if (!out[0]) snprintf(out, len, "-");
}

/* The settings that matter for each kind of evidence. */
static int policies_for(enum ss_evidence ev, ss_trust_policy out[3], const char *names[3])
{
    if (ev == SS_EV_OFFER) {
        out[0] = (ss_trust_policy){true, false, false};
        out[1] = (ss_trust_policy){false, false, false};
        out[2] = (ss_trust_policy){false, true, false};
        names[0] = "secure";
        names[1] = "tofu-manual";
        names[2] = "tofu-auto";
        return 3;
    }
    if (ev == SS_EV_ADMIN) {
        out[0] = (ss_trust_policy){true, false, false};
        out[1] = (ss_trust_policy){true, false, true};
        names[0] = "default";
        names[1] = "shared-key";
        return 2;
    }
    out[0] = (ss_trust_policy){true, false, false};
    names[0] = "default";
    return 1;
}

static size_t print_table(char *buf, size_t cap)
{
    size_t used = 0;
    for (int ev = 0; ev < SS_EVIDENCE_KINDS; ev++) {
        ss_trust_policy pol[3];
        const char *pname[3];
        int np = policies_for((enum ss_evidence)ev, pol, pname);
        for (int p = 0; p < np; p++)
            for (int site = 0; site < SS_SITE_TRUST_KINDS; site++)
                for (int key = 0; key < SS_KEY_STANDINGS; key++) {
                    ss_verdict v = ss_trust_rule((enum ss_evidence)ev, (enum ss_site_trust)site,
                                                 (enum ss_key_standing)key, &pol[p]);
                    char tx[80], status[16];
                    tx_names(v.tx, tx, sizeof tx);
                    snprintf(status, sizeof status, "%d", v.status);
                    int n = snprintf(buf + used, cap - used,
                                     "%-15s %-11s %-8s %-12s -> %-7s %-4s %-40s %s\n",
                                     ss_evidence_name((enum ss_evidence)ev), pname[p],
                                     ss_site_trust_name((enum ss_site_trust)site),
                                     ss_key_standing_name((enum ss_key_standing)key),
                                     action_name(v.action), v.status ? status : "-",
                                     v.reason ? ss_trust_reason_text(v.reason) : "-", tx);
                    if (n > 0 && (size_t)n < cap - used) used += (size_t)n;
                }
    }
    return used;
}

static void test_every_cell_matches_the_reviewed_table(void)
{
    size_t cap = 1 << 20, len = 0;
    char *got = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    size_t used = print_table(got, cap);
    FILE *f = fopen(table_path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char *want = malloc(cap);
    len = fread(want, 1, cap, f);
    fclose(f);
    /* On a difference, name the first differing line. */
    size_t line = 1, i = 0;
    while (i < used && i < len && got[i] == want[i])
        line += got[i++] == '\n';
    if (i != used || used != len) {
        fprintf(stderr,
                "\ntrust rule table differs from %s at line %zu; run "
                "'test_trust --print-table' and review the change\n",
                table_path, line);
        CU_FAIL("the rule table differs from the reviewed table");
    }
    free(got);
    free(want);
}

/* Every cell, every setting: the promises of trust.h. */
static void test_invariants_over_every_cell(void)
{
    for (int bits = 0; bits < 8; bits++) {
        ss_trust_policy p = {bits & 1, (bits & 2) != 0, (bits & 4) != 0};
        for (int ev = 0; ev < SS_EVIDENCE_KINDS; ev++)
            for (int site = 0; site < SS_SITE_TRUST_KINDS; site++)
                for (int key = 0; key < SS_KEY_STANDINGS; key++) {
                    ss_verdict v = ss_trust_rule(ev, site, key, &p);
                    bool use = ev == SS_EV_DATA_SIGNATURE || ev == SS_EV_KEY_SIGNATURE;
                    /* A use of a key never changes state. */
                    if (use) CU_ASSERT_EQUAL(v.tx, 0);
                    /* Only an administrator, a trusted key (vouched exchange,
                     * rollover), a first directory record or an approved-in-
                     * advance first offer make a key trusted. */
                    if (v.tx & SS_TX_TRUST) {
                        CU_ASSERT(ev == SS_EV_ADMIN || ev == SS_EV_VOUCHED ||
                                  ev == SS_EV_ROLLOVER || ev == SS_EV_DIRECTORY ||
                                  ev == SS_EV_OFFER);
                        if (ev == SS_EV_DIRECTORY)
                            CU_ASSERT(site == SS_SITE_UNKNOWN || site == SS_SITE_OFFERED);
                        if (ev == SS_EV_OFFER)
                            CU_ASSERT(!p.require_secure_key_exchange && p.tofu_auto_approve &&
                                      site == SS_SITE_UNKNOWN);
                        if (ev == SS_EV_VOUCHED || ev == SS_EV_ROLLOVER)
                            CU_ASSERT(site == SS_SITE_TRUSTED || site == SS_SITE_BLOCKED);
                    }
                    /* Only a presented and verified different key blocks. */
                    if (v.tx & SS_TX_BLOCK) {
                        CU_ASSERT(ev == SS_EV_DIRECTORY || ev == SS_EV_BAD_ROLLOVER ||
                                  (ev == SS_EV_OFFER && !p.require_secure_key_exchange));
                        CU_ASSERT(site == SS_SITE_TRUSTED && key == SS_KS_UNKNOWN);
                    }
                    /* Revoked keys: never accepted, nothing changes. */
                    if (key == SS_KS_REVOKED) {
                        CU_ASSERT_EQUAL(v.action, SS_TRUST_REJECT);
                        CU_ASSERT_EQUAL(v.tx, 0);
                    }
                    /* Unauthenticated key exchange where it is not allowed. */
                    if (ev == SS_EV_OFFER && p.require_secure_key_exchange)
                        CU_ASSERT(v.action == SS_TRUST_REJECT && v.tx == 0 &&
                                  (v.status == 4404 || v.status == 4421));
                    /* Conflicts are refused, except a shared key an
                     * administrator vouches for. */
                    if (!use && key == SS_KS_ID_CLASH) CU_ASSERT_EQUAL(v.action, SS_TRUST_REJECT);
                    if (!use && key == SS_KS_OTHER_SITE &&
                        !(ev == SS_EV_ADMIN && p.allow_shared_key))
                        CU_ASSERT_EQUAL(v.action, SS_TRUST_REJECT);
                    if (!use && key == SS_KS_OWN) CU_ASSERT_EQUAL(v.action, SS_TRUST_REJECT);
                    /* Missing only for a use under an unknown key. */
                    if (v.action == SS_TRUST_MISSING)
                        CU_ASSERT(use && key == SS_KS_UNKNOWN && v.status == 4405);
                    if (use && key == SS_KS_UNKNOWN) CU_ASSERT_EQUAL(v.action, SS_TRUST_MISSING);
                    /* Statuses belong to the evidence. */
                    if (v.action == SS_TRUST_REJECT) {
                        bool admin = ev == SS_EV_ADMIN || ev == SS_EV_DIRECTORY;
                        bool data = ev == SS_EV_DATA_SIGNATURE;
                        CU_ASSERT(!admin || v.status == 3301);
                        CU_ASSERT(!data || v.status == 4407 || v.status == 4421);
                        CU_ASSERT(admin || data || v.status == 4404 || v.status == 4407 ||
                                  v.status == 4421 || v.status == 4422);
                    } else if (v.action != SS_TRUST_MISSING) {
                        CU_ASSERT_EQUAL(v.status, 0);
                    }
                    if (v.action == SS_TRUST_HOLD)
                        CU_ASSERT(v.reason == SS_WHY_PENDING || v.reason == SS_WHY_EXPIRED ||
                                  v.reason == SS_WHY_BLOCKED);
                    /* Settings other than the evidence's own change nothing. */
                    ss_trust_policy def = {true, false, false};
                    if (ev != SS_EV_OFFER && ev != SS_EV_ADMIN) {
                        ss_verdict d = ss_trust_rule(ev, site, key, &def);
                        CU_ASSERT(d.action == v.action && d.status == v.status && d.tx == v.tx);
                    }
                }
    }
}

/* Data from a blocked site waits; its key instructions still run. */
static void test_blocked_site_holds_data_not_rollovers(void)
{
    ss_trust_policy p = {true, false, false};
    ss_verdict v = ss_trust_rule(SS_EV_DATA_SIGNATURE, SS_SITE_BLOCKED, SS_KS_TRUSTED, &p);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_HOLD);
    CU_ASSERT_EQUAL(v.reason, SS_WHY_BLOCKED);
    v = ss_trust_rule(SS_EV_KEY_SIGNATURE, SS_SITE_BLOCKED, SS_KS_TRUSTED, &p);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_ACCEPT);
    v = ss_trust_rule(SS_EV_KEY_SIGNATURE, SS_SITE_TRUSTED, SS_KS_RETIRED, &p);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_REJECT);
    CU_ASSERT_EQUAL(v.reason, SS_WHY_RETIRED_SIGNER);
    v = ss_trust_rule(SS_EV_DATA_SIGNATURE, SS_SITE_TRUSTED, SS_KS_RETIRED, &p);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_ACCEPT);
}

/* ----------------------------------------------------- on a real site.db */

static void new_key(ss_pubkey *pk, ss_seckey **sk)
{
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_keypair_generate(pk, sk, &e), 0);
}

/* Site SS1 on a real site.db, and two fresh keys a and b of other sites. */
typedef struct fixture {
    char *dir;
    tu_site ss1;
    ss_keyctx k;
    ss_pubkey a, b;
    ss_seckey *ska, *skb;
} fixture;

static void fx_open(fixture *f, const char *extra_conf)
{
    f->dir = tu_tempdir("trust");
    tu_site_make(&f->ss1, f->dir, "SS1", extra_conf);
    f->k = (ss_keyctx){f->ss1.root, &f->ss1.conf, &f->ss1.db, &f->ss1.rep, false, NULL};
    new_key(&f->a, &f->ska);
    new_key(&f->b, &f->skb);
}

static void fx_close(fixture *f)
{
    ss_seckey_free(f->ska);
    ss_seckey_free(f->skb);
    tu_site_close(&f->ss1);
    tu_rm_rf(f->dir);
    free(f->dir);
}

static ss_verdict offer(fixture *f, const char *site, const ss_pubkey *pk, enum ss_evidence ev,
                        int rc_want)
{
    ss_offer o = {site, pk, ev, "test", "unit test", 0, NULL, false};
    ss_verdict v;
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_trust_judge_offer(&f->k, &o, &v, &e), rc_want);
    return v;
}

static ss_verdict use(fixture *f, const char *site, const ss_pubkey *pk)
{
    ss_keyrec rec;
    ss_error e = {0};
    char id[SS_KEYID_HEX + 1];
    ss_keyid_hex(pk->keyid, id);
    int found = ss_keys_get(&f->ss1.db, site, id, &rec, &e);
    CU_ASSERT(found >= 0);
    ss_verdict v;
    CU_ASSERT_EQUAL(ss_trust_judge_use(&f->k, site, found ? &rec : NULL, true, &v, &e), 0);
    return v;
}

static int blocked(fixture *f, const char *site)
{
    ss_error e = {0};
    return ss_site_block_get(&f->ss1.db, site, NULL, &e);
}

static void test_directory_first_trusted_then_change_blocks(void)
{
    fixture f;
    fx_open(&f, NULL);
    ss_pubkey a = f.a, b = f.b;
    ss_verdict v = offer(&f, "PS1", &a, SS_EV_DIRECTORY, 0);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_ACCEPT);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).action, SS_TRUST_ACCEPT);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3300), 1);
    v = offer(&f, "PS1", &b, SS_EV_DIRECTORY, 0);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_HOLD);
    CU_ASSERT_EQUAL(blocked(&f, "PS1"), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3303), 1);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).action, SS_TRUST_HOLD); /* data held while blocked */
    CU_ASSERT_EQUAL(use(&f, "PS1", &b).action, SS_TRUST_HOLD);
    /* The same record again changes nothing and says nothing. */
    offer(&f, "PS1", &b, SS_EV_DIRECTORY, 0);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3303), 1);
    /* The administrator trusts the new key: the block is lifted. */
    char bid[SS_KEYID_HEX + 1];
    ss_keyid_hex(b.keyid, bid);
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_trust_admin_trust(&f.k, "PS1", bid, "test", &e), 0);
    CU_ASSERT_EQUAL(blocked(&f, "PS1"), 0);
    CU_ASSERT_EQUAL(use(&f, "PS1", &b).action, SS_TRUST_ACCEPT);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).action, SS_TRUST_ACCEPT);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3306), 1);
    fx_close(&f);
}

/* An unknown key id is a missing key: nothing is recorded, nothing blocked. */
static void test_unknown_key_use_changes_nothing(void)
{
    fixture f;
    fx_open(&f, NULL);
    ss_pubkey a = f.a, x = f.b;
    offer(&f, "PS1", &a, SS_EV_ADMIN, 0);
    ss_verdict v = use(&f, "PS1", &x);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_MISSING);
    CU_ASSERT_EQUAL(v.status, 4405);
    CU_ASSERT_EQUAL(blocked(&f, "PS1"), 0);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).action, SS_TRUST_ACCEPT);
    fx_close(&f);
}

static void test_revoked_public_key_refused_for_every_site(void)
{
    fixture f;
    fx_open(&f, NULL);
    ss_pubkey a = f.a;
    offer(&f, "PS1", &a, SS_EV_ADMIN, 0);
    char id[SS_KEYID_HEX + 1];
    ss_keyid_hex(a.keyid, id);
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_trust_revoke(&f.k, "PS1", id, &e), 0);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).status, 4421);
    /* Even an administrator's import, even for another site, even forced. */
    ss_offer o = {"CEN", &a, SS_EV_ADMIN, "test", "unit test", 0, NULL, true};
    ss_verdict v;
    CU_ASSERT_EQUAL(ss_trust_judge_offer(&f.k, &o, &v, &e), 0);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_REJECT);
    CU_ASSERT_EQUAL(v.reason, SS_WHY_REVOKED);
    fx_close(&f);
}

/* Two sites' keys under one key id: revoking one leaves the other. */
static void test_revoke_by_shared_id_touches_only_that_site(void)
{
    fixture f;
    fx_open(&f, NULL);
    ss_pubkey a = f.a, b = f.b;
    memcpy(b.keyid, a.keyid, SS_KEYID_BYTES);
    offer(&f, "AAA", &a, SS_EV_ADMIN, 0);
    offer(&f, "BBB", &b, SS_EV_ADMIN, 0);
    char id[SS_KEYID_HEX + 1];
    ss_keyid_hex(a.keyid, id);
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_trust_revoke(&f.k, "AAA", id, &e), 0);
    CU_ASSERT_EQUAL(use(&f, "AAA", &a).status, 4421);
    CU_ASSERT_EQUAL(use(&f, "BBB", &b).action, SS_TRUST_ACCEPT);
    fx_close(&f);
}

static void test_same_key_for_a_second_site_needs_the_flag(void)
{
    fixture f;
    fx_open(&f, NULL);
    ss_pubkey a = f.a;
    offer(&f, "PS1", &a, SS_EV_ADMIN, 0);
    ss_verdict v = offer(&f, "CEN", &a, SS_EV_ADMIN, 0);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_REJECT);
    CU_ASSERT_EQUAL(v.reason, SS_WHY_OTHER_SITE);
    CU_ASSERT_EQUAL(offer(&f, "CEN", &a, SS_EV_DIRECTORY, 0).action, SS_TRUST_REJECT);
    CU_ASSERT_EQUAL(offer(&f, "CEN", &a, SS_EV_OFFER, 0).action, SS_TRUST_REJECT);
    ss_offer o = {"CEN", &a, SS_EV_ADMIN, "test", "unit test", 0, NULL, true};
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_trust_judge_offer(&f.k, &o, &v, &e), 0);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_ACCEPT);
    CU_ASSERT_EQUAL(use(&f, "CEN", &a).action, SS_TRUST_ACCEPT);
    /* Revoked for one of them, the public key is revoked for both. */
    char id[SS_KEYID_HEX + 1];
    ss_keyrec r;
    ss_keyid_hex(a.keyid, id);
    CU_ASSERT_EQUAL(ss_trust_revoke(&f.k, "CEN", id, &e), 0);
    CU_ASSERT_EQUAL(ss_keys_get(&f.ss1.db, "PS1", id, &r, &e), 1);
    CU_ASSERT_EQUAL(r.state, SS_KEY_REVOKED);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).status, 4421);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3310), 2);
    fx_close(&f);
}

/* A different key under an id the site already has is a forged id. */
static void test_id_clash_refused(void)
{
    fixture f;
    fx_open(&f, NULL);
    ss_pubkey a = f.a, b = f.b;
    memcpy(b.keyid, a.keyid, SS_KEYID_BYTES);
    offer(&f, "PS1", &a, SS_EV_ADMIN, 0);
    ss_verdict v = offer(&f, "PS1", &b, SS_EV_ADMIN, 0);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_REJECT);
    CU_ASSERT_EQUAL(v.reason, SS_WHY_ID_CLASH);
    CU_ASSERT_EQUAL(offer(&f, "PS1", &b, SS_EV_OFFER, 0).reason, SS_WHY_UNAUTHENTICATED);
    fx_close(&f);
}

static void test_tofu_offer_pending_then_approved(void)
{
    fixture f;
    fx_open(&f, NULL);
    f.ss1.conf.require_secure_key_exchange = false;
    ss_pubkey a = f.a, b = f.b;
    ss_verdict v = offer(&f, "PS1", &a, SS_EV_OFFER, 0);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_HOLD);
    CU_ASSERT_EQUAL(v.reason, SS_WHY_PENDING);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3305), 1);
    CU_ASSERT_EQUAL(blocked(&f, "PS1"), 0);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).reason, SS_WHY_PENDING);
    char id[SS_KEYID_HEX + 1];
    ss_keyid_hex(a.keyid, id);
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_trust_admin_trust(&f.k, "PS1", id, "approved", &e), 0);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).action, SS_TRUST_ACCEPT);
    /* Now a second, different offer blocks the site. */
    v = offer(&f, "PS1", &b, SS_EV_OFFER, 0);
    CU_ASSERT_EQUAL(v.reason, SS_WHY_BLOCKED);
    CU_ASSERT_EQUAL(blocked(&f, "PS1"), 1);
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3303), 1);
    /* Revoking the offered key lifts the block; the trusted one flows. */
    ss_keyid_hex(b.keyid, id);
    CU_ASSERT_EQUAL(ss_trust_revoke(&f.k, "PS1", id, &e), 0);
    CU_ASSERT_EQUAL(blocked(&f, "PS1"), 0);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).action, SS_TRUST_ACCEPT);
    fx_close(&f);
}

static void test_rollover_trusts_next_and_retires_signer(void)
{
    fixture f;
    fx_open(&f, NULL);
    ss_pubkey a = f.a, b = f.b;
    offer(&f, "PS1", &a, SS_EV_ADMIN, 0);
    ss_keyrec signer;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_keys_get_pk(&f.ss1.db, "PS1", &a, &signer, &e), 1);
    ss_offer o = {"PS1", &b, SS_EV_ROLLOVER, "rollover", "unit test", 0, &signer, false};
    ss_verdict v;
    CU_ASSERT_EQUAL(ss_trust_judge_offer(&f.k, &o, &v, &e), 0);
    CU_ASSERT_EQUAL(v.action, SS_TRUST_ACCEPT);
    CU_ASSERT_EQUAL(use(&f, "PS1", &b).action, SS_TRUST_ACCEPT);
    ss_keyrec old;
    CU_ASSERT_EQUAL(ss_keys_get_pk(&f.ss1.db, "PS1", &a, &old, &e), 1);
    CU_ASSERT_EQUAL(old.state, SS_KEY_RETIRED);
    CU_ASSERT(old.grace_until > ss_now() + 89 * 86400);
    CU_ASSERT_EQUAL(use(&f, "PS1", &a).action, SS_TRUST_ACCEPT); /* data within grace */
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3309), 1);
    fx_close(&f);
}

/* SQLite refusing to read a table the check needs: hold, never accept. */
static int deny_table(void *ctx, int action, const char *a, const char *b, const char *c,
                      const char *d)
{
    (void)b;
    (void)c;
    (void)d;
    const char *table = ctx;
    if ((action == SQLITE_READ || action == SQLITE_UPDATE || action == SQLITE_INSERT) && a &&
        !strcmp(a, table))
        return SQLITE_DENY;
    return SQLITE_OK;
}

static void test_database_errors_fail_closed(void)
{
    static const char *const tables[] = {"keys", "sites"};
    for (size_t t = 0; t < 2; t++) {
        fixture f;
        fx_open(&f, NULL);
        ss_pubkey a = f.a, b = f.b;
        offer(&f, "PS1", &a, SS_EV_ADMIN, 0);
        ss_keyrec rec;
        ss_error e = {0};
        CU_ASSERT_EQUAL_FATAL(ss_keys_get_pk(&f.ss1.db, "PS1", &a, &rec, &e), 1);
        sqlite3_set_authorizer(f.ss1.db.h, deny_table, (void *)tables[t]);
        ss_verdict v = {.action = SS_TRUST_ACCEPT};
        CU_ASSERT_EQUAL(ss_trust_judge_use(&f.k, "PS1", &rec, true, &v, &e), -1);
        CU_ASSERT_EQUAL(v.action, SS_TRUST_HOLD);
        CU_ASSERT_EQUAL(v.reason, SS_WHY_DB);
        v.action = SS_TRUST_ACCEPT;
        ss_offer o = {"PS1", &b, SS_EV_ADMIN, "test", "unit test", 0, NULL, false};
        CU_ASSERT_EQUAL(ss_trust_judge_offer(&f.k, &o, &v, &e), -1);
        CU_ASSERT_EQUAL(v.action, SS_TRUST_HOLD);
        char bid[SS_KEYID_HEX + 1];
        ss_keyid_hex(b.keyid, bid);
        CU_ASSERT_EQUAL(ss_trust_admin_trust(&f.k, "PS1", bid, "test", &e), -1);
        unsigned char keyid[SS_KEYID_BYTES];
        memcpy(keyid, a.keyid, SS_KEYID_BYTES);
        ss_key_found how;
        if (t == 0) CU_ASSERT_EQUAL(ss_key_find(&f.k, "PS1", keyid, &rec, &how, &e), -1);
        sqlite3_set_authorizer(f.ss1.db.h, NULL, NULL);
        /* Nothing changed: b unknown, the site not blocked. */
        CU_ASSERT_EQUAL(use(&f, "PS1", &b).action, SS_TRUST_MISSING);
        CU_ASSERT_EQUAL(blocked(&f, "PS1"), 0);
        fx_close(&f);
    }
}

/* Key files: the name and the comment must name the same site. */
static void test_import_file_site_named_twice(void)
{
    fixture f;
    fx_open(&f, NULL);
    ss_pubkey a = f.a;
    char text[512], comment[128];
    ss_pubkey_comment("SS3", 0, comment, sizeof comment);
    ss_pubkey_format(&a, comment, text, sizeof text);
    tu_write(f.dir, "SS4.pub", text, strlen(text));
    tu_write(f.dir, "SS3.pub", text, strlen(text));
    char path[1100];
    ss_error e = {0};
    snprintf(path, sizeof path, "%s/SS4.pub", f.dir);
    CU_ASSERT_EQUAL(ss_trust_import_file(&f.k, path, NULL, "import", false, NULL, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "SS4"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "SS3"));
    CU_ASSERT_EQUAL(tu_status_count(&f.ss1, 3301), 1);
    /* The administrator says which: accepted. */
    CU_ASSERT_EQUAL(ss_trust_import_file(&f.k, path, "SS4", "import", false, NULL, &e), 0);
    /* ... and then the same key for SS3 is a second site: refused. */
    snprintf(path, sizeof path, "%s/SS3.pub", f.dir);
    CU_ASSERT_EQUAL(ss_trust_import_file(&f.k, path, NULL, "import", false, NULL, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "SS4"));
    /* A comment that names no site is not enough on its own. */
    ss_pubkey_format(&a, "minisign public key", text, sizeof text);
    tu_write(f.dir, "SS5.pub", text, strlen(text));
    snprintf(path, sizeof path, "%s/SS5.pub", f.dir);
    CU_ASSERT_EQUAL(ss_trust_import_file(&f.k, path, NULL, "import", false, NULL, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "--site SS5"));
    fx_close(&f);
}

/* ----------------------------------------------------- proofs (keyfile) */

static void test_key_offer_proof(void)
{
    ss_pubkey pk, got, other;
    ss_seckey *sk, *osk;
    new_key(&pk, &sk);
    new_key(&other, &osk);
    char payload[1024];
    int64_t not_after = 0;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_key_offer_payload("PS1", sk, 1900000000, payload, sizeof payload, &e),
                          0);
    CU_ASSERT_EQUAL(ss_key_offer_parse("PS1", payload, strlen(payload), &got, &not_after, &e), 0);
    CU_ASSERT_EQUAL(memcmp(&got, &pk, sizeof pk), 0);
    CU_ASSERT_EQUAL(not_after, 1900000000);
    /* For another site, the statement (and the comment) do not fit. */
    CU_ASSERT_EQUAL(ss_key_offer_parse("SS1", payload, strlen(payload), &got, &not_after, &e), -1);
    /* Without the proof line. */
    char *nl = strchr(strchr(payload, '\n') + 1, '\n');
    char bare[1024];
    snprintf(bare, sizeof bare, "%.*s", (int)(nl + 1 - payload), payload);
    CU_ASSERT_EQUAL(ss_key_offer_parse("PS1", bare, strlen(bare), &got, &not_after, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "no proof"));
    /* Every byte of the proof line matters. */
    size_t start = (size_t)(nl + 1 - payload), len = strlen(payload);
    for (size_t i = start; i + 1 < len; i++) {
        char copy[1024];
        memcpy(copy, payload, len + 1);
        copy[i] ^= 0x01;
        CU_ASSERT_EQUAL(ss_key_offer_parse("PS1", copy, len, &got, &not_after, &e), -1);
    }
    /* Another key's proof for this key: refused. */
    char forged[1024];
    CU_ASSERT_EQUAL(ss_key_offer_payload("PS1", osk, 0, forged, sizeof forged, &e), 0);
    char mixed[2048];
    char *fnl = strchr(strchr(forged, '\n') + 1, '\n');
    snprintf(mixed, sizeof mixed, "%.*s%s", (int)(nl + 1 - payload), payload, fnl + 1);
    CU_ASSERT_EQUAL(ss_key_offer_parse("PS1", mixed, strlen(mixed), &got, &not_after, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_BADSIG);
    /* A rollover proof is not a key exchange proof. */
    char roll[1024];
    CU_ASSERT_EQUAL(ss_rollover_payload("PS1", &other, sk, 0, roll, sizeof roll, &e), 0);
    CU_ASSERT_EQUAL(ss_key_offer_parse("PS1", roll, strlen(roll), &got, &not_after, &e), -1);
    ss_seckey_free(sk);
    ss_seckey_free(osk);
}

static void test_rollover_proof(void)
{
    ss_pubkey old, next, got;
    ss_seckey *osk, *nsk;
    new_key(&old, &osk);
    new_key(&next, &nsk);
    char payload[1024];
    unsigned char previous[SS_KEYID_BYTES];
    bool parsed;
    int64_t not_after;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_rollover_payload("PS1", &old, nsk, 0, payload, sizeof payload, &e), 0);
    CU_ASSERT_EQUAL(
        ss_rollover_parse("PS1", payload, strlen(payload), previous, &got, &parsed, &not_after, &e),
        0);
    CU_ASSERT(parsed);
    CU_ASSERT_EQUAL(memcmp(previous, old.keyid, SS_KEYID_BYTES), 0);
    /* A key exchange payload is no rollover; the key is still presented. */
    CU_ASSERT_EQUAL(ss_key_offer_payload("PS1", nsk, 0, payload, sizeof payload, &e), 0);
    CU_ASSERT_EQUAL(
        ss_rollover_parse("PS1", payload, strlen(payload), previous, &got, &parsed, &not_after, &e),
        -1);
    CU_ASSERT(parsed);
    CU_ASSERT_EQUAL(memcmp(&got, &next, sizeof next), 0);
    CU_ASSERT_EQUAL(ss_rollover_parse("PS1", "junk", 4, previous, &got, &parsed, &not_after, &e),
                    -1);
    CU_ASSERT(!parsed);
    ss_seckey_free(osk);
    ss_seckey_free(nsk);
}

/* ----------------------------------------------------------- migration */

/* A schema-1 site.db (keys keyed by (site, key id)) migrates with its keys. */
static void test_schema_1_migrates(void)
{
    char *dir = tu_tempdir("migrate");
    char path[600];
    snprintf(path, sizeof path, "%s/site.db", dir);
    sqlite3 *h = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &h), SQLITE_OK);
    CU_ASSERT_EQUAL_FATAL(
        sqlite3_exec(h,
                     "CREATE TABLE keys(site TEXT NOT NULL, key_id TEXT NOT NULL, public_key BLOB "
                     "NOT NULL, state TEXT NOT NULL, source TEXT NOT NULL, created INTEGER NOT "
                     "NULL, not_after INTEGER, last_seen INTEGER, grace_until INTEGER, warned_at "
                     "INTEGER, PRIMARY KEY (site, key_id));"
                     "CREATE TABLE peers(site TEXT PRIMARY KEY, inbox TEXT NOT NULL, added "
                     "INTEGER NOT NULL, next_seq INTEGER NOT NULL DEFAULT 1, last_success "
                     "INTEGER, last_error TEXT, next_attempt INTEGER NOT NULL DEFAULT 0, failures "
                     "INTEGER NOT NULL DEFAULT 0);"
                     "CREATE TABLE sites(site TEXT PRIMARY KEY, blocked INTEGER NOT NULL DEFAULT "
                     "0, blocked_key_id TEXT, last_seq_in INTEGER NOT NULL DEFAULT 0, last_key_id "
                     "TEXT, last_seen INTEGER);"
                     "CREATE TABLE ledger(id TEXT PRIMARY KEY, from_site TEXT NOT NULL, seq "
                     "INTEGER NOT NULL, type TEXT NOT NULL, outcome TEXT NOT NULL, path TEXT, "
                     "size INTEGER, time INTEGER NOT NULL, expires INTEGER NOT NULL);"
                     "INSERT INTO keys VALUES('PS1','0123456789ABCDEF',zeroblob(32),'trusted',"
                     "'hman',1,NULL,NULL,NULL,NULL);"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(h);
    ss_db db;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_db_open(&db, path, false, &e), 0);
    CU_ASSERT_EQUAL(ss_db_schema_version(&db), SS_DB_SCHEMA_VERSION);
    ss_keyrec rec;
    CU_ASSERT_EQUAL(ss_keys_get(&db, "PS1", "0123456789ABCDEF", &rec, &e), 1);
    CU_ASSERT_EQUAL(rec.state, SS_KEY_TRUSTED);
    /* The same public key under a second id for the same site: refused
     * by the (site, public key) identity. */
    CU_ASSERT_NOT_EQUAL(ss_db_exec(&db,
                                   "INSERT INTO keys(site,key_id,public_key,state,source,created) "
                                   "VALUES('PS1','1111111111111111',zeroblob(32),'trusted','x',1)",
                                   &e),
                        0);
    ss_db_close(&db);
    tu_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--print-table")) {
        size_t cap = 1 << 20;
        char *buf = malloc(cap);
        if (!buf) return 1;
        fwrite(buf, 1, print_table(buf, cap), stdout);
        free(buf);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_trust TABLE_FILE | --print-table\n");
        return 2;
    }
    table_path = argv[1];
    static const tu_test tests[] = {
        {"every cell matches the reviewed rule table", test_every_cell_matches_the_reviewed_table},
        {"invariants over every cell and setting", test_invariants_over_every_cell},
        {"a blocked site: data held, key instructions run",
         test_blocked_site_holds_data_not_rollovers},
        {"directory: first record trusted, a different one blocks",
         test_directory_first_trusted_then_change_blocks},
        {"an unknown key id changes nothing", test_unknown_key_use_changes_nothing},
        {"a revoked public key is refused for every site",
         test_revoked_public_key_refused_for_every_site},
        {"revoke by a shared key id touches only the named site",
         test_revoke_by_shared_id_touches_only_that_site},
        {"the same key for a second site needs --shared-key",
         test_same_key_for_a_second_site_needs_the_flag},
        {"a different key under a known key id is refused", test_id_clash_refused},
        {"trust on first use: pending, approved; a second offer blocks",
         test_tofu_offer_pending_then_approved},
        {"rollover trusts the next key and retires the signer",
         test_rollover_trusts_next_and_retires_signer},
        {"database errors fail closed", test_database_errors_fail_closed},
        {"key files name their site twice", test_import_file_site_named_twice},
        {"key exchange proof of possession", test_key_offer_proof},
        {"rollover proof", test_rollover_proof},
        {"schema 1 migrates to (site, public key)", test_schema_1_migrates},
    };
    return tu_run("trust", tests, sizeof tests / sizeof tests[0]);
}
