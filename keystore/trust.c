/*
 * trust.c - trust decisions and transitions.  See trust.h for the rules.
 *
 * The code is in three layers: the rule table (pure), the facts (what
 * site.db says about the claimed site and the presented key, read inside
 * the transaction that then applies the verdict), and the transitions with
 * their status messages, which are raised only after the commit so that
 * nothing is announced that did not happen.
 *
 * Diagnostics: hman.log carries 3300-3313; a refusal names the key, the
 * site and, for a conflict, the other site or key.
 */
#include "trust.h"
#include "../inboxes/fileio.h"
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------- the rules */

static ss_verdict verdict(enum ss_trust_action action, enum ss_trust_reason reason, int status,
                          unsigned tx)
{
    return (ss_verdict){action, reason, status, tx};
}

static ss_verdict accept(unsigned tx)
{
    return verdict(SS_TRUST_ACCEPT, SS_WHY_NONE, 0, tx);
}

static ss_verdict hold(enum ss_trust_reason reason, unsigned tx)
{
    return verdict(SS_TRUST_HOLD, reason, 0, tx);
}

/* A use of a key: verify with it, hold, refuse, or look for it. */
static ss_verdict use_rule(bool for_data, enum ss_site_trust site, enum ss_key_standing key)
{
    bool blocked = site == SS_SITE_BLOCKED;
    int refuse = for_data ? 4407 : 4422;
    switch (key) {
    case SS_KS_UNKNOWN:
        return verdict(SS_TRUST_MISSING, SS_WHY_NO_KEY, 4405, 0);
    case SS_KS_OWN:
    case SS_KS_TRUSTED:
        /* A blocked site's key instructions still run: a rollover or a
         * vouched key exchange may be what lifts the block. */
        return for_data && blocked ? hold(SS_WHY_BLOCKED, 0) : accept(0);
    case SS_KS_RETIRED:
        if (!for_data) return verdict(SS_TRUST_REJECT, SS_WHY_RETIRED_SIGNER, 4422, 0);
        return blocked ? hold(SS_WHY_BLOCKED, 0) : accept(0);
    case SS_KS_RETIRED_PAST:
        return verdict(SS_TRUST_REJECT, SS_WHY_RETIRED_PAST, refuse, 0);
    case SS_KS_EXPIRED:
        return hold(SS_WHY_EXPIRED, 0);
    case SS_KS_PENDING:
        return hold(SS_WHY_PENDING, 0);
    case SS_KS_BLOCKING:
        return hold(SS_WHY_BLOCKED, 0);
    case SS_KS_REVOKED:
        return verdict(SS_TRUST_REJECT, SS_WHY_REVOKED, 4421, 0);
    case SS_KS_ID_CLASH: /* standings of offered keys: a use cannot have them */
        return verdict(SS_TRUST_REJECT, SS_WHY_ID_CLASH, refuse, 0);
    case SS_KS_OTHER_SITE:
        break;
    }
    return verdict(SS_TRUST_REJECT, SS_WHY_OTHER_SITE, refuse, 0);
}

/* A new key for a site that has others: recorded as pending and, for a
 * site that trusts another key, blocking it. */
static ss_verdict changed_key(enum ss_site_trust site)
{
    if (site == SS_SITE_TRUSTED) return hold(SS_WHY_BLOCKED, SS_TX_PENDING | SS_TX_BLOCK);
    if (site == SS_SITE_BLOCKED) return hold(SS_WHY_BLOCKED, SS_TX_PENDING);
    return hold(SS_WHY_PENDING, SS_TX_PENDING);
}

