/*
 * status.c - raising status messages: store, log, notify.  See status.h.
 *
 * Security stance: notify_command is the administrator's own program, run
 * through /bin/sh -c with the message only in its environment (never
 * interpolated into the command line), detached by a double fork so a slow
 * mailer cannot stall the despooler and no zombie is left.
 * Diagnostics: a message that cannot be stored is still logged, and a log
 * that cannot be written does not stop the work.
 */
#include "status.h"
#include "../inboxes/fileio.h"
#include "../inboxes/json.h"
#include "../inboxes/text.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const component_names[SS_COMP_COUNT] = {"SITESPOOL_DESPOOLER",
                                                           "SITESPOOL_SENDER", "SITESPOOL_HMAN"};
static const char *const component_logs[SS_COMP_COUNT] = {"despool.log", "sender.log", "hman.log"};

const char *ss_component_name(enum ss_component c)
{
    return component_names[c];
}

const char *ss_component_log(enum ss_component c)
{
    return component_logs[c];
}

int ss_component_parse(const char *name, enum ss_component *out)
{
    for (int i = 0; i < SS_COMP_COUNT; i++) {
        const char *short_name = component_names[i] + strlen("SITESPOOL_");
        if (!strcasecmp(name, component_names[i]) || !strcasecmp(name, short_name)) {
            *out = (enum ss_component)i;
            return 0;
        }
    }
    return -1;
}

void ss_msg_render(const char *format, int nistr, const char *const istr[], char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = format; *p && o + 1 < len; p++) {
        if (p[0] == '%' && p[1] >= '1' && p[1] <= '9') {
            int i = p[1] - '1';
            char s[SS_ISTR_LEN];
            ss_text_safe(i < nistr && istr[i] ? istr[i] : "", s, sizeof s);
            size_t n = strlen(s);
            if (n > len - o - 1) n = len - o - 1;
            memcpy(out + o, s, n);
            o += n;
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

int ss_reporter_open(ss_reporter *r, const char *root, const ss_conf *conf, ss_db *db, ss_error *e)
{
    memset(r, 0, sizeof *r);
    snprintf(r->root, sizeof r->root, "%s", root);
    r->conf = conf;
    r->db = db;
    gethostname(r->host, sizeof r->host - 1);
    for (int i = 0; i < SS_COMP_COUNT; i++)
        r->logs[i].fd = -1;
    for (int i = 0; i < SS_COMP_COUNT; i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/" SS_DIR_LOGS "/%s", root, component_logs[i]) >=
            (int)sizeof path) {
            ss_reporter_close(r);
            return ss_err(e, SS_E_TOOBIG, "site path too long: %s", root);
        }
        /* A log that cannot be opened is not a reason to stop: messages
         * are still stored in site.db, and the log is tried again. */
        ss_error le = {0};
        if (ss_log_open(&r->logs[i], path, component_names[i], conf->log_max_bytes, &le) != 0)
            fprintf(stderr,
                    "sitespool: warning: %s; messages are stored in site.db only until "
                    "it can be written\n",
                    le.msg);
        r->logs[i].ccm = !strcmp(conf->log_format, "ccm");
    }
    return 0;
}

void ss_reporter_close(ss_reporter *r)
{
    for (int i = 0; i < SS_COMP_COUNT; i++)
        ss_log_close(&r->logs[i]);
}

ss_log *ss_reporter_log(ss_reporter *r, enum ss_component c)
{
    return &r->logs[c];
}

static char *istr_json(int nistr, const char *const istr[])
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fputc('[', f);
    for (int i = 0; i < nistr; i++) {
        if (i) fputc(',', f);
        ss_json_string(f, istr[i] ? istr[i] : "");
    }
    fputc(']', f);
    fclose(f);
    return buf;
}

static int store(ss_reporter *r, const ss_msgdef *def, int nistr, const char *const istr[],
                 const char *text, int64_t time_ms, ss_error *e)
{
    if (!r->db || !r->db->h) return 0;
    int rc = -1;
    char *json = istr_json(nistr, istr);
    static const char sql[] =
        "INSERT INTO status(time_ms,msg_id,severity,component,site,istr,text) "
        "VALUES(?,?,?,?,?,?,?)";
    sqlite3_stmt *st = ss_db_cached(r->db, sql, NULL);
    if (st && json) {
        char sev[2] = {def->severity, '\0'};
        sqlite3_bind_int64(st, 1, time_ms);
        sqlite3_bind_int(st, 2, def->id);
        sqlite3_bind_text(st, 3, sev, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, component_names[def->component], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, r->conf->site_code, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE)
            rc = 0;
        else
            ss_logf(&r->logs[def->component], "Could not store status message %d: %s", def->id,
                    sqlite3_errmsg(r->db->h));
    }
    if (rc != 0)
        ss_err(e, SS_E_DB, "cannot store status message %d: %s", def->id, sqlite3_errmsg(r->db->h));
    ss_db_release(r->db, st);
    free(json);
    return rc;
}

