/*
 * test_inboxes.c - CUnit suite for the inboxes library: codec, instruction
 * fields, site.conf, atomic files, logs.
 */
#include "testutil.h"
#include "../../inboxes/codec.h"
#include "../../inboxes/fileio.h"
#include "../../inboxes/instruction.h"
#include "../../inboxes/report.h"
#include "../../inboxes/seal.h"
#include "../../inboxes/text.h"
#include "../../inboxes/log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct membuf {
    unsigned char *data;
    size_t len, cap;
};

static int mem_sink(void *ctx, const void *buf, size_t len, ss_error *e)
{
    (void)e;
    struct membuf *m = ctx;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2;
        m->data = realloc(m->data, m->cap);
    }
    memcpy(m->data + m->len, buf, len);
    m->len += len;
    return 0;
}

static struct membuf deflate_all(const void *in, size_t len)
{
    struct membuf out = {0};
    ss_deflater d;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_deflater_init(&d, SS_ZIP_ZLIB, 6, &e), 0);
    CU_ASSERT_EQUAL(ss_deflater_feed(&d, in, len, mem_sink, &out, &e), 0);
    CU_ASSERT_EQUAL(ss_deflater_finish(&d, mem_sink, &out, &e), 0);
    ss_deflater_free(&d);
    return out;
}

static void test_codec_roundtrip(void)
{
    size_t len = 3 * SS_CODEC_CHUNK + 17;
    unsigned char *in = malloc(len);
    for (size_t i = 0; i < len; i++)
        in[i] = (unsigned char)(i * 7 + i / 1000);
    struct membuf z = deflate_all(in, len), out = {0};
    ss_inflater f;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_inflater_init(&f, SS_ZIP_ZLIB, len, &e), 0);
    /* Feed in odd-sized pieces to exercise the streaming state. */
    for (size_t off = 0; off < z.len; off += 1000) {
        size_t n = z.len - off < 1000 ? z.len - off : 1000;
        CU_ASSERT_EQUAL_FATAL(ss_inflater_feed(&f, z.data + off, n, mem_sink, &out, &e), 0);
    }
    CU_ASSERT_EQUAL(ss_inflater_finish(&f, &e), 0);
    CU_ASSERT_EQUAL(out.len, len);
    CU_ASSERT(memcmp(out.data, in, len) == 0);
    ss_inflater_free(&f);
    free(in);
    free(z.data);
    free(out.data);
}

/* One inflater across streams, as the despooler uses it: a stream that
 * failed half-way (bomb, garbage) leaves nothing behind for the next one,
 * and stored (zip=none) packages mix with zlib ones. */
