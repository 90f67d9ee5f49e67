/*
 * fuzz_conf.c - libFuzzer target: site.conf, read the way every command
 * reads it (ss_conf_load on a site root, inboxes/site.h).  Build and run:
 * see README.md here.
 *
 * Input: the bytes of site.conf, written to a site root in a per-process
 * temporary folder (there is no loader from memory; the file is the
 * interface).  Seeds: corpus/conf (the site.conf `sitespool init` writes,
 * and a short hand-written one).
 *
 * Invariants on every accepted file:
 *   - site_code is a valid site code, batch_max and the send intervals are
 *     at least 1, compression_level is 0-9;
 *   - ss_conf_render writes a file that parses back to the same settings
 *     (render -> parse -> render is a fixed point);
 *   - every inbox name allowed_dest accepts is a valid inbox name.
 * A refusal is SS_E_CONF (or SS_E_TOOBIG/NOMEM/IO for the file itself).
 */
#include "../../inboxes/site.h"
#include "fuzz_common.h"

static char conf_path[600];
static const char *root;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    root = fuzz_scratch("conf");
    snprintf(conf_path, sizeof conf_path, "%s/site.conf", root);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write(conf_path, data, size);
    static ss_conf c, again; /* ~6 KiB each */
    ss_error e = {0};
    if (ss_conf_load(&c, root, &e) != 0) {
        FUZZ_CHECK(e.code == SS_E_CONF || e.code == SS_E_TOOBIG || e.code == SS_E_NOMEM,
                   "refused with code %d: %s", (int)e.code, e.msg);
        return 0;
    }
    FUZZ_CHECK(ss_site_code_valid(c.site_code), "site_code '%s'", c.site_code);
    FUZZ_CHECK(c.batch_max >= 1, "batch_max 0");
    FUZZ_CHECK(c.send_retry_interval >= 1 && c.send_retry_max_interval >= 1, "send intervals");
    FUZZ_CHECK(c.compression_level >= 0 && c.compression_level <= 9, "compression_level %d",
               c.compression_level);
    FUZZ_CHECK(memchr(c.directory, '\0', sizeof c.directory) &&
                   memchr(c.allowed_dest, '\0', sizeof c.allowed_dest) &&
                   memchr(c.notify_command, '\0', sizeof c.notify_command),
               "an unterminated string setting");

    char *text = ss_conf_render(&c);
    FUZZ_CHECK(text != NULL, "cannot render the settings");
    ss_conf_defaults(&again);
    ss_error e2 = {0};
    FUZZ_CHECK(ss_conf_parse(&again, text, "rendered", &e2) == 0,
               "the rendered settings do not parse: %s", e2.msg);
    char *text2 = ss_conf_render(&again);
    FUZZ_CHECK(text2 && !strcmp(text, text2), "render -> parse -> render changed the settings");
    free(text);
    free(text2);

    /* Every name the allowed_dest list lets through is an inbox name. */
    char word[64];
    for (const char *p = c.allowed_dest; *p;) {
        size_t n = strcspn(p, " ,");
        if (n && n < sizeof word) {
            memcpy(word, p, n);
            word[n] = '\0';
            if (ss_conf_dest_allowed(&c, word))
                FUZZ_CHECK(ss_dest_name_valid(word), "allowed_dest lets '%s' through", word);
        }
        p += n;
        while (*p == ' ' || *p == ',')
            p++;
    }
    FUZZ_CHECK(!ss_conf_dest_allowed(&c, "../x.box") && !ss_conf_dest_allowed(&c, ""),
               "a path allowed as a destination");
    return 0;
}
