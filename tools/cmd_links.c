/*
 * cmd_links.c - what the receipts and heartbeats tell (keystore/links.h):
 * `queue --sent` (pairs at peers: not yet confirmed, waiting or held
 * there, quarantined there with the peer's status id), `key propagation`
 * (which peer holds which of this site's keys: the seeds' "who has the new
 * certificate"), and the guard that keeps `key revoke` from revoking this
 * site's old key while a peer still relies on it.
 *
 * Security stance: read-only views of this site's own tables; the
 * revocation guard fails closed (a site.db it cannot read refuses).
 * Diagnostics: refusals name the peers and the --force that overrides.
 */
#include "cli.h"
#include "links.h"
#include "site_open.h"
#include "../inboxes/json.h"
#include "../inboxes/text.h"
#include "../keystore/links.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- queue --sent */

/* Where a sent pair stands, as `queue --sent` names it. */
static const char *sent_state(const ss_sent *s)
{
    if (!s->sent_at) return "queued";
    if (!s->has_fate) return "unconfirmed";
    switch (s->fate) {
    case SS_FATE_DELIVERED:
        return "delivered";
    case SS_FATE_DUPLICATE:
        return "duplicate";
    case SS_FATE_QUARANTINED:
        return "quarantined";
    case SS_FATE_WAITING:
        return "waiting-key";
    default:
        return "held";
    }
}

struct sent_view {
    bool json;
    size_t n;
    int64_t now;
};

static int show_sent(void *ctx, const ss_sent *s)
{
    struct sent_view *v = ctx;
    int64_t since = s->has_fate ? s->heard_at : s->sent_at ? s->sent_at : s->queued;
    char name[SS_NAME_MAX * 4 + 1];
    ss_text_safe(s->name, name, sizeof name);
    if (v->json) {
        printf("%s\n  {\"peer\": \"%s\", \"id\": \"%s\", \"state\": \"%s\", \"name\": ",
               v->n ? "," : "", s->peer, s->id, sent_state(s));
        ss_json_string(stdout, s->name);
        printf(", \"type\": \"%s\", \"size\": %" PRIu64 ", \"queued\": %" PRId64
               ", \"sent\": %" PRId64 ", \"age_seconds\": %" PRId64 ", \"status_id\": ",
               s->type, s->size, s->queued, s->sent_at, v->now - since);
        if (s->status_id)
            printf("%d}", s->status_id);
        else
            printf("null}");
    } else {
        char age[48], status[8] = "-";
        ss_duration_text(v->now - since, age, sizeof age);
        if (s->status_id) snprintf(status, sizeof status, "%d", s->status_id);
        if (!v->n)
            printf("%-8s %-12s %-18s %-6s %-32s %s\n", "PEER", "STATE", "AGE", "STATUS", "ID",
                   "NAME");
        printf("%-8s %-12s %-18s %-6s %-32s %s\n", s->peer, sent_state(s), age, status, s->id,
               name);
    }
    v->n++;
    return 0;
}

int queue_sent(cli *c, const char *peer, bool all, bool json)
{
    if (cli_open_short_lived(c) != 0) return 1;
    struct sent_view v = {.json = json, .now = ss_now()};
    ss_error e = {0};
    if (json) printf("[");
    int rc = ss_sent_each(&c->db, peer, all, show_sent, &v, &e);
    if (json) printf("%s]\n", v.n ? "\n" : "");
    if (rc != 0) return cli_fail(&e);
    if (!json && !v.n)
        printf("Nothing sent%s%s awaits its receipt.\n", peer ? " to " : "", peer ? peer : "");
    return 0;
}

/* ------------------------------------------------------- key propagation */

/* Our keys still in use: the current one, and old ones peers may still
 * accept (retired, within their grace). */
struct own_keys {
    char current[SS_KEYID_HEX + 1];
    char old[4][SS_KEYID_HEX + 1];
    int64_t old_until[4];
    int nold;
};

