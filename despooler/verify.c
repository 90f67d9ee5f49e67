/*
 * verify.c - the key and the fields: finds the signer's key (keystore, key
 * directory, hman.box), verifies the trusted comment with it, and asks the
 * trust rules (keystore/trust.h) what this use of the key means: accept,
 * hold, reject or missing.  Then the fields a verified instruction must
 * satisfy: addressed to this site, not delivered before, not expired, an
 * allowed destination, within the size limit.
 *
 * Security stance: a key directory record is evidence only for an
 * instruction that verified with it; every found key verifies the fields
 * before any verdict is acted on, so a forgery is quarantined, never held;
 * a keystore failure holds the pair and fails the scan (4423), never
 * "go ahead".  Within one batch's data pass a (site, key) found usable is
 * remembered, and forgotten whenever a lookup imported or judged a key.
 * Diagnostics: 4402, 4404, 4407-4410, 4412, 4421, 4422 (via quarantine.c),
 * 4405 and 4420 (via waiting.c).  The trace line "Verifying signature ..."
 * opens each check, except the passes of a pair that waits as it did (its
 * key lookup not due, held for the same reason, a file of it unreadable):
 * a waiting pair is logged when its state changes and at each counted key
 * lookup, not on every rescan.
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The fields' signature with key: the pool's check (scan.c) if it was
 * made with this very key, else checked now. */
static int verify_fields(const work *w, const ss_pubkey *pk, ss_error *e)
{
    if (w->pre_state >= 2 && !memcmp(w->pre_pk.pk, pk->pk, sizeof pk->pk) &&
        !memcmp(w->pre_pk.keyid, pk->keyid, sizeof pk->keyid))
        return w->pre_state == 2 ? 0 : ss_err(e, SS_E_BADGLOBAL, "%s", w->pre_detail);
    return ss_sig_verify_comment(&w->sig, pk, e);
}

static const ss_keyrec *usable_cached(const ss_despooler *d, const work *w)
{
    for (int i = 0; i < d->nusable; i++)
        if (!strcmp(d->usable[i].site, w->in.from) &&
            !memcmp(d->usable[i].keyid, w->sig.keyid, SS_KEYID_BYTES))
            return &d->usable[i].key;
    return NULL;
}

static void usable_remember(ss_despooler *d, const work *w, const ss_keyrec *key)
{
    if (w->in.type != SS_TYPE_DATA || d->nusable >= (int)(sizeof d->usable / sizeof d->usable[0]))
        return;
    snprintf(d->usable[d->nusable].site, sizeof d->usable[0].site, "%s", w->in.from);
    memcpy(d->usable[d->nusable].keyid, w->sig.keyid, SS_KEYID_BYTES);
    d->usable[d->nusable++].key = *key;
}

/* The keystore could not be read or written while trust was checked: the
 * pair stays in receive and the scan fails (4423), never "go ahead". */
enum outcome dsp_trust_failed(ss_despooler *d, const work *w, const ss_error *e)
{
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Holding instruction %s from site %s: checking trust failed: %s", w->in.id, w->in.from,
            e->msg);
    if (d->trust_error.code == SS_OK)
        ss_err(&d->trust_error, e->code ? e->code : SS_E_DB, "checking trust failed: %s", e->msg);
    d->stats.waiting++;
    return OUT_FAIL;
}

/* Quarantines a pair the trust rules refused, with the verdict's status. */
enum outcome dsp_refuse(ss_despooler *d, const work *w, const char *base, const ss_verdict *v,
                        const char *key_id, const char *detail)
{
    const char *why = detail && *detail ? detail : ss_trust_reason_text(v->reason);
    if (v->status == 4421)
        QUARANTINE(d, base, 4421, w->in.id, w->in.from, key_id);
    else if (v->status == 4404)
        QUARANTINE(d, base, 4404, w->ins_name, w->in.from);
    else if (v->status == 4422)
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, why);
    else
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, key_id, why);
    return OUT_DONE;
}

/* Why a held pair is held (its 4420 and its hold note). */
static void hold_reason(const work *w, const ss_verdict *v, const char *key_id, char *out,
                        size_t len)
{
    if (key_id)
        snprintf(out, len, "key %s of site %s: %s", key_id, w->in.from,
                 ss_trust_reason_text(v->reason));
    else
        snprintf(out, len, "site %s: %s", w->in.from, ss_trust_reason_text(v->reason));
}

/* What a verdict on a key means for the pair in hand. */
enum outcome dsp_act_on_verdict(ss_despooler *d, work *w, const char *base, const ss_verdict *v,
                                const char *key_id)
{
    char reason[200];
    switch (v->action) {
    case SS_TRUST_ACCEPT:
        return OUT_STAGED;
    case SS_TRUST_MISSING:
        return dsp_key_missing(d, w, base);
    case SS_TRUST_HOLD:
        hold_reason(w, v, key_id, reason, sizeof reason);
        return dsp_hold(d, w, reason);
    case SS_TRUST_REJECT:
        break;
    }
    return dsp_refuse(d, w, base, v, key_id, NULL);
}

