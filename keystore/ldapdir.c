/*
 * ldapdir.c - the key directory on a directory server.  See ldapdir.h.
 *
 * The connection, in order: ldap_initialize (no I/O), options (protocol 3,
 * timeouts, no referrals, TLS: CA file, certificate demanded, a fresh TLS
 * context), StartTLS when asked, then a simple bind when a bind DN is set
 * (anonymous otherwise: LDAPv3 needs no bind).  One connection serves
 * every search until an operation fails; a search on a reused connection
 * that the server dropped meanwhile (idle timeout) is retried once on a
 * fresh one before it counts as a fault.
 */
#include "ldapdir.h"
#include "../inboxes/fileio.h"
#include "db.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <ldap.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PASSWORD_MAX 1024
#define VALUE_MAX 4096

struct ss_ldapdir {
    const char *root;
    const ss_conf *conf;
    ss_dirurl url;
    char name[SS_DIRURL_HOST_MAX + SS_DIRURL_DN_MAX + 32];
    LDAP *ld; /* NULL: not connected */
};

static const char *const attrs[] = {"sitespoolSiteCode",        "sitespoolPublicKey",
                                    "sitespoolNextPublicKey",   "sitespoolKeyNotAfter",
                                    "sitespoolNextKeyNotAfter", NULL};

/* ---------------------------------------------------------- small parts */

void ss_gentime_format(int64_t t, char out[16])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 16, "%Y%m%d%H%M%SZ", &tm);
}