/* Key material offered under evidence other than a signature. */
static ss_verdict offer_rule(enum ss_evidence ev, enum ss_site_trust site, enum ss_key_standing key,
                             const ss_trust_policy *p)
{
    bool admin = ev == SS_EV_ADMIN, on_wire = !admin && ev != SS_EV_DIRECTORY;
    int refuse = on_wire ? 4422 : 3301;
    bool site_has_trust = site == SS_SITE_TRUSTED || site == SS_SITE_BLOCKED;
    if (key == SS_KS_REVOKED)
        return verdict(SS_TRUST_REJECT, SS_WHY_REVOKED, on_wire ? 4421 : 3301, 0);
    if (ev == SS_EV_OFFER && p->require_secure_key_exchange)
        return verdict(SS_TRUST_REJECT, SS_WHY_UNAUTHENTICATED, 4404, 0);
    if (key == SS_KS_OWN) return verdict(SS_TRUST_REJECT, SS_WHY_OWN_SITE, refuse, 0);
    if (key == SS_KS_ID_CLASH) return verdict(SS_TRUST_REJECT, SS_WHY_ID_CLASH, refuse, 0);
    if (key == SS_KS_OTHER_SITE && !(admin && p->allow_shared_key))
        return verdict(SS_TRUST_REJECT, SS_WHY_OTHER_SITE, refuse, 0);
    bool known = key != SS_KS_UNKNOWN && key != SS_KS_OTHER_SITE;
    switch (ev) {
    case SS_EV_ADMIN:
        return accept(SS_TX_TRUST | SS_TX_UNBLOCK);
    case SS_EV_VOUCHED:
    case SS_EV_ROLLOVER:
        if (!site_has_trust) return verdict(SS_TRUST_REJECT, SS_WHY_NOT_VOUCHED, 4422, 0);
        return accept(SS_TX_TRUST | SS_TX_UNBLOCK |
                      (ev == SS_EV_ROLLOVER ? SS_TX_RETIRE_SIGNER : 0));
    case SS_EV_DIRECTORY:
        if (known) return accept(0); /* nothing new */
        /* The first record for a site is trusted as Active Directory is
         * in ConfigMgr: the directory is run by administrators. */
        return site_has_trust ? changed_key(site) : accept(SS_TX_TRUST);
    case SS_EV_OFFER:
        if (known) return accept(0);
        if (site == SS_SITE_UNKNOWN && p->tofu_auto_approve) return accept(SS_TX_TRUST);
        return changed_key(site);
    case SS_EV_BAD_ROLLOVER:
        if (!site_has_trust) return verdict(SS_TRUST_REJECT, SS_WHY_NOT_VOUCHED, 4422, 0);
        return verdict(SS_TRUST_REJECT, SS_WHY_BAD_ROLLOVER, 4422,
                       known ? 0 : changed_key(site).tx);
    case SS_EV_DATA_SIGNATURE:
    case SS_EV_KEY_SIGNATURE:
        break;
    }
    return verdict(SS_TRUST_REJECT, SS_WHY_NOT_VOUCHED, refuse, 0);
}

ss_verdict ss_trust_rule(enum ss_evidence ev, enum ss_site_trust site, enum ss_key_standing key,
                         const ss_trust_policy *p)
{
    if (ev == SS_EV_DATA_SIGNATURE || ev == SS_EV_KEY_SIGNATURE)
        return use_rule(ev == SS_EV_DATA_SIGNATURE, site, key);
    return offer_rule(ev, site, key, p);
}

const char *ss_trust_reason_text(enum ss_trust_reason r)
{
    switch (r) {
    case SS_WHY_NONE:
        return "accepted";
    case SS_WHY_PENDING:
        return "the key waits for an administrator's approval";
    case SS_WHY_EXPIRED:
        return "the key is expired";
    case SS_WHY_BLOCKED:
        return "the site is blocked after a key change";
    case SS_WHY_DB:
        return "the keystore could not be read";
    case SS_WHY_NO_KEY:
        return "no key under this id is known for the site";
    case SS_WHY_REVOKED:
        return "the key is revoked and never accepted again";
    case SS_WHY_RETIRED_PAST:
        return "the key was retired by a rollover and is past its grace period";
    case SS_WHY_RETIRED_SIGNER:
        return "it is signed by a key retired by a rollover, which verifies data during its grace "
               "period but never vouches for a key";
    case SS_WHY_UNAUTHENTICATED:
        return "it is not signed by a key this site trusts for the sender";
    case SS_WHY_OWN_SITE:
        return "it is offered as a key of this site itself";
    case SS_WHY_ID_CLASH:
        return "the site already has a different key under this key id";
    case SS_WHY_OTHER_SITE:
        return "the same public key belongs to another site";
    case SS_WHY_BAD_ROLLOVER:
        return "the rollover's next key failed its checks";
    case SS_WHY_NOT_VOUCHED:
        return "no key trusted for the site vouches for it";
    }
    return "?";
}

const char *ss_evidence_name(enum ss_evidence ev)
{
    static const char *const names[SS_EVIDENCE_KINDS] = {
        "data signature", "key signature", "administrator", "directory",
        "vouched",        "offer",         "rollover",      "bad rollover"};
    return (unsigned)ev < SS_EVIDENCE_KINDS ? names[ev] : "?";
}

const char *ss_site_trust_name(enum ss_site_trust s)
{
    static const char *const names[SS_SITE_TRUST_KINDS] = {"unknown", "offered", "trusted",
                                                           "blocked"};
    return (unsigned)s < SS_SITE_TRUST_KINDS ? names[s] : "?";
}

