/*
 * report.h - the payloads of the two instructions a site sends about
 * itself rather than for an administrator: receipts (type=receipt: what
 * became of the instructions a peer sent) and heartbeats (type=heartbeat:
 * which keys the sending site uses and which of the receiver's keys it
 * holds).  Both are small text files, signed and carried like any pair.
 *
 *   sitespool-receipt/1 from=SS1 to=PS1 time=1795393768
 *   4f0c...c1 delivered 4400
 *   77aa...02 quarantined 4406
 *
 *   sitespool-heartbeat/1 from=SS1 to=PS1 time=1795393768
 *   key 5E2875BBB567D5E0
 *   next 0A1B2C3D4E5F6071
 *   holds 9F8E7D6C5B4A3921
 *
 * Security stance: both are read only after their signature verified with
 * a key trusted for `from`; even so the text is parsed strictly: LF-ended
 * lines, one space between words, ids of 32 lowercase hex digits, key ids
 * of 16 uppercase hex digits, site codes checked, a header whose from and
 * to must match the instruction's, at most SS_RECEIPT_LINES_MAX receipt
 * lines and SS_HEARTBEAT_HOLDS_MAX held keys.  Unknown heartbeat keywords
 * are skipped (forward compatibility), unknown receipt outcomes are not.
 * Diagnostics: SS_E_FORMAT naming the line and what was expected.
 */
#ifndef SS_REPORT_H
#define SS_REPORT_H

#include "error.h"
#include "instruction.h"

#include <stddef.h>
#include <stdint.h>

#define SS_RECEIPT_MAGIC "sitespool-receipt/1"
#define SS_HEARTBEAT_MAGIC "sitespool-heartbeat/1"
#define SS_RECEIPT_LINES_MAX 20000
#define SS_HEARTBEAT_HOLDS_MAX 16
/* The largest payload either can have (receipt lines are under 56 bytes). */
#define SS_REPORT_PAYLOAD_MAX (64 + SS_RECEIPT_LINES_MAX * 56)
#define SS_KEYID_TEXT 16

/* What became of an instruction at the receiving site. */
enum ss_fate {
    SS_FATE_DELIVERED,   /* stored (4400), or applied: a key or rollover */
    SS_FATE_DUPLICATE,   /* already delivered before (4402) */
    SS_FATE_QUARANTINED, /* moved to rejected/ with its status id */
    SS_FATE_WAITING,     /* waiting for the sender's key (4405) */
    SS_FATE_HELD,        /* held for an administrator (4420, 4416, 4426, 3303) */
};
#define SS_FATE_COUNT 5

const char *ss_fate_name(enum ss_fate f);
/* 0 and *out set, or -1 for a word that is not a fate. */
int ss_fate_parse(const char *word, enum ss_fate *out);
/* Delivered and duplicate are final: nothing a later receipt says undoes
 * them. */
static inline int ss_fate_final(enum ss_fate f)
{
    return f == SS_FATE_DELIVERED || f == SS_FATE_DUPLICATE;
}

typedef struct ss_receipt_line {
    char id[SS_ID_HEX + 1];
    enum ss_fate fate;
    int status_id; /* the status message it got there (1000-9999), 0 if none */
} ss_receipt_line;

typedef struct ss_report_head {
    char from[SS_SITE_CODE_MAX + 1];
    char to[SS_SITE_CODE_MAX + 1];
    int64_t time;
} ss_report_head;

/* Formats a receipt into a malloc'ed buffer (*out, *len). */
int ss_receipt_format(const ss_report_head *h, const ss_receipt_line *lines, size_t n, char **out,
                      size_t *len, ss_error *e);
/* Parses a receipt: the header into *h and every line through fn (which
 * may stop the parse by returning non-zero: that value is returned). */
typedef int (*ss_receipt_fn)(void *ctx, const ss_receipt_line *line);
int ss_receipt_parse(const char *text, size_t len, ss_report_head *h, ss_receipt_fn fn, void *ctx,
                     ss_error *e);

typedef struct ss_heartbeat {
    ss_report_head head;
    char key[SS_KEYID_TEXT + 1];  /* the key the sender signs with */
    char next[SS_KEYID_TEXT + 1]; /* its next key during a rollover, "" if none */
    char holds[SS_HEARTBEAT_HOLDS_MAX][SS_KEYID_TEXT + 1]; /* receiver's keys it trusts */
    size_t nholds;
} ss_heartbeat;

int ss_heartbeat_format(const ss_heartbeat *hb, char *out, size_t len, ss_error *e);
int ss_heartbeat_parse(const char *text, size_t len, ss_heartbeat *hb, ss_error *e);

#endif
