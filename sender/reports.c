/*
 * reports.c - receipts and heartbeats to peers, and the link watch.  See
 * reports.h.
 */
#include "reports.h"

#include "../inboxes/report.h"
#include "../inboxes/text.h"
#include "../keystore/links.h"
#include "../keystore/trust.h"
#include "kept.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Receipts and heartbeats are for the receiving despooler itself. */
#define REPORT_DEST "despoolr.box"

/* Queues one report (receipt or heartbeat) for peer; its id in id_out. */
static int queue_report(ss_sender *s, const char *peer, enum ss_itype type, const char *text,
                        size_t len, char id_out[SS_ID_HEX + 1], ss_error *e)
{
    char name[32];
    snprintf(name, sizeof name, "%s.%s", s->conf->site_code, ss_itype_name(type));
    ss_send_item item = {.data = text, .data_len = len, .name = name, .type = type};
    /* Queued as it is: a report is never "already queued". */
    bool again = s->again;
    ss_queued_fn told = s->on_queued;
    s->again = true;
    s->on_queued = NULL;
    int rc = ss_sender_pack(s, peer, REPORT_DEST, &item, 1, e);
    s->again = again;
    s->on_queued = told;
    if (rc == 0) memcpy(id_out, item.id, SS_ID_HEX + 1);
    return rc;
}

/* ------------------------------------------------------------ receipts */

struct receipt_round {
    ss_sender *s;
    ss_receipt_line *lines;
    size_t queued;
    ss_error *e;
};

static int receipt_for_site(void *ctx_, const char *site)
{
    struct receipt_round *r = ctx_;
    ss_sender *s = r->s;
    ss_peer p;
    int known = ss_peer_get(s->db, site, &p, r->e);
    if (known < 0) return -1;
    if (known == 0) return 0; /* not a peer: no address; its fates wait in site.db */
    size_t n = 0;
    if (ss_receipt_take(s->db, site, r->lines, SS_RECEIPT_BATCH, &n, r->e) != 0) return -1;
    if (n == 0) return 0;
    ss_report_head h = {.time = ss_now()};
    snprintf(h.from, sizeof h.from, "%s", s->conf->site_code);
    snprintf(h.to, sizeof h.to, "%s", site);
    char *text = NULL, id[SS_ID_HEX + 1];
    size_t len = 0;
    if (ss_receipt_format(&h, r->lines, n, &text, &len, r->e) != 0) return -1;
    int rc = queue_report(s, site, SS_TYPE_RECEIPT, text, len, id, r->e);
    free(text);
    if (rc != 0) return -1;
    /* Queued: forgotten.  A crash between the two sends the same fates
     * again, which the peer applies as no change. */
    if (ss_receipt_forget(s->db, site, r->lines, n, r->e) != 0) return -1;
    ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
            "Queued receipt %s for site %s: the fates of %zu instruction(s)", id, site, n);
    r->queued++;
    return 0;
}

int ss_sender_queue_receipts(ss_sender *s, size_t *queued, ss_error *e)
{
    struct receipt_round r = {.s = s, .e = e};
    *queued = 0;
    r.lines = malloc(SS_RECEIPT_BATCH * sizeof *r.lines);
    if (!r.lines) return ss_err(e, SS_E_NOMEM, "out of memory for receipts");
    int rc = ss_receipt_sites(s->db, receipt_for_site, &r, e);
    free(r.lines);
    *queued = r.queued;
    return rc < 0 ? -1 : 0;
}

/* ---------------------------------------------------------- heartbeats */

struct heartbeat_round {
    ss_sender *s;
    int64_t now;
    size_t queued;
    ss_error *e;
};

/* The peer's keys this site trusts, by id. */
static int trusted_ids(ss_sender *s, const char *peer, ss_heartbeat *hb, ss_error *e)
{
    char ids[SS_HEARTBEAT_HOLDS_MAX][SS_KEYID_HEX + 1];
    int n = ss_keys_in_state(s->db, peer, SS_KEY_TRUSTED, ids, SS_HEARTBEAT_HOLDS_MAX, e);
    if (n < 0) return -1;
    hb->nholds = 0;
    for (int i = 0; i < n && i < SS_HEARTBEAT_HOLDS_MAX; i++)
        snprintf(hb->holds[hb->nholds++], SS_KEYID_TEXT + 1, "%s", ids[i]);
    return 0;
}

