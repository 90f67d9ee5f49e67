/*
 * fuzz_keyfile.c - libFuzzer target: the public key file parser
 * (ss_pubkey_parse, keystore/keys.h) and the key exchange and rollover
 * payload parsers (ss_key_offer_parse, ss_rollover_parse,
 * keystore/keyfile.h), plus the comment helpers they use.  Build and run:
 * see README.md here.
 *
 * Input: one selector byte, then the file or payload bytes exactly (no
 * terminating NUL):
 *   selector % 3 == 0  public key file (what hman.box and `key import` read)
 *                 1    key exchange payload for site PS1 (type=key)
 *                 2    rollover payload for site PS1 (type=rollover)
 *   selector & 0x80    the payload is judged for site SS1 instead
 * Seeds: corpus/keyfile (real .pub files from `sitespool init`, and the
 * payloads of a real `key send-to` and `key rotate`).
 *
 * Invariants: a parsed key formats and parses back to the same key; a
 * payload is accepted only with a proof that verifies (checked again here
 * with libsodium directly), and only when its comment names the site.
 */
#include "../../keystore/keyfile.h"
#include "fuzz_common.h"

#include <sodium.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0) abort();
    return 0;
}

static void check_pubkey_roundtrip(const ss_pubkey *pk, const char *comment)
{
    char text[SS_COMMENT_MAX + 256];
    ss_pubkey again;
    ss_error e = {0};
    FUZZ_CHECK(ss_pubkey_format(pk, comment, text, sizeof text) == 0, "cannot format key");
    FUZZ_CHECK(ss_pubkey_parse(text, strlen(text), &again, NULL, 0, &e) == 0,
               "formatted key refused: %s", e.msg);
    FUZZ_CHECK(!memcmp(pk, &again, sizeof again), "key changed in a round trip");
}

/* The proof line's base64 signature, verified here independently of
 * keyfile.c over the statement the README gives. */
static bool proof_ok(const ss_pubkey *pk, const char *statement, const char *text, size_t len)
{
    const char *tag = NULL;
    for (size_t i = 0; i + 6 <= len; i++)
        if (!memcmp(text + i, "proof=", 6)) tag = text + i + 6;
    if (!tag) return false;
    size_t n = (size_t)(text + len - tag);
    if (n && tag[n - 1] == '\n') n--;
    unsigned char sig[crypto_sign_BYTES];
    size_t got;
    if (sodium_base642bin(sig, sizeof sig, tag, n, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        got != sizeof sig)
        return false;
    return crypto_sign_verify_detached(sig, (const unsigned char *)statement, strlen(statement),
                                       pk->pk) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned sel = data[0];
    const char *site = sel & 0x80 ? "SS1" : "PS1";
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text) abort();
    memcpy(text, data + 1, len);
    ss_error e = {0};
    ss_pubkey pk;
    char id[SS_KEYID_HEX + 1], statement[160];
    switch (sel % 3) {
    case 0: {
        char comment[SS_COMMENT_MAX + 1], code[SS_SITE_CODE_MAX + 1];
        if (ss_pubkey_parse(text, len, &pk, comment, sizeof comment, &e) == 0) {
            FUZZ_CHECK(strlen(comment) <= SS_COMMENT_MAX, "comment too long");
            check_pubkey_roundtrip(&pk, comment);
            if (ss_pubkey_comment_site(comment, code))
                FUZZ_CHECK(ss_site_code_valid(code), "comment site '%s'", code);
            FUZZ_CHECK(ss_pubkey_comment_not_after(comment) >= 0, "negative validity end");
            ss_keyid_hex(pk.keyid, id);
            unsigned char back[SS_KEYID_BYTES];
            char canon[SS_KEYID_HEX + 1];
            FUZZ_CHECK(ss_keyid_parse(id, back) == 0 && !memcmp(back, pk.keyid, sizeof back),
                       "key id %s does not parse back", id);
            FUZZ_CHECK(ss_keyid_canonical(id, canon) == 0 && !strcmp(canon, id),
                       "key id %s is not canonical", id);
        }
        break;
    }
    case 1: {
        int64_t not_after = 0;
        if (ss_key_offer_parse(site, text, len, &pk, &not_after, &e) == 0) {
            check_pubkey_roundtrip(&pk, "x");
            ss_keyid_hex(pk.keyid, id);
            snprintf(statement, sizeof statement, "sitespool-key/1 site=%s key=%s", site, id);
            FUZZ_CHECK(proof_ok(&pk, statement, text, len), "offer accepted without a proof");
        } else {
            FUZZ_CHECK(e.code == SS_E_FORMAT || e.code == SS_E_BADSIG || e.code == SS_E_TRUNCATED ||
                           e.code == SS_E_BASE64 || e.code == SS_E_ALG ||
                           e.code == SS_E_COMMENT || e.code == SS_E_TRAILING,
                       "offer refused with code %d: %s", (int)e.code, e.msg);
        }
        break;
    }
    default: {
        unsigned char previous[SS_KEYID_BYTES];
        bool parsed = false;
        int64_t not_after = 0;
        int rc = ss_rollover_parse(site, text, len, previous, &pk, &parsed, &not_after, &e);
        if (parsed) check_pubkey_roundtrip(&pk, "x");
        if (rc == 0) {
            FUZZ_CHECK(parsed, "rollover accepted, next key not marked parsed");
            char old[SS_KEYID_HEX + 1];
            ss_keyid_hex(previous, old);
            ss_keyid_hex(pk.keyid, id);
            snprintf(statement, sizeof statement,
                     "sitespool-rollover/1 site=%s previous=%s next=%s", site, old, id);
            FUZZ_CHECK(proof_ok(&pk, statement, text, len), "rollover accepted without a proof");
        }
        break;
    }
    }
    free(text);
    return 0;
}