int ss_gentime_parse(const char *s, int64_t *t)
{
    if (strlen(s) != 15 || strspn(s, "0123456789") != 14 || s[14] != 'Z') return -1;
    struct tm tm = {0};
    int v[6], len[6] = {4, 2, 2, 2, 2, 2};
    const char *p = s;
    for (int i = 0; i < 6; i++) {
        v[i] = 0;
        for (int j = 0; j < len[i]; j++)
            v[i] = v[i] * 10 + (*p++ - '0');
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
        return -1;
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    *t = (int64_t)timegm(&tm);
    return 0;
}

static void note_problem(ss_dirrec *rec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_problem(ss_dirrec *rec, const char *fmt, ...)
{
    if (rec->problem[0]) return; /* the first one tells */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->problem, sizeof rec->problem, fmt, ap);
    va_end(ap);
}

void ss_dirrec_fill(ss_dirrec *rec, const char *site, const char *current, const char *next,
                    const char *not_after, const char *next_not_after)
{
    ss_error why = {0};
    char comment[SS_COMMENT_MAX + 1], named[SS_SITE_CODE_MAX + 1];
    int64_t t;
    rec->found = true;
    snprintf(rec->site, sizeof rec->site, "%s", site);
    if (!current) {
        note_problem(rec, "sitespoolPublicKey is missing");
    } else if (ss_pubkey_parse(current, strlen(current), &rec->current, comment, sizeof comment,
                               &why) != 0) {
        note_problem(rec, "sitespoolPublicKey is not a public key file: %s", why.msg);
    } else {
        named[0] = '\0';
        int has = ss_pubkey_comment_site(comment, named);
        if (!has || strcmp(named, site) != 0)
            note_problem(rec, "sitespoolPublicKey's comment names %s, not site %s",
                         has ? named : "no site", site);
        rec->has_current = has && !strcmp(named, site);
        if (rec->has_current) rec->current_not_after = ss_pubkey_comment_not_after(comment);
    }
    if (not_after && ss_gentime_parse(not_after, &t) != 0)
        note_problem(rec, "sitespoolKeyNotAfter is not a GeneralizedTime (YYYYMMDDHHMMSSZ): '%s'",
                     not_after);
    else if (not_after && rec->has_current && !rec->current_not_after)
        rec->current_not_after = t;
    if (next_not_after && ss_gentime_parse(next_not_after, &t) != 0)
        note_problem(rec,
                     "sitespoolNextKeyNotAfter is not a GeneralizedTime (YYYYMMDDHHMMSSZ): '%s'",
                     next_not_after);
    if (!next) return;
    rec->has_next = true;
    ss_error bad = {0};
    if (!rec->has_current)
        note_problem(rec, "sitespoolNextPublicKey cannot be checked without a usable current key");
    else if (ss_dirnext_parse(site, next, strlen(next), &rec->current, &rec->next,
                              &rec->next_not_after, &bad) != 0)
        note_problem(rec, "sitespoolNextPublicKey is not used: %s", bad.msg);
    else
        rec->next_ok = true;
}

/* ------------------------------------------------------ the password */

int ss_dir_password_load(const char *root, const ss_conf *conf, char **secret, ss_error *e)
{
    char path[PATH_MAX];
    const char *name = conf->directory_password_file;
    *secret = NULL;
    if (name[0] == '/')
        snprintf(path, sizeof path, "%s", name);
    else if (ss_path(path, sizeof path, root, name) != 0)
        return ss_err(e, SS_E_TOOBIG, "the password file path is too long");
    struct stat st;
    ss_error why = {0};
    int fd = ss_open_regular(AT_FDCWD, path, PASSWORD_MAX, &st, &why);
    if (fd < 0)
        return ss_err(e, why.code, "the password file %s cannot be used: %s", path, why.msg);
    if (st.st_uid != geteuid()) {
        close(fd);
        return ss_err(e, SS_E_PERM,
                      "the password file %s belongs to uid %u, not to the user running sitespool "
                      "(uid %u); refusing to use it: chown it to that user",
                      path, (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if (st.st_mode & 077) {
        close(fd);
        return ss_err(e, SS_E_PERM,
                      "the password file %s has mode %04o: group or others can read it; "
                      "refusing to use it: run 'chmod 600 %s' and consider changing the password",
                      path, (unsigned)(st.st_mode & 07777), path);
    }
    char *buf = sodium_malloc(PASSWORD_MAX + 1);
    if (!buf) {
        close(fd);
        return ss_err(e, SS_E_NOMEM, "cannot allocate secure memory");
    }
    ssize_t n = ss_read_full(fd, buf, PASSWORD_MAX, &why);
    close(fd);
    if (n < 0) {
        sodium_free(buf);
        return ss_err(e, why.code, "cannot read the password file %s: %s", path, why.msg);
    }
    size_t len = (size_t)n;
    if (len && buf[len - 1] == '\n') len--;
    if (len && buf[len - 1] == '\r') len--;
    buf[len] = '\0';
    const char *bad = len == 0                 ? "is empty"
                      : memchr(buf, '\n', len) ? "holds more than one line"
                      : memchr(buf, '\0', len) ? "holds a NUL byte"
                                               : NULL;
    if (bad) {
        sodium_free(buf);
        return ss_err(e, SS_E_FORMAT,
                      "the password file %s %s: it must hold the password alone, on one line", path,
                      bad);
    }
    *secret = buf;
    return 0;
}

/* -------------------------------------------------------- connecting */

/* The words for an LDAP failure: libldap's, the server's own, and for a
 * connection that could not be made over TLS the likely cause (libldap
 * with GnuTLS says only "Can't contact LDAP server" or "Connect error"
 * when the certificate does not verify). */
static int ldap_fail(ss_ldapdir *d, int rc, const char *doing, enum ss_dir_fault kind,
                     enum ss_dir_fault *fault, ss_error *e)
{
    char *diag = NULL;
    if (d->ld) ldap_get_option(d->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    bool say = diag && *diag && strcmp(diag, "(unknown error code)") != 0;
    bool tls = d->url.ldaps || d->conf->directory_starttls;
    const char *hint = tls && (rc == LDAP_CONNECT_ERROR || rc == LDAP_SERVER_DOWN)
                           ? "; if the server runs, its TLS certificate did not verify: it must "
                             "be signed by a CA in directory_ca_file (or the system's CAs) and "
                             "name the host"
                           : "";
    ss_err(e, SS_E_IO, "%s %s: %s%s%s%s%s", doing, d->url.server, ldap_err2string(rc),
           say ? " (" : "", say ? diag : "", say ? ")" : "", hint);
    if (diag) ldap_memfree(diag);
    *fault = kind;
    return -1;
}

static void disconnect(ss_ldapdir *d)
{
    if (d->ld) ldap_unbind_ext_s(d->ld, NULL, NULL);
    d->ld = NULL;
}

/* Protocol, timeouts, referrals and TLS, set on the handle itself. */
static int set_options(ss_ldapdir *d, enum ss_dir_fault *fault, ss_error *e)
{
    int version = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, is_server = 0, rc;
    struct timeval tv = {.tv_sec = d->conf->directory_timeout, .tv_usec = 0};
    if ((rc = ldap_set_option(d->ld, LDAP_OPT_PROTOCOL_VERSION, &version)) != LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(d->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv)) != LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(d->ld, LDAP_OPT_TIMEOUT, &tv)) != LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(d->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF)) != LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(d->ld, LDAP_OPT_RESTART, LDAP_OPT_ON)) != LDAP_OPT_SUCCESS)
        return ldap_fail(d, rc, "cannot set the connection options for", SS_DIR_UNAVAILABLE, fault,
                         e);
    if (!d->url.ldaps && !d->conf->directory_starttls) return 0;
    if ((d->conf->directory_ca_file[0] &&
         (rc = ldap_set_option(d->ld, LDAP_OPT_X_TLS_CACERTFILE, d->conf->directory_ca_file)) !=
             LDAP_OPT_SUCCESS) ||
        (rc = ldap_set_option(d->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand)) != LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(d->ld, LDAP_OPT_X_TLS_NEWCTX, &is_server)) != LDAP_OPT_SUCCESS)
        return ldap_fail(d, rc, "cannot set up TLS (directory_ca_file?) for", SS_DIR_UNAVAILABLE,
                         fault, e);
    return 0;
}