const char *ss_key_standing_name(enum ss_key_standing s)
{
    static const char *const names[SS_KEY_STANDINGS] = {
        "unknown", "own",      "trusted", "expired",  "retired",   "retired-past",
        "pending", "blocking", "revoked", "id-clash", "other-site"};
    return (unsigned)s < SS_KEY_STANDINGS ? names[s] : "?";
}

/* ---------------------------------------------------------- the facts */

typedef struct facts {
    enum ss_site_trust site;
    enum ss_key_standing key;
    char blocked_by[SS_KEYID_HEX + 1]; /* the key that blocked the site, or "" */
    char other_site[SS_SITE_CODE_MAX + 1];
    bool have_record; /* record: the presented key's record for the site */
    ss_keyrec record;
} facts;

static int load_site_trust(ss_db *db, const char *site, facts *f, ss_error *e)
{
    int blocked = ss_site_block_get(db, site, f->blocked_by, e);
    if (blocked < 0) return -1;
    if (blocked) {
        f->site = SS_SITE_BLOCKED;
        return 0;
    }
    f->blocked_by[0] = '\0';
    int trusted = ss_keys_in_state(db, site, SS_KEY_TRUSTED, NULL, 0, e);
    int retired = trusted == 0 ? ss_keys_in_state(db, site, SS_KEY_RETIRED, NULL, 0, e) : 0;
    int pending =
        trusted + retired == 0 ? ss_keys_in_state(db, site, SS_KEY_PENDING, NULL, 0, e) : 0;
    if (trusted < 0 || retired < 0 || pending < 0) return -1;
    f->site = trusted + retired ? SS_SITE_TRUSTED : pending ? SS_SITE_OFFERED : SS_SITE_UNKNOWN;
    return 0;
}

/* How a record stands now. */
static enum ss_key_standing record_standing(const ss_keyrec *r, const facts *f, int64_t now)
{
    bool expired = r->not_after && now > r->not_after;
    switch (r->state) {
    case SS_KEY_OWN:
        return SS_KS_OWN;
    case SS_KEY_REVOKED:
        return SS_KS_REVOKED;
    case SS_KEY_PENDING:
        return !strcmp(f->blocked_by, r->key_id) ? SS_KS_BLOCKING : SS_KS_PENDING;
    case SS_KEY_RETIRED:
        if (!r->grace_until || now > r->grace_until) return SS_KS_RETIRED_PAST;
        return expired ? SS_KS_EXPIRED : SS_KS_RETIRED;
    case SS_KEY_TRUSTED:
        return expired ? SS_KS_EXPIRED : SS_KS_TRUSTED;
    }
    return SS_KS_REVOKED; /* unreachable: states are parsed strictly */
}

struct pk_scan {
    const char *site;
    bool revoked;
    char other_site[SS_SITE_CODE_MAX + 1];
};

static int note_pk_record(void *ctx, const ss_keyrec *r)
{
    struct pk_scan *s = ctx;
    if (r->state == SS_KEY_REVOKED) s->revoked = true;
    if (strcmp(r->site, s->site) != 0 && !s->other_site[0])
        snprintf(s->other_site, sizeof s->other_site, "%s", r->site);
    return 0;
}

/* Facts about pk offered for site; also the basis of a use's standing. */
static int load_key_facts(const ss_keyctx *k, const char *site, const ss_pubkey *pk, facts *f,
                          ss_error *e)
{
    struct pk_scan scan = {.site = site};
    if (ss_keys_foreach_pk(k->db, pk, note_pk_record, &scan, e) != 0) return -1;
    snprintf(f->other_site, sizeof f->other_site, "%s", scan.other_site);
    char id[SS_KEYID_HEX + 1];
    ss_keyid_hex(pk->keyid, id);
    int found = ss_keys_get_pk(k->db, site, pk, &f->record, e);
    if (found < 0) return -1;
    f->have_record = found == 1;
    if (!strcmp(site, k->conf->site_code)) {
        f->key = SS_KS_OWN;
    } else if (scan.revoked) {
        f->key = SS_KS_REVOKED;
    } else if (f->have_record) {
        f->key = strcmp(f->record.key_id, id) ? SS_KS_ID_CLASH
                                              : record_standing(&f->record, f, ss_now());
    } else {
        int clash = ss_keys_get(k->db, site, id, NULL, e);
        if (clash < 0) return -1;
        f->key = clash ? SS_KS_ID_CLASH : scan.other_site[0] ? SS_KS_OTHER_SITE : SS_KS_UNKNOWN;
    }
    return 0;
}

