/*
 * fuzz_instr.c - libFuzzer target: the instruction fields parser
 * (ss_instr_parse, inboxes/instruction.h) on the text of a trusted comment
 * or of the unsigned one-line form.  Build and run: see README.md here.
 *
 * Input: the fields line (a NUL ends it, as in the despooler, which hands
 * over a C string).  Seeds: corpus/instr (real trusted comments).
 *
 * Invariants checked on every accepted line:
 *   - every field is valid by its own rule (id, site codes, inbox name,
 *     plain file name, expires >= created);
 *   - formatting the result and parsing that again gives the same fields
 *     (one canonical form; ss_instr_format never fails on parsed fields);
 *   - the name survives percent-encoding and decoding unchanged.
 */
#include "../../inboxes/instruction.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    ss_instr in, again;
    ss_error e = {0};
    if (ss_instr_parse(&in, text, &e) == 0) {
        FUZZ_CHECK(ss_id_valid(in.id), "id '%s'", in.id);
        FUZZ_CHECK(ss_site_code_valid(in.from) && ss_site_code_valid(in.to), "from '%s' to '%s'",
                   in.from, in.to);
        FUZZ_CHECK(ss_dest_name_valid(in.dest), "dest '%s'", in.dest);
        FUZZ_CHECK(ss_file_name_valid(in.name), "name '%s'", in.name);
        FUZZ_CHECK(in.expires >= in.created, "created %lld expires %lld", (long long)in.created,
                   (long long)in.expires);
        FUZZ_CHECK(in.zip == SS_ZIP_NONE || in.zip == SS_ZIP_ZLIB, "zip %d", (int)in.zip);

        char line[4096];
        FUZZ_CHECK(ss_instr_format(&in, line, sizeof line) == 0, "cannot format parsed fields");
        ss_error e2 = {0};
        FUZZ_CHECK(ss_instr_parse(&again, line, &e2) == 0, "formatted line refused: %s\n  %s",
                   e2.msg, line);
        FUZZ_CHECK(memcmp(&in, &again, sizeof in) == 0, "round trip changed the fields\n  %s",
                   line);

        char enc[SS_NAME_MAX * 3 + 1], dec[SS_NAME_MAX + 1];
        FUZZ_CHECK(ss_pct_encode(in.name, enc, sizeof enc) == 0, "cannot encode '%s'", in.name);
        FUZZ_CHECK(ss_pct_decode(enc, strlen(enc), dec, sizeof dec) == 0 && !strcmp(dec, in.name),
                   "name '%s' does not survive encoding", in.name);
    } else {
        FUZZ_CHECK(e.code == SS_E_FIELD, "refusal with code %d: %s", (int)e.code, e.msg);
        FUZZ_CHECK(memchr(e.msg, '\0', sizeof e.msg) != NULL, "unterminated error message");
    }
    free(text);
    return 0;
}
