/*
 * instruction.c - instruction fields: format and strict parse.  See
 * instruction.h.  Errors are SS_E_FIELD with the offending key named.
 */
#include "instruction.h"
#include "seal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ss_itype_name(enum ss_itype t)
{
    switch (t) {
    case SS_TYPE_KEY:
        return "key";
    case SS_TYPE_ROLLOVER:
        return "rollover";
    case SS_TYPE_RECEIPT:
        return "receipt";
    case SS_TYPE_HEARTBEAT:
        return "heartbeat";
    default:
        return "data";
    }
}

void ss_instr_new_id(char out[SS_ID_HEX + 1])
{
    unsigned char raw[16];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, SS_ID_HEX + 1, raw, sizeof raw);
}

bool ss_id_valid(const char *id)
{
    if (strlen(id) != SS_ID_HEX) return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

bool ss_file_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > SS_NAME_MAX || name[0] == '.') return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f) return false;
    return true;
}

int ss_pct_encode(const char *in, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        bool plain = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        size_t need = plain ? 1 : 3;
        if (o + need >= len) return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ss_pct_decode(const char *in, size_t in_len, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < in_len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= in_len) return -1;
            int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || o + 1 >= len) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int ss_instr_format(const ss_instr *in, char *out, size_t len)
{
    char name[SS_NAME_MAX * 3 + 1];
    if (ss_pct_encode(in->name, name, sizeof name) != 0) return -1;
    int n = snprintf(out, len,
                     SS_INSTR_MAGIC " id=%s from=%s to=%s type=%s dest=%s name=%s size=%" PRIu64
                                    " zip=%s seq=%" PRIu64 " created=%" PRId64 " expires=%" PRId64,
                     in->id, in->from, in->to, ss_itype_name(in->type), in->dest, name, in->size,
                     in->zip == SS_ZIP_ZLIB ? "zlib" : "none", in->seq, in->created, in->expires);
    if (n < 0 || (size_t)n >= len) return -1;
    if (in->files) {
        int m = snprintf(out + n, len - (size_t)n, " files=%u", in->files);
        if (m < 0 || (size_t)m >= len - (size_t)n) return -1;
        n += m;
    }
    if (in->enc[0]) {
        int m = snprintf(out + n, len - (size_t)n, " enc=%s seal=%s", in->enc, in->seal);
        if (m < 0 || (size_t)m >= len - (size_t)n) return -1;
    }
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s || strlen(s) > 20) return -1;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p)) return -1;
    if (s[0] == '0' && s[1]) return -1; /* one canonical spelling per number */
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno) return -1;
    *out = v;
    return 0;
}

enum field_bit {
    F_ID = 1 << 0,
    F_FROM = 1 << 1,
    F_TO = 1 << 2,
    F_TYPE = 1 << 3,
    F_DEST = 1 << 4,
    F_NAME = 1 << 5,
    F_SIZE = 1 << 6,
    F_ZIP = 1 << 7,
    F_SEQ = 1 << 8,
    F_CREATED = 1 << 9,
    F_EXPIRES = 1 << 10,
};
static const char *const field_names[] = {"id",      "from",  "to",  "type", "dest",
                                          "name",    "size",  "zip", "seq",  "created",
                                          "expires", "files", "enc", "seal"};
#define F_ALL ((1 << 11) - 1) /* all but files, enc and seal, which are optional */
#define F_COUNT 14
#define F_INDEX_ENC 12
#define F_INDEX_SEAL 13

static int field_index(const char *key, size_t klen)
{
    for (int i = 0; i < F_COUNT; i++)
        if (strlen(field_names[i]) == klen && !memcmp(field_names[i], key, klen)) return i;
    return -1;
}