static ss_trust_policy policy_of(const ss_keyctx *k, bool allow_shared_key)
{
    return (ss_trust_policy){k->conf->require_secure_key_exchange, k->conf->tofu_auto_approve,
                             allow_shared_key};
}

int ss_trust_judge_use(const ss_keyctx *k, const char *site, const ss_keyrec *key, bool for_data,
                       ss_verdict *v, ss_error *e)
{
    facts f;
    memset(&f, 0, sizeof f);
    *v = hold(SS_WHY_DB, 0);
    if (load_site_trust(k->db, site, &f, e) != 0) return -1;
    f.key = SS_KS_UNKNOWN;
    if (key) {
        /* Revoked for any site is revoked here too. */
        struct pk_scan scan = {.site = site};
        if (ss_keys_foreach_pk(k->db, &key->pk, note_pk_record, &scan, e) != 0) return -1;
        f.key = scan.revoked ? SS_KS_REVOKED : record_standing(key, &f, ss_now());
    }
    ss_trust_policy p = policy_of(k, false);
    *v = ss_trust_rule(for_data ? SS_EV_DATA_SIGNATURE : SS_EV_KEY_SIGNATURE, f.site, f.key, &p);
    return 0;
}

int ss_trust_judge_unsigned(const ss_keyctx *k, const char *site, ss_verdict *v, ss_error *e)
{
    if (k->conf->require_secure_key_exchange) {
        *v = verdict(SS_TRUST_REJECT, SS_WHY_UNAUTHENTICATED, 4404, 0);
        return 0;
    }
    *v = hold(SS_WHY_DB, 0);
    int blocked = ss_site_block_get(k->db, site, NULL, e);
    if (blocked < 0) return -1;
    *v = blocked ? hold(SS_WHY_BLOCKED, 0) : accept(0);
    return 0;
}

/* ------------------------------------------- telling the despooler */

void ss_trust_changed(const ss_keyctx *k, const char *what)
{
    if (k->in_despooler) return;
    char dir[PATH_MAX], text[256];
    ss_error e = {0};
    if (ss_path(dir, sizeof dir, k->root, SS_DIR_HMAN) != 0) return;
    int dfd = ss_open_dir(dir, &e);
    /* No hman.box: no site a despooler could run for (init, a test). */
    if (dfd < 0 && e.code == SS_E_NOENT) return;
    int n = snprintf(text, sizeof text, "%lld %s\n", (long long)ss_now(), what);
    if (n < 0 || n >= (int)sizeof text) n = (int)sizeof text - 1;
    int rc = dfd < 0 ? -1
                     : ss_write_file_atomic(dfd, SS_TRUST_MARKER, text, (size_t)n, 0640,
                                            SS_ATOMIC_SYNC_DIR, &e);
    if (dfd >= 0) close(dfd);
    if (rc != 0 && k->rep)
        ss_logf(ss_reporter_log(k->rep, SS_COMP_HMAN),
                "Cannot tell a running despooler that trust changed (%s): %s; it acts on the "
                "change at its next rescan (rescan_interval)",
                what, e.msg);
}

/* ---------------------------------------------------- the transitions */

/* Status messages are raised after the commit: nothing is announced that
 * a rollback undid. */
#define MAX_NOTES 10
typedef struct notes {
    int n;
    struct {
        int id;
        int nistr;
        char istr[4][1024];
    } m[MAX_NOTES];
} notes;

static void note(notes *ns, int id, const char *a, const char *b, const char *c, const char *d)
{
    if (ns->n >= MAX_NOTES) return;
    const char *in[4] = {a, b, c, d};
    ns->m[ns->n].id = id;
    ns->m[ns->n].nistr = 0;
    for (int i = 0; i < 4 && in[i]; i++) {
        snprintf(ns->m[ns->n].istr[i], sizeof ns->m[0].istr[0], "%s", in[i]);
        ns->m[ns->n].nistr = i + 1;
    }
    ns->n++;
}

static void raise_notes(const ss_keyctx *k, const notes *ns)
{
    for (int i = 0; i < ns->n; i++) {
        const char *istr[4];
        for (int j = 0; j < ns->m[i].nistr; j++)
            istr[j] = ns->m[i].istr[j];
        ss_reportv(k->rep, ns->m[i].id, ns->m[i].nistr, istr);
    }
}

/* Runs inside the caller's transaction if there is one, else in its own
 * BEGIN IMMEDIATE, so the facts read are the facts written against. */
