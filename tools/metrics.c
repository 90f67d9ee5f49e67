/*
 * metrics.c - writing the Prometheus text file.  See metrics.h.
 */
#include "metrics.h"
#include "../keystore/links.h"
#include "../inboxes/fileio.h"
#include "../sender/sender.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SITES_MAX 256

struct out {
    FILE *f;
    const char *site;
};

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    fprintf(o->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct out *o, const char *name, const char *labels, double value)
{
    /* Whole numbers (counts, timestamps) in full: %g would round a
     * timestamp to 1.79611501e+09. */
    bool whole = value == (double)(long long)value && value < 1e15 && value > -1e15;
    fprintf(o->f, whole ? "%s{site=\"%s\"%s%s} %.0f\n" : "%s{site=\"%s\"%s%s} %.9g\n", name,
            o->site, labels[0] ? "," : "", labels, value);
}

static void despooler_counters(struct out *o, const ss_despool_stats *st)
{
    family(o, "sitespool_despool_pairs_total", "counter",
           "Pairs the despooler finished since it started, by outcome.");
    sample(o, "sitespool_despool_pairs_total", "outcome=\"delivered\"", (double)st->delivered);
    sample(o, "sitespool_despool_pairs_total", "outcome=\"rejected\"", (double)st->rejected);
    sample(o, "sitespool_despool_pairs_total", "outcome=\"duplicate\"", (double)st->duplicates);
    family(o, "sitespool_despool_batch_duration_seconds", "summary",
           "Time from loading a batch to its commit.");
    sample(o, "sitespool_despool_batch_duration_seconds_sum", "", st->batch_seconds);
    sample(o, "sitespool_despool_batch_duration_seconds_count", "", (double)st->batches);
    family(o, "sitespool_despool_batch_duration_max_seconds", "gauge",
           "The longest batch since the despooler started.");
    sample(o, "sitespool_despool_batch_duration_max_seconds", "", st->batch_seconds_max);
}

static void site_census(struct out *o, cli *c)
{
    ss_site_census *sites = calloc(SITES_MAX, sizeof *sites);
    size_t n = 0;
    ss_error e = {0};
    if (!sites || ss_despooler_site_census(&c->db, sites, SITES_MAX, &n, &e) != 0) n = 0;
    static const struct {
        const char *name, *help;
        size_t offset;
    } kinds[] = {
        {"sitespool_ledger_pairs", "Pairs delivered from each site within the replay window.",
         offsetof(ss_site_census, delivered)},
        {"sitespool_waiting_pairs", "Pairs from each site waiting for its key.",
         offsetof(ss_site_census, waiting)},
        {"sitespool_held_pairs", "Pairs from each site held (a blocked site, an expired key).",
         offsetof(ss_site_census, held)},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        family(o, kinds[k].name, "gauge", kinds[k].help);
        for (size_t i = 0; i < n; i++) {
            char labels[64];
            snprintf(labels, sizeof labels, "from=\"%s\"", sites[i].site);
            uint64_t v = *(const uint64_t *)((const char *)&sites[i] + kinds[k].offset);
            sample(o, kinds[k].name, labels, (double)v);
        }
    }
    free(sites);
}

static void folders(struct out *o, const ss_despooler *d, int64_t now)
{
    ss_folder_census f;
    ss_despooler_folder_census(d, &f);
    family(o, "sitespool_receive_pairs", "gauge", "Instructions in despoolr.box/receive.");
    sample(o, "sitespool_receive_pairs", "", (double)f.receive);
    family(o, "sitespool_receive_oldest_age_seconds", "gauge",
           "Age of the oldest instruction in receive (0: none).");
    sample(o, "sitespool_receive_oldest_age_seconds", "",
           f.receive_oldest ? (double)(now - f.receive_oldest) : 0);
    family(o, "sitespool_quarantined_pairs", "gauge", "Pairs in despoolr.box/rejected.");
    sample(o, "sitespool_quarantined_pairs", "", (double)f.quarantined);
}

/* One peer's figures, gathered once (its outbox listed once) and then
 * written family by family. */
#define PEER_FAMILIES 8

struct peer_fig {
    char site[SS_SITE_CODE_MAX + 1];
    double value[PEER_FAMILIES]; /* in the order of peer_families */
};