/* A simple bind as directory_bind_dn, the password wiped right after. */
static int dir_bind(ss_ldapdir *d, enum ss_dir_fault *fault, ss_error *e)
{
    char *secret = NULL;
    ss_error why = {0};
    if (ss_dir_password_load(d->root, d->conf, &secret, &why) != 0) {
        *fault = SS_DIR_BIND_REFUSED;
        return ss_err(e, why.code, "%s", why.msg);
    }
    struct berval cred = {.bv_len = strlen(secret), .bv_val = secret};
    int rc = ldap_sasl_bind_s(d->ld, d->conf->directory_bind_dn, LDAP_SASL_SIMPLE, &cred, NULL,
                              NULL, NULL);
    sodium_free(secret);
    if (rc == LDAP_SUCCESS) return 0;
    /* The server answered and said no: credentials, not availability. */
    bool refused = rc == LDAP_INVALID_CREDENTIALS || rc == LDAP_INAPPROPRIATE_AUTH ||
                   rc == LDAP_INVALID_DN_SYNTAX || rc == LDAP_NO_SUCH_OBJECT ||
                   rc == LDAP_UNWILLING_TO_PERFORM || rc == LDAP_CONFIDENTIALITY_REQUIRED ||
                   rc == LDAP_STRONG_AUTH_REQUIRED || rc == LDAP_INSUFFICIENT_ACCESS;
    char doing[1200];
    snprintf(doing, sizeof doing, "bind as '%s' refused by", d->conf->directory_bind_dn);
    return ldap_fail(d, rc, refused ? doing : "cannot bind to",
                     refused ? SS_DIR_BIND_REFUSED : SS_DIR_UNAVAILABLE, fault, e);
}

static int connect_dir(ss_ldapdir *d, enum ss_dir_fault *fault, ss_error *e)
{
    if (d->ld) return 0;
    int rc = ldap_initialize(&d->ld, d->url.server);
    if (rc != LDAP_SUCCESS) {
        d->ld = NULL;
        return ldap_fail(d, rc, "cannot use the address", SS_DIR_UNAVAILABLE, fault, e);
    }
    if (set_options(d, fault, e) != 0) goto fail;
    if (d->conf->directory_starttls && (rc = ldap_start_tls_s(d->ld, NULL, NULL)) != LDAP_SUCCESS) {
        ldap_fail(d, rc, "StartTLS failed with", SS_DIR_UNAVAILABLE, fault, e);
        goto fail;
    }
    if (d->conf->directory_bind_dn[0] && dir_bind(d, fault, e) != 0) goto fail;
    return 0;
fail:
    disconnect(d);
    return -1;
}

int ss_ldapdir_open(ss_ldapdir **out, const char *root, const ss_conf *conf, ss_error *e)
{
    *out = NULL;
    ss_ldapdir *d = calloc(1, sizeof *d);
    if (!d) return ss_err(e, SS_E_NOMEM, "out of memory");
    if (ss_dirurl_parse(conf->directory, &d->url, e) != 0) {
        free(d);
        return -1;
    }
    d->root = root;
    d->conf = conf;
    snprintf(d->name, sizeof d->name, "%s/%s", d->url.server, d->url.base_dn);
    *out = d;
    return 0;
}