static int tx_begin(ss_db *db, bool *own, ss_error *e)
{
    *own = sqlite3_get_autocommit(db->h) != 0;
    return *own ? ss_db_begin(db, e) : ss_db_exec(db, "SAVEPOINT trust", e);
}

static int tx_end(ss_db *db, bool own, bool ok, ss_error *e)
{
    if (!ok) {
        if (own)
            ss_db_rollback(db);
        else
            (void)ss_db_exec(db, "ROLLBACK TO trust; RELEASE trust", NULL);
        return -1;
    }
    if (own ? ss_db_commit(db, e) : ss_db_exec(db, "RELEASE trust", e)) {
        if (own) ss_db_rollback(db);
        return -1;
    }
    return 0;
}

static void format_day(int64_t t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(out, len, "%Y-%m-%d %H:%M", &tm);
}

/* The presented key becomes trusted (a new record, or a state change). */
static int make_trusted(const ss_keyctx *k, const ss_offer *o, facts *f, bool *changed, ss_error *e)
{
    *changed = false;
    if (!f->have_record) {
        ss_keyrec rec;
        ss_keyrec_init(&rec, o->site, o->pk, SS_KEY_TRUSTED, o->source, o->not_after);
        if (ss_keys_add(k->db, &rec, e) != 0) return -1;
        f->record = rec;
        f->have_record = true;
        *changed = true;
        return 0;
    }
    if (f->record.state == SS_KEY_TRUSTED) return 0;
    *changed = true;
    f->record.state = SS_KEY_TRUSTED;
    return ss_keys_set_state(k->db, o->site, f->record.key_id, SS_KEY_TRUSTED, 0, e);
}

/* A block was lifted while other keys presented for the site still wait:
 * the block moves to the oldest of them, which was presented and verified
 * as well.  (Pending keys of a site that trusts none are offers waiting for
 * approval, not a change: they block nothing.) */
static int keep_blocked_by_pending(const ss_keyctx *k, const char *site, const char *decided,
                                   notes *ns, ss_error *e)
{
    char ids[1][SS_KEYID_HEX + 1], trusted[160], origin[96];
    int n = ss_keys_in_state(k->db, site, SS_KEY_PENDING, ids, 1, e);
    if (n <= 0) return n;
    if (ss_site_trusted_list(k->db, site, trusted, sizeof trusted, e) != 0) return -1;
    if (!trusted[0]) return 0;
    if (ss_site_block_set(k->db, site, ids[0], e) != 0) return -1;
    snprintf(origin, sizeof origin, "still pending after key %s was decided", decided);
    note(ns, 3303, site, ids[0], trusted, origin);
    return 0;
}

static int apply(const ss_keyctx *k, const ss_offer *o, const ss_verdict *v, facts *f, notes *ns,
                 ss_error *e)
{
    char id[SS_KEYID_HEX + 1], trusted[160];
    ss_keyid_hex(o->pk->keyid, id);
    bool admin = o->evidence == SS_EV_ADMIN, created = !f->have_record, changed = false;
    if ((v->tx & SS_TX_BLOCK) && ss_site_trusted_list(k->db, o->site, trusted, sizeof trusted, e))
        return -1;
    if ((v->tx & SS_TX_TRUST) && make_trusted(k, o, f, &changed, e) != 0) return -1;
    if (v->tx & SS_TX_PENDING) {
        ss_keyrec rec;
        ss_keyrec_init(&rec, o->site, o->pk, SS_KEY_PENDING, o->source, o->not_after);
        if (ss_keys_add(k->db, &rec, e) != 0) return -1;
    }
    if ((v->tx & SS_TX_BLOCK) && ss_site_block_set(k->db, o->site, id, e) != 0) return -1;
    bool unblocked = (v->tx & SS_TX_UNBLOCK) && !strcmp(f->blocked_by, id);
    if (unblocked && ss_site_block_clear(k->db, o->site, e) != 0) return -1;
    notes later = {0};
    if (unblocked && keep_blocked_by_pending(k, o->site, id, &later, e) != 0) return -1;
    int64_t grace_until = ss_now() + (int64_t)k->conf->rollover_grace_days * 86400;
    if ((v->tx & SS_TX_RETIRE_SIGNER) && o->signer && o->signer->state == SS_KEY_TRUSTED &&
        ss_keys_set_state(k->db, o->site, o->signer->key_id, SS_KEY_RETIRED, grace_until, e) != 0)
        return -1;
    /* The messages, in the order an administrator reads the story. */
    if (created && (v->tx & SS_TX_TRUST)) note(ns, 3300, id, o->site, o->origin, NULL);
    if ((changed && !created) || unblocked)
        note(ns, admin ? 3306 : 3313, o->site, id, o->origin, NULL);
    if (v->tx & SS_TX_BLOCK)
        note(ns, 3303, o->site, id, trusted, o->origin);
    else if ((v->tx & SS_TX_PENDING) && f->site != SS_SITE_BLOCKED)
        note(ns, 3305, o->site, id, NULL, NULL);
    if (o->evidence == SS_EV_ROLLOVER && o->signer) {
        char until[32];
        format_day(o->signer->state == SS_KEY_TRUSTED ? grace_until : o->signer->grace_until, until,
                   sizeof until);
        note(ns, 3309, o->site, o->signer->key_id, id, until);
    }
    for (int i = 0; i < later.n; i++)
        if (ns->n < MAX_NOTES) ns->m[ns->n++] = later.m[i];
    return 0;
}

