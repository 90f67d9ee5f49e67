/*
 * recover.c - finishing an interrupted publication.  See recover.h.
 */
#include "recover.h"

#include "../keystore/links.h"
#include "../inboxes/fileio.h"
#include "bundle.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Clocks may be stepped back a little between the publisher and us. */
#define CLOCK_MARGIN_MS (10 * 60 * 1000)

struct row_search {
    char prefix[SS_ID_HEX + 4]; /* ["<id>" */
    bool found;
};

static void match_row(void *ctx, const ss_status_row *row)
{
    struct row_search *rs = ctx;
    if (!strncmp(row->istr_json, rs->prefix, strlen(rs->prefix))) rs->found = true;
}

/* 1 when a row msg_id for instruction id was stored since since_ms, 0 if
 * not, -1 on error. */
static int has_row(ss_db *db, int msg_id, const char *id, int64_t since_ms, ss_error *e)
{
    struct row_search rs = {.found = false};
    snprintf(rs.prefix, sizeof rs.prefix, "[\"%s\"", id);
    int64_t after = 0;
    if (ss_status_query(db, &after, since_ms - CLOCK_MARGIN_MS, msg_id,
                        ss_component_name(SS_COMP_SENDER), 0, match_row, &rs, e) != 0)
        return -1;
    return rs.found ? 1 : 0;
}

/* The id in a queued name <seq>-<ID>[.ext]. */
static void queued_id(const char *name, char id[SS_ID_HEX + 1])
{
    snprintf(id, SS_ID_HEX + 1, "%.*s", SS_ID_HEX, ss_queued_id(name));
}

/* ------------------------------------------------------------ publishing */

/* The files of a bundle recorded late, named in sender.log as a send
 * names them when it records the bundle itself. */
struct late_files {
    ss_log *log;
    const ss_instr *in;
    const char *site;
};

static int log_late_file(void *ctx, const ss_bundle_entry *m, ss_error *e)
{
    (void)e;
    const struct late_files *lf = ctx;
    ss_logf(lf->log, "Queued %s (%" PRIu64 " bytes) for %s in instruction %s, a bundle of %u files",
            m->name, m->size, lf->site, lf->in->id, lf->in->files);
    return 0; /* names only: the data is skipped */
}

static void log_bundle_files(ss_sender *s, ss_outbox *o, const char *site, const char *ins,
                             const ss_instr *in)
{
    static const ss_bundle_visitor v = {log_late_file, NULL, NULL};
    struct late_files lf = {ss_reporter_log(s->rep, SS_COMP_SENDER), in, site};
    char pck[NAME_MAX + 1];
    ss_error e;
    snprintf(pck, sizeof pck, "%.*s.pck", (int)(strlen(ins) - 4), ins);
    if (ss_bundle_read(o->fd, pck, in->zip, in->size, &v, &lf, &e) < 0)
        ss_logf(lf.log, "Could not name the files of instruction %s for %s: %s", in->id, site,
                e.msg);
}

/* A sealed pair's files, from site.db (queued_files, keystore/links.h:
 * recorded before the pair was published): its real fields, and
 * sender.log names each file of a bundle. */
struct sealed_late {
    ss_instr *in;
    ss_log *log;
    const char *site;
};

static int sealed_late_file(void *ctx, const ss_queued_file *f)
{
    struct sealed_late *sl = ctx;
    if (f->files == 0) {
        snprintf(sl->in->name, sizeof sl->in->name, "%s", f->name);
        sl->in->size = f->size;
    } else if (sl->log)
        ss_logf(sl->log,
                "Queued %s (%" PRIu64 " bytes) for %s in instruction %s, a bundle of %u files",
                f->name, f->size, sl->site, sl->in->id, f->files);
    sl->in->files = f->files;
    return 0;
}

/* The real fields of a sealed pair (its instruction says name=sealed);
 * without its rows the pair is named by its instruction alone. */
static void sealed_fields(ss_sender *s, const char *site, ss_instr *in)
{
    struct sealed_late sl = {in, NULL, NULL};
    ss_error ignored;
    (void)ss_queued_files_each(s->db, site, in->id, sealed_late_file, &sl, &ignored);
    if (in->files) ss_bundle_name(in->files, in->name, sizeof in->name);
}

static void log_sealed_files(ss_sender *s, const char *site, ss_instr *in)
{
    struct sealed_late sl = {in, ss_reporter_log(s->rep, SS_COMP_SENDER), site};
    ss_error ignored;
    (void)ss_queued_files_each(s->db, site, in->id, sealed_late_file, &sl, &ignored);
}