static void test_codec_inflater_reset_between_streams(void)
{
    const char *a = "first package, compressed", *b = "second package, also compressed";
    struct membuf za = deflate_all(a, strlen(a)), zb = deflate_all(b, strlen(b)), out = {0};
    ss_inflater f;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_inflater_init(&f, SS_ZIP_NONE, 5, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, "plain", 5, mem_sink, &out, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_finish(&f, &e), 0);
    CU_ASSERT_EQUAL(out.len, 5);

    /* Garbage leaves zlib in an error state; the reset must clear it. */
    CU_ASSERT_EQUAL_FATAL(ss_inflater_reset(&f, SS_ZIP_ZLIB, 100, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, "not zlib at all", 15, mem_sink, &out, &e), -1);
    /* Half of a stream, abandoned. */
    CU_ASSERT_EQUAL_FATAL(ss_inflater_reset(&f, SS_ZIP_ZLIB, 100, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, za.data, za.len / 2, mem_sink, &out, &e), 0);

    const char *want[] = {a, b};
    struct membuf *z[] = {&za, &zb};
    for (int i = 0; i < 2; i++) {
        out.len = 0;
        CU_ASSERT_EQUAL_FATAL(ss_inflater_reset(&f, SS_ZIP_ZLIB, strlen(want[i]), &e), 0);
        CU_ASSERT_EQUAL(ss_inflater_feed(&f, z[i]->data, z[i]->len, mem_sink, &out, &e), 0);
        CU_ASSERT_EQUAL(ss_inflater_finish(&f, &e), 0);
        CU_ASSERT_EQUAL(out.len, strlen(want[i]));
        CU_ASSERT(out.len == strlen(want[i]) && memcmp(out.data, want[i], out.len) == 0);
    }
    /* The limit is the new stream's, not the old one's. */
    CU_ASSERT_EQUAL_FATAL(ss_inflater_reset(&f, SS_ZIP_ZLIB, 4, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, zb.data, zb.len, mem_sink, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_SIZE);
    /* Back to stored after zlib. */
    out.len = 0;
    CU_ASSERT_EQUAL_FATAL(ss_inflater_reset(&f, SS_ZIP_NONE, 3, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, "raw", 3, mem_sink, &out, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_finish(&f, &e), 0);
    CU_ASSERT(out.len == 3 && memcmp(out.data, "raw", 3) == 0);
    ss_inflater_free(&f);
    free(za.data);
    free(zb.data);
    free(out.data);
}

/* Raw mode (ss_inflater_skip_checksum): one byte at a time and in one go,
 * pushed and pulled, the same output; the header still checked, the
 * trailer still required and last; Adler-32 not computed; the next stream
 * on the same inflater checks it again. */
static int raw_inflate(ss_inflater *f, const unsigned char *z, size_t zlen, size_t limit,
                       size_t piece, bool pull, struct membuf *out, ss_error *e)
{
    out->len = 0;
    if (ss_inflater_reset(f, SS_ZIP_ZLIB, limit, e) != 0) return -1;
    ss_inflater_skip_checksum(f);
    for (size_t off = 0; off < zlen; off += piece) {
        size_t n = zlen - off < piece ? zlen - off : piece;
        if (!pull) {
            if (ss_inflater_feed(f, z + off, n, mem_sink, out, e) != 0) return -1;
            continue;
        }
        const unsigned char *in = z + off;
        do {
            const void *o;
            size_t olen;
            if (ss_inflater_pull(f, &in, &n, &o, &olen, e) != 0) return -1;
            if (mem_sink(out, o, olen, e) != 0) return -1;
        } while (n > 0);
    }
    for (bool more = pull; more;) { /* output zlib still holds */
        const unsigned char *none = z;
        size_t zero = 0;
        const void *o;
        size_t olen;
        if (ss_inflater_pull(f, &none, &zero, &o, &olen, e) != 0) return -1;
        more = olen > 0;
        mem_sink(out, o, olen, e);
    }
    return ss_inflater_finish(f, e);
}

static void test_codec_raw_mode(void)
{
    size_t len = 2 * SS_CODEC_CHUNK + 333;
    unsigned char *in = malloc(len);
    for (size_t i = 0; i < len; i++)
        in[i] = (unsigned char)(i % 251 ^ i / 4096);
    struct membuf z = deflate_all(in, len), out = {0};
    ss_inflater f;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_inflater_init(&f, SS_ZIP_ZLIB, len, &e), 0);
    size_t pieces[] = {1, 7, 4096, z.len};
    for (int pull = 0; pull < 2; pull++)
        for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
            CU_ASSERT_EQUAL(raw_inflate(&f, z.data, z.len, len, pieces[i], pull, &out, &e), 0);
            CU_ASSERT(out.len == len && memcmp(out.data, in, len) == 0);
        }
    /* Adler-32 is not looked at: a changed checksum still inflates. */
    z.data[z.len - 1] ^= 0x55;
    CU_ASSERT_EQUAL(raw_inflate(&f, z.data, z.len, len, 4096, false, &out, &e), 0);
    /* ... but the same inflater checks it again in zlib mode. */
    out.len = 0;
    CU_ASSERT_EQUAL_FATAL(ss_inflater_reset(&f, SS_ZIP_ZLIB, len, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, z.data, z.len, mem_sink, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_ZLIB);
    z.data[z.len - 1] ^= 0x55;
    /* A missing trailer byte is a truncated stream; one byte more is trailing. */
    CU_ASSERT_EQUAL(raw_inflate(&f, z.data, z.len - 1, len, 4096, false, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TRUNCATED);
    unsigned char *longer = malloc(z.len + 1);
    memcpy(longer, z.data, z.len);
    longer[z.len] = 0;
    CU_ASSERT_EQUAL(raw_inflate(&f, longer, z.len + 1, len, 1, false, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TRAILING);
    CU_ASSERT_EQUAL(raw_inflate(&f, longer, z.len + 1, len, 4096, true, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TRAILING);
    free(longer);
    /* Headers: not deflate, a preset dictionary, wrong check bits. */
    unsigned char bad[][2] = {{0x79, 0x9c}, {0x78, 0xbb}, {0x78, 0x9d}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char save[2] = {z.data[0], z.data[1]};
        memcpy(z.data, bad[i], 2);
        CU_ASSERT_EQUAL(raw_inflate(&f, z.data, z.len, len, 1, false, &out, &e), -1);
        CU_ASSERT_EQUAL(e.code, SS_E_ZLIB);
        memcpy(z.data, save, 2);
    }
    /* The declared size still bounds the output. */
    CU_ASSERT_EQUAL(raw_inflate(&f, z.data, z.len, len - 1, 4096, false, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_SIZE);
    ss_inflater_free(&f);
    free(in);
    free(z.data);
    free(out.data);
}

static void test_codec_bomb_stops_at_limit(void)
{
    size_t len = 64 << 20; /* 64 MiB of zeros compress to ~64 KiB */
    unsigned char *zeros = calloc(1, len);
    struct membuf z = deflate_all(zeros, len), out = {0};
    free(zeros);
    ss_inflater f;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_inflater_init(&f, SS_ZIP_ZLIB, 1000, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, z.data, z.len, mem_sink, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_SIZE);
    CU_ASSERT(out.len <= 1000);
    ss_inflater_free(&f);
    free(z.data);
    free(out.data);
}

static void test_codec_truncated_and_trailing(void)
{
    const char *msg = "some payload that compresses";
    struct membuf z = deflate_all(msg, strlen(msg)), out = {0};
    ss_inflater f;
    ss_error e = {0};
    ss_inflater_init(&f, SS_ZIP_ZLIB, 1000, &e);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, z.data, z.len - 3, mem_sink, &out, &e), 0);
    CU_ASSERT_EQUAL(ss_inflater_finish(&f, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TRUNCATED);
    ss_inflater_free(&f);

    unsigned char *more = malloc(z.len + 5);
    memcpy(more, z.data, z.len);
    memcpy(more + z.len, "junk!", 5);
    out.len = 0;
    ss_inflater_init(&f, SS_ZIP_ZLIB, 1000, &e);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, more, z.len + 5, mem_sink, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TRAILING);
    ss_inflater_free(&f);

    ss_inflater_init(&f, SS_ZIP_ZLIB, 1000, &e);
    CU_ASSERT_EQUAL(ss_inflater_feed(&f, "not zlib at all", 15, mem_sink, &out, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_ZLIB);
    ss_inflater_free(&f);
    free(more);
    free(z.data);
    free(out.data);
}

static ss_instr sample_instr(void)
{
    ss_instr in = {0};
    ss_instr_new_id(in.id);
    strcpy(in.from, "PS1");
    strcpy(in.to, "SS1");
    in.type = SS_TYPE_DATA;
    strcpy(in.dest, "replmgr.box");
    strcpy(in.name, "report 2026 (final) ü%.txt");
    in.size = 12345;
    in.zip = SS_ZIP_ZLIB;
    in.seq = 7;
    in.created = 1795000000;
    in.expires = 1797000000;
    return in;
}

static void test_instruction_roundtrip(void)
{
    ss_instr in = sample_instr(), out;
    char text[1024];
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_instr_format(&in, text, sizeof text), 0);
    CU_ASSERT_PTR_NULL(strchr(text, '\n'));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "name=report%202026%20%28final%29%20%C3%BC%25.txt"));
    CU_ASSERT_EQUAL_FATAL(ss_instr_parse(&out, text, &e), 0);
    CU_ASSERT_STRING_EQUAL(out.name, in.name);
    CU_ASSERT_STRING_EQUAL(out.id, in.id);
    CU_ASSERT_EQUAL(out.size, in.size);
    CU_ASSERT_EQUAL(out.seq, in.seq);
    CU_ASSERT_EQUAL(out.expires, in.expires);
    /* Unknown keys are ignored (forward compatibility). */
    strcat(text, " priority=high");
    CU_ASSERT_EQUAL(ss_instr_parse(&out, text, &e), 0);
}

static void expect_field_error(const char *text, const char *needle)
{
    ss_instr out;
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_instr_parse(&out, text, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_FIELD);
    if (needle && !strstr(e.msg, needle)) {
        fprintf(stderr, "\nexpected '%s' in: %s\n", needle, e.msg);
        CU_FAIL("error message does not name the problem");
    }
}

static void test_instruction_rejects(void)
{
    const char *ok = "sitespool/1 id=0123456789abcdef0123456789abcdef from=PS1 to=SS1 type=data "
                     "dest=replmgr.box name=a.txt size=1 zip=zlib seq=1 created=1 expires=2";
    ss_instr out;
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_instr_parse(&out, ok, &e), 0);
    char buf[1024];
    expect_field_error("sitespool/2 id=x", "sitespool/1");
    snprintf(buf, sizeof buf, "%s", ok);
    *strstr(buf, " seq=1") = '\0';
    expect_field_error(buf, "seq");
    snprintf(buf, sizeof buf, "%s dest=x.box", ok);
    expect_field_error(buf, "twice");
    /* Malformed text written over the start of a valid field. */
    static const struct {
        const char *at, *bad, *named;
    } overwritten[] = {
        {"dest=replmgr.box", "dest=..%2Fetc.box", "dest"},
        {"name=a.txt", "name=%2Fa.txt", "name"},
        {"name=a.txt", "name=%2e%2E", "name"},
        {" from=PS1", "  from=PS1", "one space"},
        {"from=PS1", "from=ps1", "site code"},
        {"size=1", "size=x", "size"},
        {"name=a.txt", "name=a%0a.t", "name"},
        {"name=a.txt", "name=a%00.t", "percent"},
        {"expires=2", "expires=0", "before"},
    };
    for (size_t i = 0; i < sizeof overwritten / sizeof overwritten[0]; i++) {
        snprintf(buf, sizeof buf, "%s", ok);
        memcpy(strstr(buf, overwritten[i].at), overwritten[i].bad, strlen(overwritten[i].bad));
        expect_field_error(buf, overwritten[i].named);
    }
}

static void test_conf_parse(void)
{
    ss_conf c;
    ss_error e = {0};
    ss_conf_defaults(&c);
    CU_ASSERT_EQUAL(c.key_lookup_retries, 100);
    CU_ASSERT_EQUAL(c.key_lookup_interval, 300);
    CU_ASSERT_TRUE(c.require_secure_key_exchange);
    CU_ASSERT_EQUAL(ss_conf_parse(&c,
                                  "# comment\nkey_lookup_interval = 5m\n"
                                  "max_package_bytes=16M\nallowed_dest = a.box b.box\n",
                                  "t", &e),
                    0);
    CU_ASSERT_EQUAL(c.key_lookup_interval, 300);
    CU_ASSERT_EQUAL(c.max_package_bytes, 16u << 20);
    CU_ASSERT_TRUE(ss_conf_dest_allowed(&c, "b.box"));
    CU_ASSERT_FALSE(ss_conf_dest_allowed(&c, "replmgr.box"));
    CU_ASSERT_EQUAL(ss_conf_parse(&c, "key_lookup_retry = 5\n", "t", &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "t:1: unknown setting 'key_lookup_retry'"));
    CU_ASSERT_EQUAL(ss_conf_parse(&c, "\nrequire_secure_key_exchange = maybe\n", "t", &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "t:2:"));
    ss_conf_defaults(&c);
    CU_ASSERT_EQUAL(ss_conf_parse(&c, "rescan_interval = 1\nrescan_interval = 2\n", "t", &e), -1);
    /* The rendered file parses back to the same settings. */
    strcpy(c.site_code, "PS1");
    char *text = ss_conf_render(&c);
    ss_conf back;
    ss_conf_defaults(&back);
    CU_ASSERT_EQUAL(ss_conf_parse(&back, text, "rendered", &e), 0);
    CU_ASSERT_EQUAL(memcmp(&back, &c, sizeof c), 0);
    free(text);
}

