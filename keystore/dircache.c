/*
 * dircache.c - the despooler's directory cache.  See dircache.h.
 */
#include "dircache.h"
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char site[SS_SITE_CODE_MAX + 1];
    int64_t fetched_ms;
    ss_dirrec rec;
} entry;

/* The settings the cache was filled under: a reload that changes any of
 * them empties it. */
typedef struct dirconf {
    char directory[PATH_MAX], bind_dn[1024], password_file[PATH_MAX], ca_file[PATH_MAX];
    bool starttls;
    unsigned timeout;
} dirconf;

struct ss_dircache {
    const char *root;
    const ss_conf *conf;
    ss_reporter *rep;
    dirconf under;
    ss_ldapdir *dir; /* NULL: not opened yet */
    entry *entries;
    size_t n, cap;
    enum ss_dir_fault fault;    /* of the last attempt */
    enum ss_dir_fault reported; /* the outage last announced (OK: none) */
    int64_t retry_at_ms;        /* after a fault: not asked before */
    unsigned long searches;
};

ss_dircache *ss_dircache_new(const char *root, const ss_conf *conf, ss_reporter *rep)
{
    ss_dircache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->root = root;
    c->conf = conf;
    c->rep = rep;
    return c;
}

void ss_dircache_free(ss_dircache *c)
{
    if (!c) return;
    ss_ldapdir_close(c->dir);
    free(c->entries);
    free(c);
}

bool ss_dircache_faulted(const ss_dircache *c)
{
    return c && c->fault != SS_DIR_OK;
}

unsigned long ss_dircache_searches(const ss_dircache *c)
{
    return c ? c->searches : 0;
}

static dirconf dirconf_of(const ss_conf *conf)
{
    dirconf d;
    memset(&d, 0, sizeof d);
    snprintf(d.directory, sizeof d.directory, "%s", conf->directory);
    snprintf(d.bind_dn, sizeof d.bind_dn, "%s", conf->directory_bind_dn);
    snprintf(d.password_file, sizeof d.password_file, "%s", conf->directory_password_file);
    snprintf(d.ca_file, sizeof d.ca_file, "%s", conf->directory_ca_file);
    d.starttls = conf->directory_starttls;
    d.timeout = conf->directory_timeout;
    return d;
}

/* Settings reloaded (SIGHUP): a changed directory starts afresh. */
static void follow_conf(ss_dircache *c)
{
    dirconf now = dirconf_of(c->conf);
    if (!memcmp(&now, &c->under, sizeof now)) return;
    c->under = now;
    ss_ldapdir_close(c->dir);
    c->dir = NULL;
    c->n = 0;
    c->retry_at_ms = 0;
}

static entry *find(ss_dircache *c, const char *site)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->entries[i].site, site)) return &c->entries[i];
    return NULL;
}

static entry *slot(ss_dircache *c, const char *site)
{
    entry *x = find(c, site);
    if (x) return x;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        entry *grown = realloc(c->entries, cap * sizeof *grown);
        if (!grown) return NULL;
        c->entries = grown;
        c->cap = cap;
    }
    x = &c->entries[c->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->site, sizeof x->site, "%s", site);
    return x;
}

/* A failed attempt: logged each time, announced once per outage. */
static void failed(ss_dircache *c, const char *site, enum ss_dir_fault kind, const ss_error *e)
{
    c->fault = kind;
    c->retry_at_ms = ss_now_ms() + (int64_t)c->conf->rescan_interval * 1000;
    ss_logf(ss_reporter_log(c->rep, SS_COMP_DESPOOLER),
            "The key directory %s could not be asked for the key of site %s: %s; next attempt "
            "at the next rescan",
            c->conf->directory, site, e->msg);
    if (c->reported == kind) return;
    c->reported = kind;
    if (kind == SS_DIR_BIND_REFUSED)
        ss_report(c->rep, 4442, c->conf->directory, c->conf->directory_bind_dn,
                  c->conf->directory_password_file, e->msg, NULL);
    else
        ss_report(c->rep, 4441, c->conf->directory, site, e->msg, NULL);
}

static void answered(ss_dircache *c, const ss_dirrec *rec)
{
    c->fault = SS_DIR_OK;
    if (rec->problem[0])
        ss_logf(ss_reporter_log(c->rep, SS_COMP_DESPOOLER), "Key directory entry %s: %s",
                rec->where, rec->problem);
    if (c->reported == SS_DIR_OK) return;
    c->reported = SS_DIR_OK;
    ss_report(c->rep, 4443, c->conf->directory, NULL);
}

int ss_dircache_get(ss_dircache *c, const char *site, const ss_dirrec **rec)
{
    *rec = NULL;
    if (!c) return 0;
    follow_conf(c);
    if (!ss_dirurl_is_ldap(c->conf->directory)) return 0;
    int64_t now = ss_now_ms(), ttl = (int64_t)c->conf->rescan_interval * 1000;
    entry *x = find(c, site);
    if (x && now - x->fetched_ms < ttl) {
        *rec = &x->rec;
        return x->rec.found;
    }
    if (c->fault != SS_DIR_OK && now < c->retry_at_ms) return -1;
    ss_error e = {0};
    enum ss_dir_fault kind = SS_DIR_UNAVAILABLE;
    if (!c->dir && ss_ldapdir_open(&c->dir, c->root, c->conf, &e) != 0) {
        failed(c, site, kind, &e);
        return -1;
    }
    ss_dirrec got;
    c->searches++;
    if (ss_ldapdir_fetch(c->dir, site, &got, &kind, &e) != 0) {
        failed(c, site, kind, &e);
        return -1;
    }
    answered(c, &got);
    if (!(x = slot(c, site))) {
        ss_logf(ss_reporter_log(c->rep, SS_COMP_DESPOOLER),
                "Out of memory: the key directory entry of site %s is not used", site);
        return 0;
    }
    x->rec = got;
    x->fetched_ms = now; /* its age counts from before the search */
    *rec = &x->rec;
    return x->rec.found;
}
