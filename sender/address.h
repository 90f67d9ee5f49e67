/*
 * address.h - where a peer's receive inbox is: a path on this machine, or
 * sftp://[user@]host[:port]/path on another host.
 *
 * A local path is configuration written by an administrator: it must be
 * absolute and may pass through symbolic links (a mount layout); what the
 * sender writes inside it is never followed.  An SFTP address names the
 * host as OpenSSH's known_hosts does ("host", or "[host]:port" off port
 * 22), so the site's known_hosts file is readable by ssh-keygen -F.
 *
 * Parsing is strict: no query, fragment, password, control characters,
 * spaces or percent-escapes; the path on the host is absolute
 * (sftp://h/srv/receive is /srv/receive).  Errors name what was wrong.
 */
#ifndef SS_ADDRESS_H
#define SS_ADDRESS_H

#include "../keystore/store.h"

#include <stdbool.h>

typedef struct ss_address {
    bool remote; /* sftp:// */
    char text[SS_PEER_ADDRESS_MAX + 1];
    char user[64];                      /* remote: login name; "" means the local user's name */
    char host[256];                     /* remote: name, IPv4, or IPv6 without brackets */
    unsigned port;                      /* remote: 22 unless given */
    char path[SS_PEER_ADDRESS_MAX + 1]; /* local: the path; remote: the path on the host */
    char host_label[300];               /* known_hosts form: host or [host]:port */
} ss_address;

int ss_address_parse(const char *text, ss_address *out, ss_error *e);

#endif