/* Appends "name = default" for each documented setting (site_code: PS1). */
static void conf_doc_line(void *ctx, const ss_setting_doc *d)
{
    char *text = ctx;
    size_t used = strlen(text);
    snprintf(text + used, 8192 - used, "%s = %s\n", d->name,
             strcmp(d->name, "site_code") ? d->default_value : "PS1");
    CU_ASSERT_TRUE(d->help[0] != '\0' && d->type[0] != '\0');
}

static void test_conf_describe(void)
{
    char *text = calloc(1, 8192);
    ss_conf_describe(conf_doc_line, text);
    ss_conf c, back;
    ss_error e = {0};
    ss_conf_defaults(&c);
    strcpy(c.site_code, "PS1");
    /* Every setting is described, and its default as shown ("1h", "64k")
     * is exactly the default. */
    char *rendered = ss_conf_render(&c);
    size_t described = 0, written = 0;
    for (const char *p = text; (p = strstr(p, " = ")); p++)
        described++;
    for (const char *p = rendered; (p = strstr(p, "\n\n# ")); p++)
        written++;
    CU_ASSERT_EQUAL(described, written);
    ss_conf_defaults(&back);
    CU_ASSERT_EQUAL(ss_conf_parse(&back, text, "described", &e), 0);
    CU_ASSERT_EQUAL(memcmp(&back, &c, sizeof c), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nmax_clock_skew = 1h\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nbundle_below = 64k\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nmax_package_bytes = 4G\n"));
    free(rendered);
    free(text);
}

static void test_atomic_noreplace(void)
{
    char *dir = tu_tempdir("atomic");
    int dfd = ss_open_dir(dir, NULL);
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_write_file_atomic(dfd, "a", "one", 3, 0644, SS_ATOMIC_SYNC_DIR, &e), 0);
    CU_ASSERT_EQUAL(ss_write_file_atomic(dfd, "a", "two", 3, 0644, SS_ATOMIC_NOREPLACE, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_EXISTS);
    char *text = tu_read(dir, "a", NULL);
    CU_ASSERT_STRING_EQUAL(text, "one");
    free(text);
    CU_ASSERT_EQUAL(tu_count(dir, ""), 1); /* no temporary file left behind */
    close(dfd);
    tu_rm_rf(dir);
    free(dir);
}

static void test_open_regular_refuses_symlink_and_fifo(void)
{
    char *dir = tu_tempdir("open");
    int dfd = ss_open_dir(dir, NULL);
    ss_error e = {0};
    tu_write(dir, "real", "x", 1);
    CU_ASSERT_EQUAL(symlinkat("real", dfd, "link"), 0);
    CU_ASSERT_EQUAL(mkfifoat(dfd, "fifo", 0600), 0);
    CU_ASSERT_EQUAL(ss_open_regular(dfd, "link", 0, NULL, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_NOTREG);
    CU_ASSERT_EQUAL(ss_open_regular(dfd, "fifo", 0, NULL, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_NOTREG);
    tu_write(dir, "big", "0123456789", 10);
    CU_ASSERT_EQUAL(ss_open_regular(dfd, "big", 9, NULL, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TOOBIG);
    int fd = ss_open_regular(dfd, "big", 10, NULL, &e);
    CU_ASSERT(fd >= 0);
    close(fd);
    close(dfd);
    tu_rm_rf(dir);
    free(dir);
}

/* ---- receipts and heartbeats (report.h) ---- */

static int collect_line(void *ctx, const ss_receipt_line *l)
{
    ss_receipt_line *out = ctx;
    size_t i = 0;
    while (out[i].id[0])
        i++;
    out[i] = *l;
    return 0;
}

static void test_receipt_roundtrip(void)
{
    ss_report_head h = {.from = "SS1", .to = "PS1", .time = 1795393768};
    ss_receipt_line lines[3] = {
        {.id = "00112233445566778899aabbccddeeff", .fate = SS_FATE_DELIVERED, .status_id = 4400},
        {.id = "ffeeddccbbaa99887766554433221100", .fate = SS_FATE_QUARANTINED, .status_id = 4406},
        {.id = "0123456789abcdef0123456789abcdef", .fate = SS_FATE_WAITING, .status_id = 0},
    };
    char *text = NULL;
    size_t len = 0;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_receipt_format(&h, lines, 3, &text, &len, &e), 0);
    CU_ASSERT_STRING_EQUAL(text, "sitespool-receipt/1 from=SS1 to=PS1 time=1795393768\n"
                                 "00112233445566778899aabbccddeeff delivered 4400\n"
                                 "ffeeddccbbaa99887766554433221100 quarantined 4406\n"
                                 "0123456789abcdef0123456789abcdef waiting 0\n");
    ss_receipt_line got[4];
    memset(got, 0, sizeof got);
    ss_report_head back;
    CU_ASSERT_EQUAL(ss_receipt_parse(text, len, &back, collect_line, got, &e), 0);
    CU_ASSERT_STRING_EQUAL(back.from, "SS1");
    CU_ASSERT_STRING_EQUAL(back.to, "PS1");
    CU_ASSERT_EQUAL(back.time, 1795393768);
    CU_ASSERT_STRING_EQUAL(got[1].id, lines[1].id);
    CU_ASSERT_EQUAL(got[1].fate, SS_FATE_QUARANTINED);
    CU_ASSERT_EQUAL(got[1].status_id, 4406);
    CU_ASSERT_EQUAL(got[2].fate, SS_FATE_WAITING);
    free(text);
}

static void test_receipt_rejects(void)
{
    static const char *const bad[] = {
        "",
        "sitespool-receipt/1 from=SS1 to=PS1 time=1\n00112233445566778899aabbccddeeff lost 0\n",
        "sitespool-receipt/1 from=SS1 to=PS1 time=1\n00112233445566778899AABBCCDDEEFF delivered "
        "0\n",
        "sitespool-receipt/1 from=SS1 to=PS1 time=1\n00112233445566778899aabbccddeeff delivered "
        "44\n",
        "sitespool-receipt/1 from=SS1 to=PS1 time=1\n00112233445566778899aabbccddeeff delivered  "
        "4400\n",
        "sitespool-receipt/1 from=SS1 to=PS1 time=1\n00112233445566778899aabbccddeeff delivered "
        "4400",
        "sitespool-receipt/1 from=ss1 to=PS1 time=1\n",
        "sitespool-receipt/1  from=SS1 to=PS1 time=1\n",
        "sitespool-receipt/1 from=SS1 to=PS1 time=01\n",
        "sitespool-heartbeat/1 from=SS1 to=PS1 time=1\n",
        "sitespool-receipt/1 from=SS1 to=PS1 time=1\r\n",
        "sitespool-receipt/1 from=SS1 to=PS1 time=1\n00112233445566778899aabbccddeeff held "
        "4420\x1b\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ss_report_head h;
        ss_error e = {0};
        CU_ASSERT_NOT_EQUAL(ss_receipt_parse(bad[i], strlen(bad[i]), &h, NULL, NULL, &e), 0);
        CU_ASSERT(e.msg[0] != '\0');
    }
}

static void test_heartbeat_roundtrip_and_rejects(void)
{
    ss_heartbeat hb = {.head = {.from = "SS1", .to = "PS1", .time = 42},
                       .key = "5E2875BBB567D5E0",
                       .holds = {"0A1B2C3D4E5F6071", "9F8E7D6C5B4A3921"},
                       .nholds = 2};
    char text[512];
    ss_error e = {0};
    int len = ss_heartbeat_format(&hb, text, sizeof text, &e);
    CU_ASSERT_FATAL(len > 0);
    CU_ASSERT_STRING_EQUAL(text, "sitespool-heartbeat/1 from=SS1 to=PS1 time=42\n"
                                 "key 5E2875BBB567D5E0\n"
                                 "holds 0A1B2C3D4E5F6071\n"
                                 "holds 9F8E7D6C5B4A3921\n");
    ss_heartbeat back;
    CU_ASSERT_EQUAL(ss_heartbeat_parse(text, (size_t)len, &back, &e), 0);
    CU_ASSERT_STRING_EQUAL(back.key, hb.key);
    CU_ASSERT_EQUAL(back.nholds, 2);
    CU_ASSERT_STRING_EQUAL(back.holds[1], "9F8E7D6C5B4A3921");
    /* A later version's keyword is skipped; a bad key id, a missing key,
     * a key given twice are refused. */
    const char *later = "sitespool-heartbeat/1 from=SS1 to=PS1 time=42\nkey 5E2875BBB567D5E0\n"
                        "colour blue\n";
    CU_ASSERT_EQUAL(ss_heartbeat_parse(later, strlen(later), &back, &e), 0);
    static const char *const bad[] = {
        "sitespool-heartbeat/1 from=SS1 to=PS1 time=42\nkey 5e2875bbb567d5e0\n",
        "sitespool-heartbeat/1 from=SS1 to=PS1 time=42\nholds 5E2875BBB567D5E0\n",
        "sitespool-heartbeat/1 from=SS1 to=PS1 time=42\nkey 5E2875BBB567D5E0\nkey "
        "5E2875BBB567D5E0\n",
        "sitespool-heartbeat/1 from=SS1 to=PS1 time=42\nkey 5E2875BBB567D5E0 \n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_NOT_EQUAL(ss_heartbeat_parse(bad[i], strlen(bad[i]), &back, &e), 0);
}

static void test_time_and_duration_text(void)
{
    char out[64];
    ss_duration_text(60, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "1 minute");
    ss_duration_text(300, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "5 minutes");
    ss_duration_text(3 * 3600 + 20 * 60 + 5, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "3 hours 20 minutes");
    ss_duration_text(2 * 86400 + 5 * 60, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "2 days");
    ss_duration_text(0, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "0 seconds");
    ss_time_text(1795393768, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "2026-11-23 00:29:28 UTC");
    ss_time_text(0, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "never");
}

/* ---------------------------------------------------------------- sealing */

typedef struct seal_keys {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char *sk; /* sodium_malloc'd */
    unsigned char keyid[SS_SEAL_KEYID_BYTES];
} seal_keys;

static void seal_keys_make(seal_keys *k)
{
    k->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(k->sk);
    crypto_sign_keypair(k->pk, k->sk);
    randombytes_buf(k->keyid, sizeof k->keyid);
}

static int seal_mem_write(void *ctx, const unsigned char *data, size_t len, ss_error *e)
{
    return mem_sink(ctx, data, len, e);
}

/* Seals len bytes of in, fed in pieces of piece bytes (0: all at once). */
static struct membuf seal_buf(const seal_keys *k, const unsigned char *in, size_t len, size_t piece)
{
    struct membuf out = {0};
    ss_sealer s;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_seal_begin(&s, k->pk, k->keyid, seal_mem_write, &out, &e), 0);
    for (size_t off = 0; off < len || (off == 0 && len == 0);) {
        size_t n = piece && len - off > piece ? piece : len - off;
        CU_ASSERT_EQUAL(ss_seal_update(&s, in + off, n, &e), 0);
        off += n;
        if (len == 0) break;
    }
    uint64_t plain = s.plain_bytes;
    CU_ASSERT_EQUAL(ss_seal_end(&s, &e), 0);
    CU_ASSERT_EQUAL(plain, len);
    CU_ASSERT_EQUAL(s.sealed_bytes, out.len);
    return out;
}

/* Opens sealed bytes fed in pieces; returns the result of end (or of the
 * first update that failed); *fault and *out receive what came. */
static int open_buf(const seal_keys *k, const unsigned char *in, size_t len, size_t piece,
                    struct membuf *out, enum ss_seal_fault *fault, ss_error *e)
{
    ss_opener o;
    memset(out, 0, sizeof *out);
    CU_ASSERT_EQUAL_FATAL(ss_open_begin(&o, k->sk, k->keyid, seal_mem_write, out, e), 0);
    for (size_t off = 0; off < len;) {
        size_t n = piece && len - off > piece ? piece : len - off;
        if (ss_open_update(&o, in + off, n, e) != 0) {
            *fault = o.fault;
            ss_open_abort(&o);
            return -1;
        }
        off += n;
    }
    int rc = ss_open_end(&o, e);
    *fault = o.fault;
    return rc;
}

/* The pin: the sealer's is BLAKE2b-256 of the header it wrote; an opener
 * pinned to it opens the stream, one pinned to another package's header
 * refuses this one's before deriving a key (nothing handed out). */
static void test_seal_pin(void)
{
    seal_keys k;
    seal_keys_make(&k);
    unsigned char data[3000];
    randombytes_buf(data, sizeof data);
    struct membuf a = {0}, b = {0};
    unsigned char pin_a[SS_SEAL_PIN_BYTES], pin_b[SS_SEAL_PIN_BYTES], want[SS_SEAL_PIN_BYTES];
    ss_sealer s;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_seal_begin(&s, k.pk, k.keyid, seal_mem_write, &a, &e), 0);
    memcpy(pin_a, s.pin, sizeof pin_a);
    CU_ASSERT_EQUAL(ss_seal_update(&s, data, sizeof data, &e), 0);
    CU_ASSERT_EQUAL(ss_seal_end(&s, &e), 0);
    CU_ASSERT_EQUAL_FATAL(ss_seal_begin(&s, k.pk, k.keyid, seal_mem_write, &b, &e), 0);
    memcpy(pin_b, s.pin, sizeof pin_b);
    CU_ASSERT_EQUAL(ss_seal_update(&s, data, sizeof data, &e), 0);
    CU_ASSERT_EQUAL(ss_seal_end(&s, &e), 0);
    crypto_generichash(want, sizeof want, a.data, SS_SEAL_HEADER_BYTES, NULL, 0);
    CU_ASSERT_EQUAL(memcmp(pin_a, want, sizeof want), 0);
    ss_seal_pin(b.data, want);
    CU_ASSERT_EQUAL(memcmp(pin_b, want, sizeof want), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(pin_a, pin_b, sizeof pin_a), 0);
    for (int pinned_to_a = 0; pinned_to_a < 2; pinned_to_a++) {
        struct membuf out = {0};
        ss_opener o;
        CU_ASSERT_EQUAL_FATAL(ss_open_begin(&o, k.sk, k.keyid, seal_mem_write, &out, &e), 0);
        ss_open_pin(&o, pinned_to_a ? pin_a : pin_b);
        int rc = ss_open_update(&o, a.data, a.len, &e);
        if (rc == 0)
            rc = ss_open_end(&o, &e);
        else
            ss_open_abort(&o);
        if (pinned_to_a) {
            CU_ASSERT_EQUAL(rc, 0);
            CU_ASSERT_EQUAL(out.len, sizeof data);
        } else {
            CU_ASSERT_EQUAL(rc, -1);
            CU_ASSERT_EQUAL(o.fault, SS_SEAL_BAD_HEADER);
            CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "not the one its signed instruction names"));
            CU_ASSERT_EQUAL(out.len, 0);
        }
        free(out.data);
    }
    free(a.data);
    free(b.data);
    sodium_free(k.sk);
}

