/*
 * cmd_keydir.c - this site's entry in a key directory server, and what the
 * directory holds for each peer beside what the keystore trusts.
 *
 * What `key publish` writes (keystore/ldapdir.h): normally the current
 * public key file as sitespoolPublicKey, with no sitespoolNextPublicKey.
 * During a rollover - this site has an own key retired by `key rotate`
 * and still within its grace period, whose secret half is kept as
 * keys/<SITE>.<ID>.key.retired - peers may still trust only that old key,
 * so it stays sitespoolPublicKey and the key this site now signs with is
 * sitespoolNextPublicKey, with its rollover proof and the old key's vouch
 * (keystore/keyfile.h): a peer that finds data signed by the new key
 * before the rollover instruction reached it takes the new key as that
 * rollover.  Revoking the old key ends the rollover: the entry is written
 * again with the new key alone.
 *
 * Security stance: the commands only write this site's own entry and read
 * others'; they decide no trust (`key list --directory` compares, the
 * despooler presents what it finds to keystore/trust.h).  Secret keys are
 * loaded into guarded memory only to sign the proof and vouch.
 * Diagnostics: a directory error is printed with the server's words and
 * gives exit code 1; `publish` raises 3311.
 */
#include "keydir.h"
#include "../inboxes/dirurl.h"
#include "../inboxes/fileio.h"
#include "../inboxes/json.h"
#include "../keystore/keyfile.h"
#include "../keystore/ldapdir.h"
#include "../keystore/trust.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool keydir_is_server(const cli *c)
{
    return ss_dirurl_is_ldap(c->conf.directory);
}

/* ------------------------------------------------------------ publish */

struct retired_scan {
    bool found;
    ss_keyrec rec;
};

/* The own key retired last and still within its grace period. */
static int note_retired(void *ctx_, const ss_keyrec *k)
{
    struct retired_scan *ctx = ctx_;
    if (k->state == SS_KEY_RETIRED && k->grace_until > ss_now() &&
        (!ctx->found || k->grace_until > ctx->rec.grace_until)) {
        ctx->found = true;
        ctx->rec = *k;
    }
    return 0;
}

/* A public key file's text, its key and validity end. */
static char *read_pub(const char *path, ss_pubkey *pk, int64_t *not_after, ss_error *e)
{
    char *text = NULL, comment[SS_COMMENT_MAX + 1];
    size_t len;
    if (ss_read_small_file(AT_FDCWD, path, 4096, &text, &len, e) != 0) return NULL;
    if (ss_pubkey_parse(text, len, pk, comment, sizeof comment, e) != 0) {
        ss_err(e, e->code, "%s: %s", path, e->msg);
        free(text);
        return NULL;
    }
    *not_after = ss_pubkey_comment_not_after(comment);
    return text;
}

/* The next key value: the old (retired) key vouches for the current one. */
static int rollover_value(cli *c, const ss_keyrec *old, int64_t cur_not_after, char *out,
                          size_t cap, ss_error *e)
{
    char path[PATH_MAX];
    ss_seckey *old_sk = NULL, *cur_sk = NULL;
    ss_pubkey cur_pk;
    snprintf(path, sizeof path, "%s/" SS_DIR_KEYS "/%s.%s.key.retired", c->root, c->conf.site_code,
             old->key_id);
    int rc = ss_seckey_load(path, &old_sk, e);
    if (rc == 0) rc = ss_own_key_load(c->root, &c->conf, &cur_sk, &cur_pk, e);
    if (rc == 0)
        rc = ss_dirnext_payload(c->conf.site_code, old_sk, cur_sk, cur_not_after, out, cap, e);
    ss_seckey_free(old_sk);
    ss_seckey_free(cur_sk);
    return rc;
}