/* The marker for a transition of the key pk of site. */
static void changed_key_of(const ss_keyctx *k, const char *what, const char *site,
                           const ss_pubkey *pk)
{
    char id[SS_KEYID_HEX + 1], text[96];
    ss_keyid_hex(pk->keyid, id);
    snprintf(text, sizeof text, "%s %s of site %s", what, id, site);
    ss_trust_changed(k, text);
}

/* Evidence that rests on a signer (a vouched key exchange, a rollover)
 * holds only while that signer is still trusted for the site: re-read
 * inside the transaction, so a revoke or untrust that committed while the
 * payload was read wins.  *ok false: the evidence is void. */
static int signer_still_trusted(const ss_keyctx *k, const ss_offer *o, bool *ok, ss_error *e)
{
    *ok = true;
    if (o->evidence != SS_EV_VOUCHED && o->evidence != SS_EV_ROLLOVER &&
        o->evidence != SS_EV_BAD_ROLLOVER)
        return 0;
    *ok = false;
    if (!o->signer) return 0;
    ss_keyrec now;
    facts none;
    memset(&none, 0, sizeof none);
    struct pk_scan scan = {.site = o->site};
    int found = ss_keys_get_pk(k->db, o->site, &o->signer->pk, &now, e);
    if (found < 0 || ss_keys_foreach_pk(k->db, &o->signer->pk, note_pk_record, &scan, e) != 0)
        return -1;
    *ok = found && !scan.revoked && record_standing(&now, &none, ss_now()) == SS_KS_TRUSTED;
    return 0;
}

int ss_trust_judge_offer(const ss_keyctx *k, const ss_offer *o, ss_verdict *v, ss_error *e)
{
    facts f;
    notes ns = {0};
    bool own;
    memset(&f, 0, sizeof f);
    *v = hold(SS_WHY_DB, 0);
    if (tx_begin(k->db, &own, e) != 0) return -1;
    ss_trust_policy p = policy_of(k, o->allow_shared_key);
    bool vouches = false;
    bool ok = load_site_trust(k->db, o->site, &f, e) == 0 &&
              load_key_facts(k, o->site, o->pk, &f, e) == 0 &&
              signer_still_trusted(k, o, &vouches, e) == 0;
    ss_verdict decided = !ok       ? *v
                         : vouches ? ss_trust_rule(o->evidence, f.site, f.key, &p)
                                   : verdict(SS_TRUST_REJECT, SS_WHY_NOT_VOUCHED, 4422, 0);
    ok = ok && apply(k, o, &decided, &f, &ns, e) == 0;
    if (tx_end(k->db, own, ok, e) != 0) return -1;
    *v = decided;
    raise_notes(k, &ns);
    if (decided.tx && own)
        changed_key_of(k, decided.tx & SS_TX_TRUST ? "trusted key" : "changed key", o->site, o->pk);
    if (v->action == SS_TRUST_REJECT && f.key == SS_KS_OTHER_SITE)
        ss_err(e, SS_E_EXISTS, "%s (%s)%s", ss_trust_reason_text(v->reason), f.other_site,
               o->evidence == SS_EV_ADMIN ? "; if both sites really share one key pair, import "
                                            "it with --shared-key"
                                          : "");
    else if (v->action == SS_TRUST_REJECT)
        ss_err(e, v->reason == SS_WHY_REVOKED ? SS_E_PERM : SS_E_EXISTS, "%s",
               ss_trust_reason_text(v->reason));
    return 0;
}

/* ------------------------------------------------- administrators' acts */

