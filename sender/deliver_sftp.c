/*
 * deliver_sftp.c - one batch of pairs into a peer's receive inbox over
 * SFTP, with the guarantees of a local delivery.
 *
 * Order: every file of the batch is uploaded under a dot-name
 * (.<ID>.pck.<random>.tmp, which despoolers ignore and tidy), written,
 * fsynced and closed in one pipelined pass; then the packages are renamed
 * to their names, then the instructions, never replacing a file (SFTP's
 * rename, which OpenSSH performs with link() and unlink()); then the folder
 * is fsynced through a handle on it; only then do the pairs leave the
 * outbox, each with its 4500.  A package already at the peer (a delivery
 * cut between its package and its instruction) is not sent again; a name
 * already taken at the peer by the same pair counts as delivered (the
 * peer's ledger keeps delivery exactly once).
 *
 * Diagnostics: a failure names the remote path and the server's answer;
 * the uploads of a failed batch are removed from the peer when the
 * connection still allows it (else the peer's despooler tidies them).
 */
#include "deliver.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The remote names of one pair. */
struct remote_pair {
    char pck[SS_PEER_ADDRESS_MAX + 80], ins[SS_PEER_ADDRESS_MAX + 80];
    char pck_tmp[SS_PEER_ADDRESS_MAX + 80], ins_tmp[SS_PEER_ADDRESS_MAX + 80];
    int pck_fd, ins_fd;
    bool send_pck;  /* the package still has to go */
    bool skip;      /* set aside (its package is lost) */
    bool pck_there; /* the package is at its final name */
    bool ins_there;
};

struct batch {
    delivery *d;
    struct wire_pair *pairs;
    struct remote_pair *rp;
    size_t n;
};

static void remote_names(const char *dir, const char *id, struct remote_pair *r)
{
    uint32_t tag = randombytes_random();
    snprintf(r->pck, sizeof r->pck, "%s/%s.pck", dir, id);
    snprintf(r->ins, sizeof r->ins, "%s/%s.ins", dir, id);
    snprintf(r->pck_tmp, sizeof r->pck_tmp, "%s/.%s.pck.%08x.tmp", dir, id, tag);
    snprintf(r->ins_tmp, sizeof r->ins_tmp, "%s/.%s.ins.%08x.tmp", dir, id, tag);
}

static int open_queued(int outbox_fd, const char *queued, const char *ext, int *fd, ss_error *e)
{
    char name[160];
    snprintf(name, sizeof name, "%s.%s", queued, ext);
    *fd = ss_open_regular(outbox_fd, name, 0, NULL, e);
    return *fd < 0 ? -1 : 0;
}

static uint64_t size_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Opens the outbox files; a pair whose package left the outbox is looked
 * up at the peer (lstat, pipelined) and set aside when it is not there. */
static int open_sources(struct batch *b, ss_error *e)
{
    delivery *d = b->d;
    ss_sftp_op *look = calloc(b->n, sizeof *look);
    size_t *who = calloc(b->n, sizeof *who);
    size_t nlook = 0;
    int rc = look && who ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        struct remote_pair *r = &b->rp[i];
        remote_names(d->addr->path, ss_queued_id(b->pairs[i].queued), r);
        r->pck_fd = r->ins_fd = -1;
        rc = open_queued(d->o->fd, b->pairs[i].queued, "ins", &r->ins_fd, e);
        ss_error missing;
        r->send_pck =
            rc == 0 && open_queued(d->o->fd, b->pairs[i].queued, "pck", &r->pck_fd, &missing) == 0;
        if (rc == 0 && !r->send_pck) {
            look[nlook].from = r->pck;
            who[nlook++] = i;
        }
    }
    if (rc == 0 && nlook) rc = ss_sftp_ops(d->remote->sftp, SS_SFTP_LSTAT, look, nlook, e);
    for (size_t k = 0; k < nlook && rc == 0; k++) {
        struct remote_pair *r = &b->rp[who[k]];
        if (look[k].status != SS_FX_OK) {
            rc = ss_err(e, SS_E_IO, "cannot look up %s at %s: %s", look[k].from,
                        d->addr->host_label, look[k].error);
            break;
        }
        r->pck_there = look[k].exists;
        if (!r->pck_there) {
            char ins[160];
            snprintf(ins, sizeof ins, "%s.ins", b->pairs[who[k]].queued);
            r->skip = true;
            ss_deliver_set_aside(d->s, d->o->fd, ins, d->peer->site);
        }
    }
    free(look);
    free(who);
    return rc;
}

static void close_sources(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->rp[i].pck_fd >= 0) close(b->rp[i].pck_fd);
        if (b->rp[i].ins_fd >= 0) close(b->rp[i].ins_fd);
        b->rp[i].pck_fd = b->rp[i].ins_fd = -1;
    }
}

