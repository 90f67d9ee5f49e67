/*
 * fuzz_sig.c - libFuzzer target: the minisign signature file parser
 * (ss_sig_parse, keystore/sigfile.h) on the bytes of an <ID>.ins file,
 * then what the despooler does next with a parsed one: the fields parser
 * on its trusted comment and the global signature check against a fixed
 * key.  Build and run: see README.md here.
 *
 * Input: the file's bytes, exactly (no terminating NUL, so that a read
 * past the end is caught by ASan).  Seeds: corpus/sig (real .ins files
 * made by `sitespool send`, `key send-to` and `key rotate`).
 *
 * Invariants checked on every accepted file: it looks signed; both
 * comments are NUL-terminated within their limits and printable; a
 * refusal carries an error code.
 */
#include "../../inboxes/instruction.h"
#include "../../keystore/sigfile.h"
#include "fuzz_common.h"
#include "ps1_key.h"

static ss_pubkey ps1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ss_error e = {0};
    if (sodium_init() < 0 ||
        ss_pubkey_parse(fuzz_ps1_pub, strlen(fuzz_ps1_pub), &ps1, NULL, 0, &e) != 0) {
        fprintf(stderr, "fuzz_sig: setup failed: %s\n", e.msg);
        abort();
    }
    return 0;
}

static void check_comment(const char *s, size_t max, const char *what)
{
    size_t n = strnlen(s, max + 1);
    FUZZ_CHECK(n <= max, "%s longer than %zu", what, max);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f, "%s holds byte 0x%02x", what,
                   (unsigned char)s[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes: a NULL data pointer (size 0) is
     * replaced by a real one, as any caller's buffer would be. */
    char *text = malloc(size ? size : 1);
    if (!text) abort();
    memcpy(text, data, size);
    static ss_sig sig; /* 10 KiB: not on the stack */
    memset(&sig, 0, sizeof sig);
    ss_error e = {0};
    if (ss_sig_parse(text, size, &sig, &e) == 0) {
        FUZZ_CHECK(ss_sig_looks_signed(text, size), "parsed but does not look signed");
        check_comment(sig.untrusted_comment, SS_COMMENT_MAX, "untrusted comment");
        check_comment(sig.trusted_comment, SS_TRUSTED_COMMENT_MAX, "trusted comment");
        ss_instr in;
        ss_error e2 = {0};
        (void)ss_instr_parse(&in, sig.trusted_comment, &e2);
        ss_error e3 = {0};
        if (ss_sig_verify_comment(&sig, &ps1, &e3) != 0)
            FUZZ_CHECK(e3.code == SS_E_KEYID || e3.code == SS_E_BADGLOBAL, "verify code %d",
                       (int)e3.code);
        unsigned char hash[SS_HASH_BYTES] = {0};
        (void)ss_sig_verify_hash(&sig, &ps1, hash, &e3);
    } else {
        FUZZ_CHECK(e.code != SS_OK, "refused without an error code: %s", e.msg);
    }
    free(text);
    return 0;
}
