/*
 * cmd_queue.c - `sitespool queue` (what is not finished at this site, the
 * role of Postfix's postqueue -p), `sitespool release ID` and `sitespool
 * delete ID` (what an administrator may do with a stuck pair).
 *
 * The state comes from its owners: the pairs in despoolr.box/receive with
 * the despooler's retries/holds/backlog tables and the quarantined pairs
 * with their .why files (despooler/admin.h), blocked sites (keystore),
 * peers' outboxes (sender/outbox.h).  This file gathers, sorts and shows
 * it; moving and deleting files is admin.h's.
 *
 * Security stance: the site and name of a pair in receive or rejected/
 * are what its instruction claims (not verified unless the despooler
 * judged it); every such text is escaped (inboxes/text.h) before it
 * reaches the terminal, and written with the JSON string writer.
 * Diagnostics: release raises 4428, delete 4429; refusals say why and what
 * to do instead (exit 1).
 * Known limits: the whole queue is gathered in memory before it is sorted
 * (a few hundred bytes per pair).
 */
#include "cli.h"
#include "links.h"
#include "site_open.h"
#include "../despooler/admin.h"
#include "../inboxes/fileio.h"
#include "../inboxes/json.h"
#include "../inboxes/text.h"
#include "../sender/outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char queue_usage[] =
    "usage: sitespool [-C SITE_ROOT] queue [--json]\n"
    "       sitespool [-C SITE_ROOT] queue --sent [--peer CODE] [--all] [--json]\n"
    "\n"
    "Everything not finished at this site, oldest first within each state:\n"
    "  receive      a complete pair in despoolr.box/receive the despooler has not judged yet\n"
    "  incomplete   half a pair in receive: an instruction whose package has not arrived,\n"
    "               or a package without its instruction\n"
    "  waiting-key  kept in receive until its sender's key is found (4405): attempts, next try\n"
    "  held         kept in receive until an administrator acts (4420), or its destination can\n"
    "               be written (4416), or its quarantine succeeds (4426)\n"
    "  blocked      a site whose data is held after a verified key change (3303)\n"
    "  quarantined  in despoolr.box/rejected, with the status message of its .why file\n"
    "  outbox       queued for a peer in schedule.box/outbox/<PEER> (4504; 4501 unreachable)\n"
    "AGE is how long it has been in that state; SITE and NAME are what the instruction\n"
    "claims (the despooler verifies them).\n"
    "\n"
    "  --json   one JSON array of objects with the keys state, id, site, name, size,\n"
    "           age_seconds, status_id, detail (null where unknown)\n"
    "\n"
    "--sent shows instead what this site sent and the peers' receipts have not confirmed\n"
    "as delivered: queued (still in the outbox), unconfirmed (in the peer's inbox, no\n"
    "receipt yet), waiting-key (the peer waits for our key, 4405 there), held (held\n"
    "there), quarantined (refused there; STATUS is the peer's status id). AGE counts\n"
    "from the last change. --all adds the confirmed ones (delivered, duplicate);\n"
    "--peer one peer's only. JSON keys: peer, id, state, name, type, size, queued, sent,\n"
    "age_seconds, status_id.\n"
    "\n"
    "Exit codes: 0 listed, 1 the site cannot be read, 2 usage error.\n";

static const char release_usage[] =
    "usage: sitespool [-C SITE_ROOT] release ID\n"
    "\n"
    "Moves the quarantined pair ID (despoolr.box/rejected/ID.pck, .ins) back into\n"
    "despoolr.box/receive after its cause was fixed: the package first, then the\n"
    "instruction, never replacing a file, each move flushed to disk; its .why file is\n"
    "removed and status 4428 raised.  The despooler judges the pair afresh, like any\n"
    "arrival: a running one sees it at once (or at its next rescan, rescan_interval);\n"
    "'sitespool despool --once' processes it now.  Refused when ID is not quarantined,\n"
    "its pair is incomplete, receive already holds its name, or it was already\n"
    "delivered.  'sitespool queue' lists the quarantined pairs with their ids.\n"
    "\n"
    "Exit codes: 0 released, 1 refused or failed, 2 usage error.\n";

