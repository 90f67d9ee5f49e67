/*
 * trust.h - the one place that decides which keys a site is trusted with
 * (DESIGN §6).  The despooler, the hman.box import, the key directory
 * lookup and the `sitespool key` commands present what they have - the
 * claimed site, the key material, the kind of evidence - and act on the
 * verdict: accept, hold (with a reason), reject (with a status id), or key
 * missing (retry).  Every trust transition (trust, pending, block, unblock,
 * retire, revoke, untrust) is made here, in one transaction with the facts
 * it was decided on, and raises its status message here, once.
 *
 * The rules (ss_trust_rule is the whole table, a pure function):
 *
 *   - Trust comes from an administrator's act (import, hman.box drop,
 *     approve, trust), from the first record the key directory offers for a
 *     site, from a key exchange signed by a key already trusted for the site,
 *     or from a rollover signed by it.  Key exchange and rollover must carry
 *     a proof of possession signed by the offered key (keyfile.h).
 *   - Using a key is never an offer: an instruction under a key id this site
 *     does not hold for the claimed site is a missing key (4405, retried),
 *     and never changes the site's state, whoever signed it.
 *   - A site is blocked (Ivanti's rule) only when a different key for it is
 *     presented and verified: a key exchange signed by the offered key with
 *     its proof (only where require_secure_key_exchange = no lets
 *     unauthenticated key exchange in at all), a key directory record that
 *     differs from the trusted key, or a rollover signed by the trusted key
 *     whose next key fails its checks.  The site's data is held until an
 *     administrator trusts the new key, revokes it, or untrusts the site.
 *   - A key is its public key: records are (site, public key); a public key
 *     revoked for one site is refused for every site; a key trusted for one
 *     site is refused for another unless an administrator says so; a
 *     different key under a key id the site already has is refused.
 *   - A retired key still verifies its site's data during its grace period,
 *     but never vouches for a key.
 *
 * Security stance: fail closed.  Any database error while the facts are
 * read or the transitions written gives -1 and a hold (SS_WHY_DB), never an
 * accept; callers keep the data and report (the despooler: 4423).
 *
 * A running despooler learns of a change within a second (issue 16): every
 * transition made outside the despooler (key import, approve, trust,
 * untrust, revoke, rotate, a verify that imported from hman.box), once its
 * transaction committed, replaces the marker file SS_TRUST_MARKER in
 * hman.box (written to a temporary name, fsynced, renamed, the folder
 * fsynced).  The despooler watches hman.box (despooler/watch.h), so the
 * rename wakes it like a key dropped there: its scan retries the
 * instructions waiting for a key the keystore now holds (4417) and judges
 * held ones again.  The despooler's own transitions (hman.box and key
 * directory imports, key exchange, rollover: in_despooler) write no marker:
 * it acts on them in the scan that made them, and never wakes itself.  The
 * marker only hurries the despooler along; what it accepts is always read
 * from site.db, and a batch about to be delivered is judged again inside
 * its ledger transaction (despooler/waiting.c, dsp_recheck_trust), so an
 * untrust or revoke that committed is obeyed even if its marker is lost.
 */
#ifndef SS_TRUST_H
#define SS_TRUST_H

#include "status.h"
#include "store.h"

/* What every keystore operation works in: the site, its settings, site.db
 * and where status messages go. */
typedef struct ss_keyctx {
    const char *root;
    const ss_conf *conf;
    ss_db *db;
    ss_reporter *rep;
    /* The running despooler itself: its transitions write no marker. */
    bool in_despooler;
    /* The despooler's key directory server cache (dircache.h); NULL: a
     * directory server is not asked (commands ask it themselves). */
    struct ss_dircache *dir;
} ss_keyctx;

/* The marker in inboxes/hman.box that tells a running despooler that
 * trust changed: "<unix time> <what changed>\n", replaced at each change. */
#define SS_TRUST_MARKER "trust.changed"

/* What was presented, and how it is vouched for. */
enum ss_evidence {
    SS_EV_DATA_SIGNATURE, /* data signed under the key: a use of a key, never an offer */
    SS_EV_KEY_SIGNATURE,  /* a key exchange or rollover signed under the key: may it vouch? */
    SS_EV_ADMIN,          /* an administrator's act: key import, hman.box drop, approve, trust */
    SS_EV_DIRECTORY,      /* a record in the key directory */
    SS_EV_VOUCHED,        /* key exchange signed by a key trusted for the site, with its proof */
    SS_EV_OFFER,        /* key exchange signed only by the offered key (or unsigned), with proof */
    SS_EV_ROLLOVER,     /* rollover signed by the site's trusted key, with proof of the next */
    SS_EV_BAD_ROLLOVER, /* rollover signed by the trusted key whose next key fails its checks */
};
#define SS_EVIDENCE_KINDS 8

