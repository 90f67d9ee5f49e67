/*
 * links.h - the commands' side of receipts and heartbeats (cmd_links.c):
 * views and the revocation guard.  The daemons' side is sender/reports.h.
 */
#ifndef SS_TOOLS_LINKS_H
#define SS_TOOLS_LINKS_H

#include "cli.h"

/* `queue --sent [--peer CODE] [--all] [--json]`. */
int queue_sent(cli *c, const char *peer, bool all, bool json);
/* `key propagation [--json]`: argv[0] is "propagation". */
int key_propagation(cli *c, int argc, char **argv, const char *usage);
/* Before revoking this site's own old key key_id: 0 to go ahead, else an
 * exit code after naming the peers that do not hold the current key yet
 * (heard from within rollover_grace_days).  With force, only a warning. */
int links_revoke_guard(cli *c, const char *key_id, bool force);

#endif