static void log_statmsg(ss_reporter *r, const ss_msgdef *def, int nistr, const char *const istr[])
{
    char line[SS_LOG_LINE_MAX];
    const char *host = r->host;
    int n = snprintf(line, sizeof line,
                     "STATMSG: ID=%d SEV=%c LEV=M SOURCE=\"SITESPOOL\" COMP=\"%s\" SYS=%s "
                     "SITE=%s PID=%d",
                     def->id, def->severity, component_names[def->component], host,
                     r->conf->site_code, (int)getpid());
    for (int i = 0; i < nistr && n > 0 && (size_t)n < sizeof line - 16; i++) {
        char clean[SS_ISTR_LEN];
        snprintf(clean, sizeof clean, "%s", istr[i] ? istr[i] : "");
        for (char *c = clean; *c; c++)
            if (*c == '"') *c = '\'';
        n += snprintf(line + n, sizeof line - (size_t)n, " ISTR%d=\"%s\"", i, clean);
    }
    ss_log_text(&r->logs[def->component], line);
}

/* "NAME=value" in malloc'ed memory, or NULL. */
static char *env_entry(const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    char *entry = malloc(len);
    if (entry) snprintf(entry, len, "%s=%s", name, value);
    return entry;
}

static bool env_is_ours(const char *entry)
{
    return !strncmp(entry, "SITESPOOL_STATUS_", 17) || !strncmp(entry, "SITESPOOL_SITE=", 15);
}

/* The notify program's environment: ours plus the SITESPOOL_STATUS_*
 * variables.  Built before fork(), because the despooler has threads and
 * a child of a threaded process may only call async-signal-safe functions. */
static char **notify_env(const ss_reporter *r, const ss_msgdef *def, int nistr,
                         const char *const istr[], const char *text)
{
    size_t inherited = 0;
    for (char **v = environ; *v; v++)
        inherited++;
    char **env = calloc(inherited + 8 + (size_t)nistr, sizeof *env);
    if (!env) return NULL;
    size_t n = 0;
    for (char **v = environ; *v; v++)
        if (!env_is_ours(*v)) env[n++] = strdup(*v);
    char id[16], sev[2] = {def->severity, '\0'};
    snprintf(id, sizeof id, "%d", def->id);
    env[n++] = env_entry("SITESPOOL_STATUS_ID", id);
    env[n++] = env_entry("SITESPOOL_STATUS_SEVERITY", sev);
    env[n++] = env_entry("SITESPOOL_STATUS_COMPONENT", component_names[def->component]);
    env[n++] = env_entry("SITESPOOL_STATUS_SITE", r->conf->site_code);
    env[n++] = env_entry("SITESPOOL_STATUS_TEXT", text);
    env[n++] = env_entry("SITESPOOL_SITE", r->root);
    for (int i = 0; i < nistr; i++) {
        char name[32];
        snprintf(name, sizeof name, "SITESPOOL_STATUS_ISTR%d", i);
        env[n++] = env_entry(name, istr[i] ? istr[i] : "");
    }
    for (size_t i = 0; i < n; i++)
        if (!env[i]) { /* out of memory: run nothing rather than half */
            for (size_t j = 0; j < n; j++)
                free(env[j]);
            free(env);
            return NULL;
        }
    return env;
}

static void notify(ss_reporter *r, const ss_msgdef *def, int nistr, const char *const istr[],
                   const char *text)
{
    if (!r->conf->notify_command[0]) return;
    char **env = notify_env(r, def, nistr, istr, text);
    if (!env) {
        ss_logf(&r->logs[def->component], "Could not run notify_command: out of memory");
        return;
    }
    char sh[] = "sh", dash_c[] = "-c", command[sizeof r->conf->notify_command];
    snprintf(command, sizeof command, "%s", r->conf->notify_command);
    char *const argv[] = {sh, dash_c, command, NULL};
    pid_t child = fork();
    if (child == 0) {
        /* First child: fork the runner and exit at once so nobody waits. */
        if (fork() != 0) _exit(0);
        setsid();
        execve("/bin/sh", argv, env);
        _exit(127);
    }
    if (child < 0)
        ss_logf(&r->logs[def->component], "Could not run notify_command: fork failed");
    else
        (void)waitpid(child, NULL, 0);
    for (char **v = env; *v; v++)
        free(*v);
    free(env);
}

/* A message ready to store and announce: its definition, its insertion
 * strings made safe (text.h) and its text. */
typedef struct prepared {
    const ss_msgdef *def;
    int nistr;
    char clean[SS_ISTR_MAX][SS_ISTR_LEN];
    const char *istr[SS_ISTR_MAX];
    char text[2048];
} prepared;

static int prepare(ss_reporter *r, int id, int nistr, const char *const istr[], prepared *m)
{
    m->def = ss_msgdef_find(id);
    if (!m->def) {
        ss_logf(&r->logs[SS_COMP_DESPOOLER], "Internal error: unknown status message id %d", id);
        return -1;
    }
    m->nistr = nistr < SS_ISTR_MAX ? nistr : SS_ISTR_MAX;
    for (int i = 0; i < m->nistr; i++) {
        ss_text_safe(istr[i] ? istr[i] : "", m->clean[i], sizeof m->clean[i]);
        m->istr[i] = m->clean[i];
    }
    ss_msg_render(m->def->format, m->nistr, m->istr, m->text, sizeof m->text);
    return 0;
}

