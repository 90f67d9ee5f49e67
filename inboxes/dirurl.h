/*
 * dirurl.h - the `directory` setting when it names a directory server:
 * ldap://host[:port]/BASE-DN or ldaps://host[:port]/BASE-DN (RFC 4516,
 * the base DN percent-decoded).  A value that starts with neither is the
 * key directory folder, as before.
 *
 * Security stance: parsed strictly, so that a typo cannot quietly point
 * the despooler at another server or another subtree: a host is required
 * (no "client default" ldap:///), no user part (user@host: credentials
 * belong in directory_bind_dn and directory_password_file, never in a URL
 * that is logged), a port of 1-65535, a non-empty base DN, and nothing
 * after it (no ?attributes?scope?filter?extensions - sitespool asks for
 * what it needs itself).  Percent escapes must be two hex digits, and the
 * decoded DN must hold no control character.
 * Diagnostics: each refusal names the part that is wrong and what is
 * expected, with the value as written.
 * Known limits: IPv6 literals are accepted in brackets; the DN is checked
 * for form (attribute=value pairs) only loosely - the server judges it.
 */
#ifndef SS_DIRURL_H
#define SS_DIRURL_H

#include "error.h"

#include <stdbool.h>

#define SS_DIRURL_HOST_MAX 255
#define SS_DIRURL_DN_MAX 1023

typedef struct ss_dirurl {
    bool ldaps;                        /* TLS from the first byte (port 636) */
    char host[SS_DIRURL_HOST_MAX + 1]; /* a name, an IPv4 address or [IPv6] */
    unsigned port;                     /* 389 or 636 unless given */
    char base_dn[SS_DIRURL_DN_MAX + 1];
    char server[SS_DIRURL_HOST_MAX + 24]; /* scheme://host:port, for ldap_initialize */
} ss_dirurl;

/* Whether a `directory` value names a directory server (ldap:// or
 * ldaps://, any case) rather than a folder. */
bool ss_dirurl_is_ldap(const char *directory);

/* Parses an ldap:// or ldaps:// URL; SS_E_CONF with a sentence on error. */
int ss_dirurl_parse(const char *text, ss_dirurl *out, ss_error *e);

#endif
