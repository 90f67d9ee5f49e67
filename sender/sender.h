/*
 * sender.h - packaging and delivery (DESIGN §7).
 *
 * Packing: one streaming pass per pair reads the input, deflates it, writes
 * the package under a temporary name in the peer's outbox
 * (inboxes/schedule.box/outbox/<PEER>/) and hashes the package bytes
 * (BLAKE2b-512).  No lock and no database transaction is held meanwhile,
 * so concurrent senders and deliverers never wait for a packer.  A pair
 * carries one file, or a bundle of the call's small files (bundle_max_files,
 * bundle_below; the package is a tar stream, instruction field files=<n>,
 * see bundle.h); what the caller is told stays per file.
 *
 * Publishing, under the outbox lock (one per peer; see outbox.h), batch by
 * batch: files still queued with the same name and content are not queued
 * again (unless `again`; a bundle is packed again without them); the pairs
 * left get consecutive sequence numbers (so the outbox, ordered by name, is
 * the order of publication) - in the same transaction, the files of the
 * sealed ones are recorded in site.db (queued_files, keystore/links.h) -
 * and their signed instructions; then pair by
 * pair the package becomes <seq>-<ID>.pck, the instruction <seq>-<ID>.ins -
 * which makes the pair queued - its 4504 row is stored (a bundle's names
 * its count, and sender.log names each of its files), and the caller is
 * told of each of its files (on_queued: `send` prints one line per file).  So what a killed `send`
 * printed, what is queued and what status 4504 lists agree; a pair queued but not yet recorded
 * exists only while its publisher holds the lock, and the next holder records it if the publisher
 * died (the lock file journals the numbers being published). The commits are flushed to disk once
 * per batch, with the folder.
 *
 * Delivery: into the peer's receive inbox, package first and instruction
 * last, each under a temporary dot-name, made durable, then renamed; then
 * removed from the outbox, and its 4500 stored (once its files are gone: on
 * a full disk a delivery frees the space it needs); the journal names the
 * pair meanwhile.  A peer that cannot be written keeps its pairs queued,
 * untouched, and is retried with backoff.  Pairs are never dropped.
 *
 * Locks are taken in one order: the outbox lock, then a short site.db write
 * transaction; no file is packed or written inside a transaction, and no
 * outbox lock is waited for while holding one.  Status messages that
 * site.db cannot take (busy, full) are kept and stored later (notices.h).
 *
 * Security stance: the secret key is held in guarded memory for the life of
 * the sender and wiped at close; inputs are read, never followed into
 * special files; delivery holds the per-peer lock so concurrent senders never
 * deliver or remove the same pair twice.
 */
#ifndef SS_SENDER_H
#define SS_SENDER_H

#include "../inboxes/instruction.h"
#include "../keystore/status.h"
#include "../keystore/store.h"
#include "notices.h"

typedef struct ss_outbox_info {
    size_t queued;  /* pairs waiting */
    int64_t oldest; /* mtime of the oldest waiting instruction, 0 if none */
} ss_outbox_info;

int ss_outbox_info_get(const char *root, const char *site, ss_outbox_info *out, ss_error *e);

typedef struct ss_send_item ss_send_item;
/* Told about each item as soon as it is queued (it->queued) or found
 * already queued (it->already_queued); name is its delivered file name.
 * The files of one bundle are told one after the other, with its id. */
typedef void (*ss_queued_fn)(void *ctx, const char *to, const ss_send_item *it, const char *name);

#define SS_SENDER_TOLD_MAX 16

typedef struct ss_sender {
    const char *root;
    const ss_conf *conf;
    ss_db *db;
    ss_reporter *rep;
    ss_seckey *sk; /* NULL when sending unsigned */
    ss_pubkey pk;
    /* Reused for every item: one zlib state and one read buffer. */
    ss_deflater deflater;
    bool deflater_ready;
    unsigned char *buf;
    bool again;     /* queue files even when the same is still queued */
    bool skip_busy; /* deliver: leave a peer whose outbox another process holds */
    ss_queued_fn on_queued;
    void *on_queued_ctx;
    ss_notices notices; /* status messages site.db did not take yet */
    /* Peers whose data went unsealed (no trusted key): said once each. */
    char unsealed_told[SS_SENDER_TOLD_MAX][SS_SITE_CODE_MAX + 1];
    unsigned unsealed_told_n;
} ss_sender;

/* Loads the site's secret key unless sign is false.  The caller may set
 * again, skip_busy and on_queued after opening. */
int ss_sender_open(ss_sender *s, const char *root, const ss_conf *conf, ss_db *db, ss_reporter *rep,
                   bool sign, ss_error *e);
/* Stores what status messages are still waiting; those site.db refuses
 * even then are written to sender.log and standard error. */
void ss_sender_close(ss_sender *s);

struct ss_send_item {
    const char *path; /* file to send; "-" for standard input; NULL: data */
    const char *data; /* in-memory payload (key and rollover instructions) */
    size_t data_len;
    const char *name; /* delivered file name; NULL: the input's base name */
    enum ss_itype type;
    char id[SS_ID_HEX + 1]; /* out: the instruction id (the queued one's if already_queued) */
    uint64_t size;          /* out: payload bytes (of this file, also in a bundle) */
    bool queued;            /* out: queued by this call */
    bool already_queued;    /* out: not queued: the same is still queued (data only) */
    unsigned bundled;       /* out: files in the bundle that carries it; 0: a pair of its own */
};

/* Packs items for peer `to` and queues them (see above).  A failure while
 * packing (an unreadable file, a full disk) leaves nothing of the call in
 * the outbox (4505); a failure while publishing (site.db cannot record)
 * stops there: the pairs before it are queued and their items were told to
 * on_queued, the failed pair and those after it are not (items found
 * already queued are told in any case). */
int ss_sender_pack(ss_sender *s, const char *to, const char *dest, ss_send_item *items, size_t n,
                   ss_error *e);

typedef struct ss_deliver_result {
    size_t delivered;
    size_t queued; /* still in the outbox afterwards */
    bool unreachable;
    bool busy; /* skip_busy: another process held the outbox; nothing was done */
} ss_deliver_result;

/* Delivers queued pairs for one peer in order, in batches.  A peer that
 * cannot be written is recorded (backoff, status 4501) and is not an error
 * of this call: the result says unreachable. */
int ss_sender_deliver(ss_sender *s, const char *site, ss_deliver_result *res, ss_error *e);

/* Stores the status messages still waiting (the daemon, between rounds). */
int ss_sender_store_notices(ss_sender *s, ss_error *e);

/* Seconds until the next retry after `failures` consecutive failures. */
unsigned ss_sender_backoff(const ss_conf *conf, unsigned failures);

#endif
