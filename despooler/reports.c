/*
 * reports.c - receipts and heartbeats from peers (inboxes/report.h): what
 * became of the pairs this site sent them, and which of this site's keys
 * they trust.  Like key instructions they change site.db instead of
 * delivering a file, and are recorded in the ledger (so a replay is a
 * duplicate) and removed; they are never receipted themselves.
 *
 * Security stance: only signed reports, verified with a key trusted for
 * the sending site (dsp_authenticate, and the package hash here), are
 * read; their header must name the instruction's own from and to; a
 * receipt updates only pairs this site sent to that very site
 * (keystore/links.c); the payload is read whole, at most
 * SS_REPORT_PAYLOAD_MAX bytes once inflated.
 * Diagnostics: 4440 (a report that cannot be read, quarantined); for the
 * pairs a receipt speaks of, 4513 (quarantined there) and 4514 (waiting or
 * held there), at most REPORT_NOTICES_MAX per receipt (the rest in
 * despool.log); 3314 when every peer holds this site's newest key.
 */
#include "pipeline.h"

#include "../inboxes/report.h"
#include "../keystore/links.h"

#include <stdlib.h>

#define REPORT_NOTICES_MAX 20

/* The whole payload into a malloc'ed buffer (NUL-terminated) and its
 * package hash; OUT_STAGED when read, else the outcome to return. */
static enum outcome read_report(ss_despooler *d, work *w, const char *base, char **buf, size_t *len,
                                unsigned char hash[SS_HASH_BYTES])
{
    int pck_fd;
    enum outcome o = dsp_open_package(d, w, &pck_fd);
    if (o != OUT_STAGED) return o;
    *buf = malloc(SS_REPORT_PAYLOAD_MAX + 1);
    if (!*buf) {
        close(pck_fd);
        d->stats.waiting++;
        return OUT_WAIT;
    }
    struct unpack_sink sink = {.fd = -1, .buf = *buf, .buf_cap = SS_REPORT_PAYLOAD_MAX};
    ss_error e = {0}, unpack_err = {0};
    dsp_stager main = dsp_main_stager(d);
    int rc = dsp_stream_package(&main, pck_fd, w, &sink, hash, &unpack_err, &e);
    close(pck_fd);
    if (rc != 0 || unpack_err.code != SS_OK) {
        free(*buf);
        *buf = NULL;
        if (rc != 0) {
            d->stats.waiting++;
            return OUT_WAIT;
        }
        QUARANTINE(d, base, 4413, w->in.id, w->in.from, unpack_err.msg);
        return OUT_DONE;
    }
    (*buf)[sink.buf_len] = '\0';
    *len = sink.buf_len;
    return OUT_STAGED;
}

/* The header must speak of this very instruction's sites. */
static int head_matches(const ss_despooler *d, const work *w, const ss_report_head *h, ss_error *e)
{
    if (strcmp(h->from, w->in.from) != 0 || strcmp(h->to, d->conf->site_code) != 0)
        return ss_err(e, SS_E_FORMAT,
                      "its first line names from=%s to=%s, but the instruction is from %s to %s",
                      h->from, h->to, w->in.from, d->conf->site_code);
    return 0;
}

/* A pair whose fate the sender should hear of (4513, 4514). */
struct fate_notice {
    ss_receipt_line line;
    char name[SS_NAME_MAX + 1];
};

struct receipt_apply {
    ss_despooler *d;
    const work *w;
    int64_t now;
    size_t lines, changed, told;
    struct fate_notice notices[REPORT_NOTICES_MAX];
    ss_error *e;
};

/* One line: the pair's row, and, for a pair that did not reach the
 * peer's incoming folder, a notice told once the change is committed. */
static int apply_line(void *ctx, const ss_receipt_line *line)
{
    struct receipt_apply *r = ctx;
    ss_sent row;
    enum ss_fate before;
    bool had_before = false;
    r->lines++;
    int rc = ss_sent_apply(r->d->db, r->w->in.from, line, r->now, &row, &before, &had_before, r->e);
    if (rc <= 0) return rc < 0 ? -1 : 0;
    r->changed++;
    if (ss_fate_final(line->fate)) return 0;
    if (r->told < REPORT_NOTICES_MAX) {
        r->notices[r->told].line = *line;
        snprintf(r->notices[r->told].name, sizeof r->notices[0].name, "%s", row.name);
    }
    r->told++;
    return 0;
}

static void tell_notices(ss_despooler *d, const work *w, const struct receipt_apply *r)
{
    for (size_t i = 0; i < r->told && i < REPORT_NOTICES_MAX; i++) {
        const struct fate_notice *n = &r->notices[i];
        char status[16];
        snprintf(status, sizeof status, "%d", n->line.status_id);
        if (n->line.fate == SS_FATE_QUARANTINED)
            ss_report(d->rep, 4513, w->in.from, n->name, n->line.id, status, NULL);
        else
            ss_report(d->rep, 4514, w->in.from, n->name, n->line.id,
                      n->line.fate == SS_FATE_WAITING ? "it waits for this site's key"
                                                      : "it is held",
                      status, NULL);
    }
}

/* Records the report in the ledger (a replay is then a duplicate) with
 * its sequence number, inside the caller's transaction. */
static int note_report(ss_despooler *d, const work *w, ss_error *e)
{
    if (dsp_ledger_insert(d, w, ss_itype_name(w->in.type), "", e) != 0) return -1;
    return dsp_note_sequence(d, w, e);
}