static void test_seal_roundtrip_sizes(void)
{
    static const size_t sizes[] = {0,      1, SS_SEAL_CHUNK - 1, SS_SEAL_CHUNK, SS_SEAL_CHUNK + 1,
                                   3 << 20};
    static const size_t pieces[] = {0, 1, 7, 4093, 65537};
    seal_keys k;
    seal_keys_make(&k);
    unsigned char *in = malloc(3 << 20);
    for (size_t i = 0; i < (3u << 20); i++)
        in[i] = (unsigned char)(i * 31 + i / 977);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t len = sizes[si];
        for (size_t pi = 0; pi < sizeof pieces / sizeof pieces[0]; pi++) {
            size_t piece = pieces[pi];
            if (piece == 1 && len > 200000) continue; /* byte by byte: small ones */
            struct membuf sealed = seal_buf(&k, in, len, piece), plain;
            /* header, full chunks, the final chunk (shorter, maybe empty) */
            size_t chunks = len / SS_SEAL_CHUNK + 1;
            CU_ASSERT_EQUAL(sealed.len, SS_SEAL_HEADER_BYTES + len +
                                            chunks * crypto_secretstream_xchacha20poly1305_ABYTES);
            CU_ASSERT_EQUAL(memcmp(sealed.data, SS_SEAL_MAGIC, 8), 0);
            unsigned char id[SS_SEAL_KEYID_BYTES];
            CU_ASSERT_EQUAL(ss_seal_header_keyid(sealed.data, sealed.len, id), 1);
            CU_ASSERT_EQUAL(memcmp(id, k.keyid, sizeof id), 0);
            CU_ASSERT_EQUAL(ss_seal_header_keyid(sealed.data, SS_SEAL_HEADER_BYTES - 1, id), 0);
            enum ss_seal_fault fault;
            ss_error e = {0};
            CU_ASSERT_EQUAL(
                open_buf(&k, sealed.data, sealed.len, piece ? piece + 3 : 0, &plain, &fault, &e),
                0);
            CU_ASSERT_EQUAL(fault, SS_SEAL_OK);
            CU_ASSERT_EQUAL(plain.len, len);
            CU_ASSERT(len == 0 || (plain.data && memcmp(plain.data, in, len) == 0));
            if (len > 1000) /* the plaintext does not show through */
                CU_ASSERT_PTR_NULL(memmem(sealed.data, sealed.len, in + 500, 64));
            free(sealed.data);
            free(plain.data);
        }
    }
    /* Two seals of the same bytes differ (a fresh ephemeral key each). */
    struct membuf a = seal_buf(&k, in, 100, 0), b = seal_buf(&k, in, 100, 0);
    CU_ASSERT_EQUAL(a.len, b.len);
    CU_ASSERT_NOT_EQUAL(memcmp(a.data, b.data, a.len), 0);
    free(a.data);
    free(b.data);
    free(in);
    sodium_free(k.sk);
}