static const char delete_usage[] =
    "usage: sitespool [-C SITE_ROOT] delete ID\n"
    "\n"
    "Removes the pair ID for good, with status 4429 naming it and who deleted it:\n"
    "every quarantined copy of it in despoolr.box/rejected (instruction, package, .why),\n"
    "or the pair held in despoolr.box/receive until an administrator acts (4420, 4416,\n"
    "4426).  A pair the despooler may still be working on - waiting for its key (4405)\n"
    "or not judged yet - is refused: it is quarantined or held first.\n"
    "\n"
    "Exit codes: 0 deleted, 1 refused or failed, 2 usage error.\n";

/* ---------------------------------------------------------------- queue */

enum qstate {
    ST_RECEIVE,
    ST_INCOMPLETE,
    ST_WAITING_KEY,
    ST_HELD,
    ST_BLOCKED,
    ST_QUARANTINED,
    ST_OUTBOX,
    ST_COUNT
};
static const char *const state_names[ST_COUNT] = {
    "receive", "incomplete", "waiting-key", "held", "blocked", "quarantined", "outbox",
};

struct entry {
    enum qstate state;
    char *id, *site, *name, *detail; /* NULL: unknown */
    bool has_size;
    uint64_t size;
    int64_t age; /* -1: unknown */
    int status_id;
};

struct queue {
    cli *c;
    int64_t now;
    struct entry *v;
    size_t n, cap;
    bool failed; /* out of memory */
};

/* A copy of peer-supplied text, safe for a terminal; NULL stays NULL. */
static char *safe_dup(const char *s)
{
    if (!s) return NULL;
    char buf[2048];
    ss_text_safe(s, buf, sizeof buf);
    return strdup(buf);
}

static struct entry *add_entry(struct queue *q, enum qstate state, const char *id, const char *site,
                               const char *name, int64_t since)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct entry *v = realloc(q->v, cap * sizeof *v);
        if (!v) {
            q->failed = true;
            return NULL;
        }
        q->v = v;
        q->cap = cap;
    }
    struct entry *en = &q->v[q->n++];
    memset(en, 0, sizeof *en);
    en->state = state;
    en->id = id && *id ? safe_dup(id) : NULL;
    en->site = site && *site ? safe_dup(site) : NULL;
    en->name = name && *name ? safe_dup(name) : NULL;
    en->age = since > 0 ? (q->now > since ? q->now - since : 0) : -1;
    return en;
}

static void set_detail(struct entry *en, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_detail(struct entry *en, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    en->detail = safe_dup(buf);
}

static void free_queue(struct queue *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->v[i].id);
        free(q->v[i].site);
        free(q->v[i].name);
        free(q->v[i].detail);
    }
    free(q->v);
}

/* "45s", "12m", "5h", "3d". */
static void format_age(int64_t s, char *out, size_t len)
{
    if (s < 0)
        snprintf(out, len, "-");
    else if (s < 120)
        snprintf(out, len, "%llds", (long long)s);
    else if (s < 120 * 60)
        snprintf(out, len, "%lldm", (long long)(s / 60));
    else if (s < 48 * 3600)
        snprintf(out, len, "%lldh", (long long)(s / 3600));
    else
        snprintf(out, len, "%lldd", (long long)(s / 86400));
}

static void add_waiting_key(struct queue *q, const ss_receive_pair *p, const char *site,
                            const char *name)
{
    struct entry *en = add_entry(q, ST_WAITING_KEY, p->base, site, name, p->retry.first_seen);
    if (!en) return;
    char next[32];
    format_age(p->retry.next_at - q->now, next, sizeof next);
    en->status_id = 4405;
    set_detail(en, "public key %s of site %s not found; lookup %d of %u, next %s%s",
               p->retry.key_id, p->retry.site, p->retry.attempts, q->c->conf.key_lookup_retries,
               p->retry.next_at > q->now ? "in " : "due now",
               p->retry.next_at > q->now ? next : "");
    en->has_size = p->has_pck;
    en->size = p->pck_size;
}

