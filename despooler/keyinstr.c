/*
 * keyinstr.c - key instructions: a key exchange (type=key: the sender's
 * public key with a proof of possession) and a rollover (type=rollover:
 * the next key, signed by the current one, with the next key's proof).
 * They change the keystore - through the trust rules, never on their own -
 * instead of delivering, and run before the data of their batch.
 *
 * Security stance: the payload is read whole (at most KEY_PAYLOAD_MAX) and
 * hashed in the same pass; the signature over it verifies before the
 * payload is believed; proofs are checked by keystore/keyfile.c.
 * Diagnostics: 4404, 4407, 4413, 4419 (its package cannot be read), 4421,
 * 4422; the hman messages (3300, 3303, 3305, 3309, 3313) are raised by the
 * trust module.
 */
#include "pipeline.h"
#include "../keystore/links.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Reads a key payload (at most KEY_PAYLOAD_MAX bytes) into buf and its
 * package hash; OUT_STAGED when read, else the outcome to return. */
static enum outcome read_key_payload(ss_despooler *d, work *w, const char *base, char *buf,
                                     size_t *len, unsigned char hash[SS_HASH_BYTES])
{
    int pck_fd;
    enum outcome o = dsp_open_package(d, w, &pck_fd);
    if (o != OUT_STAGED) return o;
    struct unpack_sink sink = {.fd = -1, .buf = buf, .buf_cap = KEY_PAYLOAD_MAX};
    ss_error e = {0}, unpack_err = {0};
    dsp_stager main = dsp_main_stager(d);
    int rc = dsp_stream_package(&main, pck_fd, w, &sink, hash, &unpack_err, &e);
    int err = errno; /* the read's, if rc is -2 */
    close(pck_fd);
    if (rc == -2) return dsp_input_fault(d, w->in.id, w->in.from, w->pck_name, err);
    if (rc != 0) {
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "Cannot read key instruction %s: %s",
                w->in.id, e.msg);
        d->stats.waiting++;
        return OUT_WAIT;
    }
    dsp_input_readable(d, w->in.id, w->pck_name);
    if (unpack_err.code != SS_OK) {
        QUARANTINE(d, base, 4413, w->in.id, w->in.from, unpack_err.msg);
        return OUT_DONE;
    }
    buf[sink.buf_len] = '\0';
    *len = sink.buf_len;
    return OUT_STAGED;
}

/* Records the key instruction in the ledger and removes it; if the ledger
 * cannot be written the pair stays (its trust change is idempotent and is
 * judged again) and the scan fails. */
static enum outcome key_instruction_done(ss_despooler *d, const work *w, const char *base)
{
    ss_error e = {0};
    /* Key instructions are numbered with the site's data: noted too, or
     * every key exchange would look like a gap. */
    if (ss_db_begin(d->db, &e) != 0) return dsp_trust_failed(d, w, &e);
    if (dsp_ledger_insert(d, w, ss_itype_name(w->in.type), "", &e) != 0 ||
        dsp_note_sequence(d, w, &e) != 0 || ss_db_commit(d->db, &e) != 0) {
        ss_db_rollback(d->db);
        return dsp_trust_failed(d, w, &e);
    }
    dsp_remove_pair(d, base);
    return OUT_DONE;
}

/* The trust rules' verdict on a key offered by an instruction: refused
 * (quarantined), or taken (the site's waiting data is retried now). */
static enum outcome offer_key(ss_despooler *d, work *w, const char *base, ss_offer *offer,
                              const char *detail)
{
    char origin[96], offered_id[SS_KEYID_HEX + 1];
    ss_error e = {0};
    ss_verdict v;
    snprintf(origin, sizeof origin, "%s instruction %s",
             w->in.type == SS_TYPE_KEY ? "key exchange" : "rollover", w->in.id);
    offer->origin = origin;
    offer->site = w->in.from;
    ss_keyid_hex(offer->pk->keyid, offered_id);
    if (ss_trust_judge_offer(&d->keys, offer, &v, &e) != 0) return dsp_trust_failed(d, w, &e);
    if (v.action == SS_TRUST_REJECT)
        return dsp_refuse(d, w, base, &v, offered_id, detail ? detail : e.msg);
    if (v.tx & (SS_TX_TRUST | SS_TX_UNBLOCK)) {
        dsp_force_add(d, w->in.from);
        /* Tell that site soon that its new key is held here: its
         * propagation view (and the revocation of its old key) waits for
         * this site's heartbeat. */
        ss_error hb = {0};
        if (ss_heartbeat_request(d->db, w->in.from, &hb) != 0)
            ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER), "%s", hb.msg);
    }
    return key_instruction_done(d, w, base);
}