static int heartbeat_for_peer(void *ctx_, const ss_peer *p)
{
    struct heartbeat_round *r = ctx_;
    ss_sender *s = r->s;
    ss_peer_view v;
    if (ss_peer_view_get(s->db, p->site, &v, r->e) < 0) return -1;
    if (!ss_heartbeat_is_due(&v, p->added, r->now, s->conf->heartbeat_interval)) return 0;
    ss_heartbeat hb;
    memset(&hb, 0, sizeof hb);
    hb.head.time = r->now;
    snprintf(hb.head.from, sizeof hb.head.from, "%s", s->conf->site_code);
    snprintf(hb.head.to, sizeof hb.head.to, "%s", p->site);
    ss_keyid_hex(s->pk.keyid, hb.key);
    if (trusted_ids(s, p->site, &hb, r->e) != 0) return -1;
    char text[1024], id[SS_ID_HEX + 1];
    int len = ss_heartbeat_format(&hb, text, sizeof text, r->e);
    if (len < 0) return -1;
    if (queue_report(s, p->site, SS_TYPE_HEARTBEAT, text, (size_t)len, id, r->e) != 0) return -1;
    if (ss_heartbeat_sent(s->db, p->site, r->now, r->e) != 0) return -1;
    ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
            "Queued heartbeat %s for site %s: key %s, holding %zu of its key(s)", id, p->site,
            hb.key, hb.nholds);
    r->queued++;
    return 0;
}

int ss_sender_queue_heartbeats(ss_sender *s, int64_t now, size_t *queued, ss_error *e)
{
    *queued = 0;
    if (!s->conf->heartbeat_interval || !s->sk) return 0; /* off, or nothing to sign with */
    struct heartbeat_round r = {.s = s, .now = now, .e = e};
    int rc = ss_peer_foreach(s->db, heartbeat_for_peer, &r, e);
    *queued = r.queued;
    return rc < 0 ? -1 : 0;
}

/* ----------------------------------------------------------- link watch */

struct watch_round {
    ss_sender *s;
    int64_t now;
    ss_error *e;
};

/* Copies kept for resending that are no longer needed (kept.h). */
static int prune_kept(void *ctx_, const ss_peer *p)
{
    struct watch_round *r = ctx_;
    ss_error e = {0};
    if (ss_kept_prune(r->s, p->site, r->now, &e) != 0)
        ss_logf(ss_reporter_log(r->s->rep, SS_COMP_SENDER),
                "Cannot prune the copies kept for %s: %s", p->site, e.msg);
    return 0;
}

static int judge_link(void *ctx_, const ss_peer *p)
{
    struct watch_round *r = ctx_;
    ss_sender *s = r->s;
    ss_peer_view v;
    if (ss_peer_view_get(s->db, p->site, &v, r->e) < 0) return -1;
    enum ss_link now_link =
        ss_link_judge(&v, r->now, s->conf->heartbeat_interval, s->conf->link_degraded_after);
    if (now_link == v.link) return 0;
    if (ss_link_set(s->db, p->site, now_link, r->now, r->e) != 0) return -1;
    char quiet[64], heard[48], intervals[24];
    int64_t since = v.last_heard ? v.last_heard : v.first_hb_sent;
    ss_duration_text(r->now - since, quiet, sizeof quiet);
    ss_time_text(v.last_heard, heard, sizeof heard);
    snprintf(intervals, sizeof intervals, "%" PRId64,
             (r->now - since) / (int64_t)s->conf->heartbeat_interval);
    if (now_link == SS_LINK_DEGRADED)
        ss_report(s->rep, 4515, p->site, quiet, intervals, heard, NULL);
    else if (now_link == SS_LINK_FAILED)
        ss_report(s->rep, 4516, p->site, quiet, intervals, heard, NULL);
    else if (now_link == SS_LINK_HEALTHY && v.link != SS_LINK_UNKNOWN)
        ss_report(s->rep, 4517, p->site, heard, NULL);
    return 0;
}

static int tell_overdue(void *ctx_, const char *peer, size_t count, const ss_sent *oldest)
{
    struct watch_round *r = ctx_;
    char n[24], quiet[64], when[48];
    snprintf(n, sizeof n, "%zu", count);
    ss_duration_text(r->s->conf->receipt_timeout, quiet, sizeof quiet);
    ss_time_text(oldest->sent_at, when, sizeof when);
    ss_report(r->s->rep, 4512, n, peer, quiet, oldest->name, oldest->id, when, NULL);
    return 0;
}

int ss_sender_watch_links(ss_sender *s, int64_t now, ss_error *e)
{
    struct watch_round r = {.s = s, .now = now, .e = e};
    if (s->conf->heartbeat_interval && ss_peer_foreach(s->db, judge_link, &r, e) < 0) return -1;
    if (ss_peer_foreach(s->db, prune_kept, &r, e) < 0) return -1;
    return ss_sent_overdue(s->db, now - (int64_t)s->conf->receipt_timeout, tell_overdue, &r, e) < 0
               ? -1
               : ss_sent_prune(s->db, now - (int64_t)s->conf->package_lifetime, e);
}