static int on_receive(void *ctx, const ss_receive_pair *p)
{
    struct queue *q = ctx;
    const ss_claim *cl = &p->claim;
    const char *site = cl->parsed ? cl->in.from : p->held ? p->hold.site : p->retry.site;
    const char *name = cl->parsed ? cl->in.name : NULL;
    if (p->held) {
        struct entry *en = add_entry(q, ST_HELD, p->base, site, name, p->hold.since);
        if (!en) return -1;
        en->status_id = p->hold.status_id;
        set_detail(en, "%s", p->hold.reason);
        en->has_size = p->has_pck;
        en->size = p->pck_size;
        return 0;
    }
    if (p->waiting_key) {
        add_waiting_key(q, p, site, name);
        return q->failed ? -1 : 0;
    }
    bool complete = p->has_ins && p->has_pck;
    struct entry *en =
        add_entry(q, complete ? ST_RECEIVE : ST_INCOMPLETE, p->base, site, name, p->since);
    if (!en) return -1;
    en->status_id = p->warned ? 4414 : 0;
    en->has_size = p->has_pck;
    en->size = p->pck_size;
    if (!p->has_pck)
        set_detail(en, "its package %s.pck has not arrived", p->base);
    else if (!p->has_ins)
        set_detail(en, "a package without its instruction %s.ins (still arriving?)", p->base);
    else if (!cl->parsed)
        set_detail(en, "its instruction cannot be read (%s): the despooler quarantines it",
                   cl->error);
    else
        set_detail(en, "arrived, not judged yet: the despooler takes it at its next scan");
    return 0;
}

static void on_site(void *ctx, const ss_site_view *v)
{
    struct queue *q = ctx;
    if (!v->blocked) return;
    struct entry *en = add_entry(q, ST_BLOCKED, NULL, v->site, NULL, 0);
    if (!en) return;
    const char *key = v->blocked_key_id ? v->blocked_key_id : "?";
    en->status_id = 3303;
    set_detail(en,
               "site %s is blocked after its different key %s was presented; its data is held "
               "until 'sitespool key trust %s %s' or 'sitespool key revoke %s --site %s'",
               v->site, key, v->site, key, key, v->site);
}

static int on_quarantined(void *ctx, const ss_quarantined *qd)
{
    struct queue *q = ctx;
    const ss_claim *cl = &qd->claim;
    struct entry *en =
        add_entry(q, ST_QUARANTINED, qd->id[0] ? qd->id : qd->base, cl->parsed ? cl->in.from : NULL,
                  cl->parsed ? cl->in.name : NULL, qd->since);
    if (!en) return -1;
    en->status_id = qd->status_id;
    en->has_size = qd->pck[0] != '\0';
    en->size = qd->pck_size;
    char copy[96] = "", missing[64] = "";
    if (qd->copy[0]) snprintf(copy, sizeof copy, "second copy (.%s): ", qd->copy);
    if (!qd->ins[0] || !qd->pck[0])
        snprintf(missing, sizeof missing, "%s missing; ", !qd->ins[0] ? "instruction" : "package");
    set_detail(en, "%s%s%s", copy, missing,
               qd->text[0] ? qd->text : "quarantined without its .why file");
    return 0;
}