void ss_reporter_reopen(ss_reporter *r)
{
    for (int i = 0; i < SS_COMP_COUNT; i++) {
        r->logs[i].ccm = !strcmp(r->conf->log_format, "ccm");
        r->logs[i].max_bytes = r->conf->log_max_bytes;
        ss_log_reopen(&r->logs[i]);
    }
}

static void announce(ss_reporter *r, const prepared *m)
{
    ss_log_text_sev(&r->logs[m->def->component], m->def->severity, m->text);
    log_statmsg(r, m->def, m->nistr, m->istr);
    if (r->stderr_echo)
        fprintf(stderr, "sitespool: %d %c %s\n", m->def->id, m->def->severity, m->text);
    notify(r, m->def, m->nistr, m->istr, m->text);
}

void ss_reportv(ss_reporter *r, int id, int nistr, const char *const istr[])
{
    prepared m;
    if (prepare(r, id, nistr, istr, &m) != 0) return;
    announce(r, &m);
    (void)store(r, m.def, m.nistr, m.istr, m.text, ss_now_ms(), NULL);
}

int ss_report_store(ss_reporter *r, int id, int nistr, const char *const istr[], ss_error *e)
{
    return ss_report_store_row(r, id, nistr, istr, NULL, e);
}

int ss_report_store_row(ss_reporter *r, int id, int nistr, const char *const istr[], int64_t *row,
                        ss_error *e)
{
    prepared m;
    if (prepare(r, id, nistr, istr, &m) != 0)
        return ss_err(e, SS_E_USAGE, "unknown status message id %d", id);
    int rc = store(r, m.def, m.nistr, m.istr, m.text, ss_now_ms(), e);
    if (rc == 0 && row) *row = r->db && r->db->h ? sqlite3_last_insert_rowid(r->db->h) : 0;
    return rc;
}

int ss_report_restate(ss_reporter *r, int64_t row, int id, int nistr, const char *const istr[],
                      ss_error *e)
{
    prepared m;
    if (prepare(r, id, nistr, istr, &m) != 0)
        return ss_err(e, SS_E_USAGE, "unknown status message id %d", id);
    if (!r->db || !r->db->h || !row) return 0;
    char *json = istr_json(m.nistr, m.istr);
    sqlite3_stmt *st = ss_db_prepare(r->db, "UPDATE status SET istr=?2, text=?3 WHERE seq=?1", e);
    int rc = -1;
    if (st && json) {
        sqlite3_bind_int64(st, 1, row);
        sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, m.text, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0
                                             : ss_db_fail(r->db, "correcting a status message", e);
    }
    sqlite3_finalize(st);
    free(json);
    return rc;
}

void ss_report_announce(ss_reporter *r, int id, int nistr, const char *const istr[])
{
    prepared m;
    if (prepare(r, id, nistr, istr, &m) == 0) announce(r, &m);
}

void ss_report(ss_reporter *r, int id, ...)
{
    const char *istr[SS_ISTR_MAX];
    int n = 0;
    va_list ap;
    va_start(ap, id);
    for (const char *s; n < SS_ISTR_MAX && (s = va_arg(ap, const char *)) != NULL;)
        istr[n++] = s;
    va_end(ap);
    ss_reportv(r, id, n, istr);
}

int ss_status_query(ss_db *db, int64_t *after_seq, int64_t since_ms, int id, const char *component,
                    long limit, ss_status_fn fn, void *ctx, ss_error *e)
{
    sqlite3_stmt *st = ss_db_prepare(
        db,
        "SELECT * FROM (SELECT seq,time_ms,msg_id,severity,component,site,istr,text FROM status"
        " WHERE seq > ?1 AND time_ms >= ?2 AND (?3 = 0 OR msg_id = ?3)"
        " AND (?4 IS NULL OR component = ?4) ORDER BY seq DESC LIMIT ?5) ORDER BY seq",
        e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, *after_seq);
    sqlite3_bind_int64(st, 2, since_ms);
    sqlite3_bind_int(st, 3, id);
    if (component) sqlite3_bind_text(st, 4, component, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, limit > 0 ? limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ss_status_row row = {sqlite3_column_int64(st, 0),
                             sqlite3_column_int64(st, 1),
                             sqlite3_column_int(st, 2),
                             (const char *)sqlite3_column_text(st, 3),
                             (const char *)sqlite3_column_text(st, 4),
                             (const char *)sqlite3_column_text(st, 5),
                             (const char *)sqlite3_column_text(st, 6),
                             (const char *)sqlite3_column_text(st, 7)};
        fn(ctx, &row);
        *after_seq = row.seq;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : ss_db_fail(db, "reading status messages", e);
}
