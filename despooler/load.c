/*
 * load.c - reading one instruction file: opened without following links,
 * regular and size-limited (fileio.h), parsed strictly as a minisign
 * signature file whose trusted comment holds the fields, or as the one-line
 * unsigned form; its id must be its file name.
 *
 * dsp_read_claim reads one the same way for an administrator's listing
 * (admin.h), without judging it.
 *
 * Security stance: nothing here is trusted yet - the fields are only used
 * to find the key (verify.c) until the signature over them verified.
 * Diagnostics: 4403 (malformed, truncated), 4411 (not a regular file); a
 * truncated file younger than WRITER_GRACE_S is left for its writer; a
 * file this host cannot read (permissions, I/O, descriptors) stays, 4419
 * (localfault.c).
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Parses the text of an instruction file into w: the signature file and
 * the fields of its trusted comment, or the one-line unsigned form. */
static int parse_fields(char *text, size_t len, work *w, ss_error *e)
{
    int rc;
    if (ss_sig_looks_signed(text, len)) {
        w->is_signed = true;
        rc = ss_sig_parse(text, len, &w->sig, e);
        if (rc == 0) rc = ss_instr_parse(&w->in, w->sig.trusted_comment, e);
        ss_keyid_hex(w->sig.keyid, w->keyid);
    } else {
        /* The unsigned form: exactly one line. */
        char *nl = memchr(text, '\n', len);
        if (memchr(text, '\0', len) || (nl && (size_t)(nl - text) + 1 != len))
            rc = ss_err(e, SS_E_FORMAT,
                        "not a signature file and not a one-line unsigned "
                        "instruction");
        else {
            if (nl) *nl = '\0';
            rc = ss_instr_parse(&w->in, text, e);
        }
    }
    return rc;
}

int dsp_load(int receive_fd, const char *ins_name, work *w, ss_error *e)
{
    char base[64], *text = NULL;
    size_t len;
    memset(w, 0, sizeof *w);
    w->dest_fd = -1;
    w->out.fd = -1;
    snprintf(w->ins_name, sizeof w->ins_name, "%s", ins_name);
    base_of(ins_name, base, sizeof base);
    snprintf(w->pck_name, sizeof w->pck_name, "%s.pck", base);
    if (ss_read_small_file(receive_fd, ins_name, SS_SIGFILE_MAX, &text, &len, e) != 0) {
        /* ss_read_small_file leaves errno as the failed call set it. */
        w->input_errno = e->code == SS_E_NOMEM ? ENOMEM : e->code == SS_E_IO ? errno : 0;
        return -1;
    }
    /* The file's identity goes into the ledger with the delivery, so that
     * after a crash the leftover of the batch is told from a resend. */
    struct stat st;
    if (fstatat(receive_fd, ins_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        dsp_file_identity(&st, w->ins_identity, sizeof w->ins_identity);
    int rc = parse_fields(text, len, w, e);
    free(text);
    if (rc == 0 && strcmp(base, w->in.id) != 0)
        rc = ss_err(e, SS_E_FIELD, "the file name does not match the instruction id %s", w->in.id);
    return rc;
}

void dsp_read_claim(int dirfd, const char *name, ss_claim *c)
{
    char *text = NULL;
    size_t len;
    ss_error e = {0};
    memset(c, 0, sizeof *c);
    work *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(c->error, sizeof c->error, "out of memory");
        return;
    }
    if (ss_read_small_file(dirfd, name, SS_SIGFILE_MAX, &text, &len, &e) == 0 &&
        parse_fields(text, len, w, &e) == 0) {
        c->parsed = true;
        c->in = w->in;
        if (w->is_signed) snprintf(c->keyid, sizeof c->keyid, "%s", w->keyid);
    } else {
        snprintf(c->error, sizeof c->error, "%s", e.msg);
    }
    free(text);
    free(w);
}

/* An instruction dsp_load could not load: quarantined, or left for its
 * writer, because it is gone, or because this host cannot read it (err:
 * the error number of the read, 0 if it was read). */
void dsp_load_failed(ss_despooler *d, const char *name, const ss_error *err, int err_no)
{
    ss_error e = *err;
    char base[64];
    base_of(name, base, sizeof base);
    if (e.code == SS_E_NOENT) return; /* gone since the listing */
    if ((e.code == SS_E_IO || e.code == SS_E_NOMEM) && dsp_input_fault_is_local(err_no)) {
        (void)dsp_input_fault(d, base, NULL, name, err_no);
        return;
    }
    struct stat st;
    if (e.code == SS_E_TRUNCATED && fstatat(d->receive_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        ss_now() - st.st_mtime < WRITER_GRACE_S) {
        /* A peer may still be writing it in place: its close wakes us again. */
        d->stats.waiting++;
        return;
    }
    if (e.code == SS_E_NOTREG)
        QUARANTINE(d, base, 4411, name, e.msg);
    else
        QUARANTINE(d, base, 4403, name, e.msg);
}
