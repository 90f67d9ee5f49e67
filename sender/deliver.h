/*
 * deliver.h - what deliver.c (local inboxes, the order of addresses) and
 * deliver_sftp.c (SFTP inboxes) share.  Internal to the sender library.
 */
#ifndef SS_DELIVER_H
#define SS_DELIVER_H

#include "../inboxes/fileio.h"
#include "address.h"
#include "outbox.h"
#include "remote.h"
#include "sender.h"

struct wire_pair {
    char queued[128]; /* outbox name without extension: <seq>-<id> */
    ss_atomic pck, ins;
};

/* A delivery in progress: to whom, through which address, how. */
typedef struct delivery {
    ss_sender *s;
    const ss_peer *peer;
    ss_outbox *o;
    const ss_address *addr; /* the address in use */
    int peer_fd;            /* a local address: its folder */
    int kept_fd;            /* copies for send --resend (kept.h), -1: none */
    bool same_fs;
    ss_remote *remote; /* an SFTP address: the connection */
    bool db_refused;   /* site.db refused a row: the others wait for the batch end */
    bool journal_off;  /* the lock file cannot be written (a full disk) */
    size_t delivered;  /* pairs that left the outbox */
} delivery;

/* The journal names the pair whose files are about to leave the outbox. */
void ss_deliver_journal_pair(delivery *d, const struct wire_pair *p);
/* The pair's files are durable at the peer: out of the outbox, 4500. */
void ss_deliver_remove_delivered(delivery *d, struct wire_pair *p);
/* An instruction whose package is neither queued nor at the peer:
 * moved to schedule.box/broken/<SITE>/ (4506). */
void ss_deliver_set_aside(ss_sender *s, int outbox_fd, const char *name, const char *site);

/* One batch to an SFTP address (deliver_sftp.c). */
int ss_deliver_batch_sftp(delivery *d, struct wire_pair *pairs, size_t n, ss_error *e);

#endif