/* A key id as sitespool prints it: 16 upper-case hex digits. */
static bool enc_valid(const char *v)
{
    if (strlen(v) != 16) return false;
    for (const char *p = v; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F'))) return false;
    return true;
}

/* A pin as sitespool writes it: 64 lower-case hex digits. */
static bool pin_valid(const char *v)
{
    if (strlen(v) != 64) return false;
    for (const char *p = v; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

static int set_field(ss_instr *in, int idx, const char *v, ss_error *e)
{
    uint64_t u;
    if (idx == F_INDEX_SEAL) {
        if (!pin_valid(v))
            return ss_err(e, SS_E_FIELD,
                          "seal '%.24s' is not a sealed header's pin (64 lower-case hex digits)",
                          v);
        memcpy(in->seal, v, sizeof in->seal);
        return 0;
    }
    if (idx == F_INDEX_ENC) {
        if (!enc_valid(v))
            return ss_err(e, SS_E_FIELD,
                          "enc '%.24s' is not a key id (16 upper-case hex digits, like "
                          "0123456789ABCDEF)",
                          v);
        memcpy(in->enc, v, sizeof in->enc);
        return 0;
    }
    switch (1 << idx) {
    case F_ID:
        if (!ss_id_valid(v)) return ss_err(e, SS_E_FIELD, "id must be 32 lowercase hex digits");
        memcpy(in->id, v, SS_ID_HEX + 1);
        return 0;
    case F_FROM:
    case F_TO:
        if (!ss_site_code_valid(v))
            return ss_err(e, SS_E_FIELD, "%s '%.16s' is not a site code (3-8 of A-Z0-9)",
                          field_names[idx], v);
        strcpy(idx == 1 ? in->from : in->to, v);
        return 0;
    case F_TYPE:
        if (!strcmp(v, "data"))
            in->type = SS_TYPE_DATA;
        else if (!strcmp(v, "key"))
            in->type = SS_TYPE_KEY;
        else if (!strcmp(v, "rollover"))
            in->type = SS_TYPE_ROLLOVER;
        else if (!strcmp(v, "receipt"))
            in->type = SS_TYPE_RECEIPT;
        else if (!strcmp(v, "heartbeat"))
            in->type = SS_TYPE_HEARTBEAT;
        else
            return ss_err(e, SS_E_FIELD,
                          "type '%.16s' is not data, key, rollover, receipt or heartbeat", v);
        return 0;
    case F_DEST:
        if (!ss_dest_name_valid(v))
            return ss_err(e, SS_E_FIELD, "dest '%.40s' is not an inbox name like replmgr.box", v);
        strcpy(in->dest, v);
        return 0;
    case F_NAME:
        if (!ss_file_name_valid(v))
            return ss_err(e, SS_E_FIELD,
                          "name is not a plain file name (empty, '/', leading '.', "
                          "control characters or longer than 255 bytes)");
        strcpy(in->name, v);
        return 0;
    case F_ZIP:
        if (!strcmp(v, "zlib"))
            in->zip = SS_ZIP_ZLIB;
        else if (!strcmp(v, "none"))
            in->zip = SS_ZIP_NONE;
        else
            return ss_err(e, SS_E_FIELD, "zip '%.16s' is not zlib or none", v);
        return 0;
    default:
        if (parse_u64(v, &u) != 0)
            return ss_err(e, SS_E_FIELD, "%s '%.24s' is not a number", field_names[idx], v);
        /* site.db stores signed 64-bit integers: nothing larger is taken. */
        if (u > INT64_MAX)
            return ss_err(e, SS_E_FIELD, "%s %.24s is out of range (at most %" PRId64 ")",
                          field_names[idx], v, INT64_MAX);
        if (idx == 11) {
            if (u < 1 || u > SS_BUNDLE_FILES_MAX)
                return ss_err(e, SS_E_FIELD, "files %.24s is out of range (1 to %d)", v,
                              SS_BUNDLE_FILES_MAX);
            in->files = (unsigned)u;
        } else if (idx == 6)
            in->size = u;
        else if (idx == 8)
            in->seq = u;
        else if (idx == 9)
            in->created = (int64_t)u;
        else
            in->expires = (int64_t)u;
        return 0;
    }
}

/* A sealed instruction (enc=) shows nothing of what it carries: the name,
 * compression and file count travel inside the sealed package. */
static int check_sealed(const ss_instr *in, ss_error *e)
{
    if (!in->enc[0] && in->seal[0])
        return ss_err(e, SS_E_FIELD,
                      "seal= (a sealed header's pin) is given without enc= (the key it is "
                      "sealed to)");
    if (!in->enc[0]) return 0;
    if (!in->seal[0])
        return ss_err(e, SS_E_FIELD,
                      "a sealed instruction (enc=%s) must carry seal=, the pin of its sealed "
                      "header, which its signature covers",
                      in->enc);
    if (strcmp(in->name, SS_SEALED_NAME) != 0)
        return ss_err(e, SS_E_FIELD,
                      "a sealed instruction (enc=%s) must say name=sealed, not name=%.64s: the "
                      "real name travels inside the package",
                      in->enc, in->name);
    if (in->zip != SS_ZIP_NONE)
        return ss_err(e, SS_E_FIELD,
                      "a sealed instruction (enc=%s) must say zip=none, not zip=%s: the "
                      "compression is inside the sealed package",
                      in->enc, "zlib");
    if (in->files)
        return ss_err(e, SS_E_FIELD,
                      "a sealed instruction (enc=%s) must not have files= (files=%u given): the "
                      "number of files travels inside the package",
                      in->enc, in->files);
    return 0;
}

int ss_instr_parse(ss_instr *in, const char *text, ss_error *e)
{
    memset(in, 0, sizeof *in);
    size_t mlen = strlen(SS_INSTR_MAGIC);
    if (strncmp(text, SS_INSTR_MAGIC, mlen) != 0 || (text[mlen] != ' ' && text[mlen] != '\0'))
        return ss_err(e, SS_E_FIELD,
                      "the instruction does not start with '" SS_INSTR_MAGIC
                      "' (not a sitespool instruction, or a newer version)");
    unsigned seen = 0;
    const char *p = text + mlen;
    while (*p) {
        if (*p != ' ' || p[1] == ' ' || p[1] == '\0')
            return ss_err(e, SS_E_FIELD, "fields must be separated by exactly one space");
        p++;
        size_t tok = strcspn(p, " ");
        const char *eq = memchr(p, '=', tok);
        if (!eq || eq == p)
            return ss_err(e, SS_E_FIELD, "'%.*s' is not key=value", (int)(tok > 40 ? 40 : tok), p);
        for (const char *k = p; k < eq; k++)
            if (!islower((unsigned char)*k) && *k != '_' && !isdigit((unsigned char)*k))
                return ss_err(e, SS_E_FIELD, "bad field key '%.*s'", (int)(eq - p), p);
        int idx = field_index(p, (size_t)(eq - p));
        if (idx >= 0) {
            if (seen & (1u << idx))
                return ss_err(e, SS_E_FIELD, "field '%s' appears twice", field_names[idx]);
            char value[SS_NAME_MAX + 1];
            if (ss_pct_decode(eq + 1, tok - (size_t)(eq + 1 - p), value, sizeof value) != 0)
                return ss_err(e, SS_E_FIELD,
                              "field '%s' has a bad percent-encoding or is too "
                              "long",
                              field_names[idx]);
            if (set_field(in, idx, value, e) != 0) return -1;
            seen |= 1u << idx;
        } /* unknown keys are ignored: forward compatibility */
        p += tok;
    }
    if ((seen & F_ALL) != F_ALL) {
        for (int i = 0; i < 11; i++)
            if (!(seen & (1u << i)))
                return ss_err(e, SS_E_FIELD, "required field '%s' is missing", field_names[i]);
    }
    if (in->expires < in->created) return ss_err(e, SS_E_FIELD, "expires is before created");
    if (in->files && in->type != SS_TYPE_DATA)
        return ss_err(e, SS_E_FIELD, "files is only for type=data, not type=%s",
                      ss_itype_name(in->type));
    return check_sealed(in, e);
}