/* Which site a key file is for: the administrator's --site, else its file
 * name and its comment, which must agree. */
static int file_site(const char *path, const ss_keyfile *kf, const char *explicit_site,
                     char site[SS_SITE_CODE_MAX + 1], ss_error *e)
{
    if (explicit_site) {
        if (!ss_site_code_valid(explicit_site))
            return ss_err(e, SS_E_USAGE, "'%s' is not a site code (3-8 of A-Z0-9)", explicit_site);
        snprintf(site, SS_SITE_CODE_MAX + 1, "%s", explicit_site);
        return 0;
    }
    if (!kf->name_site[0])
        return ss_err(e, SS_E_USAGE,
                      "its file name gives no site (name it <SITE>.pub, .ct4 or .ct5)%s%s; if "
                      "you know which site it is for, import it with 'sitespool key import %s "
                      "--site CODE'",
                      kf->comment_site[0] ? " and only its comment says " : "", kf->comment_site,
                      path);
    if (kf->comment_site[0] && strcmp(kf->name_site, kf->comment_site))
        return ss_err(e, SS_E_USAGE,
                      "its file name says site %s but its comment says site %s; if it really is "
                      "%s's key, import it with 'sitespool key import %s --site %s'",
                      kf->name_site, kf->comment_site, kf->name_site, path, kf->name_site);
    if (!kf->comment_site[0])
        return ss_err(e, SS_E_USAGE,
                      "its comment names no site, so only its file name says %s; import it with "
                      "'sitespool key import %s --site %s' if it is",
                      kf->name_site, path, kf->name_site);
    snprintf(site, SS_SITE_CODE_MAX + 1, "%s", kf->name_site);
    return 0;
}

/* path as an absolute path for messages: the real path of its folder and
 * its own name (itself never resolved: a link is refused when loaded, and
 * must be named as what it is); as typed, joined to the current folder,
 * when the folder cannot be resolved. */
static void absolute_path(const char *path, char *out, size_t len)
{
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
    if (slash == path) {
        snprintf(out, len, "%s", path);
        return;
    }
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (realpath(dir, real)) {
        snprintf(out, len, "%s%s%s", real, strcmp(real, "/") ? "/" : "", name);
        return;
    }
    if (path[0] != '/' && getcwd(real, sizeof real))
        snprintf(out, len, "%s/%s", real, path);
    else
        snprintf(out, len, "%s", path);
}

int ss_trust_import_file(const ss_keyctx *k, const char *typed, const char *site,
                         const char *source, bool allow_shared_key, ss_keyrec *out, ss_error *e)
{
    ss_keyfile kf;
    char code[SS_SITE_CODE_MAX + 1], path[PATH_MAX];
    ss_verdict v;
    absolute_path(typed, path, sizeof path);
    int rc = ss_keyfile_load(path, &kf, e);
    if (rc == 0) rc = file_site(path, &kf, site, code, e);
    if (rc == 0 && !strcmp(code, k->conf->site_code))
        rc = ss_err(e, SS_E_USAGE,
                    "it is a key for this site (%s) itself; import keys of peers "
                    "only",
                    code);
    if (rc == 0) {
        ss_offer o = {code, &kf.pk,       SS_EV_ADMIN, source,
                      path, kf.not_after, NULL,        allow_shared_key};
        if (ss_trust_judge_offer(k, &o, &v, e) != 0) return -1; /* a hold: nothing refused */
        if (v.action == SS_TRUST_REJECT) rc = -1;
    }
    if (rc != 0) {
        ss_report(k->rep, 3301, path, e->msg, NULL);
        return -1;
    }
    return out ? ss_keys_get_pk(k->db, code, &kf.pk, out, e) == 1 ? 0 : -1 : 0;
}

int ss_trust_admin_trust(const ss_keyctx *k, const char *site, const char *key_id, const char *how,
                         ss_error *e)
{
    ss_keyrec rec;
    int found = ss_keys_get(k->db, site, key_id, &rec, e);
    if (found < 0) return -1;
    if (!found)
        return ss_err(e, SS_E_NOENT,
                      "the public key %s of site %s is not known here: import its key file "
                      "('sitespool key import FILE') or drop it into inboxes/hman.box",
                      key_id, site);
    ss_offer o = {site, &rec.pk, SS_EV_ADMIN, "admin", how, rec.not_after, NULL, false};
    ss_verdict v;
    if (ss_trust_judge_offer(k, &o, &v, e) != 0) return -1;
    if (v.action != SS_TRUST_ACCEPT)
        return ss_err(e, e->code ? e->code : SS_E_PERM, "key %s of site %s: %s", key_id, site,
                      ss_trust_reason_text(v.reason));
    return 0;
}

