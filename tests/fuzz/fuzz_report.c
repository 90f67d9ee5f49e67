/*
 * fuzz_report.c - libFuzzer target: the receipt and heartbeat payload
 * parsers (ss_receipt_parse, ss_heartbeat_parse, inboxes/report.h), what a
 * despooler reads from a peer after the signature verified.  Build and
 * run: see README.md here.
 *
 * Input: one selector byte, then the payload bytes exactly (no terminating
 * NUL):
 *   selector & 1 == 0  receipt payload (type=receipt)
 *                  1   heartbeat payload (type=heartbeat)
 *   selector & 0x80    receipts: the line callback stops the parse at the
 *                      line given by bits 1-6 (returning 7)
 * Seeds: corpus/report (receipts and heartbeats in the format's examples,
 * with every fate, a rollover's next key, unknown keywords).
 *
 * Invariants: an accepted receipt has a valid header (site codes, time >
 * 0) and lines each with a 32-hex id, a known fate and a status id of 0 or
 * 1000-9999, at most SS_RECEIPT_LINES_MAX of them, and formatting what was
 * parsed gives the input back byte for byte (the parser accepts only the
 * canonical form); a stopped parse returns the callback's value after
 * exactly that many lines.  An accepted heartbeat has a valid header, a key
 * id, a next key id or none, at most SS_HEARTBEAT_HOLDS_MAX held key ids,
 * and format -> parse gives the same heartbeat.
 */
#include "../../inboxes/report.h"
#include "../../inboxes/site.h"
#include "fuzz_common.h"

static bool keyid_ok(const char *s)
{
    if (strlen(s) != SS_KEYID_TEXT) return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'F'))) return false;
    return true;
}

static void check_head(const ss_report_head *h)
{
    FUZZ_CHECK(ss_site_code_valid(h->from), "from '%s' accepted", h->from);
    FUZZ_CHECK(ss_site_code_valid(h->to), "to '%s' accepted", h->to);
    FUZZ_CHECK(h->time > 0, "time %lld accepted", (long long)h->time);
}

struct lines {
    ss_receipt_line *v;
    size_t n, cap;
    size_t stop_at; /* 0: never stop */
};

static int collect(void *ctx, const ss_receipt_line *l)
{
    struct lines *c = ctx;
    FUZZ_CHECK(ss_id_valid(l->id), "id '%s' accepted", l->id);
    FUZZ_CHECK((unsigned)l->fate < SS_FATE_COUNT, "fate %d accepted", (int)l->fate);
    FUZZ_CHECK(l->status_id == 0 || (l->status_id >= 1000 && l->status_id <= 9999),
               "status id %d accepted", l->status_id);
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->v = realloc(c->v, c->cap * sizeof *c->v);
        if (!c->v) abort();
    }
    c->v[c->n++] = *l;
    return c->stop_at && c->n == c->stop_at ? 7 : 0;
}

static void fuzz_receipt(const char *text, size_t len, unsigned sel)
{
    struct lines c = {0};
    if (sel & 0x80) c.stop_at = ((sel >> 1) & 0x3f) + 1;
    ss_report_head h;
    ss_error e = {0};
    int rc = ss_receipt_parse(text, len, &h, collect, &c, &e);
    FUZZ_CHECK(rc == 0 || rc == -1 || rc == 7, "parse returned %d", rc);
    if (rc == -1) FUZZ_CHECK(e.code == SS_E_FORMAT && e.msg[0], "refused without a message");
    if (rc == 7) FUZZ_CHECK(c.stop_at && c.n == c.stop_at, "stopped after %zu lines", c.n);
    if (rc == 0) {
        check_head(&h);
        FUZZ_CHECK(c.n <= SS_RECEIPT_LINES_MAX, "%zu lines accepted", c.n);
        FUZZ_CHECK(!c.stop_at || c.n < c.stop_at, "not stopped at line %zu", c.stop_at);
        char *again = NULL;
        size_t again_len = 0;
        FUZZ_CHECK(ss_receipt_format(&h, c.v, c.n, &again, &again_len, &e) == 0,
                   "cannot format what was parsed: %s", e.msg);
        FUZZ_CHECK(again_len == len && !memcmp(again, text, len),
                   "format(parse(x)) != x (%zu vs %zu bytes)", again_len, len);
        free(again);
    }
    free(c.v);
}

static void fuzz_heartbeat(const char *text, size_t len)
{
    ss_heartbeat hb, back;
    ss_error e = {0};
    if (ss_heartbeat_parse(text, len, &hb, &e) != 0) {
        FUZZ_CHECK(e.code == SS_E_FORMAT && e.msg[0], "refused without a message");
        return;
    }
    check_head(&hb.head);
    FUZZ_CHECK(keyid_ok(hb.key), "key '%s' accepted", hb.key);
    FUZZ_CHECK(!hb.next[0] || keyid_ok(hb.next), "next '%s' accepted", hb.next);
    FUZZ_CHECK(hb.nholds <= SS_HEARTBEAT_HOLDS_MAX, "%zu held keys accepted", hb.nholds);
    for (size_t i = 0; i < hb.nholds; i++)
        FUZZ_CHECK(keyid_ok(hb.holds[i]), "held key '%s' accepted", hb.holds[i]);
    char out[SS_REPORT_PAYLOAD_MAX < 4096 ? SS_REPORT_PAYLOAD_MAX : 4096];
    int n = ss_heartbeat_format(&hb, out, sizeof out, &e);
    FUZZ_CHECK(n > 0, "cannot format what was parsed: %s", e.msg);
    FUZZ_CHECK(ss_heartbeat_parse(out, (size_t)n, &back, &e) == 0,
               "formatted heartbeat refused: %s", e.msg);
    FUZZ_CHECK(!memcmp(&hb, &back, sizeof hb), "heartbeat changed in a round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned sel = data[0];
    size_t len = size - 1;
    /* Exactly len bytes on the heap: any read past the end is caught. */
    char *text = malloc(len ? len : 1);
    if (!text) abort();
    memcpy(text, data + 1, len);
    if (sel & 1)
        fuzz_heartbeat(text, len);
    else
        fuzz_receipt(text, len, sel);
    free(text);
    return 0;
}