/* Opens damaged and expects fault, with nothing beyond authenticated
 * chunks handed out (at most plain_max bytes). */
static void expect_seal_fault(const seal_keys *k, const struct membuf *m, enum ss_seal_fault want,
                              size_t plain_max, const char *what)
{
    static const size_t pieces[] = {0, 1000, 65553};
    for (size_t pi = 0; pi < sizeof pieces / sizeof pieces[0]; pi++) {
        struct membuf plain;
        enum ss_seal_fault fault = SS_SEAL_OK;
        ss_error e = {0};
        int rc = open_buf(k, m->data, m->len, pieces[pi], &plain, &fault, &e);
        if (rc != -1 || fault != want || plain.len > plain_max) {
            fprintf(stderr, "\n%s (pieces %zu): rc %d fault %d (want %d), %zu bytes out: %s\n",
                    what, pieces[pi], rc, fault, want, plain.len, e.msg);
            CU_FAIL("sealing fault not classified");
        }
        CU_ASSERT(e.msg[0] != '\0');
        free(plain.data);
    }
}

static void test_seal_faults(void)
{
    seal_keys k, other;
    seal_keys_make(&k);
    seal_keys_make(&other);
    size_t len = 2 * SS_SEAL_CHUNK + 100, H = SS_SEAL_HEADER_BYTES, C = SS_SEAL_CHUNK_BYTES;
    unsigned char *in = malloc(len);
    randombytes_buf(in, len);
    struct membuf good = seal_buf(&k, in, len, 0), m = {0};
    CU_ASSERT_EQUAL_FATAL(good.len, H + 2 * C + 100 + crypto_secretstream_xchacha20poly1305_ABYTES);
    m.data = malloc(good.len + 1);
    /* A byte flipped in each part. */
    static const struct {
        size_t at;
        enum ss_seal_fault fault;
        size_t plain_max;
        const char *what;
    } flips[] = {
        {0, SS_SEAL_BAD_HEADER, 0, "magic"},
        {8, SS_SEAL_BAD_HEADER, 0, "key id"},
        {16, SS_SEAL_BAD_CHUNK, 0, "ephemeral key"},
        {48, SS_SEAL_BAD_CHUNK, 0, "secretstream header"},
        {SS_SEAL_HEADER_BYTES, SS_SEAL_BAD_CHUNK, 0, "first chunk, its tag byte"},
        {SS_SEAL_HEADER_BYTES + 5000, SS_SEAL_BAD_CHUNK, 0, "first chunk, its data"},
        {SS_SEAL_HEADER_BYTES + SS_SEAL_CHUNK_BYTES - 1, SS_SEAL_BAD_CHUNK, 0, "first chunk, MAC"},
        {SS_SEAL_HEADER_BYTES + SS_SEAL_CHUNK_BYTES + 9, SS_SEAL_BAD_CHUNK, SS_SEAL_CHUNK,
         "second chunk"},
        {SS_SEAL_HEADER_BYTES + 2 * SS_SEAL_CHUNK_BYTES + 3, SS_SEAL_BAD_CHUNK, 2 * SS_SEAL_CHUNK,
         "final chunk"},
    };
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        memcpy(m.data, good.data, good.len);
        m.len = good.len;
        m.data[flips[i].at] ^= 0x20;
        expect_seal_fault(&k, &m, flips[i].fault, flips[i].plain_max, flips[i].what);
    }
    /* The two full chunks swapped. */
    memcpy(m.data, good.data, H);
    memcpy(m.data + H, good.data + H + C, C);
    memcpy(m.data + H + C, good.data + H, C);
    memcpy(m.data + H + 2 * C, good.data + H + 2 * C, good.len - H - 2 * C);
    expect_seal_fault(&k, &m, SS_SEAL_BAD_CHUNK, 0, "chunks swapped");
    /* The final chunk dropped; cut inside it; the header cut short. */
    memcpy(m.data, good.data, good.len);
    m.len = H + 2 * C;
    expect_seal_fault(&k, &m, SS_SEAL_TRUNCATED, 2 * SS_SEAL_CHUNK, "final chunk dropped");
    m.len = H + C + 5;
    expect_seal_fault(&k, &m, SS_SEAL_TRUNCATED, SS_SEAL_CHUNK, "cut after a chunk's tag");
    m.len = good.len - 1;
    expect_seal_fault(&k, &m, SS_SEAL_BAD_CHUNK, 2 * SS_SEAL_CHUNK, "final chunk cut short");
    m.len = H - 1;
    expect_seal_fault(&k, &m, SS_SEAL_TRUNCATED, 0, "header truncated");
    m.len = 0;
    expect_seal_fault(&k, &m, SS_SEAL_TRUNCATED, 0, "nothing at all");
    /* A byte after the final chunk. */
    m.len = good.len + 1;
    m.data[good.len] = 0;
    expect_seal_fault(&k, &m, SS_SEAL_TRAILING, len, "byte appended");
    /* A final chunk at full length (a stream of exactly one chunk, cut
     * before its empty final chunk, then given a foreign final). */
    m.len = good.len;
    /* Wrong key: another key pair under the same key id, then under its own. */
    memcpy(other.keyid, k.keyid, sizeof k.keyid);
    expect_seal_fault(&other, &m, SS_SEAL_BAD_CHUNK, 0, "wrong key, same key id");
    randombytes_buf(other.keyid, sizeof other.keyid);
    expect_seal_fault(&other, &m, SS_SEAL_BAD_HEADER, 0, "wrong key id");
    ss_error e = {0};
    struct membuf plain;
    enum ss_seal_fault fault;
    CU_ASSERT_EQUAL(open_buf(&other, m.data, m.len, 0, &plain, &fault, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_KEYID);
    free(plain.data);
    /* A chunk from another stream to the same key. */
    struct membuf again = seal_buf(&k, in, len, 0);
    memcpy(m.data, good.data, good.len);
    memcpy(m.data + H + C, again.data + H + C, C);
    expect_seal_fault(&k, &m, SS_SEAL_BAD_CHUNK, SS_SEAL_CHUNK, "chunk from another stream");
    /* The header of another stream. */
    memcpy(m.data, again.data, H);
    memcpy(m.data + H, good.data + H, good.len - H);
    expect_seal_fault(&k, &m, SS_SEAL_BAD_CHUNK, 0, "header of another stream");
    /* An ephemeral key of low order (all zero): refused as a bad header. */
    memcpy(m.data, good.data, good.len);
    memset(m.data + 16, 0, 32);
    expect_seal_fault(&k, &m, SS_SEAL_BAD_HEADER, 0, "all-zero ephemeral key");
    free(again.data);
    free(m.data);
    free(good.data);
    free(in);
    sodium_free(k.sk);
    sodium_free(other.sk);
}