int ss_trust_untrust(const ss_keyctx *k, const char *site, ss_error *e)
{
    bool own;
    if (tx_begin(k->db, &own, e) != 0) return -1;
    int removed = ss_keys_forget_site(k->db, site, e);
    bool ok = removed >= 0 && ss_site_block_clear(k->db, site, e) == 0;
    if (tx_end(k->db, own, ok, e) != 0) return -1;
    char count[32], what[64];
    snprintf(count, sizeof count, "%d", removed);
    ss_report(k->rep, 3307, site, count, NULL);
    snprintf(what, sizeof what, "untrusted site %s", site);
    if (own) ss_trust_changed(k, what);
    return removed;
}

struct same_key {
    int n;
    ss_keyrec r[8];
};

static int collect_same_key(void *ctx, const ss_keyrec *r)
{
    struct same_key *all = ctx;
    if (all->n < 8) all->r[all->n++] = *r;
    return 0;
}

/* Revokes one record: its block lifted (or moved to another pending key). */
static int revoke_record(const ss_keyctx *k, const ss_keyrec *r, notes *ns, ss_error *e)
{
    char blocked_by[SS_KEYID_HEX + 1] = "";
    int blocked = ss_site_block_get(k->db, r->site, blocked_by, e);
    if (blocked < 0 || ss_keys_set_state(k->db, r->site, r->key_id, SS_KEY_REVOKED, 0, e) != 0)
        return -1;
    note(ns, 3310, r->key_id, r->site, NULL, NULL);
    if (blocked != 1 || strcmp(blocked_by, r->key_id)) return 0;
    if (ss_site_block_clear(k->db, r->site, e) != 0) return -1;
    return keep_blocked_by_pending(k, r->site, r->key_id, ns, e);
}

int ss_trust_revoke(const ss_keyctx *k, const char *site, const char *key_id, ss_error *e)
{
    bool own;
    notes ns = {0};
    ss_keyrec rec;
    struct same_key all = {0};
    if (tx_begin(k->db, &own, e) != 0) return -1;
    int found = ss_keys_get(k->db, site, key_id, &rec, e);
    if (found == 0) ss_err(e, SS_E_NOENT, "site %s has no key %s", site, key_id);
    /* A revoked public key is revoked for every site that holds it. */
    bool ok = found == 1 && ss_keys_foreach_pk(k->db, &rec.pk, collect_same_key, &all, e) == 0;
    for (int i = 0; ok && i < all.n; i++)
        ok = revoke_record(k, &all.r[i], &ns, e) == 0;
    if (tx_end(k->db, own, ok, e) != 0) return -1;
    raise_notes(k, &ns);
    if (own) changed_key_of(k, "revoked key", site, &rec.pk);
    return 0;
}

int ss_trust_own_add(const ss_keyctx *k, const ss_pubkey *pk, int64_t not_after, const char *source,
                     ss_error *e)
{
    ss_keyrec rec;
    ss_keyrec_init(&rec, k->conf->site_code, pk, SS_KEY_OWN, source, not_after);
    if (ss_keys_add(k->db, &rec, e) != 0) return -1;
    if (sqlite3_get_autocommit(k->db->h)) changed_key_of(k, "own key", rec.site, pk);
    return 0;
}

int ss_trust_own_retire(const ss_keyctx *k, const char *key_id, int64_t grace_until, ss_error *e)
{
    if (ss_keys_set_state(k->db, k->conf->site_code, key_id, SS_KEY_RETIRED, grace_until, e) != 0)
        return -1;
    char what[96];
    snprintf(what, sizeof what, "retired own key %s of site %s", key_id, k->conf->site_code);
    if (sqlite3_get_autocommit(k->db->h)) ss_trust_changed(k, what);
    return 0;
}

/* --------------------------------------------------------------- views */

int ss_site_trusted_list(ss_db *db, const char *site, char *out, size_t len, ss_error *e)
{
    char ids[8][SS_KEYID_HEX + 1];
    int n = ss_keys_in_state(db, site, SS_KEY_TRUSTED, ids, 8, e);
    out[0] = '\0';
    if (n < 0) return -1;
    for (int i = 0; i < n && i < 8; i++) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", i ? ", " : "", ids[i]);
    }
    return 0;
}

long long ss_days_left(int64_t not_after, int64_t now)
{
    return not_after > now ? (long long)((not_after - now + 86399) / 86400) : 0;
}
