/*
 * ldapdir.h - the key directory on a directory server (OpenLDAP's
 * libldap): each site's entry sitespoolSiteCode=<SITE>,<BASE-DN> of object
 * class sitespoolSite (dist/ldap/sitespool.ldif) holds its current public
 * key file (sitespoolPublicKey), during a rollover the next one with its
 * proof and the current key's vouch (sitespoolNextPublicKey, keyfile.h),
 * and their validity ends (sitespoolKeyNotAfter, sitespoolNextKeyNotAfter).
 * This module reads an entry into an ss_dirrec and writes this site's own;
 * it never judges a key (trust.h does, once an instruction verified with
 * it) and keeps no cache (dircache.h does, for the despooler).
 *
 * Security stance: fail closed and never hang.  Every libldap call is
 * bounded by directory_timeout (LDAP_OPT_NETWORK_TIMEOUT for the connect
 * and the ldaps handshake, LDAP_OPT_TIMEOUT for each synchronous operation,
 * and the search's own time and size limits); referrals are not chased (a
 * directory cannot send the despooler to another server); with ldaps:// or
 * StartTLS the server's certificate must verify against directory_ca_file
 * (or the system's CAs) and name the host (LDAP_OPT_X_TLS_REQUIRE_CERT =
 * DEMAND, a fresh TLS context per connection: LDAP_OPT_X_TLS_NEWCTX).  The
 * bind password is read from directory_password_file only if that file is
 * a regular file owned by the user running sitespool and not readable by
 * group or others (like the site's secret key), held in sodium_malloc'd
 * memory and wiped as soon as the bind returns.  What an entry says is
 * parsed strictly (keyfile.h); a value that does not parse is reported in
 * the record (problem) and never used.
 * Diagnostics: errors name the server, the DN and libldap's own words
 * (ldap_err2string, and the server's diagnostic message when it sent one);
 * a fault is classed as the directory being unavailable (down, slow, TLS,
 * any LDAP error) or the bind being refused (credentials, password file),
 * which the despooler reports as 4441 / 4442.
 * Known limits: simple binds only (no SASL); one entry per site; the
 * system's ldap.conf still supplies libldap's defaults for what is not set
 * here (every setting that matters for security is set explicitly).
 */
#ifndef SS_LDAPDIR_H
#define SS_LDAPDIR_H

#include "../inboxes/dirurl.h"
#include "keyfile.h"

enum ss_dir_fault {
    SS_DIR_OK,
    SS_DIR_UNAVAILABLE,  /* down, slow, TLS, any LDAP error but a refused bind */
    SS_DIR_BIND_REFUSED, /* credentials refused, password file unusable */
};

/* A site's entry as read. */
typedef struct ss_dirrec {
    char site[SS_SITE_CODE_MAX + 1];
    char where[SS_DIRURL_HOST_MAX + SS_DIRURL_DN_MAX + 64]; /* server/DN, for messages */
    bool found;                                             /* the entry exists */
    bool has_current; /* sitespoolPublicKey parsed, its comment naming the site */
    ss_pubkey current;
    int64_t current_not_after; /* the key file's "valid until", else sitespoolKeyNotAfter */
    bool has_next;             /* sitespoolNextPublicKey is there */
    bool next_ok;              /* ... and parsed, its proof and vouch verified */
    ss_pubkey next;
    int64_t next_not_after;
    char problem[320]; /* why a value present is not used ("" none) */
} ss_dirrec;

typedef struct ss_ldapdir ss_ldapdir;

/* A handle on the directory conf names (not connected yet).  root: the
 * site root, which a relative password file is resolved against. */
int ss_ldapdir_open(ss_ldapdir **out, const char *root, const ss_conf *conf, ss_error *e);
/* Unbinds and frees. */
void ss_ldapdir_close(ss_ldapdir *d);
/* The server and base DN it was opened with, for messages. */
const char *ss_ldapdir_name(const ss_ldapdir *d);

/* Reads site's entry: 0 (rec->found says whether there is one), or -1
 * with *fault and e.  A connection is made (StartTLS, bind) when there is
 * none, reused otherwise, and dropped after a fault. */
int ss_ldapdir_fetch(ss_ldapdir *d, const char *site, ss_dirrec *rec, enum ss_dir_fault *fault,
                     ss_error *e);

/* This site's entry as `key publish` writes it. */
typedef struct ss_dirpub {
    const char *site;
    const char *current_text; /* the current public key file, verbatim */
    int64_t current_not_after;
    const char *next_text; /* NULL: no rollover (the attribute is removed) */
    int64_t next_not_after;
} ss_dirpub;
/* Adds the entry, or replaces its values if it exists.  0, or -1 with
 * *fault and e. */
int ss_ldapdir_publish(ss_ldapdir *d, const ss_dirpub *p, enum ss_dir_fault *fault, ss_error *e);

/* Reads a directory_password_file as the bind does (owner, mode, one
 * line): 0 and a sodium_malloc'd string (free with sodium_free), -1.
 * For `check` too. */
int ss_dir_password_load(const char *root, const ss_conf *conf, char **secret, ss_error *e);

/* GeneralizedTime "YYYYMMDDHHMMSSZ" <-> unix time (UTC); parse: -1 if it
 * is not exactly that form. */
void ss_gentime_format(int64_t t, char out[16]);
int ss_gentime_parse(const char *s, int64_t *t);

/* Fills rec from an entry's values (NULL: absent), as ss_ldapdir_fetch
 * does after the search: pure, for tests. */
void ss_dirrec_fill(ss_dirrec *rec, const char *site, const char *current, const char *next,
                    const char *not_after, const char *next_not_after);

#endif
