/*
 * site_open.h - opening the site for the short-lived commands that must
 * work on a full disk (status, peer, send): cli_open, except that site.db
 * is opened with ss_db_open_short_lived, so that a disk too full for
 * SQLite's shared-memory index does not keep it closed.  Daemons use
 * cli_open (they must never hold site.db exclusively).
 */
#ifndef SS_SITE_OPEN_H
#define SS_SITE_OPEN_H

#include "cli.h"

#include <stdlib.h>

static inline int cli_open_short_lived(cli *c)
{
    ss_error e = {0};
    char db_path[PATH_MAX];
    int rc = cli_become_owner(c);
    if (rc != 0) exit(rc); /* nothing is open yet */
    if (ss_conf_load(&c->conf, c->root, &e) != 0) return cli_fail(&e), -1;
    if (ss_path(db_path, sizeof db_path, c->root, SS_FILE_DB) != 0)
        return ss_err(&e, SS_E_TOOBIG, "site path too long: %s", c->root), cli_fail(&e), -1;
    if (ss_db_open_short_lived(&c->db, db_path, &e) != 0) return cli_fail(&e), -1;
    if (ss_reporter_open(&c->rep, c->root, &c->conf, &c->db, &e) != 0) {
        ss_db_close(&c->db);
        return cli_fail(&e), -1;
    }
    c->open = true;
    return 0;
}

#endif
