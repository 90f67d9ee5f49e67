/*
 * sender.h - packaging and delivery (DESIGN §7).
 *
 * Packing: one streaming pass per file reads the input, deflates it, writes
 * the package and hashes the package bytes (BLAKE2b-512); then the
 * instruction (a minisign signature of the package whose trusted comment
 * holds the fields) is written.  Both go into
 * inboxes/schedule.box/outbox/<PEER>/ as <seq>-<ID>.pck and .ins, so the
 * outbox keeps each peer's order by name.
 *
 * Delivery: into the peer's receive inbox, package first and instruction
 * last, each under a temporary dot-name, made durable, then renamed; then
 * removed from the outbox.  A peer that cannot be written keeps its pairs
 * queued, untouched, and is retried with backoff.  Pairs are never dropped.
 *
 * Durability is batched: a batch of files is written, flushed with one
 * syncfs(), renamed, and each directory fsynced once.
 *
 * Security stance: the secret key is held in guarded memory for the life of
 * the sender and wiped at close; inputs are read, never followed into
 * special files; delivery holds a per-peer lock so concurrent senders never
 * deliver or remove the same pair twice.
 */
#ifndef SS_SENDER_H
#define SS_SENDER_H

#include "../inboxes/instruction.h"
#include "../keystore/status.h"
#include "../keystore/store.h"

typedef struct ss_outbox_info {
    size_t queued;  /* pairs waiting */
    int64_t oldest; /* mtime of the oldest waiting instruction, 0 if none */
} ss_outbox_info;

int ss_outbox_info_get(const char *root, const char *site, ss_outbox_info *out, ss_error *e);

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
} ss_sender;

/* Loads the site's secret key unless sign is false. */
int ss_sender_open(ss_sender *s, const char *root, const ss_conf *conf, ss_db *db, ss_reporter *rep,
                   bool sign, ss_error *e);
void ss_sender_close(ss_sender *s);

typedef struct ss_send_item {
    const char *path; /* file to send; "-" for standard input; NULL: data */
    const char *data; /* in-memory payload (key and rollover instructions) */
    size_t data_len;
    const char *name; /* delivered file name; NULL: the input's base name */
    enum ss_itype type;
    char id[SS_ID_HEX + 1]; /* out: the instruction id */
    uint64_t size;          /* out: payload bytes */
} ss_send_item;

/* Packs items for peer `to` into its outbox: one database transaction and
 * one flush for all of them.  On failure nothing of the failed call stays
 * visible in the outbox. */
int ss_sender_pack(ss_sender *s, const char *to, const char *dest, ss_send_item *items, size_t n,
                   ss_error *e);

typedef struct ss_deliver_result {
    size_t delivered;
    size_t queued; /* still in the outbox afterwards */
    bool unreachable;
} ss_deliver_result;

/* Delivers queued pairs for one peer in order, in batches.  A peer that
 * cannot be written is recorded (backoff, status 4501) and is not an error
 * of this call: the result says unreachable. */
int ss_sender_deliver(ss_sender *s, const char *site, ss_deliver_result *res, ss_error *e);

/* Seconds until the next retry after `failures` consecutive failures. */
unsigned ss_sender_backoff(const ss_conf *conf, unsigned failures);

#endif