/* Finds the signer's key (keystore, key directory, hman.box), checks the
 * instruction's fields against it, and asks the trust rules about this use
 * of it.  A directory record is offered to the rules (it may become trusted,
 * or block the site) only after the instruction verified with it, and only
 * then: a key id alone, which anyone can copy, is no evidence.  Returns 1
 * with *v (and *key unless the key is missing), 0 when the pair was dealt
 * with (*o: a forgery quarantined), -1 when the keystore failed (*e). */
int dsp_find_signer(ss_despooler *d, work *w, const char *base, bool for_data, ss_keyrec *key,
                    ss_verdict *v, enum outcome *o, ss_error *e)
{
    ss_key_found how;
    int found = ss_key_find(&d->keys, w->in.from, w->sig.keyid, key, &how, e);
    if (found < 0) return -1;
    if (found) {
        ss_error bad = {0};
        if (verify_fields(w, &key->pk, &bad) != 0) {
            QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, bad.msg);
            *o = OUT_DONE;
            return 0;
        }
        /* A lookup that imported or judged a key may have changed what is
         * usable: no cached verdict outlives it. */
        if (how.where != SS_FOUND_KEYSTORE) d->nusable = 0;
    }
    if (found && how.where == SS_FOUND_DIRECTORY) {
        /* A directory server's next key vouched for by a key the keystore
         * holds is presented as vouched for by that key (lookup.h). */
        ss_offer offer = {w->in.from,
                          &key->pk,
                          how.evidence,
                          "directory",
                          how.path,
                          key->not_after,
                          how.has_signer ? &how.signer : NULL,
                          false};
        ss_verdict ov;
        if (ss_trust_judge_offer(&d->keys, &offer, &ov, e) != 0) return -1;
        if (ov.action == SS_TRUST_REJECT)
            ss_logf(ss_reporter_log(d->rep, SS_COMP_HMAN),
                    "Key directory record %s is not used: %s", how.path, e->msg);
        found = ss_keys_get(d->db, w->in.from, w->keyid, key, e);
        if (found < 0) return -1;
    }
    return ss_trust_judge_use(&d->keys, w->in.from, found ? key : NULL, for_data, v, e) == 0 ? 1
                                                                                             : -1;
}

/* The trace line that opens the check of a signed instruction. */
static void log_verifying(ss_despooler *d, const work *w)
{
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Verifying signature for instruction %s from site %s with key %s", w->ins_name,
            w->in.from, w->keyid);
}

/* How w already waits, as far as its log is concerned. */
struct waiting {
    bool retry_not_due; /* its key is missing and the next lookup not due */
    int hold;           /* the status of its hold note (0: none) */
    char reason[320];   /* the note's reason */
};

/* A pass over a pair that waits in the same way as before is no event:
 * it writes nothing to the log. */
static bool waits(ss_despooler *d, const work *w, struct waiting *was)
{
    was->retry_not_due = dsp_retry_not_due(d, w);
    was->hold = dsp_hold_of(d, w, was->reason, sizeof was->reason);
    return was->retry_not_due || was->hold == 4420 || was->hold == 4419;
}

/* Whether the verdict leaves w waiting as it did: its key still missing
 * and its next lookup not due, held for the same reason, or accepted while
 * a file of it could not be read (staging tells whether that changed:
 * 4419 again, or "can be read again"). */
static bool waits_as_before(ss_despooler *d, const work *w, const ss_verdict *v,
                            const struct waiting *was)
{
    char reason[200];
    switch (v->action) {
    case SS_TRUST_MISSING:
        return was->retry_not_due && dsp_retry_not_due(d, w);
    case SS_TRUST_HOLD:
        hold_reason(w, v, w->keyid, reason, sizeof reason);
        return was->hold == 4420 && !strcmp(was->reason, reason);
    case SS_TRUST_ACCEPT:
        return was->hold == 4419;
    case SS_TRUST_REJECT:
        break;
    }
    return false;
}

/* Finds and judges the key; the instruction fields verified with it.
 * Within a batch's data pass a (site, key) found usable once is not looked
 * up again: revocations, blocks and approvals made elsewhere take effect
 * from the next batch, milliseconds later. */