static int note_own(void *ctx, const ss_keyrec *k)
{
    struct own_keys *o = ctx;
    if (k->state == SS_KEY_OWN && !o->current[0])
        snprintf(o->current, sizeof o->current, "%s", k->key_id);
    else if (k->state == SS_KEY_RETIRED && o->nold < 4) {
        o->old_until[o->nold] = k->grace_until;
        snprintf(o->old[o->nold++], sizeof o->old[0], "%s", k->key_id);
    }
    return 0;
}

static int own_keys_get(cli *c, struct own_keys *o, ss_error *e)
{
    memset(o, 0, sizeof *o);
    return ss_keys_foreach(&c->db, c->conf.site_code, note_own, o, e);
}

/* The newest of our keys a peer holds: "" when none (or never heard). */
static const char *relies_on(const struct own_keys *o, const ss_peer_view *v)
{
    if (o->current[0] && ss_peer_holds(v, o->current)) return o->current;
    for (int i = 0; i < o->nold; i++)
        if (ss_peer_holds(v, o->old[i])) return o->old[i];
    return "";
}

#define PEERS_MAX 256

struct prop_peers {
    ss_peer_view v[PEERS_MAX];
    size_t n;
    ss_db *db;
    ss_error *e;
};

static int collect_view(void *ctx, const ss_peer *p)
{
    struct prop_peers *pp = ctx;
    if (pp->n == PEERS_MAX) return 0;
    return ss_peer_view_get(pp->db, p->site, &pp->v[pp->n++], pp->e) < 0 ? -1 : 0;
}

static int load_views(cli *c, struct prop_peers *pp, ss_error *e)
{
    pp->n = 0;
    pp->db = &c->db;
    pp->e = e;
    return ss_peer_foreach(&c->db, collect_view, pp, e) < 0 ? -1 : 0;
}

static size_t holders(const struct prop_peers *pp, const char *key_id)
{
    size_t n = 0;
    for (size_t i = 0; i < pp->n; i++)
        n += ss_peer_holds(&pp->v[i], key_id);
    return n;
}

static void propagation_json(const struct own_keys *o, const struct prop_peers *pp)
{
    printf("{\"keys\": [");
    if (o->current[0])
        printf("\n  {\"key_id\": \"%s\", \"state\": \"current\", \"held_by\": %zu}", o->current,
               holders(pp, o->current));
    for (int i = 0; i < o->nold; i++)
        printf(",\n  {\"key_id\": \"%s\", \"state\": \"old\", \"accepted_until\": %" PRId64
               ", \"held_by\": %zu}",
               o->old[i], o->old_until[i], holders(pp, o->old[i]));
    printf("\n], \"peers\": [");
    for (size_t i = 0; i < pp->n; i++) {
        const ss_peer_view *v = &pp->v[i];
        printf("%s\n  {\"site\": \"%s\", \"link\": \"%s\", \"last_heard\": %" PRId64
               ", \"key_id\": \"%s\", \"holds\": [",
               i ? "," : "", v->site, ss_link_name(v->link), v->last_heard, v->key_id);
        for (size_t k = 0; k < v->nholds; k++)
            printf("%s\"%s\"", k ? ", " : "", v->holds[k]);
        const char *r = relies_on(o, v);
        printf("], \"relies_on\": %s%s%s, \"holds_current\": %s}", r[0] ? "\"" : "",
               r[0] ? r : "null", r[0] ? "\"" : "",
               o->current[0] && ss_peer_holds(v, o->current) ? "true" : "false");
    }
    printf("%s]}\n", pp->n ? "\n" : "");
}