/* The claimed site, as the keystore knows it. */
enum ss_site_trust {
    SS_SITE_UNKNOWN, /* no key at all */
    SS_SITE_OFFERED, /* only pending keys */
    SS_SITE_TRUSTED, /* trusted or retired keys */
    SS_SITE_BLOCKED, /* blocked after a verified key change */
};
#define SS_SITE_TRUST_KINDS 4

/* The presented key, for the claimed site. */
enum ss_key_standing {
    SS_KS_UNKNOWN,      /* no record of it for the site */
    SS_KS_OWN,          /* the claimed site is this site */
    SS_KS_TRUSTED,      /* trusted, within its validity */
    SS_KS_EXPIRED,      /* trusted or retired, past its validity end */
    SS_KS_RETIRED,      /* replaced by a rollover, within its grace period */
    SS_KS_RETIRED_PAST, /* replaced by a rollover, grace period over */
    SS_KS_PENDING,      /* offered, waiting for an administrator */
    SS_KS_BLOCKING,     /* pending, and the key that blocked the site */
    SS_KS_REVOKED,      /* revoked, for this site or any other */
    SS_KS_ID_CLASH,     /* the site has a different key under this key id */
    SS_KS_OTHER_SITE,   /* the same public key belongs to another site */
};
#define SS_KEY_STANDINGS 11

enum ss_trust_action {
    SS_TRUST_ACCEPT,  /* verify with the key / the key is (now) trusted */
    SS_TRUST_HOLD,    /* keep the data until an administrator acts */
    SS_TRUST_REJECT,  /* refuse: quarantine with the verdict's status id */
    SS_TRUST_MISSING, /* no key: 4405, look it up again later */
};

enum ss_trust_reason {
    SS_WHY_NONE,
    SS_WHY_PENDING,         /* hold: the key waits for approval */
    SS_WHY_EXPIRED,         /* hold: the key is past its validity end */
    SS_WHY_BLOCKED,         /* hold: the site is blocked after a key change */
    SS_WHY_DB,              /* hold: the keystore could not be read or written */
    SS_WHY_NO_KEY,          /* missing: no key under this id for the site */
    SS_WHY_REVOKED,         /* reject */
    SS_WHY_RETIRED_PAST,    /* reject: retired and past its grace period */
    SS_WHY_RETIRED_SIGNER,  /* reject: a retired key vouched for a key */
    SS_WHY_UNAUTHENTICATED, /* reject: key exchange not signed by a trusted key (4404) */
    SS_WHY_OWN_SITE,        /* reject: offered as a key of this site itself */
    SS_WHY_ID_CLASH,        /* reject: another key under the same key id */
    SS_WHY_OTHER_SITE,      /* reject: the key belongs to another site */
    SS_WHY_BAD_ROLLOVER,    /* reject: the rollover's next key failed its checks */
    SS_WHY_NOT_VOUCHED,     /* reject: evidence that needs a trusted site came for another */
};

/* Transitions a verdict makes. */
#define SS_TX_TRUST 1u          /* the presented key becomes trusted */
#define SS_TX_PENDING 2u        /* the presented key is recorded as pending */
#define SS_TX_BLOCK 4u          /* the site is blocked by the presented key */
#define SS_TX_UNBLOCK 8u        /* a block the presented key caused is lifted */
#define SS_TX_RETIRE_SIGNER 16u /* the rollover's signer is retired */

typedef struct ss_verdict {
    enum ss_trust_action action;
    enum ss_trust_reason reason;
    int status; /* REJECT: the status id to report (3301, 4404, 4407, 4421, 4422); MISSING: 4405 */
    unsigned tx;
} ss_verdict;

typedef struct ss_trust_policy {
    bool require_secure_key_exchange;
    bool tofu_auto_approve;
    bool allow_shared_key; /* an administrator's --shared-key */
} ss_trust_policy;

/* The rule table: a pure function of the evidence and the two states. */
ss_verdict ss_trust_rule(enum ss_evidence ev, enum ss_site_trust site, enum ss_key_standing key,
                         const ss_trust_policy *p);
/* Words for a reason, fit for "... is held: <reason>" and .why files. */
const char *ss_trust_reason_text(enum ss_trust_reason r);
const char *ss_evidence_name(enum ss_evidence ev);
const char *ss_site_trust_name(enum ss_site_trust s);
const char *ss_key_standing_name(enum ss_key_standing s);