enum outcome dsp_authenticate(ss_despooler *d, work *w, const char *base, ss_keyrec *key)
{
    ss_error e = {0};
    /* A pair that already waits (its key missing, held, a file of it not
     * readable) is logged when its state changes and at each counted key
     * lookup, not on every scan. */
    struct waiting was;
    bool waiting = waits(d, w, &was);
    const ss_keyrec *cached = usable_cached(d, w);
    if (cached) {
        const ss_verdict accept = {.action = SS_TRUST_ACCEPT};
        if (!waiting || !waits_as_before(d, w, &accept, &was)) log_verifying(d, w);
        *key = *cached;
        if (verify_fields(w, &key->pk, &e) != 0) {
            QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
            return OUT_DONE;
        }
        return OUT_STAGED;
    }
    ss_verdict v;
    enum outcome o = OUT_DONE;
    if (!waiting) log_verifying(d, w);
    int rc = dsp_find_signer(d, w, base, w->in.type == SS_TYPE_DATA, key, &v, &o, &e);
    if (rc < 0) return dsp_trust_failed(d, w, &e);
    if (rc == 0) return o;
    if (waiting && !waits_as_before(d, w, &v, &was)) log_verifying(d, w);
    o = dsp_act_on_verdict(d, w, base, &v, w->keyid);
    if (o == OUT_STAGED) {
        dsp_retry_forget(d, w->in.id);
        usable_remember(d, w, key);
    }
    return o;
}

/* An instruction the ledger says was delivered, judged before anything
 * else about it (its key may have been revoked since, its pair may be a
 * forgery reusing the id): a crash may have left the delivery unpublished
 * - then it is published now, whatever becomes of the pair; the pair
 * itself is the leftover of that very delivery (removed with a log line)
 * or another copy (4402).  OUT_STAGED if the id is not in the ledger. */
enum outcome dsp_check_delivered(ss_despooler *d, work *w, const char *base)
{
    char path[PATH_MAX], when[32];
    int64_t t;
    ss_error e = {0};
    int delivered = dsp_ledger_lookup(d, w->in.id, path, sizeof path, &t, &e);
    if (delivered < 0) return dsp_trust_failed(d, w, &e);
    if (!delivered) return OUT_STAGED;
    int same = dsp_ledger_same_file(d, w->in.id, w->ins_identity, &e);
    if (same < 0) return dsp_trust_failed(d, w, &e);
    int finished = dsp_finish_interrupted(d, w, path, &e);
    if (finished < 0) return dsp_dest_failed(d, w, &e); /* keep the pair: retried */
    if (finished) {
        d->stats.delivered++;
    } else if (same) {
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Removed the pair of instruction %s from site %s: delivered before a restart (%s)",
                w->in.id, w->in.from, path);
    } else {
        time_t tt = (time_t)t;
        struct tm tm;
        localtime_r(&tt, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        ss_report(d->rep, 4402, w->in.id, w->in.from, when, NULL);
        dsp_fate(d, w->in.id, w->in.from, w->in.type, SS_FATE_DUPLICATE, 4402);
        d->stats.duplicates++;
    }
    dsp_remove_pair(d, base);
    return OUT_DONE;
}

enum outcome dsp_check_fields(ss_despooler *d, work *w, const char *base)
{
    if (strcmp(w->in.to, d->conf->site_code) != 0) {
        QUARANTINE(d, base, 4408, w->in.id, w->in.from, w->in.to);
        return OUT_DONE;
    }
    /* Times: judged by the latest time this site's clock has shown, too,
     * so that a clock set back cannot reopen a pruned replay window. */
    int64_t now = ss_now();
    if (w->in.expires < now || w->in.expires < d->high_water - 86400) {
        char exp[32];
        u64str((uint64_t)w->in.expires, exp, sizeof exp);
        QUARANTINE(d, base, 4409, w->in.id, w->in.from, exp);
        return OUT_DONE;
    }
    if (w->in.created > now + (int64_t)d->conf->max_clock_skew) {
        char created[32], ahead[32], skew[32];
        u64str((uint64_t)w->in.created, created, sizeof created);
        u64str((uint64_t)(w->in.created - now), ahead, sizeof ahead);
        u64str(d->conf->max_clock_skew, skew, sizeof skew);
        QUARANTINE(d, base, 4424, w->in.id, w->in.from, created, ahead, skew);
        return OUT_DONE;
    }
    if (w->in.expires >
        now + (int64_t)d->conf->max_package_lifetime + (int64_t)d->conf->max_clock_skew) {
        char exp[32], life[32];
        u64str((uint64_t)w->in.expires, exp, sizeof exp);
        u64str(d->conf->max_package_lifetime, life, sizeof life);
        QUARANTINE(d, base, 4425, w->in.id, w->in.from, exp, life);
        return OUT_DONE;
    }
    if (w->in.type == SS_TYPE_DATA && !ss_conf_dest_allowed(d->conf, w->in.dest)) {
        QUARANTINE(d, base, 4410, w->in.id, w->in.from, w->in.dest);
        return OUT_DONE;
    }
    uint64_t limit = w->in.type == SS_TYPE_DATA ? d->conf->max_package_bytes
                     : dsp_is_report(w)           ? SS_REPORT_PAYLOAD_MAX
                                                  : KEY_PAYLOAD_MAX;
    if (w->in.size > limit) {
        char size[32], max[32];
        u64str(w->in.size, size, sizeof size);
        u64str(limit, max, sizeof max);
        QUARANTINE(d, base, 4412, w->in.id, w->in.from, size, max);
        return OUT_DONE;
    }
    return OUT_STAGED;
}
