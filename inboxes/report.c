/*
 * report.c - receipt and heartbeat payloads: format and strict parse.
 * See report.h.
 */
#include "report.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const fate_names[SS_FATE_COUNT] = {"delivered", "duplicate", "quarantined",
                                                      "waiting", "held"};

const char *ss_fate_name(enum ss_fate f)
{
    return (unsigned)f < SS_FATE_COUNT ? fate_names[f] : "unknown";
}

int ss_fate_parse(const char *word, enum ss_fate *out)
{
    for (int i = 0; i < SS_FATE_COUNT; i++)
        if (!strcmp(word, fate_names[i])) return *out = (enum ss_fate)i, 0;
    return -1;
}

static bool keyid_text_valid(const char *s)
{
    if (strlen(s) != SS_KEYID_TEXT) return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'F'))) return false;
    return true;
}

/* The next LF-ended line of [*at, end) into buf (without the LF);
 * 1 when there is none left, -1 when it is too long, not LF-ended, or
 * holds a byte that is not printable ASCII. */
static int next_line(const char **at, const char *end, char *buf, size_t cap, size_t lineno,
                     ss_error *e)
{
    if (*at >= end) return 1;
    const char *nl = memchr(*at, '\n', (size_t)(end - *at));
    if (!nl) return ss_err(e, SS_E_FORMAT, "line %zu does not end with a newline", lineno);
    size_t n = (size_t)(nl - *at);
    if (n >= cap)
        return ss_err(e, SS_E_FORMAT, "line %zu is %zu bytes long; at most %zu expected", lineno, n,
                      cap - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)(*at)[i] < 0x20 || (unsigned char)(*at)[i] > 0x7e)
            return ss_err(e, SS_E_FORMAT, "line %zu holds the byte 0x%02x; printable text expected",
                          lineno, (unsigned char)(*at)[i]);
    memcpy(buf, *at, n);
    buf[n] = '\0';
    *at = nl + 1;
    return 0;
}

/* "MAGIC from=X to=Y time=N", exactly. */
static int parse_head(const char *line, const char *magic, ss_report_head *h, ss_error *e)
{
    char m[32], from[16], to[16], tail[2];
    long long t;
    int got = sscanf(line, "%31s from=%15s to=%15s time=%lld%1s", m, from, to, &t, tail);
    if (got != 4 || strcmp(m, magic) != 0)
        return ss_err(e, SS_E_FORMAT,
                      "the first line is '%.80s'; '%s from=SITE to=SITE time=N' "
                      "expected",
                      line, magic);
    if (!ss_site_code_valid(from) || !ss_site_code_valid(to) || t <= 0)
        return ss_err(e, SS_E_FORMAT, "the first line '%.80s' names no valid sites or time", line);
    char again[128];
    snprintf(again, sizeof again, "%s from=%s to=%s time=%lld", magic, from, to, t);
    if (strcmp(again, line) != 0)
        return ss_err(e, SS_E_FORMAT,
                      "the first line is '%.80s'; '%s' expected (one space "
                      "between words, no leading zeros)",
                      line, again);
    snprintf(h->from, sizeof h->from, "%s", from);
    snprintf(h->to, sizeof h->to, "%s", to);
    h->time = (int64_t)t;
    return 0;
}

static int head_format(const char *magic, const ss_report_head *h, char *out, size_t len)
{
    int n =
        snprintf(out, len, "%s from=%s to=%s time=%" PRId64 "\n", magic, h->from, h->to, h->time);
    return n < 0 || (size_t)n >= len ? -1 : n;
}

int ss_receipt_format(const ss_report_head *h, const ss_receipt_line *lines, size_t n, char **out,
                      size_t *len, ss_error *e)
{
    if (n > SS_RECEIPT_LINES_MAX)
        return ss_err(e, SS_E_TOOBIG, "%zu receipt lines; at most %d in one receipt", n,
                      SS_RECEIPT_LINES_MAX);
    size_t cap = 96 + n * 56, at = 0;
    char *buf = malloc(cap);
    if (!buf) return ss_err(e, SS_E_NOMEM, "out of memory for a receipt of %zu lines", n);
    int k = head_format(SS_RECEIPT_MAGIC, h, buf, cap);
    if (k < 0) return free(buf), ss_err(e, SS_E_TOOBIG, "receipt header too long");
    at = (size_t)k;
    for (size_t i = 0; i < n; i++) {
        k = snprintf(buf + at, cap - at, "%s %s %d\n", lines[i].id, ss_fate_name(lines[i].fate),
                     lines[i].status_id);
        if (k < 0 || (size_t)k >= cap - at)
            return free(buf), ss_err(e, SS_E_TOOBIG, "receipt line %zu too long", i + 2);
        at += (size_t)k;
    }
    *out = buf;
    *len = at;
    return 0;
}