int keydir_publish_server(cli *c)
{
    ss_error e = {0};
    char cur_path[PATH_MAX], old_path[PATH_MAX], next[2048], cur_id[SS_KEYID_HEX + 1];
    ss_pubkey cur_pk, old_pk;
    int64_t cur_na = 0, old_na = 0;
    ss_own_key_paths(c->root, c->conf.site_code, NULL, cur_path, sizeof cur_path);
    char *cur = read_pub(cur_path, &cur_pk, &cur_na, &e), *old = NULL;
    if (!cur) return cli_fail(&e);
    ss_keyid_hex(cur_pk.keyid, cur_id);
    struct retired_scan scan = {0};
    if (ss_keys_foreach(&c->db, c->conf.site_code, note_retired, &scan, &e) != 0) {
        free(cur);
        return cli_fail(&e);
    }
    ss_dirpub pub = {c->conf.site_code, cur, cur_na, NULL, 0};
    if (scan.found) {
        snprintf(old_path, sizeof old_path, "%s/" SS_DIR_KEYS "/%s.%s.pub.retired", c->root,
                 c->conf.site_code, scan.rec.key_id);
        ss_error why = {0};
        old = read_pub(old_path, &old_pk, &old_na, &why);
        if (old && rollover_value(c, &scan.rec, cur_na, next, sizeof next, &why) == 0)
            pub = (ss_dirpub){c->conf.site_code, old, old_na, next, cur_na};
        else
            fprintf(stderr,
                    "sitespool: warning: publishing key %s alone, without the rollover from "
                    "%s: %s\n",
                    cur_id, scan.rec.key_id, why.msg);
    }
    ss_ldapdir *d = NULL;
    enum ss_dir_fault fault;
    int rc = ss_ldapdir_open(&d, c->root, &c->conf, &e);
    if (rc == 0) rc = ss_ldapdir_publish(d, &pub, &fault, &e);
    char where[SS_DIRURL_HOST_MAX + SS_DIRURL_DN_MAX + 64];
    if (d)
        snprintf(where, sizeof where, "%s (entry sitespoolSiteCode=%s)", ss_ldapdir_name(d),
                 c->conf.site_code);
    ss_ldapdir_close(d);
    free(cur);
    free(old);
    if (rc != 0) return cli_fail(&e);
    if (pub.next_text) {
        ss_report(&c->rep, 3311, scan.rec.key_id, c->conf.site_code, where, NULL);
        printf("Published key %s of site %s, with next key %s (rollover), in %s\n", scan.rec.key_id,
               c->conf.site_code, cur_id, where);
    } else {
        ss_report(&c->rep, 3311, cur_id, c->conf.site_code, where, NULL);
        printf("Published key %s of site %s in %s\n", cur_id, c->conf.site_code, where);
    }
    return 0;
}

/* --------------------------------------------------------------- list */

#define LIST_MAX 4096

struct site_set {
    char (*site)[SS_SITE_CODE_MAX + 1];
    size_t n;
};

static void add_site(struct site_set *s, const char *site)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->site[i], site)) return;
    if (s->n < LIST_MAX) snprintf(s->site[s->n++], sizeof s->site[0], "%s", site);
}

static int note_key_site(void *ctx, const ss_keyrec *k)
{
    add_site(ctx, k->site);
    return 0;
}

static int note_peer_site(void *ctx, const ss_peer *p)
{
    add_site(ctx, p->site);
    return 0;
}