/* Every file of the batch under its temporary name, durable at the peer. */
static int upload(struct batch *b, ss_sftp_put *puts, size_t *nput, ss_error *e)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) {
        struct remote_pair *r = &b->rp[i];
        if (r->skip) continue;
        if (r->send_pck)
            puts[n++] =
                (ss_sftp_put){.fd = r->pck_fd, .size = size_of(r->pck_fd), .path = r->pck_tmp};
        puts[n++] = (ss_sftp_put){.fd = r->ins_fd, .size = size_of(r->ins_fd), .path = r->ins_tmp};
    }
    *nput = n;
    return ss_sftp_put_files(b->d->remote->sftp, puts, n, e);
}

/* Removes what a failed batch left at the peer under temporary names. */
static void remove_uploads(ss_sftp *c, ss_sftp_put *puts, size_t n)
{
    ss_sftp_op *ops = calloc(n ? n : 1, sizeof *ops);
    size_t k = 0;
    for (size_t i = 0; ops && i < n; i++)
        if (puts[i].created) ops[k++].from = puts[i].path;
    ss_error ignored;
    if (k && ss_sftp_alive(c)) (void)ss_sftp_ops(c, SS_SFTP_REMOVE, ops, k, &ignored);
    free(ops);
}

/* Renames one kind of file (packages, or instructions) into place.  A
 * final name that exists already is checked with lstat: the same pair
 * delivered before counts as there. */
static int publish(struct batch *b, bool packages, ss_error *e)
{
    ss_sftp *c = b->d->remote->sftp;
    ss_sftp_op *ops = calloc(b->n, sizeof *ops);
    size_t *who = calloc(b->n, sizeof *who);
    if (!ops || !who) {
        free(ops);
        free(who);
        return ss_err(e, SS_E_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        struct remote_pair *r = &b->rp[i];
        if (r->skip || (packages ? !r->send_pck : !r->pck_there)) continue;
        ops[k] = (ss_sftp_op){.from = packages ? r->pck_tmp : r->ins_tmp,
                              .to = packages ? r->pck : r->ins};
        who[k++] = i;
    }
    int rc = k ? ss_sftp_ops(c, SS_SFTP_RENAME, ops, k, e) : 0;
    size_t nretry = 0;
    for (size_t j = 0; j < k && rc == 0; j++) {
        struct remote_pair *r = &b->rp[who[j]];
        bool *there = packages ? &r->pck_there : &r->ins_there;
        *there = ops[j].status == SS_FX_OK;
        if (!*there) { /* maybe taken: look, then drop our copy */
            ops[nretry] = (ss_sftp_op){.from = ops[j].to, .to = ops[j].from};
            who[nretry++] = who[j];
        }
    }
    if (rc == 0 && nretry) rc = ss_sftp_ops(c, SS_SFTP_LSTAT, ops, nretry, e);
    for (size_t j = 0; j < nretry && rc == 0; j++) {
        struct remote_pair *r = &b->rp[who[j]];
        if (ops[j].status == SS_FX_OK && ops[j].exists) {
            *(packages ? &r->pck_there : &r->ins_there) = true;
            ops[j].from = ops[j].to; /* our temporary copy goes */
        } else {
            rc = ss_err(e, SS_E_IO, "cannot rename %s into place at %s", ops[j].to,
                        b->d->addr->host_label);
        }
    }
    if (rc == 0 && nretry) rc = ss_sftp_ops(c, SS_SFTP_REMOVE, ops, nretry, e);
    free(ops);
    free(who);
    return rc;
}

int ss_deliver_batch_sftp(delivery *d, struct wire_pair *pairs, size_t n, ss_error *e)
{
    struct batch b = {d, pairs, calloc(n, sizeof(struct remote_pair)), n};
    ss_sftp_put *puts = calloc(2 * n, sizeof *puts);
    size_t nput = 0;
    int rc = b.rp && puts ? 0 : ss_err(e, SS_E_NOMEM, "out of memory");
    if (rc == 0) rc = open_sources(&b, e);
    if (rc == 0) rc = upload(&b, puts, &nput, e);
    close_sources(&b);
    if (rc == 0) rc = publish(&b, true, e);
    if (rc == 0) rc = publish(&b, false, e);
    if (rc == 0 && ss_sftp_can_fsync(d->remote->sftp))
        rc = ss_sftp_sync_dir(d->remote->sftp, d->addr->path, e);
    if (rc != 0) {
        remove_uploads(d->remote->sftp, puts, nput);
    } else {
        for (size_t i = 0; i < n; i++)
            if (b.rp[i].ins_there) ss_deliver_remove_delivered(d, &pairs[i]);
    }
    free(puts);
    free(b.rp);
    return rc;
}