/* type=key: the payload is the sending site's public key with a proof of
 * possession signed by it (keyfile.h).  Signed by a key already trusted for
 * the site, it is vouched for (OpenSSH's UpdateHostKeys rule); signed only
 * by the offered key itself (or unsigned) it is an offer, which the trust
 * rules refuse (4404) while require_secure_key_exchange = yes.  Signed by
 * some other key, it waits for that key like any instruction (4405). */
enum outcome dsp_key_exchange(ss_despooler *d, work *w, const char *base)
{
    ss_keyrec signer;
    ss_verdict v = {.action = SS_TRUST_MISSING};
    ss_error e = {0};
    bool vouched = false;
    if (!w->is_signed && d->conf->require_secure_key_exchange) {
        QUARANTINE(d, base, 4404, w->ins_name, w->in.from);
        return OUT_DONE;
    }
    if (w->is_signed) {
        enum outcome done = OUT_DONE;
        int rc = dsp_find_signer(d, w, base, false, &signer, &v, &done, &e);
        if (rc < 0) return dsp_trust_failed(d, w, &e);
        if (rc == 0) return done;
        if (v.status == 4421) return dsp_refuse(d, w, base, &v, w->keyid, NULL);
        vouched = v.action == SS_TRUST_ACCEPT;
    }
    enum outcome o = dsp_check_fields(d, w, base);
    char buf[KEY_PAYLOAD_MAX + 1];
    size_t len = 0;
    unsigned char hash[SS_HASH_BYTES];
    if (o == OUT_STAGED) o = read_key_payload(d, w, base, buf, &len, hash);
    if (o != OUT_STAGED) return o;
    if (vouched && ss_sig_verify_package(&w->sig, &signer.pk, hash, &e) != 0) {
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
        return OUT_DONE;
    }
    ss_pubkey offered;
    int64_t not_after = 0;
    if (ss_key_offer_parse(w->in.from, buf, len, &offered, &not_after, &e) != 0) {
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, e.msg);
        return OUT_DONE;
    }
    if (w->is_signed && !vouched) {
        /* Not vouched for: only the offered key itself may have signed it. */
        if (memcmp(w->sig.keyid, offered.keyid, SS_KEYID_BYTES) != 0)
            return dsp_act_on_verdict(d, w, base, &v, w->keyid);
        if (ss_sig_verify_comment(&w->sig, &offered, &e) != 0 ||
            ss_sig_verify_package(&w->sig, &offered, hash, &e) != 0) {
            QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
            return OUT_DONE;
        }
    }
    ss_offer offer = {.pk = &offered,
                      .evidence = vouched ? SS_EV_VOUCHED : SS_EV_OFFER,
                      .source = "exchange",
                      .not_after = not_after,
                      .signer = vouched ? &signer : NULL};
    return offer_key(d, w, base, &offer, NULL);
}

/* type=rollover, signed by the site's trusted key (dsp_authenticate checked
 * that): the payload names the next key and proves its possession.  A
 * rollover whose next key fails its checks is judged as presenting that
 * key (it may block the site); one whose payload is no key is refused. */
enum outcome dsp_apply_rollover(ss_despooler *d, work *w, const char *base, const ss_keyrec *key)
{
    char buf[KEY_PAYLOAD_MAX + 1];
    size_t len = 0;
    unsigned char hash[SS_HASH_BYTES], previous[SS_KEYID_BYTES];
    ss_error e = {0};
    enum outcome o = read_key_payload(d, w, base, buf, &len, hash);
    if (o != OUT_STAGED) return o;
    if (ss_sig_verify_package(&w->sig, &key->pk, hash, &e) != 0) {
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
        return OUT_DONE;
    }
    ss_pubkey next;
    bool next_parsed = false;
    int64_t not_after = 0;
    int rc = ss_rollover_parse(w->in.from, buf, len, previous, &next, &next_parsed, &not_after, &e);
    if (rc != 0 && !next_parsed) {
        QUARANTINE(d, base, 4422, w->in.id, w->in.from, e.msg);
        return OUT_DONE;
    }
    if (rc == 0 && memcmp(previous, w->sig.keyid, SS_KEYID_BYTES) != 0)
        rc = ss_err(&e, SS_E_KEYID, "the rollover names a previous key other than its signer %s",
                    w->keyid);
    if (rc == 0 && !memcmp(next.pk, key->pk.pk, SS_PK_BYTES))
        rc = ss_err(&e, SS_E_KEYID, "the rollover names its own signer %s as the next key",
                    w->keyid);
    ss_offer offer = {.pk = &next,
                      .evidence = rc == 0 ? SS_EV_ROLLOVER : SS_EV_BAD_ROLLOVER,
                      .source = "rollover",
                      .not_after = not_after,
                      .signer = key};
    return offer_key(d, w, base, &offer, rc == 0 ? NULL : e.msg);
}