/* Judges a use of a key: an instruction claiming site, signed under key
 * (the record ss_key_find returned, NULL when there is none).  for_data:
 * data (held while the site is blocked) rather than a key exchange or
 * rollover (whose signer must be trusted, not retired).  Changes nothing.
 * -1 on a database error, *v then a hold (SS_WHY_DB). */
int ss_trust_judge_use(const ss_keyctx *k, const char *site, const ss_keyrec *key, bool for_data,
                       ss_verdict *v, ss_error *e);

/* An unsigned instruction claiming site: refused (4404) while
 * require_secure_key_exchange = yes, held while the site is blocked,
 * otherwise accepted as what that setting allows.  -1 on a database error
 * (*v a hold). */
int ss_trust_judge_unsigned(const ss_keyctx *k, const char *site, ss_verdict *v, ss_error *e);

/* Key material offered for a site. */
typedef struct ss_offer {
    const char *site;
    const ss_pubkey *pk;
    enum ss_evidence evidence; /* ADMIN, DIRECTORY, VOUCHED, OFFER, ROLLOVER, BAD_ROLLOVER */
    const char *source;        /* stored with a new record: import, hman, directory, ... */
    const char *origin;        /* for messages: a file, "key exchange instruction ID" */
    int64_t not_after;         /* the offered key's validity end (0: none) */
    const ss_keyrec *signer;   /* VOUCHED, ROLLOVER, BAD_ROLLOVER: the key that signed it,
                                  re-checked inside the transaction (still trusted?) */
    bool allow_shared_key;     /* ADMIN only: the administrator's --shared-key */
} ss_offer;

/* Judges an offer, makes its transitions in one transaction with the facts
 * they were decided on, and raises their status messages (3300, 3303, 3305,
 * 3306, 3309, 3313; 3301 for a refused administrator's import).  -1 on a
 * database error (nothing changed, *v a hold). */
int ss_trust_judge_offer(const ss_keyctx *k, const ss_offer *o, ss_verdict *v, ss_error *e);

/* Imports a public key file as an administrator's act.  Both names of its
 * site - the file name (<SITE>.pub, .ct4, .ct5) and the comment ("... for
 * site CODE") - must agree, unless site (the administrator's --site) says
 * which it is (a file whose name gives no site needs it); refusals are
 * 3301 naming both.  0 and *out (may be NULL) when the key is trusted, -1
 * otherwise (e says why; SS_E_DB: the keystore failed, nothing refused).
 * Messages name the file by its absolute path (a relative one is joined to
 * the real path of the current folder), never as typed. */
int ss_trust_import_file(const ss_keyctx *k, const char *path, const char *site, const char *source,
                         bool allow_shared_key, ss_keyrec *out, ss_error *e);

/* 'key approve' / 'key trust': an administrator trusts a key the keystore
 * already holds for site (pending after an offer, or any other state). */
int ss_trust_admin_trust(const ss_keyctx *k, const char *site, const char *key_id, const char *how,
                         ss_error *e);
/* 'key untrust': forgets every key of site except revoked ones, lifts its
 * block (3307).  Returns how many keys were forgotten, -1 on error. */
int ss_trust_untrust(const ss_keyctx *k, const char *site, ss_error *e);
/* 'key revoke': the key (site, key_id) is never accepted again, for any
 * site; a block it caused is lifted (3310). */
int ss_trust_revoke(const ss_keyctx *k, const char *site, const char *key_id, ss_error *e);
/* This site's own keys: a new one (init, rotate), the old one retired
 * until grace_until after a rotation. */
int ss_trust_own_add(const ss_keyctx *k, const ss_pubkey *pk, int64_t not_after, const char *source,
                     ss_error *e);
int ss_trust_own_retire(const ss_keyctx *k, const char *key_id, int64_t grace_until, ss_error *e);

/* Tells a running despooler that trust changed (what: a few words for the
 * marker): the transitions above call it after their commit, unless they
 * ran inside the caller's transaction - then the caller calls it after its
 * own commit.  Does nothing for in_despooler.  A marker that cannot be
 * written is logged (hman.log): the despooler then acts at its next rescan. */
void ss_trust_changed(const ss_keyctx *k, const char *what);

/* Comma-separated list of the site's trusted key ids ("" if none). */
int ss_site_trusted_list(ss_db *db, const char *site, char *out, size_t len, ss_error *e);
/* Whole days until not_after, rounded up (0 once it passed). */
long long ss_days_left(int64_t not_after, int64_t now);

#endif