void ss_ldapdir_close(ss_ldapdir *d)
{
    if (!d) return;
    disconnect(d);
    free(d);
}

const char *ss_ldapdir_name(const ss_ldapdir *d)
{
    return d->name;
}

/* ------------------------------------------------------------ reading */

static void entry_dn(const ss_ldapdir *d, const char *site, char *out, size_t len)
{
    snprintf(out, len, "sitespoolSiteCode=%s,%s", site, d->url.base_dn);
}

/* The single value of attr, NUL-terminated and printable (NULL: absent);
 * several values or a bad one are a problem noted in rec. */
static char *one_value(LDAP *ld, LDAPMessage *entry, const char *attr, ss_dirrec *rec)
{
    struct berval **vals = ldap_get_values_len(ld, entry, attr);
    if (!vals) return NULL;
    char *v = NULL;
    int n = ldap_count_values_len(vals);
    if (n != 1)
        note_problem(rec, "%s has %s values", attr, n > 1 ? "several" : "no");
    else if (vals[0]->bv_len > VALUE_MAX || memchr(vals[0]->bv_val, '\0', vals[0]->bv_len))
        note_problem(rec, "%s is %s", attr, "too long or holds a NUL byte");
    else if ((v = malloc(vals[0]->bv_len + 1)) != NULL) {
        memcpy(v, vals[0]->bv_val, vals[0]->bv_len);
        v[vals[0]->bv_len] = '\0';
    }
    ldap_value_free_len(vals);
    return v;
}

static void read_entry(LDAP *ld, LDAPMessage *entry, const char *site, ss_dirrec *rec)
{
    char *code = one_value(ld, entry, "sitespoolSiteCode", rec);
    char *cur = one_value(ld, entry, "sitespoolPublicKey", rec);
    char *next = one_value(ld, entry, "sitespoolNextPublicKey", rec);
    char *na = one_value(ld, entry, "sitespoolKeyNotAfter", rec);
    char *nna = one_value(ld, entry, "sitespoolNextKeyNotAfter", rec);
    if (!code || strcmp(code, site) != 0) {
        rec->found = true;
        note_problem(rec, "its sitespoolSiteCode is '%s', not %s", code ? code : "", site);
    } else {
        ss_dirrec_fill(rec, site, cur, next, na, nna);
    }
    free(code);
    free(cur);
    free(next);
    free(na);
    free(nna);
}

static int search_once(ss_ldapdir *d, const char *site, ss_dirrec *rec, enum ss_dir_fault *fault,
                       ss_error *e)
{
    char dn[SS_DIRURL_DN_MAX + 64];
    entry_dn(d, site, dn, sizeof dn);
    struct timeval tv = {.tv_sec = d->conf->directory_timeout, .tv_usec = 0};
    LDAPMessage *res = NULL;
    int rc = ldap_search_ext_s(d->ld, dn, LDAP_SCOPE_BASE, "(objectClass=sitespoolSite)",
                               (char **)attrs, 0, NULL, NULL, &tv, 2, &res);
    if (rc == LDAP_NO_SUCH_OBJECT) {
        if (res) ldap_msgfree(res);
        return 0;
    }
    if (rc != LDAP_SUCCESS) {
        if (res) ldap_msgfree(res);
        char doing[SS_DIRURL_DN_MAX + 96];
        snprintf(doing, sizeof doing, "cannot search %s on", dn);
        return ldap_fail(d, rc, doing, SS_DIR_UNAVAILABLE, fault, e);
    }
    LDAPMessage *entry = ldap_first_entry(d->ld, res);
    if (entry) read_entry(d->ld, entry, site, rec);
    ldap_msgfree(res);
    return 0;
}

