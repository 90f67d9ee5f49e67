/*
 * status.h - numbered status messages (DESIGN §5): the catalogue, defined
 * once here, and the reporter that stores each message in site.db, writes
 * it to the component's log (a readable line and a STATMSG line) and runs
 * notify_command.
 *
 * Formats use ConfigMgr insertion strings: %1 is istr[0], %2 istr[1], ...
 * Insertion strings often come from peers: they are length-limited and
 * made safe (control characters and invalid UTF-8 escaped as \xHH) before
 * they are stored, logged, rendered into a .why file or passed to
 * notify_command, so they cannot forge lines or reach a terminal raw.
 */
#ifndef SS_STATUS_H
#define SS_STATUS_H

#include "../inboxes/log.h"
#include "../inboxes/site.h"
#include "db.h"

enum ss_component { SS_COMP_DESPOOLER, SS_COMP_SENDER, SS_COMP_HMAN, SS_COMP_COUNT };

#define SS_ISTR_MAX 10
#define SS_ISTR_LEN 512

typedef struct ss_msgdef {
    int id;
    char severity; /* 'I', 'W', 'E' */
    enum ss_component component;
    const char *format;
    const char *explanation;
    const char *remedy;
} ss_msgdef;

const char *ss_component_name(enum ss_component c); /* "SITESPOOL_DESPOOLER" */
const char *ss_component_log(enum ss_component c);  /* "despool.log" */
int ss_component_parse(const char *name, enum ss_component *out);
const ss_msgdef *ss_catalogue(size_t *count);
const ss_msgdef *ss_msgdef_find(int id);
/* Renders format with insertion strings into out. */
void ss_msg_render(const char *format, int nistr, const char *const istr[], char *out, size_t len);

typedef struct ss_reporter {
    char root[PATH_MAX];
    const ss_conf *conf;
    ss_db *db;
    ss_log logs[SS_COMP_COUNT];
    bool stderr_echo; /* also print messages on stderr (interactive commands) */
    char host[64];    /* SYS= in STATMSG lines */
} ss_reporter;

int ss_reporter_open(ss_reporter *r, const char *root, const ss_conf *conf, ss_db *db, ss_error *e);
void ss_reporter_close(ss_reporter *r);
/* Opens every log again, in the format the settings now name (SIGHUP). */
void ss_reporter_reopen(ss_reporter *r);
ss_log *ss_reporter_log(ss_reporter *r, enum ss_component c);
/* Raises message id with insertion strings (a NULL-terminated list):
 * logged, stored, notify_command run.  Insertion strings are made safe
 * first (inboxes/text.h: control characters and invalid UTF-8 escaped). */
void ss_report(ss_reporter *r, int id, ...);
void ss_reportv(ss_reporter *r, int id, int nistr, const char *const istr[]);
/* The same in two steps, for messages that belong to a transaction: the
 * row is stored inside it (an error fails the transaction), and the
 * message is logged and notify_command run only once it committed. */
int ss_report_store(ss_reporter *r, int id, int nistr, const char *const istr[], ss_error *e);
/* The same, giving the stored row (its seq), which ss_report_restate can
 * correct later when what the message says turned out differently (a file
 * published under another name than the one chosen). */
int ss_report_store_row(ss_reporter *r, int id, int nistr, const char *const istr[], int64_t *row,
                        ss_error *e);
int ss_report_restate(ss_reporter *r, int64_t row, int id, int nistr, const char *const istr[],
                      ss_error *e);
void ss_report_announce(ss_reporter *r, int id, int nistr, const char *const istr[]);

/* Stored messages, oldest first: those after seq after_seq, from since_ms,
 * with id (0: any) and component name (NULL: any); limit > 0 keeps only
 * the newest limit.  fn gets each row; *after_seq follows the last one. */
typedef struct ss_status_row {
    int64_t seq, time_ms;
    int id;
    const char *severity, *component, *site, *istr_json, *text;
} ss_status_row;
typedef void (*ss_status_fn)(void *ctx, const ss_status_row *row);
int ss_status_query(ss_db *db, int64_t *after_seq, int64_t since_ms, int id, const char *component,
                    long limit, ss_status_fn fn, void *ctx, ss_error *e);

#endif