static enum outcome apply_receipt(ss_despooler *d, work *w, const char *base, const char *text,
                                  size_t len)
{
    ss_error e = {0}, parse_err = {0};
    ss_report_head h;
    /* Parsed once without applying: a malformed receipt changes nothing. */
    if (ss_receipt_parse(text, len, &h, NULL, NULL, &parse_err) != 0 ||
        head_matches(d, w, &h, &parse_err) != 0) {
        QUARANTINE(d, base, 4440, w->in.id, w->in.from, "receipt", parse_err.msg);
        return OUT_DONE;
    }
    struct receipt_apply r = {.d = d, .w = w, .now = ss_now(), .e = &e};
    if (ss_db_begin(d->db, &e) != 0) return dsp_trust_failed(d, w, &e);
    if (ss_receipt_parse(text, len, &h, apply_line, &r, &e) != 0 ||
        ss_peer_heard(d->db, w->in.from, r.now, &e) != 0 || note_report(d, w, &e) != 0 ||
        ss_db_commit(d->db, &e) != 0) {
        ss_db_rollback(d->db);
        return dsp_trust_failed(d, w, &e);
    }
    tell_notices(d, w, &r);
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Receipt %s from site %s: %zu fate(s), %zu pair(s) changed, %zu not delivered there%s",
            w->in.id, w->in.from, r.lines, r.changed, r.told,
            r.told > REPORT_NOTICES_MAX ? " (status messages for the first 20 only)" : "");
    dsp_remove_pair(d, base);
    return OUT_DONE;
}

/* After a heartbeat: when every peer heard from within the grace period
 * holds this site's newest key and an older one is still usable, say once
 * that the older one can go (3314). */
struct rollout_check {
    ss_despooler *d;
    const char *key_id;
    int64_t since;
    bool all_hold;
    ss_error *e;
};

static int peer_holds_key(void *ctx, const ss_peer *p)
{
    struct rollout_check *c = ctx;
    ss_peer_view v;
    if (ss_peer_view_get(c->d->db, p->site, &v, c->e) < 0) return -1;
    if (v.last_heard >= c->since && !ss_peer_holds(&v, c->key_id)) c->all_hold = false;
    return 0;
}

static void check_rollout(ss_despooler *d)
{
    ss_error e = {0};
    char own[2][SS_KEYID_HEX + 1], retired[4][SS_KEYID_HEX + 1];
    int n_own = ss_keys_in_state(d->db, d->conf->site_code, SS_KEY_OWN, own, 2, &e);
    int n_old = ss_keys_in_state(d->db, d->conf->site_code, SS_KEY_RETIRED, retired, 4, &e);
    if (n_own != 1 || n_old < 1) return; /* no rollover under way */
    struct rollout_check c = {.d = d,
                              .key_id = own[0],
                              .since = ss_now() - (int64_t)d->conf->rollover_grace_days * 86400,
                              .all_hold = true,
                              .e = &e};
    if (ss_peer_foreach(d->db, peer_holds_key, &c, &e) < 0 || !c.all_hold) return;
    if (ss_rollout_complete_set(d->db, own[0], ss_now(), &e) == 1)
        ss_report(d->rep, 3314, own[0], retired[0], NULL);
}

static enum outcome apply_heartbeat(ss_despooler *d, work *w, const char *base, const char *text,
                                    size_t len)
{
    ss_error e = {0}, parse_err = {0};
    ss_heartbeat hb;
    if (ss_heartbeat_parse(text, len, &hb, &parse_err) != 0 ||
        head_matches(d, w, &hb.head, &parse_err) != 0) {
        QUARANTINE(d, base, 4440, w->in.id, w->in.from, "heartbeat", parse_err.msg);
        return OUT_DONE;
    }
    if (ss_db_begin(d->db, &e) != 0) return dsp_trust_failed(d, w, &e);
    if (ss_peer_heard_heartbeat(d->db, w->in.from, &hb, ss_now(), &e) != 0 ||
        note_report(d, w, &e) != 0 || ss_db_commit(d->db, &e) != 0) {
        ss_db_rollback(d->db);
        return dsp_trust_failed(d, w, &e);
    }
    ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
            "Heartbeat %s from site %s: it signs with key %s%s%s and trusts %zu key(s) of this "
            "site",
            w->in.id, w->in.from, hb.key, hb.next[0] ? ", next key " : "", hb.next, hb.nholds);
    check_rollout(d);
    dsp_remove_pair(d, base);
    return OUT_DONE;
}

void dsp_fate(ss_despooler *d, const char *id, const char *from, enum ss_itype type, int fate,
              int status_id)
{
    if (type == SS_TYPE_RECEIPT || type == SS_TYPE_HEARTBEAT) return; /* never receipted */
    if (!ss_id_valid(id) || !ss_site_code_valid(from) || !strcmp(from, d->conf->site_code)) return;
    ss_error e = {0};
    d->stats.fates++;
    if (ss_receipt_note(d->db, from, id, (enum ss_fate)fate, status_id, ss_now(), &e) != 0)
        ss_logf(ss_reporter_log(d->rep, SS_COMP_DESPOOLER),
                "Cannot note the fate of instruction %s for the receipt to site %s: %s", id, from,
                e.msg);
}

enum outcome dsp_apply_report(ss_despooler *d, work *w, const char *base, const ss_keyrec *key)
{
    char *text = NULL;
    size_t len = 0;
    unsigned char hash[SS_HASH_BYTES];
    ss_error e = {0};
    enum outcome o = read_report(d, w, base, &text, &len, hash);
    if (o != OUT_STAGED) return o;
    if (ss_sig_verify_package(&w->sig, &key->pk, hash, &e) != 0) {
        free(text);
        QUARANTINE(d, base, 4407, w->in.id, w->in.from, w->keyid, e.msg);
        return OUT_DONE;
    }
    o = w->in.type == SS_TYPE_RECEIPT ? apply_receipt(d, w, base, text, len)
                                      : apply_heartbeat(d, w, base, text, len);
    free(text);
    return o;
}