int ss_ldapdir_fetch(ss_ldapdir *d, const char *site, ss_dirrec *rec, enum ss_dir_fault *fault,
                     ss_error *e)
{
    memset(rec, 0, sizeof *rec);
    snprintf(rec->site, sizeof rec->site, "%s", site);
    char dn[SS_DIRURL_DN_MAX + 64];
    entry_dn(d, site, dn, sizeof dn);
    snprintf(rec->where, sizeof rec->where, "%s/%s", d->url.server, dn);
    *fault = SS_DIR_OK;
    bool reused = d->ld != NULL;
    if (connect_dir(d, fault, e) != 0) return -1;
    if (search_once(d, site, rec, fault, e) == 0) return 0;
    disconnect(d);
    if (!reused || *fault == SS_DIR_BIND_REFUSED) return -1;
    /* A connection the server closed while idle: once more, afresh. */
    *fault = SS_DIR_OK;
    if (connect_dir(d, fault, e) != 0) return -1;
    if (search_once(d, site, rec, fault, e) == 0) return 0;
    disconnect(d);
    return -1;
}

/* ------------------------------------------------------------ writing */

/* One LDAPMod: op on attr with the value v (NULL: none). */
typedef struct mod {
    LDAPMod m;
    char *vals[2];
} mod;

static LDAPMod *mod_set(mod *x, int op, const char *attr, const char *v)
{
    x->vals[0] = (char *)v;
    x->vals[1] = NULL;
    x->m.mod_op = op;
    x->m.mod_type = (char *)attr;
    x->m.mod_values = v ? x->vals : NULL;
    return &x->m;
}

int ss_ldapdir_publish(ss_ldapdir *d, const ss_dirpub *p, enum ss_dir_fault *fault, ss_error *e)
{
    char dn[SS_DIRURL_DN_MAX + 64], na[16], nna[16], desc[64];
    entry_dn(d, p->site, dn, sizeof dn);
    if (p->current_not_after) ss_gentime_format(p->current_not_after, na);
    if (p->next_text && p->next_not_after) ss_gentime_format(p->next_not_after, nna);
    snprintf(desc, sizeof desc, "sitespool site %s", p->site);
    const char *v_na = p->current_not_after ? na : NULL;
    const char *v_nna = p->next_text && p->next_not_after ? nna : NULL;
    *fault = SS_DIR_OK;
    if (connect_dir(d, fault, e) != 0) return -1;
    mod m[8];
    LDAPMod *add[8];
    int n = 0;
    add[n] = mod_set(&m[n], LDAP_MOD_ADD, "objectClass", "sitespoolSite"), n++;
    add[n] = mod_set(&m[n], LDAP_MOD_ADD, "sitespoolSiteCode", p->site), n++;
    add[n] = mod_set(&m[n], LDAP_MOD_ADD, "sitespoolPublicKey", p->current_text), n++;
    add[n] = mod_set(&m[n], LDAP_MOD_ADD, "description", desc), n++;
    if (v_na) add[n] = mod_set(&m[n], LDAP_MOD_ADD, "sitespoolKeyNotAfter", v_na), n++;
    if (p->next_text)
        add[n] = mod_set(&m[n], LDAP_MOD_ADD, "sitespoolNextPublicKey", p->next_text), n++;
    if (v_nna) add[n] = mod_set(&m[n], LDAP_MOD_ADD, "sitespoolNextKeyNotAfter", v_nna), n++;
    add[n] = NULL;
    int rc = ldap_add_ext_s(d->ld, dn, add, NULL, NULL);
    if (rc == LDAP_ALREADY_EXISTS) {
        /* Replace with no value removes an attribute (and is no error
         * when it is absent). */
        n = 0;
        add[n] = mod_set(&m[n], LDAP_MOD_REPLACE, "sitespoolPublicKey", p->current_text), n++;
        add[n] = mod_set(&m[n], LDAP_MOD_REPLACE, "sitespoolKeyNotAfter", v_na), n++;
        add[n] = mod_set(&m[n], LDAP_MOD_REPLACE, "sitespoolNextPublicKey", p->next_text), n++;
        add[n] = mod_set(&m[n], LDAP_MOD_REPLACE, "sitespoolNextKeyNotAfter", v_nna), n++;
        add[n] = NULL;
        rc = ldap_modify_ext_s(d->ld, dn, add, NULL, NULL);
    }
    if (rc == LDAP_SUCCESS) return 0;
    char doing[SS_DIRURL_DN_MAX + 96];
    snprintf(doing, sizeof doing, "cannot write %s on", dn);
    ldap_fail(d, rc, doing, SS_DIR_UNAVAILABLE, fault, e);
    disconnect(d);
    return -1;
}
