/*
 * site.h - the site tree on disk (DESIGN §2) and its settings (site.conf, §9).
 *
 * Security stance: site.conf is the administrator's file and is parsed
 * strictly: an unknown key, a malformed value or a duplicate is an error
 * naming the line, because a typo in a security setting must not silently
 * fall back to a default.
 */
#ifndef SS_SITE_H
#define SS_SITE_H

#include "error.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#define SS_SITE_CODE_MAX 8

#define SS_DIR_RECEIVE "inboxes/despoolr.box/receive"
#define SS_DIR_REJECTED "inboxes/despoolr.box/rejected"
#define SS_DIR_CONSUMED "inboxes/despoolr.box/consumed"
#define SS_DIR_HMAN "inboxes/hman.box"
#define SS_DIR_HMAN_PUBKEY "inboxes/hman.box/pubkey"
#define SS_DIR_OUTBOX "inboxes/schedule.box/outbox"
#define SS_DIR_KEYS "keys"
#define SS_DIR_LOGS "logs"
#define SS_FILE_CONF "site.conf"
#define SS_FILE_DB "site.db"

/* 3 to 8 characters of A-Z0-9. */
bool ss_site_code_valid(const char *code);
/* An inbox name usable as a destination: [a-z0-9_]{1,32}.box */
bool ss_dest_name_valid(const char *dest);

typedef struct ss_conf {
    char site_code[SS_SITE_CODE_MAX + 1];
    bool require_secure_key_exchange;
    bool tofu_auto_approve;
    bool sign_instructions;
    unsigned key_lookup_retries;
    unsigned key_lookup_interval; /* seconds */
    unsigned rescan_interval;     /* seconds */
    char directory[PATH_MAX];     /* key directory folder; "" = none */
    char allowed_dest[1024];      /* space-separated inbox names */
    uint64_t max_package_bytes;
    uint64_t log_max_bytes;
    unsigned expiry_warning_days;
    unsigned rollover_grace_days;
    unsigned key_lifetime_days;
    unsigned package_lifetime;     /* seconds until an instruction expires */
    unsigned max_clock_skew;       /* how far ahead a peer's created may be */
    unsigned max_package_lifetime; /* the latest expires accepted, from now */
    unsigned backlog_warning_age;
    unsigned send_retry_interval;
    unsigned send_retry_max_interval;
    unsigned batch_max; /* pairs per despooler batch */
    int compression_level;
    unsigned bundle_max_files; /* files per bundle package; 1 = never bundle */
    uint64_t bundle_below;     /* files smaller than this may share a package */
    bool seal;                 /* data to a peer whose key is trusted is sealed to it (seal.h) */
    char notify_command[1024];
    char sftp_identity[PATH_MAX]; /* SSH private key for sftp:// peers; relative to the root */
    unsigned sftp_timeout;        /* seconds: connect, and each wait for a reply */
    unsigned sftp_batch_max;      /* pairs per batch to an SFTP address */
    char log_format[8];           /* "trace" ($$<...> lines) or "ccm" (<![LOG[...]LOG]!>) */
    char metrics_file[PATH_MAX];  /* Prometheus textfile the daemons rewrite; "" = none */
    unsigned heartbeat_interval;  /* seconds between heartbeats to each peer; 0 = none */
    unsigned link_degraded_after; /* heartbeats missed before degraded (twice: failed) */
    unsigned receipt_timeout;     /* a pair sent this long without receipt is reported */
    unsigned resend_keep;         /* copies of delivered pairs kept this long; 0 = none */
    /* The key directory on a directory server (directory = ldap://...). */
    bool directory_starttls;                /* StartTLS on ldap:// */
    char directory_bind_dn[1024];           /* "" = anonymous */
    char directory_password_file[PATH_MAX]; /* relative to the root unless absolute */
    char directory_ca_file[PATH_MAX];       /* PEM CAs for ldaps/StartTLS; "" = the system's */
    unsigned directory_timeout;             /* seconds: connect, and each operation */
} ss_conf;

/* The most files one bundle may carry (files= in an instruction). */
#define SS_BUNDLE_FILES_MAX 10000

void ss_conf_defaults(ss_conf *c);
/* Parses text (the content of site.conf); origin names it in errors. */
int ss_conf_parse(ss_conf *c, const char *text, const char *origin, ss_error *e);
/* The installed layout: site roots under ss_state_dir() (/var/lib/sitespool
 * or $SITESPOOL_STATE_DIR), their settings in ss_conf_dir() (/etc/sitespool
 * or $SITESPOOL_CONF_DIR) as <SITE>.conf. */
const char *ss_state_dir(void);
const char *ss_conf_dir(void);
/* Where ROOT's settings are: ROOT/site.conf; or, when ROOT has none and
 * ends in a site code, <conf dir>/<SITE>.conf if that exists; system: the
 * latter always (init --system).  -1 if a path is too long. */
int ss_conf_locate(const char *root, bool system, char *path, size_t len);
/* Loads the settings (ss_conf_locate) over the defaults. */
int ss_conf_load(ss_conf *c, const char *root, ss_error *e);
/* Writes a fully commented site.conf with every setting at its value. */
char *ss_conf_render(const ss_conf *c);
bool ss_conf_dest_allowed(const ss_conf *c, const char *dest);

/* Parses "300", "300s", "5m", "2h", "1d" into seconds. */
int ss_parse_duration(const char *s, unsigned *out);
/* Parses "1048576", "250k", "16M", "4G" into bytes. */
int ss_parse_size(const char *s, uint64_t *out);

/* ROOT/rel into buf; -1 when it does not fit. */
int ss_path(char *buf, size_t len, const char *root, const char *rel);

/* Creates the folders of DESIGN §2 under root (which may exist but must not
 * hold a site.conf yet).  Keys, database and site.conf come after: site.conf
 * is written last (ss_site_write_conf) and marks a complete site. */
int ss_site_make_tree(const char *root, bool system, ss_error *e);
/* The folders ss_site_make_tree makes, relative to the root. */
const char *const *ss_site_dirs(size_t *count);
int ss_site_write_conf(const char *root, const ss_conf *c, bool system, ss_error *e);

/* One setting as documentation shows it (`sitespool settings`, the man
 * pages, the README): the same table that parses site.conf and writes it. */
typedef struct ss_setting_doc {
    const char *name;
    const char *type;          /* "yes/no", "duration", "size", "number", "text", ... */
    const char *default_value; /* as site.conf accepts it; "" = empty (none) */
    const char *help;
} ss_setting_doc;

/* Calls fn for every setting, in site.conf's order, with its default;
 * durations and sizes in their largest exact unit ("1h", "64k"). */
void ss_conf_describe(void (*fn)(void *ctx, const ss_setting_doc *s), void *ctx);

#endif