/* A stream of exactly one full chunk ends with an empty FINAL chunk; the
 * opener refuses a lone full chunk (TRUNCATED) and a stream cut before
 * its first chunk. */
static void test_seal_chunk_boundaries(void)
{
    seal_keys k;
    seal_keys_make(&k);
    unsigned char *in = calloc(1, SS_SEAL_CHUNK);
    struct membuf one = seal_buf(&k, in, SS_SEAL_CHUNK, 0), m = one, plain;
    CU_ASSERT_EQUAL(one.len, SS_SEAL_HEADER_BYTES + SS_SEAL_CHUNK_BYTES +
                                 crypto_secretstream_xchacha20poly1305_ABYTES);
    m.len = SS_SEAL_HEADER_BYTES + SS_SEAL_CHUNK_BYTES;
    expect_seal_fault(&k, &m, SS_SEAL_TRUNCATED, SS_SEAL_CHUNK, "empty final chunk dropped");
    m.len = SS_SEAL_HEADER_BYTES;
    expect_seal_fault(&k, &m, SS_SEAL_TRUNCATED, 0, "no chunk at all");
    /* Misuse is an error, not a crash. */
    ss_opener o;
    ss_error e = {0};
    enum ss_seal_fault fault;
    CU_ASSERT_EQUAL(ss_open_begin(&o, k.sk, k.keyid, seal_mem_write, &plain, &e), 0);
    ss_open_abort(&o);
    CU_ASSERT_EQUAL(open_buf(&k, one.data, one.len, 0, &plain, &fault, &e), 0);
    CU_ASSERT_EQUAL(plain.len, SS_SEAL_CHUNK);
    free(plain.data);
    free(one.data);
    free(in);
    sodium_free(k.sk);
}

/* ---- one ephemeral key per send; the opener's cache ---- */

#define SEAL_EPH_OFF (8 + SS_SEAL_KEYID_BYTES)
#define SEAL_SS_OFF (SEAL_EPH_OFF + 32)

/* Seals len bytes of in with a send's key k. */
static struct membuf seal_with(ss_seal_key *k, const unsigned char *in, size_t len)
{
    struct membuf out = {0};
    ss_sealer s;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_seal_begin_key(&s, k, seal_mem_write, &out, &e), 0);
    CU_ASSERT_EQUAL(ss_seal_update(&s, in, len, &e), 0);
    CU_ASSERT_EQUAL(ss_seal_end(&s, &e), 0);
    return out;
}

/* Opens sealed bytes with sk (64 bytes) and keyid through cache (NULL:
 * none): the result of end, *fault and *out what came. */
static int open_cached(ss_open_cache *cache, const unsigned char *sk, const unsigned char *keyid,
                       const struct membuf *in, struct membuf *out, enum ss_seal_fault *fault)
{
    ss_opener o;
    ss_error e = {0};
    memset(out, 0, sizeof *out);
    CU_ASSERT_EQUAL_FATAL(ss_open_begin_cached(&o, cache, sk, keyid, seal_mem_write, out, &e), 0);
    if (ss_open_update(&o, in->data, in->len, &e) != 0) {
        *fault = o.fault;
        ss_open_abort(&o);
        return -1;
    }
    int rc = ss_open_end(&o, &e);
    *fault = o.fault;
    return rc;
}

/* The key pair with its secret seed replaced by random bytes (its public
 * half kept): whatever it derives is wrong, so it opens a package only
 * when the cache hands it the key - it tells a hit from a miss. */
static unsigned char *wrong_seed(const seal_keys *k)
{
    unsigned char *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sk);
    memcpy(sk, k->sk, crypto_sign_SECRETKEYBYTES);
    randombytes_buf(sk, 32);
    return sk;
}

/* Opens *in with sk through cache and says whether it gave want. */
static bool opens_as(ss_open_cache *cache, const unsigned char *sk, const seal_keys *k,
                     const struct membuf *in, const char *want)
{
    struct membuf plain;
    enum ss_seal_fault fault;
    bool ok = open_cached(cache, sk, k->keyid, in, &plain, &fault) == 0 && fault == SS_SEAL_OK &&
              plain.len == strlen(want) && !memcmp(plain.data, want, plain.len);
    free(plain.data);
    return ok;
}

static void test_seal_send_key_shared(void)
{
    seal_keys k;
    seal_keys_make(&k);
    ss_seal_key sk;
    ss_seal_key_init(&sk, k.pk, k.keyid);
    CU_ASSERT_PTR_NULL(sk.key); /* nothing made before it is used */
    const char *a = "first package of the send", *b = "second package of the send";
    struct membuf pa = seal_with(&sk, (const unsigned char *)a, strlen(a));
    CU_ASSERT_PTR_NOT_NULL(sk.key);
    struct membuf pb = seal_with(&sk, (const unsigned char *)b, strlen(b));
    /* One ephemeral key, two random stream headers. */
    CU_ASSERT_EQUAL(memcmp(pa.data + SEAL_EPH_OFF, pb.data + SEAL_EPH_OFF, 32), 0);
    CU_ASSERT_EQUAL(memcmp(pa.data + SEAL_EPH_OFF, sk.eph_pk, 32), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(pa.data + SEAL_SS_OFF, pb.data + SEAL_SS_OFF,
                               crypto_secretstream_xchacha20poly1305_HEADERBYTES),
                        0);
    /* Both open, without a cache and with one. */
    ss_error e = {0};
    ss_open_cache *cache = ss_open_cache_new(&e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cache);
    CU_ASSERT_TRUE(opens_as(NULL, k.sk, &k, &pa, a));
    CU_ASSERT_TRUE(opens_as(NULL, k.sk, &k, &pb, b));
    CU_ASSERT_TRUE(opens_as(cache, k.sk, &k, &pa, a));
    CU_ASSERT_TRUE(opens_as(cache, k.sk, &k, &pb, b));
    /* A chunk of one stream does not authenticate in the other, though
     * the key is the same: the header's subkey and nonce differ. */
    struct membuf mix = {0};
    mix.len = pa.len;
    mix.data = malloc(mix.len);
    memcpy(mix.data, pa.data, SS_SEAL_HEADER_BYTES);
    memcpy(mix.data + SS_SEAL_HEADER_BYTES, pb.data + SS_SEAL_HEADER_BYTES,
           pb.len - SS_SEAL_HEADER_BYTES < mix.len - SS_SEAL_HEADER_BYTES
               ? pb.len - SS_SEAL_HEADER_BYTES
               : mix.len - SS_SEAL_HEADER_BYTES);
    struct membuf plain;
    enum ss_seal_fault fault;
    CU_ASSERT_EQUAL(open_cached(cache, k.sk, k.keyid, &mix, &plain, &fault), -1);
    CU_ASSERT_EQUAL(fault, SS_SEAL_BAD_CHUNK);
    free(plain.data);
    /* Another send: another ephemeral key. */
    ss_seal_key other;
    ss_seal_key_init(&other, k.pk, k.keyid);
    struct membuf pc = seal_with(&other, (const unsigned char *)a, strlen(a));
    CU_ASSERT_NOT_EQUAL(memcmp(pa.data + SEAL_EPH_OFF, pc.data + SEAL_EPH_OFF, 32), 0);
    ss_seal_key_free(&other);
    ss_seal_key_free(&sk);
    CU_ASSERT_PTR_NULL(sk.key);
    ss_seal_key_free(&sk); /* twice: harmless */
    ss_open_cache_free(cache);
    free(mix.data);
    free(pa.data);
    free(pb.data);
    free(pc.data);
    sodium_free(k.sk);
}

