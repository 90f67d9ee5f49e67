/*
 * keydir.h - the key directory seen from the command line (cmd_keydir.c):
 * `key publish` to a directory server, the republishing that `key rotate`
 * and the revocation of this site's own old key do there, and `key list
 * --directory`.
 */
#ifndef SS_TOOLS_KEYDIR_H
#define SS_TOOLS_KEYDIR_H

#include "cli.h"

/* Whether directory names a directory server (ldap://, ldaps://). */
bool keydir_is_server(const cli *c);
/* Writes this site's entry on the directory server (see cmd_keydir.c for
 * what it holds during a rollover); prints what it did.  0, or 1 with the
 * error printed. */
int keydir_publish_server(cli *c);
/* `key list --directory [--json]`. */
int keydir_list(cli *c, bool json);

#endif