static int parse_receipt_line(const char *line, size_t lineno, ss_receipt_line *r, ss_error *e)
{
    char id[40], fate[16], tail[2];
    int status;
    if (sscanf(line, "%39s %15s %d%1s", id, fate, &status, tail) != 3 || !ss_id_valid(id) ||
        ss_fate_parse(fate, &r->fate) != 0 || (status != 0 && (status < 1000 || status > 9999)))
        return ss_err(e, SS_E_FORMAT,
                      "line %zu is '%.80s'; '<32 hex id> delivered|duplicate|quarantined|"
                      "waiting|held <status id or 0>' expected",
                      lineno, line);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->status_id = status;
    char again[80];
    snprintf(again, sizeof again, "%s %s %d", id, fate, status);
    if (strcmp(again, line) != 0)
        return ss_err(e, SS_E_FORMAT, "line %zu is '%.80s'; '%s' expected", lineno, line, again);
    return 0;
}

int ss_receipt_parse(const char *text, size_t len, ss_report_head *h, ss_receipt_fn fn, void *ctx,
                     ss_error *e)
{
    const char *at = text, *end = text + len;
    char line[128];
    int rc = next_line(&at, end, line, sizeof line, 1, e);
    if (rc != 0) return rc > 0 ? ss_err(e, SS_E_FORMAT, "the receipt is empty") : -1;
    if (parse_head(line, SS_RECEIPT_MAGIC, h, e) != 0) return -1;
    size_t lineno = 1;
    while ((rc = next_line(&at, end, line, sizeof line, ++lineno, e)) == 0) {
        if (lineno - 1 > SS_RECEIPT_LINES_MAX)
            return ss_err(e, SS_E_FORMAT, "more than %d receipt lines", SS_RECEIPT_LINES_MAX);
        ss_receipt_line r;
        if (parse_receipt_line(line, lineno, &r, e) != 0) return -1;
        int stop = fn ? fn(ctx, &r) : 0;
        if (stop) return stop;
    }
    return rc > 0 ? 0 : -1;
}

int ss_heartbeat_format(const ss_heartbeat *hb, char *out, size_t len, ss_error *e)
{
    int k = head_format(SS_HEARTBEAT_MAGIC, &hb->head, out, len);
    size_t at = k < 0 ? len : (size_t)k;
    if (at < len) k = snprintf(out + at, len - at, "key %s\n", hb->key);
    at += k < 0 ? len : (size_t)k;
    if (at < len && hb->next[0]) {
        k = snprintf(out + at, len - at, "next %s\n", hb->next);
        at += k < 0 ? len : (size_t)k;
    }
    for (size_t i = 0; i < hb->nholds && at < len; i++) {
        k = snprintf(out + at, len - at, "holds %s\n", hb->holds[i]);
        at += k < 0 ? len : (size_t)k;
    }
    if (at >= len) return ss_err(e, SS_E_TOOBIG, "heartbeat longer than %zu bytes", len);
    return (int)at;
}

/* One "keyword value" line of a heartbeat into hb. */
static int heartbeat_line(const char *line, size_t lineno, ss_heartbeat *hb, ss_error *e)
{
    const char *sp = strchr(line, ' ');
    if (!sp || sp == line || strchr(sp + 1, ' '))
        return ss_err(e, SS_E_FORMAT, "line %zu is '%.80s'; 'keyword value' expected", lineno,
                      line);
    size_t kw = (size_t)(sp - line);
    const char *v = sp + 1;
    bool is_key = kw == 3 && !strncmp(line, "key", 3),
         is_next = kw == 4 && !strncmp(line, "next", 4),
         is_holds = kw == 5 && !strncmp(line, "holds", 5);
    if (!is_key && !is_next && !is_holds) return 0; /* a later version's: skipped */
    if (!keyid_text_valid(v))
        return ss_err(e, SS_E_FORMAT, "line %zu: '%.40s' is not a key id (16 of 0-9A-F)", lineno,
                      v);
    if (is_holds) {
        if (hb->nholds == SS_HEARTBEAT_HOLDS_MAX)
            return ss_err(e, SS_E_FORMAT, "more than %d held keys", SS_HEARTBEAT_HOLDS_MAX);
        snprintf(hb->holds[hb->nholds++], SS_KEYID_TEXT + 1, "%s", v);
        return 0;
    }
    char *slot = is_key ? hb->key : hb->next;
    if (slot[0]) return ss_err(e, SS_E_FORMAT, "line %zu: '%.5s' given twice", lineno, line);
    snprintf(slot, SS_KEYID_TEXT + 1, "%s", v);
    return 0;
}

int ss_heartbeat_parse(const char *text, size_t len, ss_heartbeat *hb, ss_error *e)
{
    memset(hb, 0, sizeof *hb);
    const char *at = text, *end = text + len;
    char line[128];
    int rc = next_line(&at, end, line, sizeof line, 1, e);
    if (rc != 0) return rc > 0 ? ss_err(e, SS_E_FORMAT, "the heartbeat is empty") : -1;
    if (parse_head(line, SS_HEARTBEAT_MAGIC, &hb->head, e) != 0) return -1;
    size_t lineno = 1;
    while ((rc = next_line(&at, end, line, sizeof line, ++lineno, e)) == 0)
        if (heartbeat_line(line, lineno, hb, e) != 0) return -1;
    if (rc < 0) return -1;
    if (!hb->key[0]) return ss_err(e, SS_E_FORMAT, "the heartbeat names no 'key' line");
    return 0;
}