static void test_seal_open_cache(void)
{
    seal_keys k;
    seal_keys_make(&k);
    unsigned char *bad = wrong_seed(&k);
    ss_error e = {0};
    ss_open_cache *cache = ss_open_cache_new(&e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cache);
    ss_seal_key s1, s2;
    ss_seal_key_init(&s1, k.pk, k.keyid);
    ss_seal_key_init(&s2, k.pk, k.keyid);
    const char *a = "send one, package a", *b = "send one, package b", *c = "send two";
    struct membuf pa = seal_with(&s1, (const unsigned char *)a, strlen(a));
    struct membuf pb = seal_with(&s1, (const unsigned char *)b, strlen(b));
    struct membuf pc = seal_with(&s2, (const unsigned char *)c, strlen(c));
    /* Nothing cached yet: the wrong seed derives a wrong key, which does
     * not authenticate and so is not cached. */
    CU_ASSERT_FALSE(opens_as(cache, bad, &k, &pa, a));
    /* A miss with the right key, then hits: the same plaintext. */
    CU_ASSERT_TRUE(opens_as(cache, k.sk, &k, &pa, a));
    CU_ASSERT_TRUE(opens_as(cache, k.sk, &k, &pb, b));
    CU_ASSERT_TRUE(opens_as(cache, bad, &k, &pa, a)); /* only a hit opens it */
    CU_ASSERT_TRUE(opens_as(cache, bad, &k, &pb, b));
    /* Another ephemeral key never gets send one's key: a miss. */
    CU_ASSERT_FALSE(opens_as(cache, bad, &k, &pc, c));
    CU_ASSERT_TRUE(opens_as(cache, k.sk, &k, &pc, c));
    /* A header naming send one's ephemeral key over send two's stream
     * gets send one's key and fails to authenticate: nothing opens. */
    struct membuf forged = {0};
    forged.len = pc.len;
    forged.data = malloc(forged.len);
    memcpy(forged.data, pc.data, pc.len);
    memcpy(forged.data + SEAL_EPH_OFF, pa.data + SEAL_EPH_OFF, 32);
    struct membuf plain;
    enum ss_seal_fault fault;
    CU_ASSERT_EQUAL(open_cached(cache, k.sk, k.keyid, &forged, &plain, &fault), -1);
    CU_ASSERT_EQUAL(fault, SS_SEAL_BAD_CHUNK);
    CU_ASSERT_EQUAL(plain.len, 0);
    free(plain.data);
    /* Another key of this site with the same key id: never the cached key. */
    seal_keys k2;
    seal_keys_make(&k2);
    memcpy(k2.keyid, k.keyid, sizeof k.keyid);
    CU_ASSERT_EQUAL(open_cached(cache, k2.sk, k2.keyid, &pa, &plain, &fault), -1);
    CU_ASSERT_EQUAL(fault, SS_SEAL_BAD_CHUNK);
    free(plain.data);
    /* The least recently used key goes when the cache is full. */
    for (int i = 0; i < SS_OPEN_CACHE_SLOTS; i++) {
        ss_seal_key t;
        ss_seal_key_init(&t, k.pk, k.keyid);
        struct membuf pt = seal_with(&t, (const unsigned char *)c, strlen(c));
        CU_ASSERT_TRUE(opens_as(cache, k.sk, &k, &pt, c));
        if (i == SS_OPEN_CACHE_SLOTS - 3)
            CU_ASSERT_TRUE(opens_as(cache, bad, &k, &pb, b)); /* send one: used again */
        ss_seal_key_free(&t);
        free(pt.data);
    }
    CU_ASSERT_TRUE(opens_as(cache, bad, &k, &pa, a));  /* still there */
    CU_ASSERT_FALSE(opens_as(cache, bad, &k, &pc, c)); /* wiped and replaced */
    CU_ASSERT_TRUE(opens_as(cache, k.sk, &k, &pc, c));
    ss_seal_key_free(&s1);
    ss_seal_key_free(&s2);
    ss_open_cache_free(cache);
    ss_open_cache_free(NULL);
    free(forged.data);
    free(pa.data);
    free(pb.data);
    free(pc.data);
    sodium_free(bad);
    sodium_free(k.sk);
    sodium_free(k2.sk);
}

static void expect_meta_error(const char *line, const char *needle)
{
    ss_sealed_meta m;
    ss_error e = {0};
    CU_ASSERT_EQUAL(ss_sealed_meta_parse(line, strlen(line), &m, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_FIELD);
    if (needle && !strstr(e.msg, needle)) {
        fprintf(stderr, "\nexpected '%s' in: %s (line %s)\n", needle, e.msg, line);
        CU_FAIL("metadata error does not name the problem");
    }
}

static void test_sealed_meta(void)
{
    ss_sealed_meta m = {.size = 12345, .zip = SS_ZIP_ZLIB}, out;
    snprintf(m.name, sizeof m.name, "report 2026 (final) \xc3\xbc%%.txt");
    char line[SS_SEALED_META_MAX + 1];
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_sealed_meta_format(&m, line, sizeof line, &e), 0);
    CU_ASSERT_STRING_EQUAL(line,
                           "sitespool-sealed/1 name=report%202026%20%28final%29%20%C3%BC%25.txt "
                           "size=12345 zip=zlib\n");
    CU_ASSERT_EQUAL_FATAL(ss_sealed_meta_parse(line, strlen(line), &out, &e), 0);
    CU_ASSERT_STRING_EQUAL(out.name, m.name);
    CU_ASSERT_EQUAL(out.size, 12345);
    CU_ASSERT_EQUAL(out.zip, SS_ZIP_ZLIB);
    CU_ASSERT_EQUAL(out.files, 0);
    m = (ss_sealed_meta){.size = 0, .zip = SS_ZIP_NONE, .files = SS_BUNDLE_FILES_MAX};
    snprintf(m.name, sizeof m.name, "bundle-10000-files.tar");
    CU_ASSERT_EQUAL_FATAL(ss_sealed_meta_format(&m, line, sizeof line, &e), 0);
    CU_ASSERT_STRING_EQUAL(line, "sitespool-sealed/1 name=bundle-10000-files.tar size=0 zip=none "
                                 "files=10000\n");
    CU_ASSERT_EQUAL(ss_sealed_meta_parse(line, strlen(line), &out, &e), 0);
    CU_ASSERT_EQUAL(out.files, SS_BUNDLE_FILES_MAX);
    CU_ASSERT_EQUAL(out.zip, SS_ZIP_NONE);
    /* The longest name fits the line. */
    memset(m.name, 0xff, SS_NAME_MAX);
    m.name[SS_NAME_MAX] = '\0';
    m.size = UINT64_C(9223372036854775807);
    CU_ASSERT_EQUAL(ss_sealed_meta_format(&m, line, sizeof line, &e), 0);
    CU_ASSERT_EQUAL(ss_sealed_meta_parse(line, strlen(line), &out, &e), 0);
    CU_ASSERT_EQUAL(out.size, m.size);
    /* Only the documented form. */
    CU_ASSERT_EQUAL(ss_sealed_meta_parse(line, strlen(line) - 1, &out, &e), -1); /* no newline */
    expect_meta_error("sitespool-sealed/2 name=a size=1 zip=zlib\n", "sitespool-sealed/1");
    expect_meta_error("sitespool-sealed/1 name=a size=1 zip=zlib", "newline");
    expect_meta_error("sitespool-sealed/1 name=a size=01 zip=zlib\n", "size");
    expect_meta_error("sitespool-sealed/1 name=a size=9223372036854775808 zip=zlib\n", "size");
    expect_meta_error("sitespool-sealed/1 name=a size=-1 zip=zlib\n", "size");
    expect_meta_error("sitespool-sealed/1 name=a size= zip=zlib\n", "size");
    expect_meta_error("sitespool-sealed/1 name=a size=1 zip=gzip\n", "zip");
    expect_meta_error("sitespool-sealed/1 name=a size=1 zip=zlib files=0\n", "files");
    expect_meta_error("sitespool-sealed/1 name=a size=1 zip=zlib files=10001\n", "files");
    expect_meta_error("sitespool-sealed/1 name=a size=1 zip=zlib files=01\n", "files");
    expect_meta_error("sitespool-sealed/1 name=a size=1 zip=zlib files=2 x=1\n", "more than");
    expect_meta_error("sitespool-sealed/1 name=a size=1 zip=zlib \n", "files");
    expect_meta_error("sitespool-sealed/1 name=a zip=zlib size=1\n", "size=");
    expect_meta_error("sitespool-sealed/1  name=a size=1 zip=zlib\n", "name=");
    expect_meta_error("sitespool-sealed/1 name=a size=1\n", "incomplete");
    expect_meta_error("sitespool-sealed/1 name=%2Fetc size=1 zip=zlib\n", "name");
    expect_meta_error("sitespool-sealed/1 name=.hidden size=1 zip=zlib\n", "name");
    expect_meta_error("sitespool-sealed/1 name= size=1 zip=zlib\n", "name");
    expect_meta_error("sitespool-sealed/1 name=a%0a size=1 zip=zlib\n", "name");
    expect_meta_error("sitespool-sealed/1 name=a%00 size=1 zip=zlib\n", "name");
    expect_meta_error("sitespool-sealed/1 name=a%2 size=1 zip=zlib\n", "name");
    expect_meta_error("sitespool-sealed/1 name=a size=1 zip=zlib\n\n", "more than one line");
    /* Too long a line. */
    char big[SS_SEALED_META_MAX + 64];
    memset(big, 'a', sizeof big);
    memcpy(big, "sitespool-sealed/1 name=", 24);
    big[sizeof big - 1] = '\n';
    CU_ASSERT_EQUAL(ss_sealed_meta_parse(big, sizeof big, &out, &e), -1);
    /* The writer refuses what the parser would. */
    snprintf(m.name, sizeof m.name, ".x");
    CU_ASSERT_EQUAL(ss_sealed_meta_format(&m, line, sizeof line, &e), -1);
    snprintf(m.name, sizeof m.name, "x");
    m.files = SS_BUNDLE_FILES_MAX + 1;
    CU_ASSERT_EQUAL(ss_sealed_meta_format(&m, line, sizeof line, &e), -1);
    m.files = 0;
    CU_ASSERT_EQUAL(ss_sealed_meta_format(&m, line, 20, &e), -1);
    CU_ASSERT_EQUAL(e.code, SS_E_TOOBIG);
}

