/*
 * notices.c - queued status messages of the sender.  See notices.h.
 */
#include "notices.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Attempts at a transaction that site.db refused as busy; each attempt
 * already waits for the busy timeout (10 s) before it gives up. */
#define STORE_ATTEMPTS 3

int ss_notices_add(ss_notices *q, ss_error *e, int id, ...)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        ss_notice *v = realloc(q->v, cap * sizeof *v);
        if (!v) return ss_err(e, SS_E_NOMEM, "out of memory for status message %d", id);
        q->v = v;
        q->cap = cap;
    }
    ss_notice *m = &q->v[q->n];
    memset(m, 0, sizeof *m);
    m->id = id;
    va_list ap;
    va_start(ap, id);
    int rc = 0;
    for (const char *s; rc == 0 && m->nistr < SS_ISTR_MAX && (s = va_arg(ap, const char *));) {
        m->istr[m->nistr] = strdup(s);
        if (m->istr[m->nistr])
            m->nistr++;
        else
            rc = -1;
    }
    va_end(ap);
    if (rc != 0) {
        for (int i = 0; i < m->nistr; i++)
            free(m->istr[i]);
        return ss_err(e, SS_E_NOMEM, "out of memory for status message %d", id);
    }
    q->n++;
    return 0;
}

static void notice_free(ss_notice *m)
{
    for (int i = 0; i < m->nistr; i++)
        free(m->istr[i]);
    m->nistr = 0;
}

void ss_notices_truncate(ss_notices *q, size_t keep)
{
    while (q->n > keep)
        notice_free(&q->v[--q->n]);
}

void ss_notices_free(ss_notices *q)
{
    ss_notices_truncate(q, 0);
    free(q->v);
    q->v = NULL;
    q->cap = 0;
}

bool ss_db_was_busy(ss_db *db)
{
    int code = db->h ? sqlite3_extended_errcode(db->h) & 0xff : SQLITE_OK;
    return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

bool ss_error_no_space(const ss_error *e)
{
    return strstr(e->msg, strerror(ENOSPC)) || strstr(e->msg, strerror(EDQUOT)) ||
           strstr(e->msg, "database or disk is full") || strstr(e->msg, "no space left on device");
}

/* One transaction; *busy tells a failure worth another attempt. */
static int store_once(ss_notices *q, ss_db *db, ss_reporter *rep, ss_notices_extra_fn extra,
                      void *ctx, bool *busy, ss_error *e)
{
    *busy = false;
    if (ss_db_begin(db, e) != 0) {
        *busy = ss_db_was_busy(db);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < q->n; i++)
        rc = ss_report_store(rep, q->v[i].id, q->v[i].nistr, (const char *const *)q->v[i].istr, e);
    if (rc == 0 && extra) rc = extra(ctx, e);
    if (rc == 0) rc = ss_db_commit(db, e);
    if (rc != 0) {
        *busy = ss_db_was_busy(db);
        ss_db_rollback(db);
    }
    return rc;
}

int ss_notices_store(ss_notices *q, ss_db *db, ss_reporter *rep, ss_notices_extra_fn extra,
                     void *ctx, ss_error *e)
{
    if (q->n == 0 && !extra) return 0;
    bool busy = false;
    int rc = -1;
    for (int attempt = 0; attempt < STORE_ATTEMPTS; attempt++) {
        if (attempt) usleep(100000u * (unsigned)attempt);
        if ((rc = store_once(q, db, rep, extra, ctx, &busy, e)) == 0 || !busy) break;
    }
    if (rc != 0) return -1;
    for (size_t i = 0; i < q->n; i++)
        ss_report_announce(rep, q->v[i].id, q->v[i].nistr, (const char *const *)q->v[i].istr);
    ss_notices_truncate(q, 0);
    return 0;
}

void ss_notices_give_up(ss_notices *q, ss_reporter *rep, const char *why)
{
    for (size_t i = 0; i < q->n; i++) {
        const ss_notice *m = &q->v[i];
        const ss_msgdef *def = ss_msgdef_find(m->id);
        char text[2048] = "";
        if (def)
            ss_msg_render(def->format, m->nistr, (const char *const *)m->istr, text, sizeof text);
        ss_logf(ss_reporter_log(rep, SS_COMP_SENDER),
                "Could not store status message %d in site.db (%s); it is only in this log", m->id,
                why);
        ss_report_announce(rep, m->id, m->nistr, (const char *const *)m->istr);
        fprintf(stderr, "sitespool: status message %d could not be stored in site.db (%s): %s\n",
                m->id, why, text);
    }
    ss_notices_truncate(q, 0);
}
