/*
 * instruction.h - the instruction fields carried in a signature's trusted
 * comment (DESIGN §3), and the unsigned one-line form.
 *
 *   sitespool/1 id=<32 hex> from=PS1 to=SS1 type=data dest=replmgr.box
 *   name=<pct> size=<n> zip=zlib seq=<n> created=<unix> expires=<unix>
 *   [files=<n>]
 *
 * files=<n> makes the package a bundle: its payload (size bytes once
 * inflated) is a POSIX tar stream of exactly n regular files, each
 * delivered as if it had come in a pair of its own (bundle.h).
 *
 * enc=<16 upper-case hex: a key id> makes the package sealed to that key
 * of the receiver (seal.h): name is then "sealed", zip none, size the
 * sealed package's length and files absent - the real ones travel inside -
 * and seal=<64 lower-case hex> pins the sealed header (ss_seal_pin): one
 * comes with the other.
 *
 * Security stance: the text is parsed strictly: one space between pairs,
 * every value percent-decoded and checked (site codes, a destination that
 * can only name an inbox, a file name without '/' or leading '.'), required
 * keys enforced, duplicate keys refused, unknown keys ignored for forward
 * compatibility.
 */
#ifndef SS_INSTRUCTION_H
#define SS_INSTRUCTION_H

#include "codec.h"
#include "error.h"
#include "site.h"

#include <stdbool.h>
#include <stdint.h>

#define SS_INSTR_MAGIC "sitespool/1"
#define SS_ID_HEX 32
#define SS_NAME_MAX 255

/* data: files for an inbox; key and rollover: the sender's keys (they
 * change the keystore); receipt and heartbeat: what the sender knows of
 * the receiver's pairs and keys (report.h; never receipted themselves). */
enum ss_itype { SS_TYPE_DATA, SS_TYPE_KEY, SS_TYPE_ROLLOVER, SS_TYPE_RECEIPT, SS_TYPE_HEARTBEAT };

typedef struct ss_instr {
    char id[SS_ID_HEX + 1];
    char from[SS_SITE_CODE_MAX + 1];
    char to[SS_SITE_CODE_MAX + 1];
    enum ss_itype type;
    char dest[40];
    char name[SS_NAME_MAX + 1];
    uint64_t size;
    enum ss_zip zip;
    uint64_t seq;
    int64_t created;
    int64_t expires;
    unsigned files; /* 0: the payload is one file named name; else a bundle */
    char enc[17];   /* the receiver's key id the package is sealed to; "": not sealed */
    char seal[65];  /* with enc: the sealed header's pin (seal.h), 64 lower-case hex */
} ss_instr;

const char *ss_itype_name(enum ss_itype t);
/* A fresh random 128-bit id as 32 lowercase hex digits. */
void ss_instr_new_id(char out[SS_ID_HEX + 1]);
bool ss_id_valid(const char *id);
/* A delivered file name: printable, no '/', not starting with '.', <= 255. */
bool ss_file_name_valid(const char *name);

/* Formats the fields line (no newline).  Returns -1 if it would not fit. */
int ss_instr_format(const ss_instr *in, char *out, size_t len);
/* Parses a fields line. */
int ss_instr_parse(ss_instr *in, const char *text, ss_error *e);

/* Percent-encodes everything but A-Z a-z 0-9 - . _ ~ */
int ss_pct_encode(const char *in, char *out, size_t len);
/* Decodes; refuses malformed escapes and NUL bytes. */
int ss_pct_decode(const char *in, size_t in_len, char *out, size_t len);

#endif