#define PIN64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void test_instruction_enc(void)
{
    const char *sealed =
        "sitespool/1 id=0123456789abcdef0123456789abcdef from=PS1 to=SS1 type=data "
        "dest=replmgr.box name=sealed size=1234 zip=none seq=1 created=1 expires=2 "
        "enc=0123456789ABCDEF seal=" PIN64;
    ss_instr in, out;
    ss_error e = {0};
    CU_ASSERT_EQUAL_FATAL(ss_instr_parse(&in, sealed, &e), 0);
    CU_ASSERT_STRING_EQUAL(in.enc, "0123456789ABCDEF");
    CU_ASSERT_STRING_EQUAL(in.seal, PIN64);
    char text[1024];
    CU_ASSERT_EQUAL(ss_instr_format(&in, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, sealed);
    CU_ASSERT_EQUAL(ss_instr_parse(&out, text, &e), 0);
    CU_ASSERT_STRING_EQUAL(out.enc, in.enc);
    CU_ASSERT_STRING_EQUAL(out.seal, in.seal);
    /* Absent: "" and not written (unsealed instructions are unchanged). */
    const char *plain = "sitespool/1 id=0123456789abcdef0123456789abcdef from=PS1 to=SS1 "
                        "type=data dest=replmgr.box name=a.txt size=1 zip=zlib seq=1 created=1 "
                        "expires=2 files=3";
    CU_ASSERT_EQUAL_FATAL(ss_instr_parse(&in, plain, &e), 0);
    CU_ASSERT_STRING_EQUAL(in.enc, "");
    CU_ASSERT_STRING_EQUAL(in.seal, "");
    CU_ASSERT_EQUAL(ss_instr_format(&in, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, plain);
    char buf[1024];
    static const struct {
        const char *at, *bad, *named;
    } overwritten[] = {
        {"enc=0123456789ABCDEF", "enc=0123456789abcdef", "enc"},
        {"enc=0123456789ABCDEF", "enc=0123456789ABCDEG", "enc"},
        {"seal=00112233", "seal=0011223A", "seal"}, /* upper case */
        {"seal=00112233", "seal=0011223g", "seal"},
        {"name=sealed", "name=sealer", "name=sealed"},
        {"zip=none", "zip=zlib", "zip=none"},
    };
    for (size_t i = 0; i < sizeof overwritten / sizeof overwritten[0]; i++) {
        snprintf(buf, sizeof buf, "%s", sealed);
        memcpy(strstr(buf, overwritten[i].at), overwritten[i].bad, strlen(overwritten[i].bad));
        expect_field_error(buf, overwritten[i].named);
    }
    snprintf(buf, sizeof buf, "%s files=2", sealed);
    expect_field_error(buf, "files");
    snprintf(buf, sizeof buf, "%s enc=0123456789ABCDEF", sealed);
    expect_field_error(buf, "twice");
    snprintf(buf, sizeof buf, "%.*s", (int)(strlen(sealed) - 2), sealed); /* a short pin */
    expect_field_error(buf, "seal");
    snprintf(buf, sizeof buf, "%s0", sealed);
    expect_field_error(buf, "seal");
    /* One comes with the other. */
    snprintf(buf, sizeof buf, "%.*s", (int)(strlen(sealed) - strlen(" seal=" PIN64)), sealed);
    expect_field_error(buf, "must carry seal=");
    snprintf(buf, sizeof buf, "%s seal=" PIN64, plain);
    expect_field_error(buf, "without enc=");
}

int main(void)
{
    static const tu_test tests[] = {
        {"codec roundtrip in pieces", test_codec_roundtrip},
        {"codec stops a decompression bomb at the limit", test_codec_bomb_stops_at_limit},
        {"codec inflater reset between streams", test_codec_inflater_reset_between_streams},
        {"codec rejects truncated, trailing and non-zlib data", test_codec_truncated_and_trailing},
        {"codec raw mode: header and trailer checked, Adler-32 skipped", test_codec_raw_mode},
        {"instruction fields roundtrip", test_instruction_roundtrip},
        {"instruction parser rejects malformed fields", test_instruction_rejects},
        {"site.conf parsing is strict", test_conf_parse},
        {"documented defaults are the defaults", test_conf_describe},
        {"atomic write never replaces", test_atomic_noreplace},
        {"safe open refuses symlinks, fifos, oversized",
         test_open_regular_refuses_symlink_and_fifo},
        {"receipt payload roundtrip", test_receipt_roundtrip},
        {"receipt parser rejects malformed lines", test_receipt_rejects},
        {"heartbeat payload roundtrip; strict but forward compatible",
         test_heartbeat_roundtrip_and_rejects},
        {"times in UTC, durations with singular and plural", test_time_and_duration_text},
        {"seal round trips: 0 to 3 MiB in odd pieces", test_seal_roundtrip_sizes},
        {"seal faults: each part damaged, reordered, cut, extended, wrong key", test_seal_faults},
        {"seal chunk boundaries", test_seal_chunk_boundaries},
        {"seal pin: the signed header hash, refused when another", test_seal_pin},
        {"seal: one ephemeral key per send, a fresh header per package", test_seal_send_key_shared},
        {"seal: the opener's key cache - hits open as misses, never across keys",
         test_seal_open_cache},
        {"sealed metadata line: the documented form only", test_sealed_meta},
        {"instruction enc field: sealed instructions show nothing", test_instruction_enc},
    };
    return tu_run("inboxes", tests, sizeof tests / sizeof tests[0]);
}