/* The pairs queued in one peer's outbox (an existing folder). */
static void add_outbox(struct queue *q, const char *site)
{
    ss_outbox o;
    ss_error e = {0};
    struct dirent **names = NULL;
    ss_peer peer;
    int is_peer = ss_peer_get(&q->c->db, site, &peer, &e);
    if (ss_outbox_open(&o, q->c->root, site, &e) != 0) return;
    int n = ss_outbox_list(&o, &names, &e);
    for (int i = 0; i < n && !q->failed; i++) {
        const char *ins = names[i]->d_name;
        char id[SS_ID_HEX + 1], pck[256];
        snprintf(id, sizeof id, "%.*s", SS_ID_HEX, ss_queued_id(ins));
        snprintf(pck, sizeof pck, "%.*s.pck", (int)(strlen(ins) - 4), ins);
        ss_instr in;
        bool is_signed;
        struct stat st;
        bool parsed = ss_outbox_read_instr(o.fd, ins, &in, &is_signed, &e) == 0;
        int64_t since = fstatat(o.fd, ins, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_mtime : 0;
        struct entry *en = add_entry(q, ST_OUTBOX, id, site, parsed ? in.name : NULL, since);
        if (!en) break;
        if (fstatat(o.fd, pck, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            en->has_size = true;
            en->size = (uint64_t)st.st_size;
        }
        if (is_peer != 1) {
            set_detail(en, "%s is not a peer: 'sitespool peer add %s --inbox ADDRESS' to deliver",
                       site, site);
        } else if (peer.failures) {
            en->status_id = 4501;
            set_detail(en, "sequence %" PRIu64 "; %s unreachable (%u failure(s)): %s",
                       ss_queued_seq(ins), site, peer.failures, peer.last_error);
        } else {
            en->status_id = 4504;
            set_detail(en, "sequence %" PRIu64 "; waiting for the next delivery to %s",
                       ss_queued_seq(ins), site);
        }
    }
    if (n > 0) ss_outbox_list_free(names, n);
    ss_outbox_close(&o);
}

/* Every peer folder of schedule.box/outbox (peers removed since included). */
static int add_outboxes(struct queue *q, ss_error *e)
{
    char path[PATH_MAX];
    if (ss_path(path, sizeof path, q->c->root, SS_DIR_OUTBOX) != 0)
        return ss_err(e, SS_E_TOOBIG, "site path too long");
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : ss_err_sys(e, "cannot list %s", path);
    struct dirent *de;
    while ((de = readdir(d)) != NULL && !q->failed) {
        struct stat st;
        if (de->d_name[0] == '.' || !ss_site_code_valid(de->d_name) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
            continue;
        add_outbox(q, de->d_name);
    }
    closedir(d);
    return 0;
}

static int by_state_then_age(const void *a_, const void *b_)
{
    const struct entry *a = a_, *b = b_;
    if (a->state != b->state) return a->state < b->state ? -1 : 1;
    if (a->age != b->age) return a->age > b->age ? -1 : 1; /* oldest first */
    return strcmp(a->id ? a->id : "", b->id ? b->id : "");
}

static void json_or_null(const char *s)
{
    if (s)
        ss_json_string(stdout, s);
    else
        fputs("null", stdout);
}

static void print_json(const struct queue *q)
{
    printf("[");
    for (size_t i = 0; i < q->n; i++) {
        const struct entry *en = &q->v[i];
        printf("%s{\"state\":\"%s\",\"id\":", i ? ",\n " : "", state_names[en->state]);
        json_or_null(en->id);
        printf(",\"site\":");
        json_or_null(en->site);
        printf(",\"name\":");
        json_or_null(en->name);
        if (en->has_size)
            printf(",\"size\":%" PRIu64, en->size);
        else
            printf(",\"size\":null");
        if (en->age >= 0)
            printf(",\"age_seconds\":%lld", (long long)en->age);
        else
            printf(",\"age_seconds\":null");
        if (en->status_id)
            printf(",\"status_id\":%d", en->status_id);
        else
            printf(",\"status_id\":null");
        printf(",\"detail\":");
        json_or_null(en->detail);
        printf("}");
    }
    printf("]\n");
}

static void print_text(const struct queue *q)
{
    size_t count[ST_COUNT] = {0};
    if (!q->n) {
        printf("Nothing waits: receive, rejected/ and the outboxes hold no pairs, no site is "
               "blocked.\n");
        return;
    }
    printf("%-12s %5s %6s  %-32s  %-8s %10s  %s\n", "STATE", "AGE", "STATUS", "ID", "SITE", "SIZE",
           "NAME");
    for (size_t i = 0; i < q->n; i++) {
        const struct entry *en = &q->v[i];
        char age[32], status[16] = "-", size[32] = "-";
        format_age(en->age, age, sizeof age);
        if (en->status_id) snprintf(status, sizeof status, "%d", en->status_id);
        if (en->has_size) snprintf(size, sizeof size, "%" PRIu64, en->size);
        printf("%-12s %5s %6s  %-32s  %-8s %10s  %s\n", state_names[en->state], age, status,
               en->id ? en->id : "-", en->site ? en->site : "-", size, en->name ? en->name : "-");
        if (en->detail) printf("%12s %s\n", "", en->detail);
        count[en->state]++;
    }
    printf("Total:");
    const char *sep = " ";
    for (int s = 0; s < ST_COUNT; s++) {
        if (!count[s]) continue;
        printf("%s%zu %s", sep, count[s], state_names[s]);
        sep = ", ";
    }
    printf("\n");
}

int cmd_queue(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"sent", no_argument, NULL, 's'},
                                         {"peer", required_argument, NULL, 'p'},
                                         {"all", no_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool json = false, sent = false, all = false;
    const char *peer = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'j')
            json = true;
        else if (ch == 's')
            sent = true;
        else if (ch == 'p')
            peer = optarg;
        else if (ch == 'a')
            all = true;
        else if (ch == 'h')
            return fputs(queue_usage, stdout), 0;
        else
            return cli_usage(queue_usage, "bad option for queue");
    }
    if (optind != argc) return cli_usage(queue_usage, "unexpected argument '%s'", argv[optind]);
    if ((peer || all) && !sent) return cli_usage(queue_usage, "--peer and --all go with --sent");
    if (peer && !ss_site_code_valid(peer))
        return cli_usage(queue_usage, "'%s' is not a site code (3-8 of A-Z and 0-9)", peer);
    if (sent) return queue_sent(c, peer, all, json);
    if (cli_open_short_lived(c) != 0) return 1; /* works on a full disk */
    struct queue q = {.c = c, .now = ss_now()};
    ss_error e = {0};
    int rc = ss_receive_foreach(c->root, &c->db, on_receive, &q, &e);
    if (rc == 0) rc = ss_sites_foreach(&c->db, on_site, &q, &e);
    if (rc == 0) rc = ss_quarantine_foreach(c->root, on_quarantined, &q, &e);
    if (rc == 0) rc = add_outboxes(&q, &e);
    if (rc == 0 && q.failed) rc = ss_err(&e, SS_E_NOMEM, "out of memory listing the queue");
    if (rc != 0) {
        free_queue(&q);
        return cli_fail(&e);
    }
    qsort(q.v, q.n, sizeof *q.v, by_state_then_age);
    if (json)
        print_json(&q);
    else
        print_text(&q);
    free_queue(&q);
    return 0;
}

/* ------------------------------------------------------ release, delete */

/* ID, the one argument of release and delete; 0, or an exit code. */
static int id_argument(int argc, char **argv, const char *usage, const char **id)
{
    if (cli_wants_help(argc, argv)) return fputs(usage, stdout), -1;
    if (argc != 2) return cli_usage(usage, "%s needs exactly one ID", argv[0]);
    if (!ss_id_valid(argv[1]))
        return cli_usage(usage,
                         "'%s' is not an instruction id (32 lowercase hex digits, as 'sitespool "
                         "queue' shows them)",
                         argv[1]);
    *id = argv[1];
    return 0;
}

/* "NAME from SITE" of a claim, escaped. */
static void describe_claim(const ss_claim *cl, char *out, size_t len)
{
    char name[600], site[64];
    ss_text_safe(cl->parsed ? cl->in.name : "name unknown", name, sizeof name);
    ss_text_safe(cl->parsed ? cl->in.from : "?", site, sizeof site);
    snprintf(out, len, "%s from %s", name, site);
}

int cmd_release(cli *c, int argc, char **argv)
{
    const char *id = NULL;
    int rc = id_argument(argc, argv, release_usage, &id);
    if (rc != 0) return rc < 0 ? 0 : rc;
    if (cli_open(c) != 0) return 1;
    char user[100], by[128], what[700], status[16] = "unknown";
    cli_user_name(c, user, sizeof user);
    snprintf(by, sizeof by, "user %s", user);
    ss_quarantined *q = malloc(sizeof *q);
    ss_error e = {0};
    if (!q) return ss_err(&e, SS_E_NOMEM, "out of memory"), cli_fail(&e);
    if (ss_quarantine_release(c->root, &c->db, &c->rep, id, by, q, &e) != 0) {
        free(q);
        return cli_fail(&e);
    }
    describe_claim(&q->claim, what, sizeof what);
    if (q->status_id) snprintf(status, sizeof status, "%d", q->status_id);
    printf("Released %s (%s, quarantined with status %s) into despoolr.box/receive: the package, "
           "then the instruction.\n"
           "A running despooler takes it at once (or at its next rescan; rescan_interval is "
           "%us); 'sitespool despool --once' processes it now.\n",
           id, what, status, c->conf.rescan_interval);
    free(q);
    return 0;
}

/* Deletes the quarantined copies and the held pair of id; prints what. */
static int delete_pair(cli *c, const char *id, const char *by)
{
    ss_quarantined *q = malloc(sizeof *q);
    ss_receive_pair *p = malloc(sizeof *p);
    ss_error e = {0}, he = {0};
    char what[700];
    int quarantined = -1, held = -1, rc = 0;
    if (!q || !p) rc = ss_err(&e, SS_E_NOMEM, "out of memory");
    if (rc == 0) quarantined = ss_quarantine_delete(c->root, &c->rep, id, by, q, &e);
    if (quarantined > 0) {
        describe_claim(&q->claim, what, sizeof what);
        printf("Deleted %s (%s, quarantined with status %d): %d quarantined cop%s with "
               "instruction, package and .why file (status 4429).\n",
               id, what, q->status_id, quarantined, quarantined == 1 ? "y" : "ies");
    }
    if (quarantined >= 0) held = ss_held_delete(c->root, &c->db, &c->rep, id, by, p, &he);
    if (held > 0) {
        describe_claim(&p->claim, what, sizeof what);
        printf("Deleted %s (%s, held with status %d: %s) from despoolr.box/receive "
               "(status 4429).\n",
               id, what, p->hold.status_id, p->hold.reason);
    }
    if (quarantined < 0)
        rc = cli_fail(&e);
    else if (held < 0 && quarantined == 0)
        rc = cli_fail(&he);
    else if (held < 0)
        fprintf(stderr, "sitespool: the copy in the receive inbox was kept: %s\n", he.msg);
    else if (quarantined == 0 && held == 0) {
        ss_err(&e, SS_E_NOENT,
               "%s is neither quarantined nor held: despoolr.box/rejected and the receive inbox "
               "hold no pair with this id ('sitespool queue' lists what waits)",
               id);
        rc = cli_fail(&e);
    }
    free(q);
    free(p);
    return rc;
}

int cmd_delete(cli *c, int argc, char **argv)
{
    const char *id = NULL;
    int rc = id_argument(argc, argv, delete_usage, &id);
    if (rc != 0) return rc < 0 ? 0 : rc;
    if (cli_open(c) != 0) return 1;
    char user[100], by[128];
    cli_user_name(c, user, sizeof user);
    snprintf(by, sizeof by, "user %s", user);
    return delete_pair(c, id, by);
}