/* Queues the rows of one pair queued without them. */
static int record_queued_late(ss_sender *s, ss_outbox *o, const char *site, const char *ins,
                              ss_error *e)
{
    ss_instr in;
    bool is_signed;
    if (ss_outbox_read_instr(o->fd, ins, &in, &is_signed, e) != 0) return -1;
    if (in.enc[0]) sealed_fields(s, site, &in);
    char size[32], shown[SS_NAME_MAX + 32];
    snprintf(size, sizeof size, "%" PRIu64, in.size);
    ss_bundle_describe(&in, shown, sizeof shown);
    if (ss_notices_add(&s->notices, e, 4504, in.id, shown, size, site, NULL) != 0 ||
        (!is_signed && ss_notices_add(&s->notices, e, 4503, in.id, site, NULL) != 0))
        return -1;
    ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
            "Recorded %s (instruction %s) for %s: it was queued by a send that was stopped "
            "before it could record it",
            shown, in.id, site);
    if (in.files && in.enc[0])
        log_sealed_files(s, site, &in);
    else if (in.files)
        log_bundle_files(s, o, site, ins, &in);
    return 0;
}

/* A package of the publication whose instruction was never queued. */
static void remove_unqueued_package(ss_sender *s, ss_outbox *o, const char *site, const char *pck)
{
    char ins[NAME_MAX + 1];
    snprintf(ins, sizeof ins, "%.*s.ins", (int)(strlen(pck) - 4), pck);
    if (faccessat(o->fd, ins, F_OK, AT_SYMLINK_NOFOLLOW) != 0 && unlinkat(o->fd, pck, 0) == 0)
        ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
                "Removed %s from the outbox of %s: its send was stopped before the instruction "
                "was queued",
                pck, site);
}

static bool in_range(const ss_journal *j, const char *name)
{
    uint64_t seq = ss_queued_seq(name);
    return seq >= j->first_seq && seq <= j->last_seq;
}

/* Walks the outbox for the publication's files. */
static int recover_publication(ss_sender *s, ss_outbox *o, const char *site, const ss_journal *j,
                               ss_error *e)
{
    DIR *dir = fdopendir(dup(o->fd));
    if (!dir) return ss_err_sys(e, "cannot read the outbox %s", o->path);
    rewinddir(dir); /* a dup() shares the read position of earlier walks */
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (ss_name_is_temporary(name) || len < 5 || !in_range(j, name)) continue;
        if (!strcmp(name + len - 4, ".pck")) {
            remove_unqueued_package(s, o, site, name);
        } else if (!strcmp(name + len - 4, ".ins")) {
            char id[SS_ID_HEX + 1];
            queued_id(name, id);
            int found = has_row(s->db, 4504, id, j->since_ms, e);
            if (found < 0) rc = -1;
            if (found == 0) rc = record_queued_late(s, o, site, name, e);
        }
    }
    closedir(dir);
    return rc;
}

/* ------------------------------------------------------------- delivering */

/* The pair left the outbox (delivered) but its 4500 may be missing. */
static int recover_delivery(ss_sender *s, ss_outbox *o, const char *site, const ss_journal *j,
                            ss_error *e)
{
    char ins[80], id[SS_ID_HEX + 1];
    snprintf(ins, sizeof ins, "%s.ins", j->queued);
    if (faccessat(o->fd, ins, F_OK, AT_SYMLINK_NOFOLLOW) == 0) return 0; /* still queued */
    queued_id(j->queued, id);
    int kind = ss_sent_delivered(s->db, id, ss_now(), e);
    if (kind < 0) return -1;
    if (kind == SS_SENT_REPORT) return 0; /* a receipt or heartbeat: no 4500 */
    int found = has_row(s->db, 4500, id, j->since_ms, e);
    if (found != 0) return found < 0 ? -1 : 0;
    ss_peer peer;
    if (ss_peer_get(s->db, site, &peer, e) < 0) return -1;
    char where[PATH_MAX + 80];
    snprintf(where, sizeof where, "%s/%s.ins", peer.inbox, id);
    if (ss_notices_add(&s->notices, e, 4500, id, where, site, NULL) != 0) return -1;
    ss_logf(ss_reporter_log(s->rep, SS_COMP_SENDER),
            "Recorded the delivery of instruction %s to %s: it was delivered by a sender that "
            "was stopped before it could record it",
            id, site);
    return 0;
}

int ss_sender_recover(ss_sender *s, ss_outbox *o, const char *site, ss_error *e)
{
    ss_journal j;
    ss_outbox_journal_get(o, &j);
    if (j.kind == SS_JOURNAL_IDLE) return 0;
    int rc = j.kind == SS_JOURNAL_PUBLISHING ? recover_publication(s, o, site, &j, e)
                                             : recover_delivery(s, o, site, &j, e);
    if (rc != 0 || ss_notices_store(&s->notices, s->db, s->rep, NULL, NULL, e) != 0) return -1;
    (void)ss_fsync_dirfd(o->fd, NULL);
    return ss_outbox_journal_set(o, NULL, e);
}