static int cmp_site(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* What the folder backend holds: <directory>/<SITE>.pub as the current key. */
static void folder_fetch(const cli *c, const char *site, ss_dirrec *rec)
{
    char path[PATH_MAX];
    memset(rec, 0, sizeof *rec);
    snprintf(rec->site, sizeof rec->site, "%s", site);
    snprintf(path, sizeof path, "%s/%s.pub", c->conf.directory, site);
    snprintf(rec->where, sizeof rec->where, "%s", path);
    char *text = NULL;
    ss_error e = {0};
    if (ss_read_small_file(AT_FDCWD, path, 4096, &text, NULL, &e) != 0) {
        if (e.code != SS_E_NOENT) {
            rec->found = true;
            snprintf(rec->problem, sizeof rec->problem, "%s", e.msg);
        }
        return;
    }
    ss_dirrec_fill(rec, site, text, NULL, NULL, NULL);
    free(text);
}

/* The keystore's side: ids trusted (own keys for this site). */
typedef struct view {
    char trusted[160];
    const char *agree;
} view;

static bool in_list(const char *list, const ss_pubkey *pk)
{
    char id[SS_KEYID_HEX + 1];
    ss_keyid_hex(pk->keyid, id);
    return strstr(list, id) != NULL;
}

static int judge(cli *c, const ss_dirrec *r, bool own, view *v, ss_error *e)
{
    v->trusted[0] = '\0';
    if (own) {
        char ids[4][SS_KEYID_HEX + 1];
        int n = ss_keys_in_state(&c->db, r->site, SS_KEY_OWN, ids, 4, e);
        if (n < 0) return -1;
        for (int i = 0; i < n && i < 4; i++)
            snprintf(v->trusted + strlen(v->trusted), sizeof v->trusted - strlen(v->trusted),
                     "%s%s", i ? ", " : "", ids[i]);
    } else if (ss_site_trusted_list(&c->db, r->site, v->trusted, sizeof v->trusted, e) != 0) {
        return -1;
    }
    if (!r->found)
        v->agree = "no entry";
    else if (!r->has_current)
        v->agree = "unusable";
    else if (in_list(v->trusted, &r->current))
        v->agree = "yes";
    else if (r->next_ok && in_list(v->trusted, &r->next))
        v->agree = own ? "yes (rollover)" : "yes (next)";
    else if (!v->trusted[0])
        v->agree = own ? "NO" : "not trusted yet";
    else
        v->agree = "NO: differs";
    return 0;
}

static void print_text_row(const ss_dirrec *r, const view *v, const char *error, bool *header)
{
    char cur[SS_KEYID_HEX + 1] = "-", next[SS_KEYID_HEX + 4] = "-", until[32] = "-";
    if (!*header)
        printf("%-8s %-16s %-19s %-19s %-35s %s\n", "SITE", "DIRECTORY KEY", "VALID UNTIL",
               "NEXT KEY", "KEYSTORE TRUSTS", "AGREE");
    *header = true;
    if (error) {
        printf("%-8s error: %s\n", r->site, error);
        return;
    }
    if (r->has_current) ss_keyid_hex(r->current.keyid, cur);
    if (r->has_current) cli_format_time(r->current_not_after, until, sizeof until);
    if (r->next_ok) ss_keyid_hex(r->next.keyid, next);
    if (r->has_next && !r->next_ok) snprintf(next, sizeof next, "(bad)");
    printf("%-8s %-16s %-19s %-19s %-35s %s\n", r->site, cur, until, next,
           v->trusted[0] ? v->trusted : "-", v->agree);
    if (r->problem[0]) printf("         %s\n", r->problem);
}

static void print_json_row(const ss_dirrec *r, const view *v, bool own, const char *error,
                           bool first)
{
    char id[SS_KEYID_HEX + 1];
    printf("%s{\"site\":\"%s\",\"own\":%s,\"directory\":", first ? "[" : ",\n ", r->site,
           own ? "true" : "false");
    if (error || !r->found) {
        printf("null");
    } else {
        printf("{\"where\":");
        ss_json_string(stdout, r->where);
        printf(",\"key_id\":");
        if (r->has_current) ss_keyid_hex(r->current.keyid, id);
        r->has_current ? printf("\"%s\"", id) : printf("null");
        printf(",\"not_after\":%lld,\"next_key_id\":", (long long)r->current_not_after);
        if (r->next_ok) ss_keyid_hex(r->next.keyid, id);
        r->next_ok ? printf("\"%s\"", id) : printf("null");
        printf(",\"next_not_after\":%lld,\"next_valid\":%s,\"problem\":",
               (long long)r->next_not_after, r->next_ok ? "true" : "false");
        r->problem[0] ? ss_json_string(stdout, r->problem) : (void)printf("null");
        printf("}");
    }
    printf(",\"trusted\":");
    ss_json_string(stdout, error ? "" : v->trusted);
    printf(",\"agree\":");
    error ? (void)printf("null") : ss_json_string(stdout, v->agree);
    printf(",\"error\":");
    error ? ss_json_string(stdout, error) : (void)printf("null");
    printf("}");
}

/* Every site to show: this one, the peers and every site the keystore
 * knows. */
static int collect_sites(cli *c, struct site_set *set, ss_error *e)
{
    add_site(set, c->conf.site_code);
    if (ss_peer_foreach(&c->db, note_peer_site, set, e) != 0 ||
        ss_keys_foreach(&c->db, NULL, note_key_site, set, e) != 0)
        return -1;
    if (set->n > 1) qsort(set->site + 1, set->n - 1, sizeof set->site[0], cmp_site);
    return 0;
}

int keydir_list(cli *c, bool json)
{
    ss_error e = {0};
    if (!c->conf.directory[0])
        return ss_err(&e, SS_E_CONF,
                      "no key directory: set 'directory' in site.conf (a folder, or "
                      "ldap://HOST/BASE-DN)"),
               cli_fail(&e);
    struct site_set set = {calloc(LIST_MAX, SS_SITE_CODE_MAX + 1), 0};
    if (!set.site) return ss_err(&e, SS_E_NOMEM, "out of memory"), cli_fail(&e);
    ss_ldapdir *d = NULL;
    int rc = collect_sites(c, &set, &e);
    if (rc == 0 && keydir_is_server(c)) rc = ss_ldapdir_open(&d, c->root, &c->conf, &e);
    if (rc != 0) {
        free(set.site);
        ss_ldapdir_close(d);
        return cli_fail(&e);
    }
    bool header = false, failed = false;
    char down[sizeof e.msg] = "";
    for (size_t i = 0; i < set.n; i++) {
        ss_dirrec r;
        view v = {0};
        enum ss_dir_fault fault;
        ss_error why = {0};
        const char *error = NULL;
        bool own = i == 0;
        if (down[0]) {
            memset(&r, 0, sizeof r);
            snprintf(r.site, sizeof r.site, "%s", set.site[i]);
            error = down; /* a directory that failed is not asked again */
        } else if (d && ss_ldapdir_fetch(d, set.site[i], &r, &fault, &why) != 0) {
            snprintf(down, sizeof down, "%s", why.msg);
            error = down;
        } else if (!d) {
            folder_fetch(c, set.site[i], &r);
        }
        if (!error && judge(c, &r, own, &v, &why) != 0) error = why.msg;
        failed |= error != NULL;
        if (json)
            print_json_row(&r, &v, own, error, i == 0);
        else
            print_text_row(&r, &v, error, &header);
    }
    if (json) printf("]\n");
    ss_ldapdir_close(d);
    free(set.site);
    if (failed)
        fprintf(stderr, "sitespool: the key directory %s could not be read: %s\n",
                c->conf.directory, down[0] ? down : "see the errors above");
    return failed ? 1 : 0;
}