static void propagation_text(const struct own_keys *o, const struct prop_peers *pp)
{
    char when[48];
    if (o->current[0])
        printf("Key %s  current         held by %zu of %zu peer(s)\n", o->current,
               holders(pp, o->current), pp->n);
    for (int i = 0; i < o->nold; i++) {
        ss_time_text(o->old_until[i], when, sizeof when);
        printf("Key %s  old, until %s  held by %zu of %zu peer(s)\n", o->old[i], when,
               holders(pp, o->old[i]), pp->n);
    }
    printf("\n%-8s %-9s %-24s %-18s %s\n", "PEER", "LINK", "LAST HEARD", "RELIES ON", "HOLDS");
    for (size_t i = 0; i < pp->n; i++) {
        const ss_peer_view *v = &pp->v[i];
        const char *r = relies_on(o, v);
        char holds[SS_HEARTBEAT_HOLDS_MAX * (SS_KEYID_TEXT + 1) + 2] = "-";
        for (size_t k = 0, at = 0; k < v->nholds; k++)
            at +=
                (size_t)snprintf(holds + at, sizeof holds - at, "%s%s", k ? "," : "", v->holds[k]);
        ss_time_text(v->last_heard, when, sizeof when);
        printf("%-8s %-9s %-24s %-18s %s\n", v->site, ss_link_name(v->link), when,
               r[0] ? r : (v->has_heartbeat ? "none of ours" : "(no heartbeat)"), holds);
    }
}

int key_propagation(cli *c, int argc, char **argv, const char *usage)
{
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else
            return cli_usage(usage, "unknown argument '%s' for key propagation", argv[i]);
    }
    struct prop_peers *pp = malloc(sizeof *pp);
    ss_error e = {0};
    if (!pp) return ss_err(&e, SS_E_NOMEM, "out of memory"), cli_fail(&e);
    struct own_keys o;
    int rc = own_keys_get(c, &o, &e) != 0 || load_views(c, pp, &e) != 0 ? cli_fail(&e) : 0;
    if (rc == 0 && json)
        propagation_json(&o, pp);
    else if (rc == 0)
        propagation_text(&o, pp);
    free(pp);
    return rc;
}

/* ---------------------------------------------------------- revoke guard */

int links_revoke_guard(cli *c, const char *key_id, bool force)
{
    struct own_keys o;
    struct prop_peers *pp = malloc(sizeof *pp);
    ss_error e = {0};
    if (!pp) return ss_err(&e, SS_E_NOMEM, "out of memory"), cli_fail(&e);
    if (own_keys_get(c, &o, &e) != 0 || load_views(c, pp, &e) != 0) {
        free(pp);
        fprintf(stderr,
                "sitespool: cannot tell which peers hold key %s, so it is not revoked: "
                "%s\n",
                o.current[0] ? o.current : "(current)", e.msg);
        return 1;
    }
    int64_t since = ss_now() - (int64_t)c->conf.rollover_grace_days * 86400;
    size_t behind = 0;
    char names[512] = "";
    for (size_t i = 0; i < pp->n; i++) {
        const ss_peer_view *v = &pp->v[i];
        if (v->last_heard < since || ss_peer_holds(v, o.current)) continue;
        size_t used = strlen(names);
        char heard[48];
        ss_time_text(v->last_heard, heard, sizeof heard);
        const char *r = relies_on(&o, v);
        snprintf(names + used, sizeof names - used, "%s%s (heard %s, relies on %s)",
                 behind ? ", " : "", v->site, heard, r[0] ? r : "no key of ours");
        behind++;
    }
    free(pp);
    if (!behind) return 0;
    if (force) {
        fprintf(stderr,
                "sitespool: warning: revoking %s although %zu peer(s) do not hold the "
                "current key %s yet: %s\n",
                key_id, behind, o.current, names);
        return 0;
    }
    fprintf(stderr,
            "sitespool: not revoking %s: %zu peer(s) heard from within rollover_grace_days "
            "(%u days) do not hold this site's current key %s yet: %s. What this site sends "
            "them would wait there (4405). Wait for their heartbeats ('sitespool key "
            "propagation'), send the key ('sitespool key send-to SITE'), or revoke anyway "
            "with --force.\n",
            key_id, behind, c->conf.rollover_grace_days, o.current, names);
    return 1;
}
