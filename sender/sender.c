/*
 * sender.c - the sender's life cycle and the outbox counts.  See sender.h;
 * packing and queuing are in pack.c, delivery in deliver.c, the outbox
 * folder and its lock in outbox.c, status messages in notices.c.
 */
#include "sender.h"
#include "outbox.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ss_outbox_info_get(const char *root, const char *site, ss_outbox_info *out, ss_error *e)
{
    char path[PATH_MAX];
    memset(out, 0, sizeof *out);
    int n = snprintf(path, sizeof path, "%s/" SS_DIR_OUTBOX "/%s", root, site);
    if (n < 0 || (size_t)n >= sizeof path) return ss_err(e, SS_E_TOOBIG, "path too long");
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : ss_err_sys(e, "cannot read outbox %s", path);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (!ss_outbox_is_queued_ins(de->d_name) || fstatat(dirfd(d), de->d_name, &st, 0) != 0)
            continue;
        out->queued++;
        if (!out->oldest || st.st_mtime < out->oldest) out->oldest = st.st_mtime;
    }
    closedir(d);
    return 0;
}

int ss_sender_open(ss_sender *s, const char *root, const ss_conf *conf, ss_db *db, ss_reporter *rep,
                   bool sign, ss_error *e)
{
    memset(s, 0, sizeof *s);
    s->root = root;
    s->conf = conf;
    s->db = db;
    s->rep = rep;
    if (sign && ss_own_key_load(root, conf, &s->sk, &s->pk, e) != 0) return -1;
    return 0;
}

void ss_sender_close(ss_sender *s)
{
    ss_error e = {0};
    if (s->notices.n && ss_notices_store(&s->notices, s->db, s->rep, NULL, NULL, &e) != 0)
        ss_notices_give_up(&s->notices, s->rep, e.msg);
    ss_notices_free(&s->notices);
    ss_seckey_free(s->sk);
    s->sk = NULL;
    if (s->deflater_ready) ss_deflater_free(&s->deflater);
    s->deflater_ready = false;
    free(s->buf);
    s->buf = NULL;
}

int ss_sender_store_notices(ss_sender *s, ss_error *e)
{
    return ss_notices_store(&s->notices, s->db, s->rep, NULL, NULL, e);
}

unsigned ss_sender_backoff(const ss_conf *conf, unsigned failures)
{
    uint64_t wait = conf->send_retry_interval ? conf->send_retry_interval : 1;
    for (unsigned i = 1; i < failures && wait < conf->send_retry_max_interval; i++)
        wait *= 2;
    if (wait > conf->send_retry_max_interval) wait = conf->send_retry_max_interval;
    return (unsigned)wait;
}