static const char *const peer_families[PEER_FAMILIES][2] = {
    {"sitespool_outbox_pairs", "Pairs queued for each peer."},
    {"sitespool_outbox_oldest_age_seconds", "Age of the oldest pair queued for each peer."},
    {"sitespool_peer_last_success_timestamp_seconds",
     "When a delivery to each peer last succeeded (0: never)."},
    {"sitespool_peer_failures", "Failed delivery attempts to each peer in a row."},
    {"sitespool_peer_last_heard_timestamp_seconds",
     "When a signed heartbeat or receipt of each peer last arrived (0: never)."},
    {"sitespool_peer_link_state",
     "Each peer's link: 0 unknown, 1 healthy, 2 degraded, 3 failed (by its heartbeats)."},
    {"sitespool_peer_unconfirmed_pairs",
     "Pairs in each peer's inbox without a receipt yet."},
    {"sitespool_peer_quarantined_pairs", "Pairs each peer's receipts say it quarantined."},
};

struct peer_figs {
    cli *c;
    int64_t now;
    struct peer_fig *v;
    size_t n;
};

static int gather_peer(void *ctx, const ss_peer *p)
{
    struct peer_figs *pf = ctx;
    if (pf->n == SITES_MAX) return 0;
    struct peer_fig *f = &pf->v[pf->n++];
    ss_outbox_info q = {0};
    ss_error e = {0};
    (void)ss_outbox_info_get(pf->c->root, p->site, &q, &e);
    snprintf(f->site, sizeof f->site, "%s", p->site);
    f->value[0] = (double)q.queued;
    f->value[1] = q.oldest ? (double)(pf->now - q.oldest) : 0;
    f->value[2] = (double)p->last_success;
    f->value[3] = (double)p->failures;
    ss_peer_view v;
    ss_sent_summary sum;
    if (ss_peer_view_get(&pf->c->db, p->site, &v, &e) >= 0) {
        f->value[4] = (double)v.last_heard;
        f->value[5] = (double)v.link;
    }
    if (ss_sent_summary_get(&pf->c->db, p->site, &sum, &e) == 0) {
        f->value[6] = (double)sum.unconfirmed;
        f->value[7] = (double)sum.quarantined;
    }
    return 0;
}

static void peers(struct out *o, cli *c, int64_t now)
{
    struct peer_figs pf = {c, now, calloc(SITES_MAX, sizeof(struct peer_fig)), 0};
    ss_error e = {0};
    if (pf.v) (void)ss_peer_foreach(&c->db, gather_peer, &pf, &e);
    for (int k = 0; k < PEER_FAMILIES; k++) {
        family(o, peer_families[k][0], "gauge", peer_families[k][1]);
        for (size_t i = 0; i < pf.n; i++) {
            char labels[64];
            snprintf(labels, sizeof labels, "peer=\"%s\"", pf.v[i].site);
            sample(o, peer_families[k][0], labels, pf.v[i].value[k]);
        }
    }
    free(pf.v);
}

static void site_seen(void *ctx, const ss_site_view *v)
{
    struct out *o = ctx;
    char labels[64];
    snprintf(labels, sizeof labels, "from=\"%s\"", v->site);
    sample(o, "sitespool_site_last_heard_timestamp_seconds", labels, (double)v->last_seen);
}

int metrics_write(cli *c, const ss_despooler *d, ss_error *e)
{
    if (!c->conf.metrics_file[0]) return 0;
    char path[PATH_MAX];
    int n = c->conf.metrics_file[0] == '/'
                ? snprintf(path, sizeof path, "%s", c->conf.metrics_file)
                : snprintf(path, sizeof path, "%s/%s", c->root, c->conf.metrics_file);
    if (n < 0 || (size_t)n >= sizeof path) return ss_err(e, SS_E_CONF, "metrics_file is too long");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return ss_err(e, SS_E_NOMEM, "out of memory");
    int64_t now = ss_now();
    struct out o = {f, c->conf.site_code};
    despooler_counters(&o, &d->stats);
    site_census(&o, c);
    folders(&o, d, now);
    peers(&o, c, now);
    family(&o, "sitespool_site_last_heard_timestamp_seconds", "gauge",
           "When a signed pair from each site was last delivered here (0: never).");
    ss_error ignored;
    (void)ss_sites_foreach(&c->db, site_seen, &o, &ignored);
    family(&o, "sitespool_metrics_written_timestamp_seconds", "gauge",
           "When this file was written.");
    sample(&o, "sitespool_metrics_written_timestamp_seconds", "", (double)now);
    fclose(f);
    char dir[PATH_MAX], *slash;
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    *slash = '\0';
    int dfd = ss_open_dir_follow(dir[0] ? dir : "/", e);
    int rc = dfd < 0 ? -1 : ss_write_file_atomic(dfd, slash + 1, text, len, 0644, 0, e);
    if (dfd >= 0) close(dfd);
    free(text);
    return rc;
}
